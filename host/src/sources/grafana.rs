//! `POST /webhooks/grafana`: Grafana unified alerting's webhook contact point, which keeps
//! Alertmanager's group shape and adds `orgId`, `state`, `title` and `message`.

use serde_json::Value;

use super::{Delivery, Kind, Rejection, Source, group};

/// Reads a Grafana unified alerting body; an Alertmanager body sent here, and Grafana's
/// legacy alerting, are refused, naming what to do.
pub(super) fn parse(value: &Value) -> Result<Delivery, Rejection> {
    match Kind::of(value) {
        Some(kind @ (Kind::Alertmanager | Kind::LegacyGrafana)) => {
            Err(kind.misdirected(Source::Grafana))
        }
        _ => group(Source::Grafana, value),
    }
}

//! `POST /webhooks/alertmanager`: Prometheus Alertmanager's webhook, payload version 4.

use serde_json::Value;

use super::{Delivery, Kind, Rejection, Source, group};

/// Reads an Alertmanager webhook body; a Grafana body sent here is refused, naming its route.
pub(super) fn parse(value: &Value) -> Result<Delivery, Rejection> {
    match Kind::of(value) {
        Some(kind @ (Kind::Grafana | Kind::LegacyGrafana)) => {
            Err(kind.misdirected(Source::Alertmanager))
        }
        _ => group(Source::Alertmanager, value),
    }
}

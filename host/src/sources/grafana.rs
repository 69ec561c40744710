//! `POST /webhooks/grafana`: Grafana unified alerting's webhook contact point, which keeps
//! Alertmanager's group shape and adds `orgId`, `state`, `title` and `message`.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::{Delivery, Kind, Rejection, Source, group};
use crate::incident::episode_id;

/// Reads a Grafana unified alerting body; an Alertmanager body sent here, and Grafana's
/// legacy alerting, are refused, naming what to do.
pub(super) fn parse(value: &Value) -> Result<Delivery, Rejection> {
    match Kind::of(value) {
        Some(kind @ (Kind::Alertmanager | Kind::LegacyGrafana)) => {
            Err(kind.misdirected(Source::Grafana))
        }
        _ => {
            let mut delivery = group(Source::Grafana, value)?;
            scope(&mut delivery, value);
            Ok(delivery)
        }
    }
}

/// Grafana's fingerprints are per organisation and per Grafana: two orgs (or two stacks)
/// posting to one endpoint must not merge their incidents. The identity is the fingerprint
/// within `orgId` and `externalURL`; incidents opened under the bare fingerprint (before
/// this) are carried over.
fn scope(delivery: &mut Delivery, value: &Value) {
    // Grafana 8 sends no orgId: its alerts are the main org's, as later versions say.
    let org = match value.get("orgId") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "1".to_owned(),
    };
    let url = value
        .get("externalURL")
        .and_then(Value::as_str)
        .unwrap_or("");
    let digest = Sha256::digest(format!("{org}\0{url}"));
    let scope = format!("org{org}-{}", hex::encode(&digest[..4]));
    for alert in &mut delivery.alerts {
        let bare = std::mem::take(&mut alert.fingerprint);
        alert.fingerprint = format!("{bare}@{scope}");
        alert.id = episode_id(
            &alert.source,
            &alert.fingerprint,
            alert.starts_at.as_deref(),
        );
        alert.previous_fingerprint = Some(bare);
    }
}

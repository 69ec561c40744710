//! `POST /webhooks/generic`: any JSON body, read through `[sources.generic.fields]` (JSON
//! pointers; the defaults read the documented `{"dedup_key", "status", "title", …}` shape).

use serde_json::{Map, Value};

use super::{Delivery, Kind, Rejection, Source};
use crate::config::GenericFields;
use crate::incident::from_alert_value;

/// Reads a generic body through `fields`. Without a mapping of its own, an Alertmanager or
/// Grafana body is refused, naming its route.
pub(super) fn parse(value: &Value, fields: &GenericFields) -> Result<Delivery, Rejection> {
    if fields.is_default()
        && let Some(kind) = Kind::of(value)
    {
        return Err(kind.misdirected(Source::Generic));
    }
    let text = |pointer: &str, name: &str| -> Result<Option<String>, Rejection> {
        match value.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Rejection::Unusable(format!(
                "{name} (at {pointer}): expected a string"
            ))),
        }
    };
    let object = |pointer: &str, name: &str| -> Result<Map<String, Value>, Rejection> {
        match value.pointer(pointer) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(_) => Err(Rejection::Unusable(format!(
                "{name} (at {pointer}): expected an object of strings"
            ))),
        }
    };
    let dedup_key = text(&fields.dedup_key, "dedup_key")?.ok_or_else(|| {
        Rejection::Unusable(format!(
            "dedup_key (at {}) is required: it is the alert's identity across re-sends",
            fields.dedup_key
        ))
    })?;
    let status = text(&fields.status, "status")?.unwrap_or_else(|| "firing".to_owned());
    if status != "firing" && status != "resolved" {
        return Err(Rejection::Unusable(format!(
            "status (at {}): expected \"firing\" or \"resolved\", got {status:?}",
            fields.status
        )));
    }
    let mut labels = object(&fields.labels, "labels")?;
    let mut annotations = object(&fields.annotations, "annotations")?;
    if let Some(title) = text(&fields.title, "title")? {
        annotations.insert("summary".to_owned(), Value::String(title.clone()));
        labels
            .entry("alertname")
            .or_insert_with(|| Value::String(title));
    }
    if let Some(severity) = text(&fields.severity, "severity")? {
        labels.insert("severity".to_owned(), Value::String(severity));
    }
    if labels.is_empty() {
        labels.insert("alertname".to_owned(), Value::String(dedup_key.clone()));
    }
    let mut alert = Map::new();
    alert.insert("status".to_owned(), Value::String(status));
    alert.insert("fingerprint".to_owned(), Value::String(dedup_key));
    alert.insert("labels".to_owned(), Value::Object(labels));
    alert.insert("annotations".to_owned(), Value::Object(annotations));
    if let Some(starts_at) = text(&fields.starts_at, "starts_at")? {
        alert.insert("startsAt".to_owned(), Value::String(starts_at));
    }
    let mut alerts = from_alert_value(&Value::Object(alert), Source::Generic.name())
        .map_err(|e| Rejection::Unusable(e.replace("alerts[0].", "")))?;
    for incident in &mut alerts {
        incident.alert_json = value.to_string();
    }
    Ok(Delivery {
        alerts,
        truncated: 0,
    })
}

//! Webhook payloads: Alertmanager (v4), Grafana unified alerting, and a generic JSON shape.
//!
//! A body that is not JSON is the sender's bug and is answered 400. A body that is JSON
//! but cannot be used (no alerts, wrong types, a custom Alertmanager `payload` template) is
//! answered 202 and kept as a dead letter: Alertmanager re-sends on every 4xx forever, so
//! refusing it would only repeat the problem, and the raw body is what an operator needs.

use serde_json::{Map, Value};

use crate::config::GenericFields;
use crate::incident::Incident;
use crate::incident::from_alert_value;

/// The alert sources Quell accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Prometheus Alertmanager's webhook (payload version 4).
    Alertmanager,
    /// Grafana unified alerting's webhook contact point.
    Grafana,
    /// The documented generic JSON shape (or a configured mapping).
    Generic,
}

impl Source {
    /// The name used in routes, incidents and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Grafana => "grafana",
            Self::Generic => "generic",
        }
    }
}

/// A usable delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// One incident per alert.
    pub alerts: Vec<Incident>,
    /// Alerts the sender dropped (`truncatedAlerts`).
    pub truncated: u64,
}

/// Why a body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not JSON: answered 400 with this message.
    Malformed(String),
    /// JSON, but unusable: stored as a dead letter and answered 202.
    Unusable(String),
}

/// Parses a body from `source`.
pub fn parse(source: Source, body: &[u8], fields: &GenericFields) -> Result<Delivery, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::Malformed(format!("the body is not valid JSON: {e}")))?;
    match source {
        Source::Alertmanager | Source::Grafana => group(source, &value),
        Source::Generic => generic(&value, fields),
    }
}

fn group(source: Source, value: &Value) -> Result<Delivery, Rejection> {
    let Some(object) = value.as_object() else {
        return Err(Rejection::Unusable(
            "expected a JSON object with an \"alerts\" array".to_owned(),
        ));
    };
    if !object.contains_key("alerts") {
        let hint = if source == Source::Alertmanager {
            " (is a custom `payload` template set on the webhook? Quell needs the default v4 payload)"
        } else {
            " (is a custom payload template set on the contact point?)"
        };
        return Err(Rejection::Unusable(format!(
            "the payload has no \"alerts\" array{hint}"
        )));
    }
    let truncated = object
        .get("truncatedAlerts")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let alerts = from_alert_value(value, source.name()).map_err(Rejection::Unusable)?;
    Ok(Delivery { alerts, truncated })
}

fn generic(value: &Value, fields: &GenericFields) -> Result<Delivery, Rejection> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURE: &str = r#"{
 "receiver": "team\\.ops", "status": "firing",
 "alerts": [{
   "status": "firing",
   "labels": {"alertname": "AlwaysFiring", "severity": "critical", "target": "ok"},
   "annotations": {"runbook_url": "https://example.invalid/rb", "summary": "always firing 1"},
   "startsAt": "2026-11-24T20:18:56.51Z", "endsAt": "0001-01-01T00:00:00Z",
   "generatorURL": "http://vm:19090/graph?g0.expr=vector%281%29&g0.tab=1",
   "fingerprint": "95d6775b8683e7a9"}],
 "groupLabels": {"alertname": "AlwaysFiring"},
 "commonLabels": {"alertname": "AlwaysFiring"}, "commonAnnotations": {},
 "externalURL": "http://vm:19093", "version": "4",
 "groupKey": "{}:{alertname=\"AlwaysFiring\"}", "truncatedAlerts": 1,
 "notification_reason": "new", "routeLabels": {"a": "b"}, "somethingNew": [1, 2]
}"#;

    fn am(body: &str) -> Result<Delivery, Rejection> {
        parse(
            Source::Alertmanager,
            body.as_bytes(),
            &GenericFields::default(),
        )
    }

    #[test]
    fn the_real_alertmanager_capture_with_newer_fields_parses() {
        let delivery = am(CAPTURE).unwrap();
        assert_eq!(delivery.truncated, 1);
        let alert = &delivery.alerts[0];
        assert_eq!(alert.fingerprint, "95d6775b8683e7a9");
        assert_eq!(alert.title, "always firing 1");
        assert_eq!(alert.starts_at.as_deref(), Some("2026-11-24T20:18:56.51Z"));
        assert_eq!(alert.source, "alertmanager");
    }

    #[test]
    fn not_json_is_malformed_with_the_position() {
        let Err(Rejection::Malformed(message)) = am("{\"alerts\": [}") else {
            panic!("expected malformed");
        };
        assert!(message.contains("line 1 column 13"), "{message}");
    }

    #[test]
    fn json_without_alerts_is_a_dead_letter_that_says_why() {
        let Err(Rejection::Unusable(message)) = am(r#"{"text": "custom template"}"#) else {
            panic!("expected unusable");
        };
        assert!(message.contains("no \"alerts\" array"), "{message}");
        let Err(Rejection::Unusable(message)) = am(r#"{"alerts": [{"labels": {"a": 1}}]}"#) else {
            panic!("expected unusable");
        };
        assert_eq!(message, "alerts[0].labels.a: expected a string");
    }

    #[test]
    fn generic_payloads_follow_the_configured_pointers() {
        let fields = GenericFields {
            dedup_key: "/alert/id".to_owned(),
            title: "/alert/name".to_owned(),
            ..GenericFields::default()
        };
        let body = br#"{"alert": {"id": 42, "name": "Queue backed up"}, "severity": "high",
                       "labels": {"service": "billing"}}"#;
        let delivery = parse(Source::Generic, body, &fields).unwrap();
        let alert = &delivery.alerts[0];
        assert_eq!(alert.fingerprint, "42");
        assert_eq!(alert.title, "Queue backed up");
        assert_eq!(crate::incident::severity_name(alert.severity), "high");
        let missing = parse(
            Source::Generic,
            br#"{"title": "x"}"#,
            &GenericFields::default(),
        );
        assert!(
            matches!(&missing, Err(Rejection::Unusable(m)) if m.starts_with("dedup_key (at /dedup_key) is required")),
            "{missing:?}"
        );
    }
}

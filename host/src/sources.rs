//! Webhook payloads: Alertmanager (v4), Grafana unified alerting, and a generic JSON shape,
//! one module each: how to read the body, and how to tell a body meant for another route.
//!
//! A body that is not JSON is the sender's bug and is answered 400. A body that is JSON
//! but cannot be used (no alerts, wrong types, a custom Alertmanager `payload` template, a
//! body meant for another route) is kept as a dead letter, and answered according to the
//! sender's retry rules ([`Source::dead_letter_status`]): Alertmanager and Grafana re-send
//! on every failure at each group interval, so they get 202; the generic route's senders
//! (Uptime Kuma, Zabbix, Kapacitor, scripts) get 422, so a misconfiguration shows as a
//! failure where it is set up rather than as a silent success.

mod alertmanager;
mod generic;
mod grafana;

use axum::http::StatusCode;
use serde_json::Value;

use crate::config::{GenericFields, SeverityConfig};
use crate::incident::{Incident, Severity};

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

    /// The answer to a body kept as a dead letter: 202 where a failure would make the
    /// sender re-send it every group interval for as long as the alert fires (Alertmanager,
    /// Grafana), 422 elsewhere, so the sender's set-up screen shows the error.
    pub fn dead_letter_status(self) -> StatusCode {
        match self {
            Self::Alertmanager | Self::Grafana => StatusCode::ACCEPTED,
            Self::Generic => StatusCode::UNPROCESSABLE_ENTITY,
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
    /// The sender's notification group (Alertmanager's and Grafana's `groupKey`).
    pub group_key: Option<String>,
}

/// Why a body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not JSON: answered 400 with this message.
    Malformed(String),
    /// JSON, but unusable: stored as a dead letter and answered 202.
    Unusable(String),
}

/// Parses a body from `source`, sent with `content_type`.
pub fn parse(
    source: Source,
    body: &[u8],
    content_type: Option<&str>,
    fields: &GenericFields,
) -> Result<Delivery, Rejection> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let sent = match content_type {
            Some(sent) if !sent.starts_with("application/json") => {
                format!(" (this one was sent as {sent})")
            }
            _ => String::new(),
        };
        Rejection::Malformed(format!(
            "expected a JSON body (content-type: application/json){sent}: the body is not \
             valid JSON: {e}"
        ))
    })?;
    match source {
        Source::Alertmanager => alertmanager::parse(&value),
        Source::Grafana => grafana::parse(&value),
        Source::Generic => generic::parse(&value, fields),
    }
}

/// Sets each alert's severity from its `severity` label as the route's
/// `[sources.<name>.severity]` says: the map first, then the built-in names, then the
/// default. The label keeps the sender's own value.
pub fn map_severities(delivery: &mut Delivery, config: &SeverityConfig) {
    for alert in &mut delivery.alerts {
        let raw = crate::incident::label(alert, "severity");
        let mapped = raw.and_then(|raw| {
            config
                .map
                .iter()
                .find(|(value, _)| value.eq_ignore_ascii_case(raw.trim()))
                .map(|(_, severity)| *severity)
        });
        alert.severity = mapped
            .or_else(|| crate::incident::known_severity(raw))
            .or(config.default)
            .unwrap_or(Severity::Medium);
    }
}

/// What kind of body this is, when it is clearly one meant for another route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An Alertmanager webhook (version "4", alerts, no orgId).
    Alertmanager,
    /// A Grafana unified alerting webhook (orgId, state, version "1").
    Grafana,
    /// Grafana's legacy (pre-unified) alerting (ruleName, evalMatches, no alerts).
    LegacyGrafana,
}

impl Kind {
    fn of(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        let has = |key: &str| object.contains_key(key);
        let version = object.get("version").and_then(Value::as_str);
        if has("ruleName") && has("evalMatches") && !has("alerts") {
            Some(Self::LegacyGrafana)
        } else if has("alerts") && (has("orgId") || (version == Some("1") && has("state"))) {
            Some(Self::Grafana)
        } else if has("alerts") && version == Some("4") && has("groupKey") {
            Some(Self::Alertmanager)
        } else {
            None
        }
    }

    /// Why a body of this kind does not belong on `route`.
    fn misdirected(self, route: Source) -> Rejection {
        Rejection::Unusable(match self {
            Self::LegacyGrafana => "this is a legacy (pre-unified) Grafana alerting body \
                (ruleName, evalMatches), which Quell does not read: send from a Grafana \
                unified alerting webhook contact point to /webhooks/grafana"
                .to_owned(),
            Self::Grafana => format!(
                "this is a Grafana alerting body (orgId, state, version \"1\"), sent to \
                 /webhooks/{}: point the contact point at /webhooks/grafana",
                route.name()
            ),
            Self::Alertmanager => format!(
                "this is an Alertmanager webhook body (version \"4\", groupKey), sent to \
                 /webhooks/{}: point the receiver at /webhooks/alertmanager",
                route.name()
            ),
        })
    }
}

/// The alerts of an Alertmanager-shaped group (Alertmanager, and Grafana's unified alerting
/// which keeps its shape), as incidents from `source`.
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
    let alerts =
        crate::incident::from_alert_value(value, source.name()).map_err(Rejection::Unusable)?;
    let group_key = object
        .get("groupKey")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Delivery {
        alerts,
        truncated,
        group_key,
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
            Some("application/json"),
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
        let delivery = parse(Source::Generic, body, None, &fields).unwrap();
        let alert = &delivery.alerts[0];
        assert_eq!(alert.fingerprint, "42");
        assert_eq!(alert.title, "Queue backed up");
        assert_eq!(crate::incident::severity_name(alert.severity), "high");
        let missing = parse(
            Source::Generic,
            br#"{"title": "x"}"#,
            None,
            &GenericFields::default(),
        );
        assert!(
            matches!(&missing, Err(Rejection::Unusable(m)) if m.starts_with("dedup_key (at /dedup_key) is required")),
            "{missing:?}"
        );
    }

    const GRAFANA: &str = r#"{
 "receiver": "quell", "status": "firing", "orgId": 1, "state": "alerting",
 "alerts": [{"status": "firing", "labels": {"alertname": "HighCPU", "instance": "web-1"},
   "annotations": {}, "startsAt": "2026-11-24T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
   "fingerprint": "57c6d9296de2ad39"}],
 "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://grafana",
 "version": "1", "groupKey": "{}:{}", "truncatedAlerts": 0,
 "title": "[FIRING:1] HighCPU", "message": "**Firing**"
}"#;

    const LEGACY_GRAFANA: &str = r#"{"title": "[Alerting] CPU", "ruleId": 1, "ruleName": "CPU",
 "ruleUrl": "http://grafana/d/x", "state": "alerting", "evalMatches": [{"value": 100,
 "metric": "cpu", "tags": {}}], "message": "CPU is high"}"#;

    fn on(source: Source, body: &str) -> Result<Delivery, Rejection> {
        parse(source, body.as_bytes(), None, &GenericFields::default())
    }

    fn unusable(result: Result<Delivery, Rejection>) -> String {
        match result {
            Err(Rejection::Unusable(message)) => message,
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }

    #[test]
    fn a_body_meant_for_another_route_is_refused_naming_the_right_one() {
        assert_eq!(on(Source::Grafana, GRAFANA).unwrap().alerts.len(), 1);
        let grafana_on_am = unusable(on(Source::Alertmanager, GRAFANA));
        assert!(
            grafana_on_am.contains("point the contact point at /webhooks/grafana"),
            "{grafana_on_am}"
        );
        let am_on_grafana = unusable(on(Source::Grafana, CAPTURE));
        assert!(
            am_on_grafana.contains("point the receiver at /webhooks/alertmanager"),
            "{am_on_grafana}"
        );
        for route in [Source::Alertmanager, Source::Grafana, Source::Generic] {
            let legacy = unusable(on(route, LEGACY_GRAFANA));
            assert!(
                legacy.contains("legacy (pre-unified) Grafana alerting"),
                "{legacy}"
            );
        }
        let am_on_generic = unusable(on(Source::Generic, CAPTURE));
        assert!(
            am_on_generic.contains(
                "sent to /webhooks/generic: point the receiver at /webhooks/alertmanager"
            ),
            "{am_on_generic}"
        );
        let grafana_on_generic = unusable(on(Source::Generic, GRAFANA));
        assert!(
            grafana_on_generic.contains("/webhooks/grafana"),
            "{grafana_on_generic}"
        );
        // With a mapping of its own, the generic route reads what it is told to.
        let fields = GenericFields {
            dedup_key: "/groupKey".to_owned(),
            ..GenericFields::default()
        };
        assert!(parse(Source::Generic, CAPTURE.as_bytes(), None, &fields).is_ok());
    }

    #[test]
    fn a_form_body_is_told_the_route_wants_json() {
        let Err(Rejection::Malformed(message)) = parse(
            Source::Generic,
            b"title=disk+full&state=alerting",
            Some("application/x-www-form-urlencoded"),
            &GenericFields::default(),
        ) else {
            panic!("expected malformed");
        };
        assert!(
            message.starts_with(
                "expected a JSON body (content-type: application/json) (this one was sent as \
                 application/x-www-form-urlencoded)"
            ),
            "{message}"
        );
    }

    #[test]
    fn dead_letters_are_failures_only_where_that_stops_no_alert() {
        assert_eq!(
            Source::Alertmanager.dead_letter_status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(Source::Grafana.dead_letter_status(), StatusCode::ACCEPTED);
        assert_eq!(
            Source::Generic.dead_letter_status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    /// The real payloads under `tests/fixtures/payloads/<source>/` (provenance in its README).
    fn fixtures(source: &str) -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/payloads")
            .join(source);
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no fixtures in {}", dir.display());
        files
    }

    #[test]
    fn real_alertmanager_and_grafana_bodies_parse_on_their_route_only() {
        for (route, other, source) in [
            (Source::Alertmanager, Source::Grafana, "alertmanager"),
            (Source::Grafana, Source::Alertmanager, "grafana"),
        ] {
            for (name, body) in fixtures(source) {
                if name.starts_with("legacy") {
                    let why = unusable(on(route, &body));
                    assert!(why.contains("legacy (pre-unified)"), "{name}: {why}");
                    continue;
                }
                let value: Value = serde_json::from_str(&body).unwrap();
                let delivery = on(route, &body).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                let sent = value["alerts"].as_array().unwrap();
                assert_eq!(delivery.alerts.len(), sent.len(), "{name}");
                for (alert, raw) in delivery.alerts.iter().zip(sent) {
                    assert_eq!(alert.status, raw["status"].as_str().unwrap(), "{name}");
                    assert!(
                        !alert.title.is_empty() && !alert.fingerprint.is_empty(),
                        "{name}"
                    );
                    assert_eq!(alert.source, source, "{name}");
                }
                let why = unusable(on(other, &body));
                assert!(
                    why.contains(&format!("/webhooks/{source}")),
                    "{name}: {why}"
                );
            }
        }
    }

    #[test]
    fn severities_follow_the_routes_map_then_the_built_in_names_then_the_default() {
        let config = SeverityConfig {
            map: [
                ("1".to_owned(), Severity::Critical),
                ("Sev-3".to_owned(), Severity::Low),
            ]
            .into(),
            default: Some(Severity::High),
        };
        let body = |severity: &str| {
            format!(r#"{{"dedup_key": "k", "severity": "{severity}", "labels": {{"a": "b"}}}}"#)
        };
        for (raw, expected) in [
            ("1", Severity::Critical),
            ("sev-3", Severity::Low),
            ("Disaster", Severity::Critical),
            ("Information", Severity::Info),
            ("nonsense", Severity::High),
        ] {
            let mut delivery = on(Source::Generic, &body(raw)).unwrap();
            map_severities(&mut delivery, &config);
            let alert = &delivery.alerts[0];
            assert_eq!(alert.severity, expected, "{raw}");
            assert_eq!(
                crate::incident::label(alert, "severity"),
                Some(raw),
                "the raw value is kept"
            );
        }
    }
}

//! `POST /webhooks/generic`: any JSON body, read through `[sources.generic.fields]` (JSON
//! pointers; the defaults read the documented `{"dedup_key", "status", "title", …}` shape).
//!
//! Senders that do not say `firing`/`resolved` (Uptime Kuma's 0/1, Zabbix's
//! `alerting`/`ok`, Kapacitor's levels) get their values mapped; timestamps are read in the
//! forms such senders write. A value that fits none is a dead letter naming the field, the
//! value and what would have been accepted.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone as _, Utc};
use serde_json::{Map, Value};

use super::{Delivery, Kind, Rejection, Source};
use crate::config::{GenericFields, StatusField, StatusMap, UtcOffset};
use crate::incident::from_alert_value;

/// Reads a generic body through `fields`. Without a mapping of its own, an Alertmanager or
/// Grafana body is refused, naming its route.
pub(super) fn parse(value: &Value, fields: &GenericFields) -> Result<Delivery, Rejection> {
    if fields.is_default()
        && let Some(kind) = Kind::of(value)
    {
        return Err(kind.misdirected(Source::Generic));
    }
    let text = |pointer: &str, name: &str| text(value, pointer, name);
    let object = |pointer: &str, name: &str| -> Result<Map<String, Value>, Rejection> {
        match value.pointer(pointer) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(_) => Err(unusable(format!(
                "{name} (at {pointer}): expected an object of strings"
            ))),
        }
    };
    let dedup_key = text(&fields.dedup_key, "dedup_key")?.ok_or_else(|| {
        unusable(format!(
            "dedup_key (at {}) is required: it is the alert's identity across re-sends",
            fields.dedup_key
        ))
    })?;
    let status = status(value, &fields.status)?;
    let mut labels = object(&fields.labels, "labels")?;
    let mut annotations = object(&fields.annotations, "annotations")?;
    // The title is text for people: an annotation, never a label a policy could match on.
    if let Some(title) = text(&fields.title, "title")? {
        annotations.insert("summary".to_owned(), Value::String(title));
    }
    if let Some(severity) = text(&fields.severity, "severity")? {
        labels.insert("severity".to_owned(), Value::String(severity));
    }
    if labels.is_empty() {
        labels.insert("alertname".to_owned(), Value::String(dedup_key.clone()));
    }
    let mut alert = Map::new();
    alert.insert("status".to_owned(), Value::String(status.to_owned()));
    alert.insert("fingerprint".to_owned(), Value::String(dedup_key));
    alert.insert("labels".to_owned(), Value::Object(labels));
    alert.insert("annotations".to_owned(), Value::Object(annotations));
    if let Some(raw) = value.pointer(&fields.starts_at).filter(|v| !v.is_null()) {
        let starts_at = timestamp(raw, fields.timezone).ok_or_else(|| {
            unusable(format!(
                "starts_at (at {}): {raw} is not a time: expected RFC 3339, \
                 \"YYYY-MM-DD HH:MM:SS[.fff]\" (with a zone, or in [sources.generic.fields] \
                 timezone), or Unix seconds or milliseconds",
                fields.starts_at
            ))
        })?;
        alert.insert("startsAt".to_owned(), Value::String(starts_at));
    }
    let mut alerts = from_alert_value(&Value::Object(alert), Source::Generic.name())
        .map_err(|e| unusable(e.replace("alerts[0].", "")))?;
    for incident in &mut alerts {
        incident.alert_json = value.to_string();
    }
    Ok(Delivery {
        alerts,
        truncated: 0,
        group_key: None,
    })
}

fn unusable(message: String) -> Rejection {
    Rejection::Unusable(message)
}

/// The text at `pointer` (numbers and booleans as written), if there is any.
fn text(value: &Value, pointer: &str, name: &str) -> Result<Option<String>, Rejection> {
    match value.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(unusable(format!(
            "{name} (at {pointer}): expected a string"
        ))),
    }
}

/// `firing` or `resolved`, from the sender's own words where a map says what they mean.
fn status(value: &Value, field: &StatusField) -> Result<&'static str, Rejection> {
    let pointer = field.pointer();
    let Some(found) = text(value, pointer, "status")? else {
        return Ok("firing");
    };
    match field {
        StatusField::Pointer(_) if found == "firing" || found == "resolved" => {
            Ok(if found == "firing" {
                "firing"
            } else {
                "resolved"
            })
        }
        StatusField::Pointer(_) => Err(unusable(format!(
            "status (at {pointer}): {found:?} is neither \"firing\" nor \"resolved\"; map \
             the sender's values with status = {{ pointer = \"{pointer}\", firing = [...], \
             resolved = [...] }}"
        ))),
        StatusField::Mapped(StatusMap {
            firing, resolved, ..
        }) => {
            let listed = |list: &[String]| list.iter().any(|v| v.eq_ignore_ascii_case(&found));
            if listed(firing) {
                Ok("firing")
            } else if listed(resolved) {
                Ok("resolved")
            } else {
                Err(unusable(format!(
                    "status (at {pointer}): {found:?} is neither firing {firing:?} nor \
                     resolved {resolved:?}"
                )))
            }
        }
    }
}

/// A sender's time as RFC 3339 UTC, or `None` when it is in no form Quell reads.
pub(crate) fn timestamp(raw: &Value, zone: UtcOffset) -> Option<String> {
    let utc: DateTime<Utc> = match raw {
        Value::Number(n) => epoch(n.as_f64()?)?,
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                t.with_timezone(&Utc)
            } else if let Some(t) = [
                "%Y-%m-%d %H:%M:%S%.f%:z",
                "%Y-%m-%d %H:%M:%S%.f%z",
                "%Y-%m-%d %H:%M:%S%.f %z",
                "%Y-%m-%dT%H:%M:%S%.f%z",
            ]
            .iter()
            .find_map(|f| DateTime::parse_from_str(s, f).ok())
            {
                t.with_timezone(&Utc)
            } else if let Some(naive) = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            {
                zone.0
                    .from_local_datetime(&naive)
                    .single()?
                    .with_timezone(&Utc)
            } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                epoch(s.parse().ok()?)?
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(utc.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Unix seconds, or milliseconds when the number is too large to be seconds (past 5138);
/// anything larger (microseconds, nanoseconds) is not guessed at.
fn epoch(number: f64) -> Option<DateTime<Utc>> {
    if !number.is_finite() || !(0.0..1e14).contains(&number) {
        return None;
    }
    let ms = if number >= 1e11 {
        number
    } else {
        number * 1000.0
    };
    DateTime::from_timestamp_millis(ms.round() as i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn zone(text: &str) -> UtcOffset {
        text.parse().unwrap()
    }

    #[test]
    fn times_are_read_in_the_forms_senders_write() {
        let utc = UtcOffset::default();
        for (raw, expected) in [
            (
                json!("2023-07-31T18:56:15.374Z"),
                "2023-07-31T18:56:15.374Z",
            ),
            (
                json!("2023-07-31T20:56:15+02:00"),
                "2023-07-31T18:56:15.000Z",
            ),
            (json!("2023-07-31 18:56:15.374"), "2023-07-31T18:56:15.374Z"),
            (json!("2023-07-31 18:56:15"), "2023-07-31T18:56:15.000Z"),
            (
                json!("2023-07-31 20:56:15 +02:00"),
                "2023-07-31T18:56:15.000Z",
            ),
            (json!(1_690_829_775), "2023-07-31T18:56:15.000Z"),
            (json!(1_690_829_775_374_u64), "2023-07-31T18:56:15.374Z"),
            (json!("1690829775"), "2023-07-31T18:56:15.000Z"),
        ] {
            assert_eq!(timestamp(&raw, utc).as_deref(), Some(expected), "{raw}");
        }
        assert_eq!(
            timestamp(&json!("2023-07-31 20:56:15"), zone("+02:00")).as_deref(),
            Some("2023-07-31T18:56:15.000Z"),
            "a zoneless time is in the configured zone"
        );
        assert_eq!(
            timestamp(&json!("2023-07-31T20:56:15+0200"), utc).as_deref(),
            Some("2023-07-31T18:56:15.000Z")
        );
        for bad in [
            json!("yesterday"),
            json!(-5),
            json!({"t": 1}),
            json!(""),
            json!(1_690_829_775_374_000_u64),
        ] {
            assert_eq!(timestamp(&bad, utc), None, "{bad}");
        }
    }

    #[test]
    fn a_bad_zone_is_refused_with_what_to_write() {
        let error = "Europe/Paris".parse::<UtcOffset>().unwrap_err();
        assert!(error.contains("write UTC, or +HH:MM"), "{error}");
    }

    /// A field profile, as an operator writes it in quell.toml.
    fn profile(fields: &str) -> GenericFields {
        crate::config::Config::parse(&format!("[sources.generic.fields]\n{fields}"))
            .unwrap()
            .sources
            .generic
            .fields
    }

    fn fixture(path: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/payloads")
            .join(path);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The profiles docs/sources.md ships, each against real bodies.
    const KAPACITOR: &str = "dedup_key = \"/id\"\ntitle = \"/message\"\nseverity = \"/level\"\n\
        status = { pointer = \"/level\", firing = [\"CRITICAL\", \"WARNING\", \"INFO\"], resolved = [\"OK\"] }\n\
        starts_at = \"/time\"\n";
    const ONCALL_FORMATTED: &str = "dedup_key = \"/alert_uid\"\ntitle = \"/title\"\n\
        status = { pointer = \"/state\", firing = [\"alerting\"], resolved = [\"ok\"] }\n";
    const UPTIME_KUMA: &str = "dedup_key = \"/monitor/id\"\ntitle = \"/monitor/name\"\n\
        status = { pointer = \"/heartbeat/status\", firing = [\"0\"], resolved = [\"1\"] }\n\
        starts_at = \"/heartbeat/time\"\n";

    #[test]
    fn kapacitor_levels_fire_and_resolve_through_the_profile() {
        let fields = profile(KAPACITOR);
        for (file, status) in [
            ("kapacitor/critical-2016-stream-test.json", "firing"),
            ("kapacitor/critical-server-test.json", "firing"),
            ("kapacitor/info-2016-sigma-test.json", "firing"),
            ("kapacitor/ok-2016-sigma-test.json", "resolved"),
        ] {
            let body = fixture(file);
            let alert = parse(&body, &fields).unwrap().alerts.remove(0);
            assert_eq!(alert.status, status, "{file}");
            assert_eq!(alert.fingerprint, body["id"].as_str().unwrap(), "{file}");
            assert_eq!(alert.title, body["message"].as_str().unwrap(), "{file}");
            assert!(alert.starts_at.is_some(), "{file}");
            assert!(
                !alert
                    .labels
                    .iter()
                    .any(|(k, v)| k == "alertname" && *v == alert.title),
                "a title is never a label"
            );
        }
    }

    #[test]
    fn oncall_formatted_bodies_read_through_the_profile() {
        let fields = profile(ONCALL_FORMATTED);
        for file in [
            "zabbix/oncall-example-alerting.json",
            "oncall/formatted-webhook-example-alerting.json",
        ] {
            let alert = parse(&fixture(file), &fields).unwrap().alerts.remove(0);
            assert_eq!(alert.status, "firing");
            assert_eq!(alert.title, "TestAlert: The whole system is down");
        }
        let mut ok = fixture("zabbix/oncall-example-alerting.json");
        ok["state"] = json!("OK");
        assert_eq!(parse(&ok, &fields).unwrap().alerts[0].status, "resolved");
    }

    #[test]
    fn uptime_kuma_heartbeats_resolve_and_unknown_values_say_what_is_accepted() {
        // No real Uptime Kuma body is published (see tests/fixtures/payloads/README.md):
        // this is the shape of server/notification-providers/webhook.js.
        let fields = profile(UPTIME_KUMA);
        let body = |status: u8| {
            json!({
                "heartbeat": {"monitorID": 3, "status": status, "time": "2023-07-31 18:56:15.374", "msg": "timeout"},
                "monitor": {"id": 3, "name": "api health"},
                "msg": "[api health] [🔴 Down] timeout",
            })
        };
        let down = parse(&body(0), &fields).unwrap().alerts.remove(0);
        assert_eq!(down.status, "firing");
        assert_eq!(down.starts_at.as_deref(), Some("2023-07-31T18:56:15.374Z"));
        assert_eq!(
            parse(&body(1), &fields).unwrap().alerts[0].status,
            "resolved"
        );
        let Err(Rejection::Unusable(why)) = parse(&body(2), &fields) else {
            panic!("a pending heartbeat is neither");
        };
        assert_eq!(
            why,
            "status (at /heartbeat/status): \"2\" is neither firing [\"0\"] nor resolved [\"1\"]"
        );
        let mut late = body(0);
        late["heartbeat"]["time"] = json!("last tuesday");
        let Err(Rejection::Unusable(why)) = parse(&late, &fields) else {
            panic!("an unreadable time is a dead letter");
        };
        assert!(
            why.starts_with("starts_at (at /heartbeat/time): \"last tuesday\" is not a time"),
            "{why}"
        );
    }
}

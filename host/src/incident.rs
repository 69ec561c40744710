//! Turning an alert, as monitoring sends it, into the incident a runbook sees.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How bad an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Page now.
    Critical,
    /// Page.
    High,
    /// The default.
    Medium,
    /// Look at it today.
    Low,
    /// For the record.
    Info,
}

/// An alert as Quell keeps it: the incident it opens or changes. Runbooks get it converted
/// to the WIT `incident` record at the sandbox boundary ([`crate::sandbox`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `INC-XXXXXXXX`, derived from source, fingerprint and startsAt.
    pub id: String,
    /// From the `summary` annotation, else `alertname`.
    pub title: String,
    /// From the `severity` label.
    pub severity: Severity,
    /// `alertmanager`, `grafana`, `generic` or `cli`.
    pub source: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Annotations, sorted by name.
    pub annotations: Vec<(String, String)>,
    /// The alert's identity within its source.
    pub fingerprint: String,
    /// RFC 3339, when the alert says when it started.
    pub starts_at: Option<String>,
    /// RFC 3339, when the sender says a resolved alert ended (`endsAt`).
    pub ends_at: Option<String>,
    /// The alert exactly as received, as JSON.
    pub alert_json: String,
    /// The identity an earlier Quell gave this alert, when it has changed since: an
    /// incident still open under it is carried over rather than left open forever.
    pub previous_fingerprint: Option<String>,
}

impl Incident {
    /// Replaces each NUL character of the alert's text (a `\u0000` in the JSON it came in)
    /// by U+FFFD: PostgreSQL's text cannot hold one. `alert_json` keeps it escaped.
    pub fn replace_nul(&mut self) {
        let Incident {
            title,
            source,
            status,
            labels,
            annotations,
            fingerprint,
            starts_at,
            ends_at,
            previous_fingerprint,
            ..
        } = self;
        let optional = [starts_at, ends_at, previous_fingerprint]
            .into_iter()
            .flatten();
        let pairs = labels.iter_mut().chain(annotations.iter_mut());
        for text in [title, source, status, fingerprint]
            .into_iter()
            .chain(optional)
            .chain(pairs.flat_map(|(k, v)| [k, v]))
        {
            replace_nul(text);
        }
    }
}

/// `text` with each NUL character replaced by U+FFFD.
pub fn replace_nul(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
    }
}

/// The id of an alert's episode: derived from its source, fingerprint and start.
pub fn episode_id(source: &str, fingerprint: &str, starts_at: Option<&str>) -> String {
    let episode = Sha256::digest(format!(
        "{source}\0{fingerprint}\0{}",
        starts_at.unwrap_or("")
    ));
    format!("INC-{}", hex::encode_upper(&episode[..4]))
}

/// Maps a `severity` label to a severity. Unknown or missing values are `medium`, never an
/// error: a typo in an alert rule must not drop the alert (the seed crashed on them).
pub fn severity(label: Option<&str>) -> Severity {
    known_severity(label).unwrap_or(Severity::Medium)
}

/// The severity a value names in the common schemes (Prometheus rules, Opsgenie-style
/// P1–P5, Zabbix's names, syslog-like words), if it names one.
pub fn known_severity(label: Option<&str>) -> Option<Severity> {
    Some(match label?.trim().to_ascii_lowercase().as_str() {
        "critical" | "crit" | "page" | "p1" | "fatal" | "emergency" | "disaster" => {
            Severity::Critical
        }
        "high" | "error" | "major" | "p2" => Severity::High,
        "medium" | "warning" | "warn" | "average" | "moderate" | "p3" => Severity::Medium,
        "low" | "minor" | "p4" => Severity::Low,
        "info" | "informational" | "information" | "none" | "not classified" | "p5" => {
            Severity::Info
        }
        _ => return None,
    })
}

/// The severity's name.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Info => "info",
    }
}

fn string_map(
    value: Option<&Value>,
    what: &str,
    index: usize,
) -> Result<Vec<(String, String)>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let object = value
        .as_object()
        .ok_or_else(|| format!("alerts[{index}].{what}: expected an object of strings"))?;
    let mut pairs = Vec::with_capacity(object.len());
    for (key, value) in object {
        let text = value
            .as_str()
            .ok_or_else(|| format!("alerts[{index}].{what}.{key}: expected a string"))?;
        pairs.push((key.clone(), text.to_owned()));
    }
    pairs.sort();
    Ok(pairs)
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The label set's fingerprint when the sender gave none: sha256 of the sorted pairs.
fn fingerprint_of(labels: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in labels {
        hasher.update(key.as_bytes());
        hasher.update([0xff]);
        hasher.update(value.as_bytes());
        hasher.update([0xff]);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Builds incidents from an Alertmanager webhook payload (`{"alerts": [...]}`) or from one
/// alert object (`{"labels": {...}, ...}`). The error says what is wrong and where.
pub fn from_alert_json(text: &str, source: &str) -> Result<Vec<Incident>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    from_alert_value(&value, source)
}

/// [`from_alert_json`] on parsed JSON.
pub fn from_alert_value(value: &Value, source: &str) -> Result<Vec<Incident>, String> {
    let alerts: Vec<&Value> = match (&value.get("alerts"), value.get("labels")) {
        (Some(Value::Array(alerts)), _) => alerts.iter().collect(),
        (Some(_), _) => return Err("\"alerts\" must be an array".to_owned()),
        (None, Some(_)) => vec![value],
        (None, None) => {
            return Err("expected an Alertmanager webhook payload (with \"alerts\") or one alert (with \"labels\")".to_owned());
        }
    };
    if alerts.is_empty() {
        return Err("the payload has no alerts".to_owned());
    }
    alerts
        .into_iter()
        .enumerate()
        .map(|(index, alert)| incident(alert, source, index))
        .collect()
}

fn incident(alert: &Value, source: &str, index: usize) -> Result<Incident, String> {
    if !alert.is_object() {
        return Err(format!("alerts[{index}]: expected an object"));
    }
    let labels = string_map(alert.get("labels"), "labels", index)?;
    if labels.is_empty() {
        return Err(format!(
            "alerts[{index}].labels: an alert needs at least one label"
        ));
    }
    let annotations = string_map(alert.get("annotations"), "annotations", index)?;
    let text = |key: &str| {
        alert
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let fingerprint = text("fingerprint").map_or_else(|| fingerprint_of(&labels), str::to_owned);
    // Go's zero time means "not set".
    let starts_at = text("startsAt")
        .filter(|t| !t.starts_with("0001-01-01"))
        .map(str::to_owned);
    let status = match text("status") {
        Some("resolved") => "resolved",
        _ => "firing",
    };
    // A firing alert's endsAt is only when the sender would stop waiting for a re-send.
    let ends_at = text("endsAt")
        .filter(|t| status == "resolved" && !t.starts_with("0001-01-01"))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
    let title = title(&labels, &annotations);
    Ok(Incident {
        id: episode_id(source, &fingerprint, starts_at.as_deref()),
        title,
        severity: severity(lookup(&labels, "severity")),
        source: source.to_owned(),
        status: status.to_owned(),
        labels,
        annotations,
        fingerprint,
        starts_at,
        ends_at,
        alert_json: alert.to_string(),
        previous_fingerprint: None,
    })
}

/// The longest title kept; the full text stays in the incident's annotations.
pub const MAX_TITLE_CHARS: usize = 200;

/// Keys read for a title, in order: annotations first, then labels.
const TITLE_KEYS: [&str; 4] = ["summary", "title", "message", "description"];

/// Labels that tell two alerts of one rule apart, in the order they are tried.
const DISTINGUISHING: [&str; 10] = [
    "instance",
    "host",
    "hostname",
    "node",
    "pod",
    "service",
    "deployment",
    "job",
    "container",
    "namespace",
];

/// A title that tells incidents apart: the first of `summary`, `title`, `message`,
/// `description` (annotations, then labels), else `alertname` with the label that tells
/// its alerts apart ("InstanceDown on host1:9100"). One line, Markdown emphasis removed, at
/// most [`MAX_TITLE_CHARS`] characters.
pub fn title(labels: &[(String, String)], annotations: &[(String, String)]) -> String {
    let written = [annotations, labels].into_iter().find_map(|pairs| {
        TITLE_KEYS
            .iter()
            .filter_map(|key| lookup(pairs, key))
            .map(one_line)
            .find(|text| !text.is_empty())
    });
    let text = written.unwrap_or_else(|| {
        let name = lookup(labels, "alertname").unwrap_or("Unknown Alert");
        match DISTINGUISHING.iter().find_map(|key| lookup(labels, key)) {
            Some(which) => format!("{name} on {which}"),
            None => name.to_owned(),
        }
    });
    let mut chars = text.chars();
    let mut title: String = chars.by_ref().take(MAX_TITLE_CHARS).collect();
    if chars.next().is_some() {
        title.pop();
        title.push('…');
    }
    title
}

/// The first non-blank line of `text`, without Markdown emphasis, heading or quote marks.
fn one_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let line = line.trim_start_matches(['#', '>']).trim_start();
    let mut plain = line
        .replace("**", "")
        .replace("__", "")
        .replace("~~", "")
        .replace('`', "");
    // Single emphasis marks around a word: *word* and _word_.
    for mark in ['*', '_'] {
        let wrapped = |s: &str| s.len() > 2 && s.starts_with(mark) && s.ends_with(mark);
        plain = plain
            .split(' ')
            .map(|word| {
                if wrapped(word) {
                    &word[1..word.len() - 1]
                } else {
                    word
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    plain.trim().to_owned()
}

/// A label's value.
pub fn label<'a>(incident: &'a Incident, key: &str) -> Option<&'a str> {
    lookup(&incident.labels, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_payload_becomes_incidents() {
        let payload = r#"{"version":"4","status":"firing","alerts":[{"status":"firing",
            "labels":{"alertname":"HighErrorRate","service":"api","severity":"critical"},
            "annotations":{"summary":"API 5xx above 5%"},"startsAt":"2026-11-24T10:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","fingerprint":"a1b2c3d4e5f60718"}]}"#;
        let incidents = from_alert_json(payload, "alertmanager").unwrap();
        assert_eq!(incidents.len(), 1);
        let incident = &incidents[0];
        assert_eq!(incident.title, "API 5xx above 5%");
        assert_eq!(incident.severity, Severity::Critical);
        assert_eq!(incident.fingerprint, "a1b2c3d4e5f60718");
        assert!(
            incident.id.starts_with("INC-") && incident.id.len() == 12,
            "{}",
            incident.id
        );
        assert_eq!(label(incident, "service"), Some("api"));
    }

    #[test]
    fn unknown_severity_is_medium_not_a_crash() {
        assert_eq!(severity(Some("warning")), Severity::Medium);
        assert_eq!(severity(Some("SEV-ZERO")), Severity::Medium);
        assert_eq!(severity(None), Severity::Medium);
    }

    #[test]
    fn bad_input_says_where() {
        assert!(
            from_alert_json("{", "cli")
                .unwrap_err()
                .starts_with("not valid JSON")
        );
        assert_eq!(
            from_alert_json(r#"{"alerts":[{"labels":{"a":1}}]}"#, "cli").unwrap_err(),
            "alerts[0].labels.a: expected a string"
        );
        assert!(
            from_alert_json(r#"{"x":1}"#, "cli")
                .unwrap_err()
                .contains("expected an Alertmanager")
        );
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn titles_tell_incidents_apart() {
        let down = |host: &str| pairs(&[("alertname", "InstanceDown"), ("instance", host)]);
        assert_eq!(
            title(&down("host1:9100"), &[]),
            "InstanceDown on host1:9100"
        );
        assert_ne!(
            title(&down("host1:9100"), &[]),
            title(&down("host2:9100"), &[])
        );
        for key in ["summary", "title", "message", "description"] {
            assert_eq!(
                title(&down("h"), &pairs(&[(key, "Disk full on db1")])),
                "Disk full on db1",
                "{key}"
            );
        }
        assert_eq!(
            title(
                &down("h"),
                &pairs(&[("description", "d"), ("summary", "s")])
            ),
            "s",
            "summary comes first"
        );
        assert_eq!(
            title(
                &pairs(&[("alertname", "A"), ("title", "from a label")]),
                &[]
            ),
            "from a label"
        );
        assert_eq!(title(&pairs(&[("severity", "high")]), &[]), "Unknown Alert");
    }

    #[test]
    fn a_markdown_message_makes_a_one_line_plain_title() {
        let message = "\n**Firing**\n\nValue: B=42\nLabels:\n - alertname = HighCPU\n";
        assert_eq!(title(&[], &pairs(&[("summary", message)])), "Firing");
        assert_eq!(
            title(
                &[],
                &pairs(&[("summary", "## *Disk* is __almost__ `full`")])
            ),
            "Disk is almost full"
        );
        let long = "x".repeat(500);
        let cut = title(&[], &pairs(&[("summary", &long)]));
        assert_eq!(cut.chars().count(), MAX_TITLE_CHARS);
        assert!(cut.ends_with('…'));
    }
}

//! Reads for the API, the pipeline, post-mortems and metrics.

use serde::Serialize;
use serde_json::Value;

use super::StoreError;
use super::tx::{Row, Tx};
use crate::incident::Incident;
use crate::incident::severity;

/// An incident as listed.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentSummary {
    /// `INC-XXXXXXXX`.
    pub id: String,
    /// From the `summary` annotation, else `alertname`.
    pub title: String,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    /// Where the alert came from.
    pub source: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// When the alert says it started.
    pub starts_at: Option<String>,
    /// When Quell opened the incident.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When Quell learned it resolved.
    pub resolved_at: Option<String>,
    /// When the sender says it ended (`endsAt` of the resolving alert), where it said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// How many firing deliveries it has seen.
    pub fired: i64,
    /// Whether a human was called in.
    pub escalated: bool,
    /// Whether a runbook remediated it successfully.
    pub remediated: bool,
}

const SUMMARY_COLUMNS: &str = "id, title, severity, status, source, fingerprint, starts_at,
    created_at, updated_at, resolved_at, fired, escalated, remediated, ended_at";

fn summary(row: &dyn Row) -> Result<IncidentSummary, StoreError> {
    Ok(IncidentSummary {
        id: row.get(0)?,
        title: row.get(1)?,
        severity: row.get(2)?,
        status: row.get(3)?,
        source: row.get(4)?,
        fingerprint: row.get(5)?,
        starts_at: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        resolved_at: row.get(9)?,
        fired: row.get(10)?,
        escalated: row.get(11)?,
        remediated: row.get(12)?,
        ended_at: row.get(13)?,
    })
}

/// Filters for listing incidents.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this severity.
    pub severity: Option<String>,
    /// Only incidents created at or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// At most this many (newest first).
    pub limit: u32,
    /// Only incidents created before this one (the previous page's `next`).
    pub before: Option<String>,
}

/// One page of incidents, newest first, with the cursor for the next.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentPage {
    /// The incidents.
    pub incidents: Vec<IncidentSummary>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next: Option<String>,
}

/// Lists incidents. `Ok(None)` when `before` names no incident (mistyped, or pruned by
/// retention): paging on from the first page instead would repeat what the caller has seen.
pub(super) fn list_incidents(
    tx: &dyn Tx,
    filter: &IncidentFilter,
) -> Result<Option<IncidentPage>, StoreError> {
    let cursor: Option<(i64, String)> = match &filter.before {
        Some(id) => {
            let found = tx.query_opt(
                "SELECT created_ms, id FROM incidents WHERE id = ?1",
                &[id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            if found.is_none() {
                return Ok(None);
            }
            found
        }
        None => None,
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM incidents
         WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1)
           AND (CAST(?2 AS TEXT) IS NULL OR severity = ?2)
           AND (CAST(?3 AS BIGINT) IS NULL OR created_ms >= ?3)
           AND (CAST(?4 AS BIGINT) IS NULL OR created_ms < ?4 OR (created_ms = ?4 AND id < ?5))
         ORDER BY created_ms DESC, id DESC LIMIT ?6"
    );
    let limit = filter.limit.clamp(1, 500);
    let before_ms = cursor.as_ref().map(|c| c.0);
    let before_id = cursor.as_ref().map(|c| c.1.as_str());
    let mut incidents: Vec<IncidentSummary> = tx.query_vec(
        &sql,
        &[
            &filter.status,
            &filter.severity,
            &filter.since_ms,
            &before_ms,
            &before_id,
            &(limit + 1),
        ],
        summary,
    )?;
    let next = if incidents.len() > limit as usize {
        incidents.truncate(limit as usize);
        incidents.last().map(|i| i.id.clone())
    } else {
        None
    };
    Ok(Some(IncidentPage { incidents, next }))
}

/// A timeline event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339 UTC.
    pub at: String,
    /// `created`, `re-fired`, `matched`, `diagnosed`, `escalated`, …
    pub kind: String,
    /// The runbook concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// What happened.
    pub message: String,
    /// Structured detail (findings, plan, result).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// One export call of a runbook.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Row id.
    pub id: i64,
    /// The runbook.
    pub runbook: String,
    /// Its component's sha256.
    pub digest: String,
    /// `diagnose` or `remediate`.
    pub phase: String,
    /// The policy's mode.
    pub mode: String,
    /// Whether writes were simulated.
    pub dry_run: bool,
    /// When it started.
    pub started_at: String,
    /// How long it took.
    pub duration_ms: i64,
    /// `not-matched`, `diagnosed`, `remediated`, `failed` or `error`.
    pub outcome: String,
    /// The export's value.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Captured guest output.
    pub output: String,
    /// Every capability call with its decision, in order.
    pub calls: Vec<Value>,
}

/// A runbook's job for this incident.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    /// The runbook.
    pub runbook: String,
    /// `diagnose` or `remediate`.
    pub phase: String,
    /// `queued`, `running`, `awaiting_approval`, `done`, …
    pub state: String,
    /// Claims so far.
    pub attempts: i64,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// The alert of a grouped incident it runs for (absent when the incident is its one
    /// alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

/// A grouped incident's alerts, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCounts {
    /// Firing now.
    pub firing: i64,
    /// Resolved.
    pub resolved: i64,
    /// The titles of the latest to join, newest first (at most five).
    pub latest: Vec<String>,
}

impl std::fmt::Display for AlertCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} alerts firing", self.firing)?;
        if self.resolved > 0 {
            write!(f, ", {} resolved", self.resolved)?;
        }
        if !self.latest.is_empty() {
            write!(f, "; latest to join: {}", self.latest.join("; "))?;
        }
        Ok(())
    }
}

/// Counts incident `id`'s alerts.
pub(super) fn alert_counts(tx: &dyn Tx, id: &str) -> Result<AlertCounts, StoreError> {
    let (firing, resolved) = tx.query_one(
        "SELECT count(*) FILTER (WHERE status = 'firing'),
                count(*) FILTER (WHERE status = 'resolved')
         FROM incident_alerts WHERE incident_id = ?1",
        &[&id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let latest = tx.query_vec(
        &format!(
            "SELECT title FROM incident_alerts WHERE incident_id = ?1 AND status = 'firing'
             ORDER BY created_at DESC, {} DESC LIMIT 5",
            tx.dialect().arrival()
        ),
        &[&id],
        |row| row.get(0),
    )?;
    Ok(AlertCounts {
        firing,
        resolved,
        latest,
    })
}

/// One alert of a grouped incident.
#[derive(Debug, Clone, Serialize)]
pub struct AlertSummary {
    /// Its identity within its source.
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: String,
    /// Its labels.
    pub labels: Value,
    /// When it started (RFC 3339), as the sender says.
    pub starts_at: Option<String>,
    /// When it ended, for a resolved alert the sender said so.
    pub ends_at: Option<String>,
    /// Deliveries of it so far.
    pub fired: i64,
    /// When it last changed.
    pub updated_at: String,
}

/// An incident with everything that happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentDetail {
    /// The summary fields.
    #[serde(flatten)]
    pub incident: IncidentSummary,
    /// Alert labels.
    pub labels: Value,
    /// Alert annotations.
    pub annotations: Value,
    /// The latest alert as received.
    pub alert: Value,
    /// The alerts of a grouped incident (`[incidents] group_by`), first arrival first;
    /// empty when the incident is its one alert.
    pub alerts: Vec<AlertSummary>,
    /// The timeline, oldest first.
    pub timeline: Vec<Event>,
    /// Runbook runs, oldest first, each with its capability calls.
    pub runs: Vec<Run>,
    /// Runbook jobs and their states.
    pub jobs: Vec<JobSummary>,
}

fn json_column(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

/// An incident with its timeline, runs, calls and jobs.
pub(super) fn incident_detail(tx: &dyn Tx, id: &str) -> Result<Option<IncidentDetail>, StoreError> {
    let row = tx.query_opt(
        &format!(
            "SELECT {SUMMARY_COLUMNS}, labels, annotations, alert_json FROM incidents WHERE id = ?1"
        ),
        &[&id],
        |row| {
            Ok((
                summary(row)?,
                row.get::<String>(14)?,
                row.get::<String>(15)?,
                row.get::<String>(16)?,
            ))
        },
    )?;
    let Some((incident, labels, annotations, alert)) = row else {
        return Ok(None);
    };
    let timeline = tx.query_vec(
        "SELECT at, kind, runbook, message, detail FROM events
         WHERE incident_id = ?1 ORDER BY id",
        &[&id],
        |row| {
            Ok(Event {
                at: row.get(0)?,
                kind: row.get(1)?,
                runbook: row.get(2)?,
                message: row.get(3)?,
                detail: json_column(row.get(4)?),
            })
        },
    )?;
    let mut runs: Vec<Run> = tx.query_vec(
        "SELECT id, runbook, digest, phase, mode, dry_run, started_at, duration_ms, outcome,
             result, error, output
         FROM runs WHERE incident_id = ?1 ORDER BY id",
        &[&id],
        |row| {
            Ok(Run {
                id: row.get(0)?,
                runbook: row.get(1)?,
                digest: row.get(2)?,
                phase: row.get(3)?,
                mode: row.get(4)?,
                dry_run: row.get(5)?,
                started_at: row.get(6)?,
                duration_ms: row.get(7)?,
                outcome: row.get(8)?,
                result: json_column(row.get(9)?),
                error: row.get(10)?,
                output: row.get::<Option<String>>(11)?.unwrap_or_default(),
                calls: Vec::new(),
            })
        },
    )?;
    let calls: Vec<(i64, String)> = tx.query_vec(
        "SELECT run_id, record FROM calls WHERE incident_id = ?1 ORDER BY id",
        &[&id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    for (run_id, record) in calls {
        if let Some(run) = runs.iter_mut().find(|r| r.id == run_id) {
            run.calls
                .push(serde_json::from_str(&record).unwrap_or(Value::String(record)));
        }
    }
    let jobs = tx.query_vec(
        "SELECT runbook, phase, state, attempts, decided_by, nullif(alert, '') FROM jobs
         WHERE incident_id = ?1 ORDER BY id",
        &[&id],
        |row| {
            Ok(JobSummary {
                runbook: row.get(0)?,
                phase: row.get(1)?,
                state: row.get(2)?,
                attempts: row.get(3)?,
                decided_by: row.get(4)?,
                alert: row.get(5)?,
            })
        },
    )?;
    // First arrival first.
    let alerts = tx.query_vec(
        &format!(
            "SELECT fingerprint, status, title, severity, labels, starts_at, ends_at, fired,
                 updated_at
             FROM incident_alerts WHERE incident_id = ?1 ORDER BY {}",
            tx.dialect().arrival()
        ),
        &[&id],
        |row| {
            Ok(AlertSummary {
                fingerprint: row.get(0)?,
                status: row.get(1)?,
                title: row.get(2)?,
                severity: row.get(3)?,
                labels: json_column(row.get(4)?).unwrap_or(Value::Null),
                starts_at: row.get(5)?,
                ends_at: row.get(6)?,
                fired: row.get(7)?,
                updated_at: row.get(8)?,
            })
        },
    )?;
    Ok(Some(IncidentDetail {
        incident,
        labels: serde_json::from_str(&labels)?,
        annotations: serde_json::from_str(&annotations)?,
        alert: serde_json::from_str(&alert).unwrap_or(Value::Null),
        alerts,
        timeline,
        runs,
        jobs,
    }))
}

/// Incident `id` as the domain sees it; for `alert` (one alert of a grouped incident, `""`
/// for none) with that alert's labels, annotations, fingerprint and times, and resolved when
/// that alert is.
pub(super) fn incident_record(
    tx: &dyn Tx,
    id: &str,
    alert: &str,
) -> Result<Option<Incident>, StoreError> {
    let row = tx.query_opt(
        "SELECT i.id, coalesce(a.title, i.title), coalesce(a.severity, i.severity),
             i.source,
             CASE WHEN a.status = 'resolved' THEN 'resolved' ELSE i.status END,
             coalesce(a.labels, i.labels), coalesce(a.annotations, i.annotations),
             coalesce(a.fingerprint, i.fingerprint),
             CASE WHEN a.fingerprint IS NULL THEN i.starts_at ELSE a.starts_at END,
             coalesce(a.alert_json, i.alert_json),
             CASE WHEN a.fingerprint IS NULL THEN i.ended_at ELSE a.ends_at END
         FROM incidents i
         LEFT JOIN incident_alerts a ON a.incident_id = i.id AND a.fingerprint = ?2
         WHERE i.id = ?1",
        &[&id, &alert],
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<String>(1)?,
                row.get::<String>(2)?,
                row.get::<String>(3)?,
                row.get::<String>(4)?,
                row.get::<String>(5)?,
                row.get::<String>(6)?,
                row.get::<String>(7)?,
                row.get::<Option<String>>(8)?,
                row.get::<String>(9)?,
                row.get::<Option<String>>(10)?,
            ))
        },
    )?;
    let Some((
        id,
        title,
        sev,
        source,
        status,
        labels,
        annotations,
        fingerprint,
        starts_at,
        json,
        ends_at,
    )) = row
    else {
        return Ok(None);
    };
    let pairs = |text: &str| -> Result<Vec<(String, String)>, StoreError> {
        let map: std::collections::BTreeMap<String, String> = serde_json::from_str(text)?;
        Ok(map.into_iter().collect())
    };
    Ok(Some(Incident {
        id,
        title,
        severity: severity(Some(&sev)),
        source,
        status: if status == "resolved" {
            "resolved".to_owned()
        } else {
            "firing".to_owned()
        },
        labels: pairs(&labels)?,
        annotations: pairs(&annotations)?,
        fingerprint,
        starts_at,
        ends_at,
        alert_json: json,
        previous_fingerprint: None,
    }))
}

/// Figures for `/metrics` that live in the database.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Incidents by status.
    pub incidents: Vec<(String, i64)>,
    /// Jobs by state (live ones).
    pub jobs: Vec<(String, i64)>,
    /// Dead-lettered deliveries kept.
    pub dead_letters: i64,
    /// Notifications that gave up.
    pub dead_notifications: i64,
    /// Notifications not yet delivered.
    pub pending_notifications: i64,
}

/// Reads the gauges.
pub(super) fn gauges(tx: &dyn Tx) -> Result<Gauges, StoreError> {
    let count_by = |sql: &str| -> Result<Vec<(String, i64)>, StoreError> {
        tx.query_vec(sql, &[], |row| Ok((row.get(0)?, row.get(1)?)))
    };
    Ok(Gauges {
        incidents: count_by("SELECT status, count(*) FROM incidents GROUP BY status")?,
        jobs: count_by(
            "SELECT state, count(*) FROM jobs
             WHERE state IN ('queued', 'running', 'awaiting_approval') GROUP BY state",
        )?,
        dead_letters: tx.query_one(
            "SELECT count(*) FROM inbox WHERE status = 'dead'",
            &[],
            |row| row.get(0),
        )?,
        dead_notifications: tx.query_one(
            "SELECT count(*) FROM deliveries WHERE state = 'dead'",
            &[],
            |row| row.get(0),
        )?,
        pending_notifications: tx.query_one(
            "SELECT count(*) FROM deliveries WHERE state IN ('pending', 'batched', 'digest')",
            &[],
            |row| row.get(0),
        )?,
    })
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Inbox row.
    pub id: i64,
    /// The route it arrived on.
    pub source: String,
    /// When.
    pub received_at: String,
    /// Why it could not be used.
    pub error: String,
    /// The body as received (lossy UTF-8).
    pub body: String,
}

/// The newest dead letters.
pub(super) fn dead_letters(tx: &dyn Tx, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
    // PG: `inbox.body` is a BLOB here; PostgreSQL's column would be `bytea`.
    tx.query_vec(
        "SELECT id, source, received_at, error, body FROM inbox WHERE status = 'dead'
         ORDER BY id DESC LIMIT ?1",
        &[&limit.clamp(1, 500)],
        |row| {
            Ok(DeadLetter {
                id: row.get(0)?,
                source: row.get(1)?,
                received_at: row.get(2)?,
                error: row.get::<Option<String>>(3)?.unwrap_or_default(),
                body: String::from_utf8_lossy(&row.get::<Vec<u8>>(4)?).into_owned(),
            })
        },
    )
}

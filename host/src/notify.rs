//! Notifications through a durable outbox.
//!
//! A lifecycle change writes a [`Notice`] into `notifications` in the same transaction as
//! the change ([`record`]). One dispatcher per destination (Slack, PagerDuty, the outgoing
//! webhook) walks the notices in order, decides from its route whether each is for it,
//! and delivers: one incident's notices in order (a trigger before its resolve, a thread's
//! root before its replies), retries with exponential backoff and jitter, `Retry-After` on
//! 429, and after the retry budget the delivery is dead: visible in `GET
//! /api/notifications/dead` and `quell_notifications_dead`. A crash between sending and
//! marking sent sends again; receivers deduplicate (PagerDuty by `dedup_key`).

pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::config::{NotifyConfig, Route};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, now};

/// The incident as a notice shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentView {
    /// `INC-XXXXXXXX`
    pub id: String,
    /// Title.
    pub title: String,
    /// Severity name.
    pub severity: String,
    /// `open`, `acknowledged`, `resolved`.
    pub status: String,
    /// Alert source.
    pub source: String,
    /// RFC 3339.
    pub created_at: String,
    /// Whether on-call was called in.
    pub escalated: bool,
    /// Labels.
    pub labels: Value,
}

/// A finding as notices carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindingView {
    /// Check name.
    pub name: String,
    /// Whether it looked healthy.
    pub ok: bool,
    /// One line.
    pub summary: String,
}

/// One thing to tell people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// `created`, `diagnosed`, `plan`, `remediated`, `remediation-failed`, `escalated`,
    /// `acknowledged`, `approved`, `rejected`, `resolved`.
    pub kind: String,
    /// When.
    pub at: String,
    /// The incident as it was at that moment.
    pub incident: IncidentView,
    /// The runbook concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// What happened, in a sentence.
    pub message: String,
    /// Diagnosis findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingView>,
    /// A plan's steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
}

/// Records which destinations are configured (`settings.notify`), so that with none no
/// notice is written at all.
pub fn configure(conn: &Connection, destinations: &[&str]) -> Result<(), StoreError> {
    let before: String = conn
        .prepare_cached("SELECT value FROM settings WHERE key = 'notify'")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or_default();
    let before: Vec<&str> = before.split(',').collect();
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES ('notify', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([destinations.join(",")])?;
    // A destination configured for the first time (or again after a while without it)
    // starts with what comes next, not with
    // the history other destinations were sent (a new PagerDuty must not page for last
    // week): a `skipped` marker at the newest notice sets its routing cursor. Destinations
    // configured before keep their place, routed or not.
    let (at, _) = now();
    for destination in destinations.iter().filter(|d| !before.contains(d)) {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO deliveries
                 (notification_id, destination, incident_id, state, next_at_ms, created_at)
             SELECT max(id), ?1, '', 'skipped', 0, ?2 FROM notifications
             HAVING max(id) IS NOT NULL",
        )?
        .execute(params![destination, at])?;
    }
    Ok(())
}

fn enabled(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = 'notify'")?
        .query_row([], |row| row.get::<_, String>(0))
        .optional()?
        .is_some_and(|v| !v.is_empty()))
}

/// Writes a notice for `incident` into the outbox, inside the caller's transaction (nothing
/// when no destination is configured).
pub fn record(
    conn: &Connection,
    incident: &str,
    kind: &str,
    runbook: Option<&str>,
    message: &str,
    findings: Vec<FindingView>,
    plan: Vec<String>,
) -> Result<(), StoreError> {
    if !enabled(conn)? {
        return Ok(());
    }
    let Some(view) = conn
        .prepare_cached(
            "SELECT id, title, severity, status, source, created_at, escalated, labels
             FROM incidents WHERE id = ?1",
        )?
        .query_row([incident], |row| {
            Ok(IncidentView {
                id: row.get(0)?,
                title: row.get(1)?,
                severity: row.get(2)?,
                status: row.get(3)?,
                source: row.get(4)?,
                created_at: row.get(5)?,
                escalated: row.get(6)?,
                labels: serde_json::from_str(&row.get::<_, String>(7)?).unwrap_or(Value::Null),
            })
        })
        .optional()?
    else {
        return Ok(());
    };
    let (at, ms) = now();
    let notice = Notice {
        kind: kind.to_owned(),
        at: at.clone(),
        incident: view,
        runbook: runbook.map(str::to_owned),
        message: message.to_owned(),
        findings,
        plan,
    };
    conn.prepare_cached(
        "INSERT INTO notifications (incident_id, kind, notice, created_at, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        incident,
        kind,
        serde_json::to_string(&notice)?,
        at,
        ms
    ])?;
    Ok(())
}

/// Every notice kind, in lifecycle order.
pub const KINDS: &[&str] = &[
    "created",
    "reopened",
    "diagnosed",
    "plan",
    "remediated",
    "remediation-failed",
    "escalated",
    "acknowledged",
    "approved",
    "rejected",
    "resolved",
];

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(SEVERITIES.len())
}

/// Whether `route` (with `kinds` as the destination's default events) takes `notice`.
pub fn routed(route: &Route, kinds: &[&str], notice: &Notice) -> bool {
    let kind_ok = if route.events.is_empty() {
        kinds.contains(&notice.kind.as_str())
    } else {
        route.events.contains(&notice.kind)
    };
    let severity_ok = rank(&notice.incident.severity) <= rank(&route.min_severity);
    let runbook_ok = route.runbooks.is_empty()
        || notice
            .runbook
            .as_ref()
            .is_none_or(|r| route.runbooks.contains(r));
    kind_ok && severity_ok && runbook_ok
}

/// How a delivery attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Not routed to this destination after all (e.g. a resolve for a never-paged incident).
    Skipped,
    /// Try again: after `Retry-After` when the receiver said so, else after the backoff.
    Retry {
        /// Why.
        error: String,
        /// The receiver's `Retry-After`.
        after: Option<Duration>,
    },
    /// Never going to work (PagerDuty 400, Slack 4xx other than 429): dead at once.
    Permanent(String),
}

/// The longest a destination waits for the one it [`Destination::waits_for`].
pub const HOLD: Duration = Duration::from_secs(10);

/// A destination.
pub trait Destination: Send + Sync + 'static {
    /// `slack`, `pagerduty`, `webhook`.
    fn name(&self) -> &'static str;
    /// Whether this notice is for it.
    fn accepts(&self, notice: &Notice) -> bool;
    /// Another destination whose earlier notices of the same incident this one waits for,
    /// at most [`HOLD`] (PagerDuty waits for Slack, so the page arrives with the diagnosis
    /// already in the incident's thread).
    fn waits_for(&self) -> Option<&'static str> {
        None
    }
    /// At least this long between two sends (Slack: one message per second per channel).
    fn spacing(&self) -> Duration {
        Duration::ZERO
    }
    /// Delivers one notice.
    fn send(
        &self,
        store: &Store,
        delivery: i64,
        notice: &Notice,
    ) -> impl Future<Output = Outcome> + Send;
}

/// Starts a dispatcher per configured destination; `wake` tells them a notice was committed
/// (they also look every half second).
pub async fn start(
    config: &crate::config::Config,
    store: &Store,
    metrics: &Arc<Metrics>,
    wake: &Arc<Notify>,
    stop: &watch::Receiver<bool>,
    set: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    let notify = &config.notify;
    let destinations: Vec<&str> = [
        notify.slack.as_ref().map(|_| "slack"),
        notify.pagerduty.as_ref().map(|_| "pagerduty"),
        notify.webhook.as_ref().map(|_| "webhook"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let client = crate::capabilities::http::notification_client(notify.timeout.0)?;
    let public_url = config.server.public_url.clone();
    let names: Vec<String> = destinations.iter().map(|d| (*d).to_owned()).collect();
    store
        .write(move |conn| {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            configure(conn, &names)
        })
        .await?;
    if let Some(slack) = &notify.slack {
        let destination = slack::Slack::new(slack, client.clone())?;
        spawn(set, destination, store, notify, metrics, wake, stop);
    }
    if let Some(pagerduty) = &notify.pagerduty {
        let destination = pagerduty::PagerDuty::new(
            pagerduty,
            client.clone(),
            public_url.clone(),
            notify.slack.is_some(),
        )?;
        spawn(set, destination, store, notify, metrics, wake, stop);
    }
    if let Some(webhook) = &notify.webhook {
        let destination = webhook::Webhook::new(webhook, client)?;
        spawn(set, destination, store, notify, metrics, wake, stop);
    }
    Ok(())
}

fn spawn<D: Destination>(
    set: &mut tokio::task::JoinSet<()>,
    destination: D,
    store: &Store,
    config: &NotifyConfig,
    metrics: &Arc<Metrics>,
    wake: &Arc<Notify>,
    stop: &watch::Receiver<bool>,
) {
    let dispatcher = Dispatcher {
        destination,
        store: store.clone(),
        max_attempts: config.max_attempts.max(1),
        backoff: config.backoff.0,
        max_backoff: config.max_backoff.0,
        metrics: metrics.clone(),
        wake: wake.clone(),
    };
    let stop = stop.clone();
    set.spawn(async move { dispatcher.run(stop).await });
}

struct Dispatcher<D> {
    destination: D,
    store: Store,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
}

/// A delivery ready to attempt.
struct Due {
    id: i64,
    attempts: u32,
    notice: Notice,
}

impl<D: Destination> Dispatcher<D> {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.destination.name();
        info!(destination = name, "notification dispatcher started");
        loop {
            if *stop.borrow() {
                return;
            }
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Err(e) = self.route().await {
                warn!(destination = name, error = %e, "cannot route notifications");
            }
            match self.next().await {
                Ok(Some(due)) => {
                    let outcome = self
                        .destination
                        .send(&self.store, due.id, &due.notice)
                        .await;
                    if let Err(e) = self.settle(&due, outcome).await {
                        warn!(destination = name, error = %e, "cannot record a delivery");
                    }
                    let spacing = self.destination.spacing();
                    if !spacing.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(spacing) => {}
                            _ = stop.changed() => {}
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => warn!(destination = name, error = %e, "cannot read the outbox"),
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Creates this destination's delivery rows for new notices, in order.
    async fn route(&self) -> Result<(), StoreError> {
        let name = self.destination.name();
        let pending: Vec<(i64, String, String)> = self
            .store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT id, incident_id, notice FROM notifications
                         WHERE id > (SELECT coalesce(max(notification_id), 0) FROM deliveries
                                     WHERE destination = ?1)
                         ORDER BY id LIMIT 200",
                    )?
                    .query_map([name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<Result<_, _>>()?)
            })
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, String, bool)> = pending
            .into_iter()
            .map(|(id, incident, text)| {
                let accepted = serde_json::from_str::<Notice>(&text)
                    .is_ok_and(|notice| self.destination.accepts(&notice));
                (id, incident, accepted)
            })
            .collect();
        self.store
            .write(move |conn| {
                let (at, ms) = now();
                let mut insert = conn.prepare_cached(
                    "INSERT OR IGNORE INTO deliveries
                         (notification_id, destination, incident_id, state, next_at_ms, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (id, incident, accepted) in rows {
                    let state = if accepted { "pending" } else { "skipped" };
                    insert.execute(params![id, name, incident, state, ms, at])?;
                }
                Ok(())
            })
            .await
    }

    /// The oldest due delivery whose incident has nothing earlier still pending here (nor,
    /// for up to [`HOLD`], at the destination this one waits for).
    async fn next(&self) -> Result<Option<Due>, StoreError> {
        let name = self.destination.name();
        let waits_for = self.destination.waits_for().unwrap_or("");
        let (_, ms) = now();
        let hold_ms = i64::try_from(HOLD.as_millis()).unwrap_or(i64::MAX);
        let row: Option<(i64, u32, String)> = self
            .store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT d.id, d.attempts, n.notice FROM deliveries d
                         JOIN notifications n ON n.id = d.notification_id
                         WHERE d.destination = ?1 AND d.state = 'pending' AND d.next_at_ms <= ?2
                           AND NOT EXISTS (SELECT 1 FROM deliveries e
                                           WHERE e.destination = d.destination
                                             AND e.incident_id = d.incident_id
                                             AND e.state = 'pending' AND e.id < d.id)
                           AND (?3 = '' OR n.created_ms < ?2 - ?4 OR (
                                EXISTS (SELECT 1 FROM deliveries r WHERE r.destination = ?3
                                          AND r.notification_id >= d.notification_id)
                                AND NOT EXISTS (SELECT 1 FROM deliveries w
                                          WHERE w.destination = ?3
                                            AND w.incident_id = d.incident_id
                                            AND w.state = 'pending'
                                            AND w.notification_id < d.notification_id)))
                         ORDER BY d.id LIMIT 1",
                    )?
                    .query_row(params![name, ms, waits_for, hold_ms], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                    })
                    .optional()?)
            })
            .await?;
        let Some((id, attempts, text)) = row else {
            return Ok(None);
        };
        let notice: Notice = serde_json::from_str(&text)?;
        Ok(Some(Due {
            id,
            attempts,
            notice,
        }))
    }

    async fn settle(&self, due: &Due, outcome: Outcome) -> Result<(), StoreError> {
        let name = self.destination.name();
        let attempts = due.attempts + 1;
        let (state, error, delay) = match outcome {
            Outcome::Sent => ("sent", None, Duration::ZERO),
            Outcome::Skipped => ("skipped", None, Duration::ZERO),
            Outcome::Permanent(error) => ("dead", Some(error), Duration::ZERO),
            Outcome::Retry { error, .. } if attempts >= self.max_attempts => (
                "dead",
                Some(format!("{error} (gave up after {attempts} attempts)")),
                Duration::ZERO,
            ),
            Outcome::Retry { error, after } => {
                let delay = after.unwrap_or_else(|| self.backoff_for(attempts));
                ("pending", Some(error), delay)
            }
        };
        let outcome = match state {
            "pending" => "retry",
            other => other,
        };
        self.metrics
            .notifications
            .get_or_create(&vec![
                ("destination", name.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        match (&error, state) {
            (Some(error), "dead") => {
                warn!(destination = name, incident = %due.notice.incident.id, kind = %due.notice.kind, %error, "notification dead-lettered")
            }
            (Some(error), _) => {
                info!(destination = name, incident = %due.notice.incident.id, kind = %due.notice.kind, %error, retry_in = ?delay, "notification will be retried")
            }
            _ => {}
        }
        let id = due.id;
        self.store
            .write(move |conn| {
                let (at, ms) = now();
                let next = ms + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                conn.prepare_cached(
                    "UPDATE deliveries SET state = ?2, attempts = ?3, last_error = ?4,
                         next_at_ms = ?5, sent_at = CASE WHEN ?2 = 'sent' THEN ?6 ELSE sent_at END
                     WHERE id = ?1",
                )?
                .execute(params![id, state, attempts, error, next, at])?;
                Ok(())
            })
            .await
    }

    /// Exponential backoff with ±50% jitter, capped.
    fn backoff_for(&self, attempts: u32) -> Duration {
        let exponential = self
            .backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
            .min(self.max_backoff);
        let jitter = rand::random_range(0.5..1.5);
        exponential.mul_f64(jitter).min(self.max_backoff)
    }
}

/// Deliveries that gave up, newest first.
pub fn dead(conn: &Connection, limit: u32) -> Result<Vec<Value>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT d.id, d.destination, d.incident_id, n.kind, d.attempts, d.last_error,
                 d.created_at
             FROM deliveries d JOIN notifications n ON n.id = d.notification_id
             WHERE d.state = 'dead' ORDER BY d.id DESC LIMIT ?1",
        )?
        .query_map([limit.clamp(1, 500)], |row| {
            Ok(serde_json::json!({
                "id": row.get::<_, i64>(0)?,
                "destination": row.get::<_, String>(1)?,
                "incident": row.get::<_, String>(2)?,
                "kind": row.get::<_, String>(3)?,
                "attempts": row.get::<_, i64>(4)?,
                "error": row.get::<_, Option<String>>(5)?,
                "created_at": row.get::<_, String>(6)?,
            }))
        })?
        .collect::<Result<_, _>>()?)
}

/// Classifies an HTTP answer the common way: 2xx sent, 429 and 5xx retried (with
/// `Retry-After`), other 4xx permanent.
pub fn classify(status: reqwest::StatusCode, retry_after: Option<Duration>, body: &str) -> Outcome {
    let snippet: String = body.chars().take(300).collect();
    if status.is_success() {
        Outcome::Sent
    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry {
            error: format!("HTTP {status}: {snippet}"),
            after: retry_after,
        }
    } else {
        Outcome::Permanent(format!("HTTP {status}: {snippet}"))
    }
}

/// The `Retry-After` of a response, in seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// Why a request did not get an answer, as a retry. The URL is left out: a Slack incoming
/// webhook's URL is its credential, and this text is logged and stored.
pub fn transport(error: reqwest::Error) -> Outcome {
    Outcome::Retry {
        error: format!("no answer: {}", error.without_url()),
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: &str, severity: &str, runbook: Option<&str>) -> Notice {
        Notice {
            kind: kind.to_owned(),
            at: String::new(),
            incident: IncidentView {
                id: "INC-1".to_owned(),
                title: String::new(),
                severity: severity.to_owned(),
                status: "open".to_owned(),
                source: "alertmanager".to_owned(),
                created_at: String::new(),
                escalated: false,
                labels: Value::Null,
            },
            runbook: runbook.map(str::to_owned),
            message: String::new(),
            findings: Vec::new(),
            plan: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_destination_added_later_starts_with_what_comes_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
        let cursor = |store: &Store, destination: &'static str| {
            let store = store.clone();
            async move {
                store
                    .read(move |conn| {
                        Ok(conn.query_row(
                            "SELECT coalesce(max(notification_id), 0) FROM deliveries
                             WHERE destination = ?1",
                            [destination],
                            |r| r.get::<_, i64>(0),
                        )?)
                    })
                    .await
                    .unwrap()
            }
        };
        store
            .write(|conn| {
                configure(conn, &["slack"])?;
                conn.execute(
                    "INSERT INTO incidents (id, source, fingerprint, status, severity, title,
                         labels, annotations, alert_json, created_at, created_ms, updated_at)
                     VALUES ('INC-1', 's', 'f', 'open', 'high', 't', '{}', '{}', '{}', 'x', 0, 'x')",
                    [],
                )?;
                record(conn, "INC-1", "created", None, "m", vec![], vec![])?;
                record(conn, "INC-1", "escalated", None, "m", vec![], vec![])
            })
            .await
            .unwrap();
        // Slack has not routed anything yet: it starts from the beginning.
        assert_eq!(cursor(&store, "slack").await, 0);
        store
            .write(|conn| configure(conn, &["slack", "pagerduty"]))
            .await
            .unwrap();
        assert_eq!(
            cursor(&store, "slack").await,
            0,
            "existing destinations keep their place"
        );
        assert_eq!(
            cursor(&store, "pagerduty").await,
            2,
            "no page for last week's escalations"
        );
    }

    #[test]
    fn routes_filter_by_kind_severity_and_runbook() {
        let route = Route {
            events: vec!["escalated".to_owned(), "diagnosed".to_owned()],
            min_severity: "high".to_owned(),
            runbooks: vec!["disk-space".to_owned()],
        };
        let kinds = ["created", "escalated", "diagnosed"];
        assert!(routed(
            &route,
            &kinds,
            &notice("escalated", "critical", None)
        ));
        assert!(routed(
            &route,
            &kinds,
            &notice("diagnosed", "high", Some("disk-space"))
        ));
        assert!(!routed(
            &route,
            &kinds,
            &notice("diagnosed", "high", Some("k8s-context"))
        ));
        assert!(!routed(
            &route,
            &kinds,
            &notice("escalated", "medium", None)
        ));
        assert!(!routed(
            &route,
            &kinds,
            &notice("created", "critical", None)
        ));
        // No events listed: the destination's own kinds.
        let default = Route::default();
        assert!(routed(&default, &kinds, &notice("created", "info", None)));
        assert!(!routed(&default, &kinds, &notice("plan", "info", None)));
    }
}

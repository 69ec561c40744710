//! The notification outbox: notices written with the change that caused them, and each
//! destination's deliveries of them.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::tx::Tx;
use super::{StoreError, now};
use crate::lifecycle::{CommandView, FindingView, IncidentView, Notice, NoticeKind};

/// Records which destinations are configured (`settings.notify`), so that with none no
/// notice is written at all.
pub(super) fn configure(tx: &dyn Tx, destinations: &[&str]) -> Result<(), StoreError> {
    let before: String = tx
        .query_opt(
            "SELECT value FROM settings WHERE key = 'notify'",
            &[],
            |row| row.get(0),
        )?
        .unwrap_or_default();
    let before: Vec<&str> = before.split(',').collect();
    tx.send(
        "INSERT INTO settings (key, value) VALUES ('notify', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&destinations.join(",")],
    )?;
    // A destination configured for the first time (or again after a while without it)
    // starts with what comes next, not with the history other destinations were sent (a
    // new PagerDuty must not page for last week): a `skipped` marker at the newest notice
    // sets its routing cursor. Destinations configured before keep their place.
    let (at, _) = now();
    for destination in destinations.iter().filter(|d| !before.contains(d)) {
        // The HAVING ends the SELECT, so SQLite does not read ON CONFLICT as a join's ON.
        tx.send(
            "INSERT INTO deliveries
                 (notification_id, destination, incident_id, state, next_at_ms, created_at)
             SELECT max(id), ?1, '', 'skipped', 0, ?2 FROM notifications
             HAVING max(id) IS NOT NULL
             ON CONFLICT DO NOTHING",
            &[destination, &at],
        )?;
    }
    Ok(())
}

/// What a notice says, beside its kind and incident.
pub(super) struct Said<'a> {
    /// In a sentence.
    pub message: &'a str,
    /// A diagnosis's findings.
    pub findings: &'a [FindingView],
    /// A plan's steps.
    pub plan: &'a [String],
    /// A remediation's calls.
    pub commands: &'a [CommandView],
}

impl<'a> Said<'a> {
    /// Only a sentence.
    pub fn message(message: &'a str) -> Self {
        Self {
            message,
            findings: &[],
            plan: &[],
            commands: &[],
        }
    }
}

/// Writes a notice for `incident` into the outbox, inside the caller's transaction (nothing
/// when no destination is configured).
pub(super) fn record(
    tx: &dyn Tx,
    incident: &str,
    kind: NoticeKind,
    runbook: Option<&str>,
    said: &Said<'_>,
) -> Result<(), StoreError> {
    // The incident as the notice shows it, and only when some destination is configured.
    let Some(view) = tx.query_opt(
        "SELECT id, title, severity, status, source, created_at, escalated, labels
         FROM incidents WHERE id = ?1
           AND EXISTS (SELECT 1 FROM settings WHERE key = 'notify' AND value != '')",
        &[&incident],
        |row| {
            Ok(IncidentView {
                id: row.get(0)?,
                title: row.get(1)?,
                severity: row.get(2)?,
                status: row.get(3)?,
                source: row.get(4)?,
                created_at: row.get(5)?,
                escalated: row.get(6)?,
                labels: serde_json::from_str(&row.get::<String>(7)?).unwrap_or(Value::Null),
            })
        },
    )?
    else {
        return Ok(());
    };
    let (at, ms) = now();
    let notice = notice(view, kind, runbook, said, at.clone());
    // Routing follows ids (`unrouted`), so a notice must not become visible after one with
    // a higher id: with several writers (PostgreSQL) the next notice's id is taken only once
    // this transaction has committed. SQLite's one writer already works that way.
    tx.lock("outbox")?;
    tx.send(
        "INSERT INTO notifications (incident_id, kind, notice, created_at, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            &incident,
            &kind.as_str(),
            &serde_json::to_string(&notice)?,
            &at,
            &ms,
        ],
    )?;
    Ok(())
}

/// The notice of `kind` about an incident as `view` shows it, telling what `said` says.
pub(super) fn notice(
    view: IncidentView,
    kind: NoticeKind,
    runbook: Option<&str>,
    said: &Said<'_>,
    at: String,
) -> Notice {
    Notice {
        kind,
        at,
        incident: view,
        runbook: runbook.map(str::to_owned),
        message: said.message.to_owned(),
        findings: said.findings.to_vec(),
        plan: said.plan.to_vec(),
        commands: said.commands.to_vec(),
    }
}

/// How many unrouted notices one read returns at most.
pub const UNROUTED_PAGE: usize = 200;

/// Notices `destination` has not routed yet, oldest first, at most [`UNROUTED_PAGE`]:
/// `(id, incident, notice)`, the notice `None` when it cannot be read.
pub(super) fn unrouted(
    tx: &dyn Tx,
    destination: &str,
) -> Result<Vec<(i64, String, Option<Notice>)>, StoreError> {
    tx.query_vec(
        "SELECT id, incident_id, notice FROM notifications
         WHERE id > (SELECT coalesce(max(notification_id), 0) FROM deliveries
                     WHERE destination = ?1)
         ORDER BY id LIMIT ?2",
        &[&destination, &UNROUTED_PAGE],
        |row| {
            let text: String = row.get(2)?;
            Ok((row.get(0)?, row.get(1)?, serde_json::from_str(&text).ok()))
        },
    )
}

/// Whether a destination takes a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Not for it.
    Skip,
    /// Deliver it.
    Deliver,
    /// Deliver it unless the incident's episode already has a notice of the same kind
    /// pending or sent here (one page per incident, however many alerts escalate it).
    Once,
    /// Deliver it after this many ms, together with every notice of the same kind for the
    /// incident that comes meanwhile: one delivery stands for them all (alerts joining an
    /// incident are told in one reply per interval). It does not hold up the incident's
    /// other notices.
    Batch(i64),
    /// A new incident: delivered, unless this many deliveries are already waiting here; then
    /// it is told in the destination's digest instead, and the incident's later notices
    /// are not sent here (the incident stays in the API).
    Digest(i64),
}

/// Creates `destination`'s delivery rows: pending where taken, skipped elsewhere.
pub(super) fn route(
    tx: &dyn Tx,
    destination: &str,
    routes: &[(i64, String, Routing)],
) -> Result<(), StoreError> {
    let (at, ms) = now();
    let insert = "INSERT INTO deliveries
             (notification_id, destination, incident_id, state, next_at_ms, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO NOTHING";
    // The episode starts after the incident's last resolution or reopening.
    let already = "SELECT EXISTS (
             SELECT 1 FROM deliveries d JOIN notifications n ON n.id = d.notification_id
             WHERE d.destination = ?1 AND d.incident_id = ?2 AND d.state IN ('pending', 'sent')
               AND n.kind = (SELECT kind FROM notifications WHERE id = ?3)
               AND n.id > coalesce((SELECT max(id) FROM notifications
                                    WHERE incident_id = ?2 AND kind IN ('resolved', 'reopened')
                                      AND id < ?3), 0))";
    let batched = "SELECT EXISTS (SELECT 1 FROM deliveries
                        WHERE destination = ?1 AND incident_id = ?2 AND state = 'batched')";
    // Told in the digest this episode (a reopened incident gets its thread back).
    let digested = "SELECT EXISTS (
             SELECT 1 FROM deliveries d
             WHERE d.destination = ?1 AND d.incident_id = ?2
               AND d.state IN ('digest', 'digested')
               AND d.notification_id > coalesce((SELECT max(id) FROM notifications
                                    WHERE incident_id = ?2 AND kind IN ('resolved', 'reopened')
                                      AND id < ?3), 0))";
    let mut backlog: i64 = tx.query_one(
        "SELECT count(*) FROM deliveries
         WHERE destination = ?1 AND state IN ('pending', 'batched')",
        &[&destination],
        |row| row.get(0),
    )?;
    for (id, incident, routing) in routes {
        // An incident told in the digest has no thread here for the rest.
        let in_digest = *routing != Routing::Skip
            && tx.query_one(digested, &[&destination, incident, id], |row| {
                row.get::<bool>(0)
            })?;
        let (state, due) = match routing {
            _ if in_digest => ("skipped", ms),
            Routing::Skip => ("skipped", ms),
            Routing::Digest(threshold) if backlog >= *threshold => ("digest", ms),
            Routing::Digest(_) => ("pending", ms),
            Routing::Deliver => ("pending", ms),
            Routing::Once => {
                let sent = tx.query_one(already, &[&destination, incident, id], |row| {
                    row.get::<bool>(0)
                })?;
                (if sent { "skipped" } else { "pending" }, ms)
            }
            Routing::Batch(after_ms) => {
                let waiting =
                    tx.query_one(batched, &[&destination, incident], |row| row.get::<bool>(0))?;
                // Already told by the batch that is waiting.
                (if waiting { "skipped" } else { "batched" }, ms + after_ms)
            }
        };
        if matches!(state, "pending" | "batched") {
            backlog += 1;
        }
        tx.send(insert, &[id, &destination, incident, &state, &due, &at])?;
    }
    Ok(())
}

/// New incidents waiting to be told in `destination`'s digest.
#[derive(Debug, Clone, Default)]
pub struct DigestBatch {
    /// The newest delivery in it: settling marks it and every older one told.
    pub through: i64,
    /// How many incidents.
    pub count: i64,
    /// The newest few (at most ten), newest first.
    pub latest: Vec<IncidentView>,
}

/// What waits for `destination`'s digest, if anything.
pub(super) fn digest_waiting(
    tx: &dyn Tx,
    destination: &str,
) -> Result<Option<DigestBatch>, StoreError> {
    let (through, count): (Option<i64>, i64) = tx.query_one(
        "SELECT max(id), count(*) FROM deliveries WHERE destination = ?1 AND state = 'digest'",
        &[&destination],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let Some(through) = through else {
        return Ok(None);
    };
    let latest = tx
        .query_vec(
            "SELECT n.notice FROM deliveries d JOIN notifications n ON n.id = d.notification_id
             WHERE d.destination = ?1 AND d.state = 'digest' ORDER BY d.id DESC LIMIT 10",
            &[&destination],
            |row| Ok(row.get::<String>(0).ok()),
        )?
        .into_iter()
        .filter_map(|text| text.and_then(|t| serde_json::from_str::<Notice>(&t).ok()))
        .map(|notice| notice.incident)
        .collect();
    Ok(Some(DigestBatch {
        through,
        count,
        latest,
    }))
}

/// Marks `destination`'s digest deliveries up to `through` told.
pub(super) fn settle_digest(
    tx: &dyn Tx,
    destination: &str,
    through: i64,
) -> Result<(), StoreError> {
    let (at, _) = now();
    tx.send(
        "UPDATE deliveries SET state = 'digested', sent_at = ?3
         WHERE destination = ?1 AND state = 'digest' AND id <= ?2",
        &[&destination, &through, &at],
    )?;
    Ok(())
}

/// A delivery ready to attempt.
#[derive(Debug, Clone)]
pub struct Due {
    /// The delivery.
    pub id: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// What to deliver.
    pub notice: Notice,
}

/// The oldest due delivery whose incident has nothing earlier still pending at
/// `destination` (nor, for up to `hold`, at `waits_for`), new incidents first: on-call
/// hears of every incident before the news of each. A batch waiting for its interval holds
/// nothing up.
pub(super) fn next(
    tx: &dyn Tx,
    destination: &str,
    waits_for: Option<&str>,
    hold: Duration,
) -> Result<Option<Due>, StoreError> {
    let (_, ms) = now();
    let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
    let row: Option<(i64, u32, String)> = tx.query_opt(
        "SELECT d.id, d.attempts, n.notice FROM deliveries d
         JOIN notifications n ON n.id = d.notification_id
         WHERE d.destination = ?1 AND d.state IN ('pending', 'batched')
           AND d.next_at_ms <= ?2
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
         ORDER BY n.kind != 'created', d.id LIMIT 1",
        &[&destination, &ms, &waits_for.unwrap_or(""), &hold_ms],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let Some((id, attempts, text)) = row else {
        return Ok(None);
    };
    Ok(Some(Due {
        id,
        attempts,
        notice: serde_json::from_str(&text)?,
    }))
}

/// How a delivery attempt ended, to record.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The delivery.
    pub id: i64,
    /// `sent`, `skipped`, `dead`, or `pending` (to retry).
    pub state: &'static str,
    /// Attempts including this one.
    pub attempts: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// When to try again, from now.
    pub retry_in: Duration,
}

/// Records an attempt.
pub(super) fn settle(tx: &dyn Tx, settlement: &Settlement) -> Result<(), StoreError> {
    let (at, ms) = now();
    let next = ms + i64::try_from(settlement.retry_in.as_millis()).unwrap_or(i64::MAX / 2);
    tx.send(
        "UPDATE deliveries SET
             -- A batch tried again stays the batch: joins meanwhile are still told by it.
             state = CASE WHEN ?2 = 'pending' AND state = 'batched' THEN 'batched' ELSE ?2 END,
             attempts = ?3, last_error = ?4,
             next_at_ms = ?5, sent_at = CASE WHEN ?2 = 'sent' THEN ?6 ELSE sent_at END
         WHERE id = ?1",
        &[
            &settlement.id,
            &settlement.state,
            &settlement.attempts,
            &settlement.error,
            &next,
            &at,
        ],
    )?;
    Ok(())
}

/// A delivery that gave up.
#[derive(Debug, Clone, Serialize)]
pub struct DeadNotification {
    /// The delivery.
    pub id: i64,
    /// Where it was going.
    pub destination: String,
    /// The incident.
    pub incident: String,
    /// The notice's kind.
    pub kind: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error.
    pub error: Option<String>,
    /// When the delivery was created.
    pub created_at: String,
}

/// Deliveries that gave up, newest first.
pub(super) fn dead(tx: &dyn Tx, limit: u32) -> Result<Vec<DeadNotification>, StoreError> {
    tx.query_vec(
        "SELECT d.id, d.destination, d.incident_id, n.kind, d.attempts, d.last_error,
             d.created_at
         FROM deliveries d JOIN notifications n ON n.id = d.notification_id
         WHERE d.state = 'dead' ORDER BY d.id DESC LIMIT ?1",
        &[&limit.clamp(1, 500)],
        |row| {
            Ok(DeadNotification {
                id: row.get(0)?,
                destination: row.get(1)?,
                incident: row.get(2)?,
                kind: row.get(3)?,
                attempts: row.get(4)?,
                error: row.get(5)?,
                created_at: row.get(6)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Store;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_destination_added_later_starts_with_what_comes_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
        let cursor = |store: &Store, destination: &'static str| {
            let store = store.clone();
            async move {
                store
                    .db
                    .sqlite()
                    .read_raw(move |conn| {
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
            .db.sqlite()
            .write_raw(|conn| {
                let tx = crate::store::tx::SqliteTx(conn);
                configure(&tx, &["slack"])?;
                conn.execute(
                    "INSERT INTO incidents (id, source, fingerprint, status, severity, title,
                         labels, annotations, alert_json, created_at, created_ms, updated_at)
                     VALUES ('INC-1', 's', 'f', 'open', 'high', 't', '{}', '{}', '{}', 'x', 0, 'x')",
                    [],
                )?;
                record(&tx, "INC-1", NoticeKind::Created, None, &Said::message("m"))?;
                record(&tx, "INC-1", NoticeKind::Escalated, None, &Said::message("m"))
            })
            .await
            .unwrap();
        // Slack has not routed anything yet: it starts from the beginning.
        assert_eq!(cursor(&store, "slack").await, 0);
        store
            .configure_destinations(vec!["slack", "pagerduty"])
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
}

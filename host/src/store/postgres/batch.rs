//! Ingest on PostgreSQL in batches: the deliveries that arrive while one batch commits are
//! stored together in the next, in one transaction and a handful of statements over the
//! whole batch.
//!
//! A statement costs PostgreSQL far more than a row does, and every transaction costs a WAL
//! flush: one alert's dozen single-row statements capped ingest near 2,500 alerts/s on two
//! cores whatever the client did, while the same rows written a batch at a time go about ten
//! times further (`docs/benchmarks.md`).
//!
//! The statements over the batch do what the shared per-alert code ([`incidents::arrive`])
//! does in its two common cases: a firing alert whose identity has never had an incident
//! (a new incident: its timeline, notices, jobs or escalation) and one whose incident is
//! open (a re-send). Every other alert — resolved, grouped, reopening, stale, renamed, an id
//! taken, an identity met earlier in the same batch — runs through that shared code, in the
//! same transaction, after them. An identity is handled the batch's way only where it comes
//! first, so the batch does what its deliveries would have done one after another.
//!
//! A batch that fails on a statement (not on the database) is not the deliveries' fault
//! alone: each is stored again on its own, so one bad delivery fails by itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot};

use super::transaction::Owned;
use super::{PgTx, Postgres};
use crate::incident::severity_name;
use crate::lifecycle::{EventKind, IncidentView, NoticeKind};
use crate::store::incidents::{
    self, Delivery, Effect, Ingested, NO_RUNBOOK, created_message, escalations, identity,
    note_truncated, refired_message,
};
use crate::store::outbox::{self, Said};
use crate::store::tx::Tx as _;
use crate::store::{StoreError, now};

/// Batches stored at once: while one waits for its commit (the WAL flush), the next runs.
const WORKERS: usize = 2;

/// A batch stops taking deliveries once it holds this many alerts.
const MOST_ALERTS: usize = 512;

/// Deliveries that may wait for a batch before senders wait too.
const BACKLOG: usize = 4096;

/// Where deliveries wait for the next batch.
#[derive(Debug, Clone)]
pub(super) struct Batches {
    sender: mpsc::Sender<Pending>,
    queued: Arc<AtomicUsize>,
}

/// A delivery waiting for its batch, and where its outcome goes.
struct Pending {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

impl Batches {
    /// Starts the workers that store batches in `db`.
    pub(super) fn start(db: &Postgres) -> Self {
        let (sender, receiver) = mpsc::channel(BACKLOG);
        let receiver = Arc::new(Mutex::new(receiver));
        let queued = Arc::new(AtomicUsize::new(0));
        // The workers' copy has no batches of its own: they end when every sender is gone.
        let db = Postgres {
            batches: None,
            ..db.clone()
        };
        for _ in 0..WORKERS {
            tokio::spawn(work(db.clone(), receiver.clone(), queued.clone()));
        }
        Self { sender, queued }
    }

    /// Stores `delivery` in the next batch; returns once that has committed.
    pub(super) async fn ingest(&self, delivery: Delivery) -> Result<Ingested, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.sender.send(Pending { delivery, reply }).await.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(stopped());
        }
        outcome.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Deliveries waiting for a batch.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable {
        message: "the ingest batches have stopped".to_owned(),
        source: None,
    }
}

/// One worker: takes what waits (up to [`MOST_ALERTS`]) and stores it, until the store is
/// dropped.
async fn work(
    db: Postgres,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    queued: Arc<AtomicUsize>,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            // Requests already being handled on this runtime join this batch rather than
            // the next: one turn for them, no timer.
            tokio::task::yield_now().await;
            let mut alerts = first.delivery.arrivals.len();
            let mut batch = vec![first];
            while alerts < MOST_ALERTS
                && let Ok(next) = receiver.try_recv()
            {
                alerts += next.delivery.arrivals.len();
                batch.push(next);
            }
            batch
        };
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        store(&db, batch).await;
    }
}

/// Stores one batch and answers each of its deliveries.
async fn store(db: &Postgres, batch: Vec<Pending>) {
    let (deliveries, replies): (Vec<Delivery>, Vec<_>) =
        batch.into_iter().map(|p| (p.delivery, p.reply)).unzip();
    let deliveries = Arc::new(deliveries);
    let all = deliveries.clone();
    let outcome = db
        .transaction(BEGIN, true, move |tx| ingest(tx, &all))
        .await;
    match outcome {
        Ok(ingested) => {
            for (reply, ingested) in replies.into_iter().zip(ingested) {
                let _ = reply.send(Ok(ingested));
            }
        }
        Err(e @ StoreError::Unavailable { .. }) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            if deliveries.len() > 1 {
                tracing::warn!(
                    error = %e,
                    deliveries = deliveries.len(),
                    "a batch of deliveries failed; storing each on its own"
                );
            }
            for (index, reply) in replies.into_iter().enumerate() {
                let deliveries = deliveries.clone();
                let alone = db
                    .write(move |tx| incidents::ingest(tx, &deliveries[index]))
                    .await;
                let _ = reply.send(alone);
            }
        }
    }
}

/// A batch's transaction plans its statements for the batch and the tables as they are.
/// A prepared statement's generic plan would be made once per connection, perhaps while
/// the tables were still empty, and a join over a batch planned for an empty `incidents`
/// scans the whole table for ever after.
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan";

/// What the batch does with one alert.
enum Plan {
    /// A new incident, by the batch's statements.
    Create,
    /// A re-send for the open incident `id` (which started at `starts_at`).
    Refire {
        id: String,
        starts_at: Option<String>,
    },
    /// The shared per-alert code, after the batch's statements.
    Alone,
}

/// Stores `deliveries` in one transaction: their inbox rows, then their alerts.
fn ingest(tx: &PgTx<'_>, deliveries: &[Delivery]) -> Result<Vec<Ingested>, StoreError> {
    let (at, ms) = now();
    let inbox = inbox(tx, deliveries, (&at, ms))?;
    lock(tx, deliveries)?;
    let (mut plans, notifying) = plan(tx, deliveries)?;
    create(tx, deliveries, &mut plans, (&at, ms))?;
    tell(tx, deliveries, &plans, &at, notifying)?;
    // Everything else, one alert at a time, in the batch's order.
    let mut all = Vec::with_capacity(deliveries.len());
    for ((delivery, plans), id) in deliveries.iter().zip(&plans).zip(inbox) {
        let mut effects = Vec::with_capacity(plans.len());
        for (arrival, plan) in delivery.arrivals.iter().zip(plans) {
            effects.push(match plan {
                Plan::Create => Effect::Created(arrival.incident.id.clone()),
                Plan::Refire { id, .. } => Effect::Refired(id.clone()),
                Plan::Alone => {
                    incidents::arrive(tx, arrival, (&at, ms), delivery.reopen_window_ms)?
                }
            });
        }
        note_truncated(tx, &effects, delivery.truncated, &at)?;
        all.push(Ingested {
            delivery: id,
            escalations: escalations(&delivery.arrivals, &effects),
            effects,
        });
    }
    Ok(all)
}

/// The deliveries' inbox rows; their ids, in order.
fn inbox(
    tx: &PgTx<'_>,
    deliveries: &[Delivery],
    (at, ms): (&str, i64),
) -> Result<Vec<i64>, StoreError> {
    let sources: Vec<&str> = deliveries.iter().map(|d| d.source).collect();
    let bodies: Vec<&[u8]> = deliveries.iter().map(|d| d.body.as_slice()).collect();
    let alerts: Vec<i64> = deliveries.iter().map(|d| d.arrivals.len() as i64).collect();
    let truncated: Vec<i64> = deliveries
        .iter()
        .map(|d| i64::try_from(d.truncated).unwrap_or(i64::MAX))
        .collect();
    // Rows are inserted, and their ids drawn, in the order `unnest` yields them, and
    // RETURNING gives them back in that order.
    let rows = tx.rows(
        "INSERT INTO inbox (source, received_at, received_ms, body, status, alerts, truncated)
         SELECT source, $5, $6, body, 'accepted', alerts, truncated
         FROM unnest($1::text[], $2::bytea[], $3::int8[], $4::int8[])
             AS d(source, body, alerts, truncated)
         RETURNING id",
        &[&sources, &bodies, &alerts, &truncated, &at, &ms],
    )?;
    let ids: Vec<i64> = first_column(&rows)?;
    if ids.len() != deliveries.len() {
        return Err(StoreError::failed(format!(
            "{} inbox rows written for {} deliveries",
            ids.len(),
            deliveries.len()
        )));
    }
    Ok(ids)
}

/// Locks every identity the batch touches, in one sorted order, as a single delivery does.
fn lock(tx: &PgTx<'_>, deliveries: &[Delivery]) -> Result<(), StoreError> {
    let mut identities: Vec<String> = deliveries
        .iter()
        .flat_map(|d| d.arrivals.iter().map(identity))
        .collect();
    identities.sort_unstable();
    identities.dedup();
    tx.push(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))
         FROM unnest($1::text[]) AS k",
        vec![Box::new(identities)],
    )
}

/// How each alert is handled: the batch's way where its identity comes first in the batch,
/// is its own (not grouped), fires, and has no history the shared code must weigh. And
/// whether notices are written (some destination is configured).
fn plan(tx: &PgTx<'_>, deliveries: &[Delivery]) -> Result<(Vec<Vec<Plan>>, bool), StoreError> {
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    let mut plans: Vec<Vec<Plan>> = Vec::with_capacity(deliveries.len());
    for (d, delivery) in deliveries.iter().enumerate() {
        let mut these = Vec::with_capacity(delivery.arrivals.len());
        for (a, arrival) in delivery.arrivals.iter().enumerate() {
            let alert = &arrival.incident;
            let first = seen.insert(identity(arrival));
            // A renamed identity reads its old name's incidents: that name is taken too.
            let renamed = alert.previous_fingerprint.as_ref().is_some_and(|previous| {
                !seen.insert(format!("incident:{}:{previous}", alert.source))
            });
            if first && !renamed && arrival.group.is_none() && alert.status != "resolved" {
                candidates.push((d, a));
            }
            these.push(Plan::Alone);
        }
        plans.push(these);
    }
    if candidates.is_empty() {
        return Ok((plans, false));
    }
    let (sources, fingerprints): (Vec<&str>, Vec<&str>) = candidates
        .iter()
        .map(|&(d, a)| {
            let alert = &deliveries[d].arrivals[a].incident;
            (alert.source.as_str(), alert.fingerprint.as_str())
        })
        .unzip();
    // Each candidate's open incident, and whether its identity has resolved ones.
    let rows = tx.rows(
        r#"SELECT k.n, o.id, o.starts_at, EXISTS (
               SELECT 1 FROM incidents r
               WHERE r.source = k.source COLLATE "C" AND r.fingerprint = k.fingerprint COLLATE "C"
                 AND r.status = 'resolved'),
             EXISTS (SELECT 1 FROM settings WHERE key = 'notify' AND value != '')
           FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(source, fingerprint, n)
           LEFT JOIN incidents o
             ON o.source = k.source COLLATE "C" AND o.fingerprint = k.fingerprint COLLATE "C"
            AND o.status != 'resolved'"#,
        &[&sources, &fingerprints],
    )?;
    let mut notifying = false;
    for row in &rows {
        let read = || -> Result<_, tokio_postgres::Error> {
            Ok((
                row.try_get::<_, i64>(0)?,
                row.try_get::<_, Option<String>>(1)?,
                row.try_get::<_, Option<String>>(2)?,
                row.try_get::<_, bool>(3)?,
                row.try_get::<_, bool>(4)?,
            ))
        };
        let (n, open, starts_at, history, notify) = read().map_err(super::from_pg)?;
        notifying = notify;
        let Some(&(d, a)) = usize::try_from(n - 1).ok().and_then(|i| candidates.get(i)) else {
            return Err(StoreError::failed(format!("no candidate alert {n}")));
        };
        let alert = &deliveries[d].arrivals[a].incident;
        plans[d][a] = match open {
            Some(id) => Plan::Refire { id, starts_at },
            None if !history && alert.previous_fingerprint.is_none() => Plan::Create,
            None => Plan::Alone,
        };
    }
    Ok((plans, notifying))
}

/// Inserts the new incidents (escalated at once when no runbook applies) and queues their
/// jobs. An id already taken leaves its alert to the shared code, which finds another.
fn create(
    tx: &PgTx<'_>,
    deliveries: &[Delivery],
    plans: &mut [Vec<Plan>],
    (at, ms): (&str, i64),
) -> Result<(), StoreError> {
    let mut ids = HashSet::new();
    let mut rows = Vec::new();
    for (delivery, plans) in deliveries.iter().zip(plans.iter_mut()) {
        for (arrival, plan) in delivery.arrivals.iter().zip(plans.iter_mut()) {
            if matches!(plan, Plan::Create) {
                if ids.insert(arrival.incident.id.as_str()) {
                    rows.push(arrival);
                } else {
                    *plan = Plan::Alone;
                }
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&incidents::Arrival) -> &str| rows.iter().map(|a| f(a)).collect::<Vec<_>>();
    let escalated: Vec<i64> = rows
        .iter()
        .map(|a| i64::from(a.runbooks.is_empty()))
        .collect();
    let starts_at: Vec<Option<&str>> = rows
        .iter()
        .map(|a| a.incident.starts_at.as_deref())
        .collect();
    let inserted = tx.rows(
        "INSERT INTO incidents (id, source, fingerprint, starts_at, status, severity, title,
             labels, annotations, alert_json, created_at, created_ms, updated_at, escalated)
         SELECT id, source, fingerprint, starts_at, 'open', severity, title,
             labels, annotations, alert_json, $11, $12, $11, escalated
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::int8[])
             AS n(id, source, fingerprint, starts_at, severity, title, labels, annotations,
                  alert_json, escalated)
         ON CONFLICT DO NOTHING
         RETURNING id",
        &[
            &column(|a| &a.incident.id),
            &column(|a| &a.incident.source),
            &column(|a| &a.incident.fingerprint),
            &starts_at,
            &column(|a| severity_name(a.incident.severity)),
            &column(|a| &a.incident.title),
            &column(|a| &a.labels_json),
            &column(|a| &a.annotations_json),
            &column(|a| &a.incident.alert_json),
            &escalated,
            &at,
            &ms,
        ],
    )?;
    let inserted: HashSet<String> = first_column(&inserted)?;
    let (mut incident, mut runbook, mut priority) = (Vec::new(), Vec::new(), Vec::new());
    for (delivery, plans) in deliveries.iter().zip(plans.iter_mut()) {
        for (arrival, plan) in delivery.arrivals.iter().zip(plans.iter_mut()) {
            if !matches!(plan, Plan::Create) {
                continue;
            }
            if !inserted.contains(&arrival.incident.id) {
                *plan = Plan::Alone;
                continue;
            }
            for selected in &arrival.runbooks {
                incident.push(arrival.incident.id.as_str());
                runbook.push(selected.name.as_str());
                priority.push(i64::from(selected.priority));
            }
        }
    }
    if !incident.is_empty() {
        tx.push(
            "INSERT INTO jobs (incident_id, alert, runbook, priority, phase, state,
                 run_at_ms, created_at, updated_at)
             SELECT incident, '', runbook, priority, 'diagnose', 'queued', $4, $5, $5
             FROM unnest($1::text[], $2::text[], $3::int8[]) AS j(incident, runbook, priority)
             ON CONFLICT DO NOTHING",
            vec![
                texts(incident),
                texts(runbook),
                Box::new(priority),
                Box::new(ms),
                Box::new(at.to_owned()),
            ],
        )?;
    }
    Ok(())
}

/// The timeline entries and notices of the batch's new incidents and re-sends, and the
/// re-sends' counts.
fn tell(
    tx: &PgTx<'_>,
    deliveries: &[Delivery],
    plans: &[Vec<Plan>],
    at: &str,
    notifying: bool,
) -> Result<(), StoreError> {
    let mut events: Vec<(&str, EventKind, String)> = Vec::new();
    let mut notices: Vec<(&str, NoticeKind, IncidentView, String)> = Vec::new();
    let mut refired: Vec<&str> = Vec::new();
    for (delivery, plans) in deliveries.iter().zip(plans) {
        for (arrival, plan) in delivery.arrivals.iter().zip(plans) {
            let alert = &arrival.incident;
            match plan {
                Plan::Create => {
                    let view = |escalated| IncidentView {
                        id: alert.id.clone(),
                        title: alert.title.clone(),
                        severity: severity_name(alert.severity).to_owned(),
                        status: "open".to_owned(),
                        source: alert.source.clone(),
                        created_at: at.to_owned(),
                        escalated,
                        labels: serde_json::from_str(&arrival.labels_json)
                            .unwrap_or(serde_json::Value::Null),
                    };
                    let message = created_message(alert);
                    notices.push((&alert.id, NoticeKind::Created, view(false), message.clone()));
                    events.push((&alert.id, EventKind::Created, message));
                    if arrival.runbooks.is_empty() {
                        let reason = NO_RUNBOOK.to_owned();
                        notices.push((
                            &alert.id,
                            NoticeKind::Escalated,
                            view(true),
                            reason.clone(),
                        ));
                        events.push((&alert.id, EventKind::Escalated, reason));
                    }
                }
                Plan::Refire { id, starts_at } => {
                    refired.push(id.as_str());
                    let message = refired_message(starts_at.as_deref(), alert);
                    events.push((id.as_str(), EventKind::Refired, message));
                }
                Plan::Alone => {}
            }
        }
    }
    if !refired.is_empty() {
        tx.push(
            "UPDATE incidents SET fired = fired + 1, updated_at = $2 WHERE id = ANY($1::text[])",
            vec![texts(refired), Box::new(at.to_owned())],
        )?;
    }
    if !events.is_empty() {
        let incident = texts(events.iter().map(|e| e.0).collect());
        let kind = texts(events.iter().map(|e| e.1.as_str()).collect());
        let message = texts(events.iter().map(|e| e.2.as_str()).collect());
        tx.push(
            "INSERT INTO events (incident_id, at, kind, message)
             SELECT incident, $4, kind, message
             FROM unnest($1::text[], $2::text[], $3::text[]) AS e(incident, kind, message)",
            vec![incident, kind, message, Box::new(at.to_owned())],
        )?;
    }
    if notices.is_empty() || !notifying {
        return Ok(());
    }
    let (at, ms) = now();
    let mut incident = Vec::with_capacity(notices.len());
    let mut kind = Vec::with_capacity(notices.len());
    let mut text = Vec::with_capacity(notices.len());
    for (id, notice_kind, view, message) in notices {
        let notice = outbox::notice(
            view,
            notice_kind,
            None,
            &Said::message(&message),
            at.clone(),
        );
        incident.push(id);
        kind.push(notice_kind.as_str());
        text.push(serde_json::to_string(&notice)?);
    }
    // Notices become visible in id order (see `outbox::record`).
    tx.lock("outbox")?;
    tx.push(
        "INSERT INTO notifications (incident_id, kind, notice, created_at, created_ms)
         SELECT incident, kind, notice, $4, $5
         FROM unnest($1::text[], $2::text[], $3::text[]) AS n(incident, kind, notice)",
        vec![
            texts(incident),
            texts(kind),
            Box::new(text),
            Box::new(at),
            Box::new(ms),
        ],
    )
}

/// The first column of every row.
fn first_column<T, C>(rows: &[tokio_postgres::Row]) -> Result<C, StoreError>
where
    T: for<'r> tokio_postgres::types::FromSql<'r>,
    C: FromIterator<T>,
{
    rows.iter()
        .map(|row| row.try_get::<_, T>(0))
        .collect::<Result<C, _>>()
        .map_err(super::from_pg)
}

/// A `text[]` parameter for a statement sent later.
fn texts(values: Vec<&str>) -> Owned {
    Box::new(values.into_iter().map(str::to_owned).collect::<Vec<_>>())
}

#[cfg(test)]
impl Postgres {
    /// Stores `deliveries` as one batch, as a worker does with what it takes at once.
    pub(in crate::store) async fn ingest_together(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Vec<Result<Ingested, StoreError>> {
        let (batch, outcomes): (Vec<_>, Vec<_>) = deliveries
            .into_iter()
            .map(|delivery| {
                let (reply, outcome) = oneshot::channel();
                (Pending { delivery, reply }, outcome)
            })
            .unzip();
        store(self, batch).await;
        let mut all = Vec::new();
        for outcome in outcomes {
            all.push(outcome.await.unwrap_or_else(|_| Err(stopped())));
        }
        all
    }
}

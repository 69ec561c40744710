//! Quell's state, behind one boundary: named operations on Quell's own types.
//!
//! Everything the daemon keeps — deliveries, incidents and their timelines, the job queue,
//! runs and their capability calls, the notification outbox, Slack threads, settings — is
//! read and written here and nowhere else; no SQL and no database type leaves this module.
//! Each operation is one transaction. Changes to an incident go through
//! [`Store::apply`] with a [`Transition`], which writes the state, its timeline event, its
//! notices and the jobs that follow from it together.
//!
//! After a commit that queued work or notices, the store rings its [`Hub`]: workers and
//! notification dispatchers wait on it, so no caller has to remember to wake them.
//!
//! The embedded default is SQLite (`store/sqlite.rs`: WAL, `synchronous=FULL`, one writer
//! thread committing in groups); the operations below are the set a second backend
//! implements.

mod apply;
mod backend;
mod groups;
mod hub;
mod incidents;
mod jobs;
mod listen;
mod migrate;
mod outbox;
mod postgres;
mod postmortems;
mod queries;
mod replicas;
mod runs;
mod slack;
mod sqlite;
mod tx;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use hub::Hub;
pub use incidents::{Arrival, Delivery, Effect, Ingested, Selected};
pub use jobs::{Decision, Job, Pruned, Recovery, Scope};
pub use migrate::latest as schema_version;
pub use outbox::{DeadNotification, DigestBatch, Due, Routing, Settlement, UNROUTED_PAGE};
pub use postmortems::StoredDraft;
pub use queries::{
    AlertCounts, AlertSummary, DeadLetter, Event, Gauges, IncidentDetail, IncidentFilter,
    IncidentPage, IncidentSummary, JobSummary, Run,
};
pub use runs::{RecentRun, WriteClaim};
pub use slack::SlackDigest;

use crate::capabilities::CallRecord;
use crate::incident::Incident;
use crate::lifecycle::{Applied, Notice, Transition};

/// The source of a [`StoreError`], kept for logs.
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// Why the store could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not commit (locked by another process past the busy timeout, disk
    /// full, I/O error) or the writer has stopped. Callers answer 503.
    #[error("the database is unavailable: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
        /// The database's own error.
        #[source]
        source: Option<Source>,
    },
    /// The operation itself failed (a constraint, a bug); the rest of the batch is
    /// unaffected. Callers answer 500.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// The database's own error.
        #[source]
        source: Option<Source>,
    },
    /// This replica no longer holds the job it was working on: its lease lapsed (a stall, a
    /// partition from the database) and another replica took the job over. Nothing of its
    /// result was recorded; the job is the other replica's now.
    #[error(
        "job {job} is no longer this replica's ({replica}): its lease lapsed and another \
         replica took it over, so its result is not recorded"
    )]
    Lost {
        /// The job.
        job: i64,
        /// This replica.
        replica: String,
    },
}

impl StoreError {
    /// Unavailable, for a reason of the store's own.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// Failed, for a reason of the store's own.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            source: None,
        }
    }

    /// Whether the database is unavailable (as opposed to the operation failing).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        Self::Failed {
            message: error.to_string(),
            source: Some(Arc::new(error)),
        }
    }
}

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: backend::Backend,
    hub: Arc<Hub>,
    /// This replica, as the owner of the jobs it runs.
    me: Arc<str>,
    /// How long a claimed job stays this replica's without a renewal.
    lease_ms: i64,
}

impl Store {
    /// Opens (creating if needed) the embedded database.
    pub fn open(path: &Path, busy_timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self::on(backend::Backend::Sqlite(sqlite::Sqlite::open(
            path,
            busy_timeout,
        )?)))
    }

    /// Opens the configured database: PostgreSQL when `[database] url` is set, else the
    /// SQLite file. Either way its schema is brought up to date, and a database a newer
    /// Quell wrote is refused.
    pub async fn connect(config: &crate::config::DatabaseConfig) -> anyhow::Result<Self> {
        let mut store = match &config.url {
            Some(url) => {
                let db = postgres::Postgres::connect(url, config).await?;
                let store = Self::on(backend::Backend::Postgres(db.clone()));
                listen::start(&db, &store.hub);
                store
            }
            None => Self::open(&config.path, config.busy_timeout.0)?,
        };
        store.lease_ms = i64::try_from(config.lease.0.as_millis()).unwrap_or(i64::MAX);
        Ok(store)
    }

    fn on(db: backend::Backend) -> Self {
        Self {
            db,
            hub: Arc::new(Hub::default()),
            me: replicas::identity().into(),
            lease_ms: 30_000,
        }
    }

    /// Where the data lives, for logs (a PostgreSQL URL without its password).
    pub fn location(&self) -> String {
        self.db.location()
    }

    /// Whether the database answers now (`/readyz`).
    pub async fn check(&self) -> Result<(), StoreError> {
        self.db.check().await
    }

    /// The wake-ups this store rings.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Writes waiting for the writer (the ingest backlog).
    pub fn queued_writes(&self) -> usize {
        self.db.queued_writes()
    }

    // Ingest.

    /// Stores a delivery and applies its alerts to incidents, in one transaction.
    pub async fn ingest(&self, delivery: Delivery) -> Result<Ingested, StoreError> {
        // Jobs were queued where an alert with runbooks opened, reopened or joined an
        // incident: only then are the workers woken (here and on the other replicas).
        let selected: Vec<bool> = delivery
            .arrivals
            .iter()
            .map(|a| !a.runbooks.is_empty())
            .collect();
        let ingested = self.db.ingest(delivery).await?;
        let queued = ingested
            .effects
            .iter()
            .zip(selected)
            .any(|(effect, selected)| {
                selected
                    && matches!(
                        effect,
                        Effect::Created(_) | Effect::Reopened(_) | Effect::Joined(_)
                    )
            });
        self.hub.ring(queued);
        Ok(ingested)
    }

    /// Keeps a delivery that could not be used, with why; returns its id.
    pub async fn dead_letter(
        &self,
        source: &'static str,
        body: Vec<u8>,
        error: String,
    ) -> Result<i64, StoreError> {
        self.db
            .write(move |conn| incidents::dead_letter(conn, source, &body, &error))
            .await
    }

    // The lifecycle.

    /// Applies a transition: its state, timeline, notices and follow-up jobs, in one
    /// transaction.
    ///
    /// A transition of a job is fenced: it applies only while the job runs under this
    /// replica, and otherwise fails with [`StoreError::Lost`] and changes nothing.
    pub async fn apply(&self, transition: Transition) -> Result<Applied, StoreError> {
        let me = self.me.clone();
        let (applied, queued) = self
            .db
            .write(move |conn| apply::apply(conn, &transition, &me))
            .await?;
        self.hub.ring(queued);
        Ok(applied)
    }

    /// Approves or rejects every plan of `incident` awaiting approval (or only
    /// `runbook`'s, and only the `plan` of that digest when one is named). A plan is decided
    /// once: a second decision finds nothing waiting.
    pub async fn decide(
        &self,
        incident: String,
        runbook: Option<String>,
        plan: Option<String>,
        approve: bool,
        who: String,
    ) -> Result<Decision, StoreError> {
        let decision = self
            .db
            .write(move |conn| {
                jobs::decide(
                    conn,
                    &incident,
                    runbook.as_deref(),
                    plan.as_deref(),
                    approve,
                    &who,
                )
            })
            .await?;
        // Approved plans are queued; rejected ones may be what the next plan waited for.
        self.hub.ring(!decision.runbooks.is_empty());
        Ok(decision)
    }

    /// Expires plans whose approval window has passed and escalates their incidents.
    pub async fn expire_approvals(&self) -> Result<usize, StoreError> {
        let expired = self.db.write(jobs::expire_approvals).await?;
        if expired > 0 {
            // A plan that expired may be what the incident's next plan waited for.
            self.hub.ring(true);
        }
        Ok(expired)
    }

    /// Deletes deliveries received before `inbox_before_ms` and incidents resolved before
    /// `incidents_before_ms`, with everything that hangs off them.
    pub async fn prune(
        &self,
        inbox_before_ms: i64,
        incidents_before_ms: i64,
    ) -> Result<Pruned, StoreError> {
        self.db
            .write(move |conn| jobs::prune(conn, inbox_before_ms, incidents_before_ms))
            .await
    }

    // The job queue and runs.

    /// Adds one capability call to a started run, as it is made; returns the call's id.
    pub async fn journal_call(
        &self,
        run: i64,
        incident: String,
        call: CallRecord,
    ) -> Result<i64, StoreError> {
        self.db
            .write(move |conn| runs::journal_call(conn, run, &incident, &call))
            .await
    }

    /// Journals a write as started, in one transaction with taking its target for the run
    /// and a place in the global write budget. The inner error says why the write may not
    /// run: another run holds the target, the budget is spent, or this replica no longer
    /// holds the run's job (its lease lapsed and another replica took it over).
    pub async fn journal_write(
        &self,
        write: WriteClaim,
    ) -> Result<Result<i64, String>, StoreError> {
        let me = self.me.clone();
        self.db
            .write(move |conn| runs::journal_write(conn, &write, &me))
            .await
    }

    /// Replaces a journaled call (started) with the finished one.
    pub async fn complete_call(&self, id: i64, call: CallRecord) -> Result<(), StoreError> {
        self.db
            .write(move |conn| runs::complete_call(conn, id, &call))
            .await
    }

    /// Whether remediation is paused for every runbook.
    pub async fn paused(&self) -> Result<bool, StoreError> {
        self.db.read(jobs::paused).await
    }

    /// Pauses or resumes remediation.
    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.db
            .write(move |conn| jobs::set_paused(conn, paused))
            .await?;
        self.hub.ring(!paused);
        Ok(())
    }

    /// Runs counted against each `(runbook, window ms)` budget inside its window.
    pub async fn budgets_used(&self, budgets: Vec<(String, i64)>) -> Result<Vec<i64>, StoreError> {
        self.db
            .read(move |conn| {
                budgets
                    .iter()
                    .map(|(name, per_ms)| jobs::budget_used(conn, name, *per_ms))
                    .collect()
            })
            .await
    }

    // The outbox.

    /// Records which destinations are configured; a destination configured for the first
    /// time starts with the next notice, not with the history.
    pub async fn configure_destinations(&self, names: Vec<&'static str>) -> Result<(), StoreError> {
        self.db
            .write(move |conn| outbox::configure(conn, &names))
            .await
    }

    /// Notices `destination` has not routed yet, oldest first.
    pub async fn unrouted_notices(
        &self,
        destination: &'static str,
    ) -> Result<Vec<(i64, String, Option<Notice>)>, StoreError> {
        self.db
            .read(move |conn| outbox::unrouted(conn, destination))
            .await
    }

    /// Routes notices to `destination`: `(notice id, incident, accepted)`; the rest are
    /// skipped there.
    pub async fn route_notices(
        &self,
        destination: &'static str,
        routes: Vec<(i64, String, Routing)>,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| outbox::route(conn, destination, &routes))
            .await
    }

    /// New incidents waiting to be told in `destination`'s digest.
    pub async fn digest_waiting(
        &self,
        destination: &'static str,
    ) -> Result<Option<DigestBatch>, StoreError> {
        self.db
            .read(move |conn| outbox::digest_waiting(conn, destination))
            .await
    }

    /// Marks `destination`'s digest deliveries up to `through` told.
    pub async fn settle_digest(
        &self,
        destination: &'static str,
        through: i64,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| outbox::settle_digest(conn, destination, through))
            .await
    }

    /// The digest message Slack updates in place: `(channel, ts, incidents told, since)`.
    pub async fn slack_digest(&self) -> Result<Option<SlackDigest>, StoreError> {
        self.db.read(|conn| slack::digest(conn)).await
    }

    /// Keeps the digest message's state.
    pub async fn set_slack_digest(&self, digest: SlackDigest) -> Result<(), StoreError> {
        self.db
            .write(move |conn| slack::set_digest(conn, &digest))
            .await
    }

    /// The oldest due delivery of `destination` whose incident has nothing earlier pending
    /// there (nor, for up to `hold`, at `waits_for`).
    pub async fn next_delivery(
        &self,
        destination: &'static str,
        waits_for: Option<&'static str>,
        hold: Duration,
    ) -> Result<Option<Due>, StoreError> {
        self.db
            .read(move |conn| outbox::next(conn, destination, waits_for, hold))
            .await
    }

    /// Records how a delivery attempt ended.
    pub async fn settle_delivery(&self, settlement: Settlement) -> Result<(), StoreError> {
        self.db
            .write(move |conn| outbox::settle(conn, &settlement))
            .await
    }

    /// Deliveries that gave up, newest first.
    pub async fn dead_notifications(
        &self,
        limit: u32,
    ) -> Result<Vec<DeadNotification>, StoreError> {
        self.db.read(move |conn| outbox::dead(conn, limit)).await
    }

    // Slack.

    /// The channel and ts of the incident's Slack thread root.
    pub async fn slack_thread(
        &self,
        incident: String,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.db
            .read(move |conn| slack::thread(conn, &incident))
            .await
    }

    /// Keeps the incident's Slack thread root (the first one stays).
    pub async fn set_slack_thread(
        &self,
        incident: String,
        channel: String,
        ts: String,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| slack::set_thread(conn, &incident, &channel, &ts))
            .await
    }

    /// A plan message's channel, ts and text.
    pub async fn slack_plan(
        &self,
        incident: String,
        runbook: String,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        self.db
            .read(move |conn| slack::plan(conn, &incident, &runbook))
            .await
    }

    /// Keeps a plan message, to take its buttons away once it is decided.
    pub async fn set_slack_plan(
        &self,
        incident: String,
        runbook: String,
        channel: String,
        ts: String,
        text: String,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |conn| slack::set_plan(conn, &[&incident, &runbook, &channel, &ts, &text]))
            .await
    }

    // Queries.

    /// Lists incidents. `Ok(None)` when the filter's `before` names no incident.
    pub async fn list_incidents(
        &self,
        filter: IncidentFilter,
    ) -> Result<Option<IncidentPage>, StoreError> {
        self.db
            .read(move |conn| queries::list_incidents(conn, &filter))
            .await
    }

    /// An incident's detail from the SQLite file at `path`, read without writing to it (no
    /// migration, no writer): for `quell export --database`. A schema this build does not
    /// read exactly is refused, naming both versions.
    pub fn incident_detail_offline(
        path: &Path,
        id: &str,
    ) -> anyhow::Result<Option<IncidentDetail>> {
        sqlite::incident_detail_read_only(path, id)
    }

    /// An incident with its timeline, runs, calls and jobs.
    pub async fn incident_detail(&self, id: String) -> Result<Option<IncidentDetail>, StoreError> {
        self.db
            .read(move |conn| queries::incident_detail(conn, &id))
            .await
    }

    /// The incident as a runbook sees it: for `alert`, one alert of a grouped incident
    /// (`""`: the incident that is its one alert).
    pub async fn incident(
        &self,
        id: String,
        alert: String,
    ) -> Result<Option<Incident>, StoreError> {
        self.db
            .read(move |conn| queries::incident_record(conn, &id, &alert))
            .await
    }

    /// How many of a grouped incident's alerts fire, and the latest to join.
    pub async fn alert_counts(&self, incident: String) -> Result<AlertCounts, StoreError> {
        self.db
            .read(move |conn| queries::alert_counts(conn, &incident))
            .await
    }

    /// The newest `limit` runs of every runbook, newest first.
    pub async fn recent_runs(&self, limit: u32) -> Result<Vec<RecentRun>, StoreError> {
        self.db.read(move |conn| runs::recent(conn, limit)).await
    }

    /// Figures for `/metrics` that live in the database.
    pub async fn gauges(&self) -> Result<Gauges, StoreError> {
        self.db.read(|conn| queries::gauges(conn)).await
    }

    /// The newest dead letters.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.db
            .read(move |conn| queries::dead_letters(conn, limit))
            .await
    }
}

/// Now, as stored: RFC 3339 UTC with milliseconds, and Unix milliseconds.
pub fn now() -> (String, i64) {
    let now = chrono::Utc::now();
    (
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        now.timestamp_millis(),
    )
}

#[cfg(test)]
mod tests;

//! The pipeline: workers claim jobs from the database and take each (incident, runbook)
//! through match, diagnose, the mode gate and remediate, recording every step.
//!
//! Nothing lives only in memory: a job is a row, each step's result is committed before the
//! next starts, and a remediation that was running when the daemon died is escalated, never
//! re-run ([`crate::store::Store::recover`]). The decisions are the lifecycle's
//! ([`crate::lifecycle`]); this module runs the sandbox and hands the store transitions.

mod diagnose;
mod housekeeping;
mod registry;
mod remediate;
mod verify;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument as _, info_span, warn};

pub use registry::{Reload, Runbooks};

use crate::bindings::quell::runbook::types::Diagnosis;
use crate::config::{Config, PipelineConfig, RetentionConfig};
use crate::lifecycle::{Applied, Phase, RunOutcome, RunRecord, Transition};
use crate::metrics::Metrics;
use crate::sandbox::{Invocation, LoadedRunbook, Runtime};
use crate::store::{Job, Store, StoreError};

/// How often idle workers look for due work (approval expiry, missed wake-ups).
const POLL: Duration = Duration::from_secs(1);

/// The pipeline's shared state.
pub struct Pipeline {
    store: Store,
    runtime: Arc<Runtime>,
    runbooks: RwLock<Arc<Runbooks>>,
    runbooks_dir: PathBuf,
    config: PipelineConfig,
    /// Where drafts are also written as files, if they are.
    postmortems: Option<PathBuf>,
    public_url: Option<String>,
    retention: RetentionConfig,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("runbooks_dir", &self.runbooks_dir)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Loads the runbooks and builds the pipeline (no workers yet).
    pub async fn new(
        store: Store,
        runtime: Arc<Runtime>,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let pipeline = Arc::new(Self {
            store,
            runtime,
            runbooks: RwLock::new(Arc::new(Runbooks::default())),
            runbooks_dir: config.runbooks.dir.clone(),
            config: config.pipeline.clone(),
            postmortems: config
                .postmortems
                .files
                .then(|| config.postmortems.dir.clone()),
            public_url: config.server.public_url.clone(),
            retention: config.retention.clone(),
            metrics,
        });
        pipeline.reload().await;
        pipeline
    }

    /// The runbooks serving now.
    pub fn runbooks(&self) -> Arc<Runbooks> {
        match self.runbooks.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads every runbook and policy. A file that fails keeps its last good version
    /// serving (matched by directory); the failure is reported and logged.
    pub async fn reload(&self) -> Reload {
        let (fresh, errors) = registry::load(self.runtime.clone(), &self.runbooks_dir).await;
        let mut serving = match self.runbooks.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (next, report) = registry::merge(&serving, fresh, errors);
        *serving = Arc::new(next);
        report
    }

    /// Starts `workers` workers and the housekeeping; they stop claiming when `stop` turns
    /// true and finish what they hold.
    pub fn spawn_workers(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for n in 0..self.config.workers.max(1) {
            let pipeline = self.clone();
            let stop = stop.clone();
            set.spawn(async move { pipeline.work(n, stop).await });
        }
        let pipeline = self.clone();
        let stopped = stop.clone();
        set.spawn(async move { pipeline.expire_approvals(stopped).await });
        let pipeline = self.clone();
        set.spawn(async move { pipeline.prune(stop).await });
        set
    }

    async fn work(&self, worker: usize, mut stop: watch::Receiver<bool>) {
        let hub = self.store.hub().clone();
        loop {
            if *stop.borrow() {
                return;
            }
            let notified = hub.jobs().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.claim_job().await {
                Ok(Some(job)) => {
                    let span = info_span!("run", worker, incident = %job.incident, runbook = %job.runbook, phase = %job.phase);
                    match self.execute(&job).instrument(span).await {
                        Ok(()) => {}
                        // Another replica has the job now; it is not ours to recover.
                        Err(e @ StoreError::Lost { .. }) => {
                            warn!(job = job.id, error = %e, "job lost to another replica");
                        }
                        Err(e) => {
                            warn!(job = job.id, error = %e, "job could not be recorded; it is recovered as after a crash");
                            self.recover_job(job.id, &mut stop).await;
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "cannot claim jobs"),
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Recovers a job whose end could not be recorded, as start-up recovery would (a running
    /// job holds its incident's remediations and its targets), trying until the database
    /// takes it or the daemon stops; a job still running at the stop is recovered at the
    /// next start.
    async fn recover_job(&self, job: i64, stop: &mut watch::Receiver<bool>) {
        let mut wait = Duration::from_millis(500);
        loop {
            match self.store.recover_job(job).await {
                Ok(recovery) => {
                    self.metrics.escalations.inc_by(recovery.interrupted as u64);
                    return;
                }
                Err(e) => warn!(job, error = %e, retry_in = ?wait, "cannot recover the job yet"),
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    async fn execute(&self, job: &Job) -> Result<(), StoreError> {
        let Some(incident) = self
            .store
            .incident(job.incident.clone(), job.alert.clone())
            .await?
        else {
            return self.apply(Transition::IncidentGone(job.to_ref())).await;
        };
        let runbooks = self.runbooks();
        let Some(runbook) = runbooks.get(&job.runbook) else {
            let reason = format!("runbook {} is no longer loaded", job.runbook);
            return self
                .apply(Transition::Unrunnable(job.to_ref(), reason))
                .await;
        };
        if incident.status == "resolved" {
            return self.apply(Transition::ResolvedFirst(job.to_ref())).await;
        }
        match job.phase {
            Phase::Remediate => self.remediate(job, runbook, &incident).await,
            Phase::Diagnose => self.diagnose(job, runbook, &incident).await,
            Phase::Verify => self.verify(job, runbook, &incident).await,
        }
    }

    /// Applies a transition and counts its escalations.
    async fn apply(&self, transition: Transition) -> Result<(), StoreError> {
        self.applied(transition).await.map(|_| ())
    }

    /// Applies a transition, counts its escalations and says what it did.
    async fn applied(&self, transition: Transition) -> Result<Applied, StoreError> {
        let applied = self.store.apply(transition).await?;
        if applied.escalations > 0 {
            self.metrics
                .escalations
                .inc_by(u64::from(applied.escalations));
        }
        Ok(applied)
    }

    fn count_run<T>(
        &self,
        runbook: &LoadedRunbook,
        phase: Phase,
        outcome: RunOutcome,
        invocation: &Invocation<T>,
    ) {
        self.metrics
            .runs
            .get_or_create(&vec![
                ("runbook", runbook.name.clone()),
                ("phase", phase.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        self.metrics
            .run_seconds
            .get_or_create(&vec![("phase", phase.to_string())])
            .observe(invocation.duration.as_secs_f64());
        for call in &invocation.calls {
            self.metrics
                .calls
                .get_or_create(&vec![
                    ("runbook", runbook.name.clone()),
                    ("capability", call.capability.clone()),
                    ("decision", call.decision.to_string()),
                ])
                .inc();
        }
    }
}

impl Pipeline {
    /// Counts a `matches` + `diagnose` invocation and returns its run record.
    fn diagnosis_run(
        &self,
        job: &Job,
        runbook: &LoadedRunbook,
        phase: Phase,
        started_at: String,
        invocation: &Invocation<Option<Diagnosis>>,
        outcome: RunOutcome,
    ) -> RunRecord {
        self.count_run(runbook, phase, outcome, invocation);
        let result = invocation
            .outcome
            .as_ref()
            .ok()
            .and_then(|d| d.as_ref())
            .map(|d| serde_json::json!(d));
        finished(
            started(job, runbook, phase, started_at),
            invocation,
            outcome,
            result,
        )
    }
}

/// A run's record as it starts: nothing measured yet.
fn started(job: &Job, runbook: &LoadedRunbook, phase: Phase, started_at: String) -> RunRecord {
    RunRecord {
        job: job.id,
        incident: job.incident.clone(),
        runbook: runbook.name.clone(),
        digest: runbook.digest.clone(),
        phase,
        mode: runbook.policy.runbook.mode,
        dry_run: runbook.policy.runbook.dry_run,
        started_at,
        duration_ms: 0,
        outcome: RunOutcome::Running,
        result: None,
        error: None,
        output: String::new(),
        calls: Vec::new(),
    }
}

/// A run's record once `invocation` ended with `outcome`.
fn finished<T>(
    mut run: RunRecord,
    invocation: &Invocation<T>,
    outcome: RunOutcome,
    result: Option<serde_json::Value>,
) -> RunRecord {
    run.duration_ms = i64::try_from(invocation.duration.as_millis()).unwrap_or(i64::MAX);
    run.outcome = outcome;
    run.result = result.map(|r| r.to_string());
    run.error = invocation.outcome.as_ref().err().map(ToString::to_string);
    run.output = format!("{}{}", invocation.stdout, invocation.stderr);
    run.calls = invocation.calls.clone();
    run
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

//! The pipeline: workers claim jobs from the database and take each (incident, runbook)
//! through match, diagnose, the mode gate and remediate, recording every step.
//!
//! Nothing lives only in memory: a job is a row, each step's result is committed before the
//! next starts, and a remediation that was running when the daemon died is escalated, never
//! re-run (see [`crate::store::jobs::recover`]).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{Instrument as _, info, info_span, warn};

use crate::bindings::quell::runbook::types::{Diagnosis, Incident};
use crate::capabilities::CallRecord;
use crate::config::{Config, PipelineConfig, RetentionConfig};
use crate::incident::label;
use crate::metrics::Metrics;
use crate::notify::{self, FindingView};
use crate::policy::Mode;
use crate::sandbox::{Invocation, LoadError, LoadedRunbook, Runtime};
use crate::store::incidents::{escalate, event};
use crate::store::jobs::{self, Job, RunRecord};
use crate::store::{Store, StoreError, now, queries};

/// How often idle workers look for due work (approval expiry, missed wake-ups).
const POLL: Duration = Duration::from_secs(1);

/// The loaded runbooks, replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Runbooks {
    /// Runbooks that loaded, by name order.
    pub loaded: Vec<Arc<LoadedRunbook>>,
    /// Files that did not load at the last (re)load, with why.
    pub errors: Vec<LoadError>,
}

impl Runbooks {
    /// The runbook called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedRunbook>> {
        self.loaded.iter().find(|r| r.name == name)
    }

    /// Names of runbooks whose `[match]` selector accepts the alert.
    pub fn selected(&self, incident: &Incident) -> Vec<String> {
        self.loaded
            .iter()
            .filter(|r| r.policy.selector.matches(|key| label(incident, key)))
            .map(|r| r.name.clone())
            .collect()
    }
}

/// The pipeline's shared state.
pub struct Pipeline {
    store: Store,
    runtime: Arc<Runtime>,
    runbooks: RwLock<Arc<Runbooks>>,
    runbooks_dir: PathBuf,
    config: PipelineConfig,
    postmortems: PathBuf,
    public_url: Option<String>,
    retention: RetentionConfig,
    metrics: Arc<Metrics>,
    wake: Notify,
    notices: Arc<Notify>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("runbooks_dir", &self.runbooks_dir)
            .finish_non_exhaustive()
    }
}

/// What a reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reload {
    /// Runbooks now serving, with their digests.
    pub loaded: Vec<(String, String)>,
    /// Files that failed; for each, the previous version (if any) keeps serving.
    pub errors: Vec<String>,
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
            postmortems: config.postmortems.dir.clone(),
            public_url: config.server.public_url.clone(),
            retention: config.retention.clone(),
            metrics,
            wake: Notify::new(),
            notices: Arc::new(Notify::new()),
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
        let runtime = self.runtime.clone();
        let dir = self.runbooks_dir.clone();
        let (fresh, errors) = tokio::task::spawn_blocking(move || runtime.load_dir(&dir))
            .await
            .unwrap_or_else(|e| {
                (
                    Vec::new(),
                    vec![LoadError::new(
                        &self.runbooks_dir,
                        format!("loading panicked: {e}"),
                    )],
                )
            });
        let previous = self.runbooks();
        let mut loaded: Vec<Arc<LoadedRunbook>> = fresh.into_iter().map(Arc::new).collect();
        for error in &errors {
            warn!(path = %error.path.display(), error = %error.message, "runbook not (re)loaded");
            let dir = error.path.parent();
            if let Some(old) = previous
                .loaded
                .iter()
                .find(|r| r.policy_path.parent() == dir)
                && !loaded.iter().any(|r| r.name == old.name)
            {
                loaded.push(old.clone());
            }
        }
        loaded.sort_by(|a, b| a.name.cmp(&b.name));
        let report = Reload {
            loaded: loaded
                .iter()
                .map(|r| (r.name.clone(), r.digest.clone()))
                .collect(),
            errors: errors.iter().map(ToString::to_string).collect(),
        };
        info!(runbooks = ?report.loaded.iter().map(|(n, _)| n).collect::<Vec<_>>(), errors = report.errors.len(), "runbooks loaded");
        let next = Arc::new(Runbooks { loaded, errors });
        match self.runbooks.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        report
    }

    /// Writes the post-mortem draft of a resolved incident, in the background.
    pub fn resolved(self: &Arc<Self>, id: &str) {
        let pipeline = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let key = id.clone();
            match pipeline
                .store
                .read(move |conn| queries::incident_detail(conn, &key))
                .await
            {
                Ok(Some(detail)) => {
                    let dir = pipeline.postmortems.clone();
                    let url = pipeline.public_url.clone();
                    let saved = tokio::task::spawn_blocking(move || {
                        crate::postmortem::save(&dir, &detail, url.as_deref())
                    })
                    .await;
                    match saved {
                        Ok(Ok(path)) => {
                            info!(incident = %id, path = %path.display(), "post-mortem draft written")
                        }
                        Ok(Err(e)) => {
                            warn!(incident = %id, error = %e, "cannot write the post-mortem draft")
                        }
                        Err(e) => warn!(incident = %id, error = %e, "post-mortem task failed"),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(incident = %id, error = %e, "cannot read the incident for its post-mortem")
                }
            }
        });
    }

    /// Tells idle workers there may be work.
    pub fn wake(&self) {
        self.wake.notify_waiters();
        self.notices.notify_waiters();
    }

    /// Tells notification dispatchers a notice may have been committed.
    pub fn notify_dispatchers(&self) {
        self.notices.notify_waiters();
    }

    /// What dispatchers wait on.
    pub fn notices(&self) -> &Arc<Notify> {
        &self.notices
    }

    /// Starts `workers` workers; they stop claiming when `stop` turns true and finish what
    /// they hold.
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

    /// Applies `[retention]` at start and every hour.
    async fn prune(&self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let (_, ms) = now();
            let inbox = ms - millis(self.retention.inbox.0);
            let incidents = ms - millis(self.retention.incidents.0);
            match self
                .store
                .write(move |conn| jobs::prune(conn, inbox, incidents))
                .await
            {
                Ok(pruned) if pruned.deliveries + pruned.incidents > 0 => info!(
                    deliveries = pruned.deliveries,
                    incidents = pruned.incidents,
                    "history past its retention deleted"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot apply retention"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn expire_approvals(&self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.store.write(jobs::expire_approvals).await {
                Ok(n) if n > 0 => {
                    self.metrics.escalations.inc_by(n as u64);
                    info!(expired = n, "approvals expired");
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot expire approvals"),
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn work(&self, worker: usize, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.write(jobs::claim).await {
                Ok(Some(job)) => {
                    let span = info_span!("run", worker, incident = %job.incident, runbook = %job.runbook, phase = %job.phase);
                    if let Err(e) = self.execute(&job).instrument(span).await {
                        warn!(job = job.id, error = %e, "job could not be recorded; it stays running and is recovered at the next start");
                    }
                    self.notify_dispatchers();
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

    async fn execute(&self, job: &Job) -> Result<(), StoreError> {
        let id = job.incident.clone();
        let Some(incident) = self
            .store
            .read(move |conn| queries::incident_record(conn, &id))
            .await?
        else {
            return self.finish(job, "cancelled", None).await;
        };
        let runbooks = self.runbooks();
        let Some(runbook) = runbooks.get(&job.runbook) else {
            let reason = format!("runbook {} is no longer loaded", job.runbook);
            return self.finish(job, "failed", Some(reason)).await;
        };
        if incident.status == "resolved" {
            return self
                .note(job, "cancelled", "cancelled", "the incident resolved first")
                .await;
        }
        if job.phase == "remediate" {
            self.remediate(job, runbook, &incident).await
        } else {
            self.diagnose(job, runbook, &incident).await
        }
    }

    async fn diagnose(
        &self,
        job: &Job,
        runbook: &LoadedRunbook,
        incident: &Incident,
    ) -> Result<(), StoreError> {
        if !runbook.policy.selector.matches(|key| label(incident, key)) {
            return self
                .note(
                    job,
                    "skipped",
                    "not-matched",
                    "the policy's [match] selector no longer accepts the alert",
                )
                .await;
        }
        let budget = runbook.policy.runbook.max_runs;
        let (incident_id, name, job_id) = (job.incident.clone(), job.runbook.clone(), job.id);
        let allowed = self
            .store
            .write(move |conn| {
                if let Some(budget) = budget
                    && !jobs::take_budget(conn, &name, budget.count, millis(budget.per.0))?
                {
                    let (at, _) = now();
                    jobs::set_state(conn, job_id, "skipped")?;
                    let why = format!(
                        "run budget exhausted: {name} may run {} times per {}",
                        budget.count, budget.per
                    );
                    event(
                        conn,
                        &incident_id,
                        &at,
                        "budget-exhausted",
                        Some(&name),
                        &why,
                        None,
                    )?;
                    escalate(conn, &incident_id, &at, &why)?;
                    return Ok(false);
                }
                let (at, _) = now();
                event(
                    conn,
                    &incident_id,
                    &at,
                    "diagnosing",
                    Some(&name),
                    &format!("running {name}"),
                    None,
                )?;
                Ok(true)
            })
            .await?;
        if !allowed {
            self.metrics.escalations.inc();
            return Ok(());
        }
        let (started_at, _) = now();
        let invocation = self.runtime.match_and_diagnose(runbook, incident).await;
        let context = RunContext::new(job, runbook, "diagnose", started_at, &invocation);
        let mode = runbook.policy.runbook.mode;
        let approval_ms = millis(self.config.approval_timeout.0);
        let matched = matches!(invocation.outcome, Ok(Some(_)));
        let outcome = match &invocation.outcome {
            Ok(None) => "not-matched",
            Ok(Some(_)) => "diagnosed",
            Err(_) => "error",
        };
        self.count_run(runbook, "diagnose", outcome, &invocation);
        let result = invocation
            .outcome
            .as_ref()
            .ok()
            .and_then(|d| d.as_ref())
            .cloned();
        let error = invocation.outcome.as_ref().err().map(ToString::to_string);
        let escalated = self
            .store
            .write(move |conn| {
                let (at, ms) = now();
                context.record(conn, outcome, result.as_ref().map(|d| json!(d)), error.clone())?;
                let incident = &context.incident;
                let name = context.runbook.as_str();
                let Some(diagnosis) = result else {
                    if let Some(error) = error {
                        jobs::set_state(conn, context.job, "failed")?;
                        event(conn, incident, &at, "diagnosis-failed", Some(name), &error, None)?;
                        if is_resolved(conn, incident)? {
                            return Ok(false);
                        }
                        escalate(conn, incident, &at, &format!("{name} could not diagnose: {error}"))?;
                        return Ok(true);
                    }
                    jobs::set_state(conn, context.job, "done")?;
                    event(conn, incident, &at, "not-matched", Some(name), "matches returned false", None)?;
                    return nothing_matched(conn, incident, &at);
                };
                event(conn, incident, &at, "matched", Some(name), &format!("{name} applies"), None)?;
                event(
                    conn,
                    incident,
                    &at,
                    "diagnosed",
                    Some(name),
                    &diagnosis.summary,
                    Some(json!({"findings": diagnosis.findings, "plan": diagnosis.plan})),
                )?;
                let findings: Vec<FindingView> = diagnosis
                    .findings
                    .iter()
                    .map(|f| FindingView {
                        name: f.name.clone(),
                        ok: f.ok,
                        summary: f.summary.clone(),
                    })
                    .collect();
                notify::record(conn, incident, "diagnosed", Some(name), &diagnosis.summary, findings, vec![])?;
                let stored = serde_json::to_string(&diagnosis)?;
                let plan = json!({"plan": diagnosis.plan});
                if is_resolved(conn, incident)? {
                    jobs::set_state(conn, context.job, "done")?;
                    event(
                        conn,
                        incident,
                        &at,
                        "skipped",
                        Some(name),
                        "the incident resolved during diagnosis: no remediation, no escalation",
                        None,
                    )?;
                    return Ok(false);
                }
                match mode {
                    Mode::Diagnose => {
                        jobs::set_state(conn, context.job, "done")?;
                        escalate(
                            conn,
                            incident,
                            &at,
                            &format!("{name} diagnosed the incident; its mode is diagnose, so the findings go to on-call"),
                        )?;
                        Ok(true)
                    }
                    Mode::Approve => {
                        jobs::await_approval(conn, context.job, &stored, ms + approval_ms)?;
                        event(conn, incident, &at, "plan", Some(name), "the plan awaits approval", Some(plan))?;
                        notify::record(conn, incident, "plan", Some(name), "awaiting approval", vec![], diagnosis.plan.clone())?;
                        Ok(false)
                    }
                    Mode::Auto if jobs::paused(conn)? => {
                        jobs::await_approval(conn, context.job, &stored, ms + approval_ms)?;
                        event(
                            conn,
                            incident,
                            &at,
                            "plan",
                            Some(name),
                            "remediation is paused: the plan awaits approval",
                            Some(plan),
                        )?;
                        notify::record(
                            conn,
                            incident,
                            "plan",
                            Some(name),
                            "remediation is paused: awaiting approval",
                            vec![],
                            diagnosis.plan.clone(),
                        )?;
                        Ok(false)
                    }
                    Mode::Auto => {
                        jobs::queue_remediation(conn, context.job, &stored)?;
                        event(conn, incident, &at, "plan", Some(name), "remediating automatically", Some(plan))?;
                        Ok(false)
                    }
                }
            })
            .await?;
        if escalated {
            self.metrics.escalations.inc();
        }
        if matched {
            self.wake();
        }
        Ok(())
    }

    async fn remediate(
        &self,
        job: &Job,
        runbook: &LoadedRunbook,
        incident: &Incident,
    ) -> Result<(), StoreError> {
        let diagnosis: Option<Diagnosis> = job
            .diagnosis
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok());
        let Some(diagnosis) = diagnosis else {
            return self
                .finish(
                    job,
                    "failed",
                    Some("the stored diagnosis is unreadable".to_owned()),
                )
                .await;
        };
        // Policy and pause are checked again now: either may have changed since the plan,
        // and a plan queued by auto mode has nobody's approval.
        let mode = runbook.policy.runbook.mode;
        let approval_ms = millis(self.config.approval_timeout.0);
        let (incident_id, name, job_id) = (job.incident.clone(), job.runbook.clone(), job.id);
        let approved = job.decided_by.is_some();
        let plan = diagnosis.plan.clone();
        let (started_at, _) = now();
        let start = StartedRun {
            job: job.id,
            incident: job.incident.clone(),
            runbook: runbook.name.clone(),
            digest: runbook.digest.clone(),
            mode: runbook.policy.runbook.mode.to_string(),
            dry_run: runbook.policy.runbook.dry_run,
            started_at,
        };
        let run = self
            .store
            .write(move |conn| {
                let (at, ms) = now();
                if is_resolved(conn, &incident_id)? {
                    jobs::set_state(conn, job_id, "cancelled")?;
                    event(
                        conn,
                        &incident_id,
                        &at,
                        "cancelled",
                        Some(&name),
                        "the incident resolved before this runbook's work started",
                        None,
                    )?;
                    return Ok(None);
                }
                if mode == Mode::Diagnose {
                    jobs::set_state(conn, job_id, "skipped")?;
                    let why =
                        format!("{name}'s policy now says mode diagnose; the plan was not run");
                    event(conn, &incident_id, &at, "skipped", Some(&name), &why, None)?;
                    escalate(conn, &incident_id, &at, &why)?;
                    return Ok(None);
                }
                if mode == Mode::Approve && !approved {
                    // Queued while the policy said auto; it says approve now.
                    jobs::hold(conn, job_id, ms + approval_ms)?;
                    let why =
                        format!("{name}'s policy now says mode approve: the plan awaits approval");
                    event(
                        conn,
                        &incident_id,
                        &at,
                        "plan",
                        Some(&name),
                        &why,
                        Some(json!({"plan": plan})),
                    )?;
                    notify::record(
                        conn,
                        &incident_id,
                        "plan",
                        Some(&name),
                        "awaiting approval",
                        vec![],
                        plan,
                    )?;
                    return Ok(None);
                }
                if jobs::paused(conn)? {
                    jobs::hold(conn, job_id, ms + approval_ms)?;
                    event(
                        conn,
                        &incident_id,
                        &at,
                        "paused",
                        Some(&name),
                        "remediation is paused; the plan waits for approval after the pause",
                        None,
                    )?;
                    return Ok(None);
                }
                event(
                    conn,
                    &incident_id,
                    &at,
                    "remediating",
                    Some(&name),
                    "attempting the plan",
                    None,
                )?;
                // Recorded as started before anything runs; calls are journaled as made.
                jobs::start_run(conn, &start.record()).map(Some)
            })
            .await?;
        let Some(run_id) = run else {
            return Ok(());
        };
        let (journal, mut records) = tokio::sync::mpsc::unbounded_channel();
        let (store, incident_id) = (self.store.clone(), job.incident.clone());
        let journaler = tokio::spawn(async move {
            while let Some(record) = records.recv().await {
                let incident = incident_id.clone();
                let journaled = store
                    .write(move |conn| jobs::journal_call(conn, run_id, &incident, &record))
                    .await;
                if let Err(e) = journaled {
                    warn!(error = %e, "cannot journal a capability call; it is in the run's log");
                }
            }
        });
        let invocation = self
            .runtime
            .remediate_journaled(runbook, incident, &diagnosis, false, Some(journal))
            .await;
        // The journal's sender went with the invocation's store: this ends once it is drained.
        let _ = journaler.await;
        let outcome = match &invocation.outcome {
            Ok(r) if r.success => "remediated",
            Ok(_) => "failed",
            Err(_) => "error",
        };
        self.count_run(runbook, "remediate", outcome, &invocation);
        let context = RunContext::new(job, runbook, "remediate", String::new(), &invocation);
        let result = invocation.outcome.as_ref().ok().cloned();
        let error = invocation.outcome.as_ref().err().map(ToString::to_string);
        let escalated = self
            .store
            .write(move |conn| {
                let (at, _) = now();
                context.finish(
                    conn,
                    run_id,
                    outcome,
                    result.as_ref().map(|r| json!(r)),
                    error.clone(),
                )?;
                let incident = &context.incident;
                let name = context.runbook.as_str();
                let dry = if context.dry_run {
                    " (dry run: writes were recorded, not executed)"
                } else {
                    ""
                };
                match (result, error) {
                    (Some(r), _) if r.success => {
                        jobs::set_state(conn, context.job, "done")?;
                        if !context.dry_run {
                            conn.prepare_cached(
                                "UPDATE incidents SET remediated = 1 WHERE id = ?1",
                            )?
                            .execute([incident])?;
                        }
                        event(
                            conn,
                            incident,
                            &at,
                            "remediated",
                            Some(name),
                            &format!("{}{dry}", r.action_taken),
                            Some(json!({"details": r.details})),
                        )?;
                        notify::record(
                            conn,
                            incident,
                            "remediated",
                            Some(name),
                            &format!("{}{dry}\n{}", r.action_taken, r.details),
                            vec![],
                            vec![],
                        )?;
                        Ok(false)
                    }
                    (Some(r), _) => {
                        jobs::set_state(conn, context.job, "failed")?;
                        event(
                            conn,
                            incident,
                            &at,
                            "remediation-failed",
                            Some(name),
                            &format!("{}{dry}", r.action_taken),
                            Some(json!({"details": r.details})),
                        )?;
                        notify::record(
                            conn,
                            incident,
                            "remediation-failed",
                            Some(name),
                            &format!("{}{dry}: {}", r.action_taken, r.details),
                            vec![],
                            vec![],
                        )?;
                        escalate(conn, incident, &at, &format!("{name}: {}", r.details))?;
                        Ok(true)
                    }
                    (None, error) => {
                        let error = error.unwrap_or_default();
                        jobs::set_state(conn, context.job, "failed")?;
                        event(
                            conn,
                            incident,
                            &at,
                            "remediation-failed",
                            Some(name),
                            &error,
                            None,
                        )?;
                        escalate(
                            conn,
                            incident,
                            &at,
                            &format!("{name} could not remediate: {error}"),
                        )?;
                        Ok(true)
                    }
                }
            })
            .await?;
        if escalated {
            self.metrics.escalations.inc();
        }
        Ok(())
    }

    fn count_run<T>(
        &self,
        runbook: &LoadedRunbook,
        phase: &'static str,
        outcome: &str,
        invocation: &Invocation<T>,
    ) {
        self.metrics
            .runs
            .get_or_create(&vec![
                ("runbook", runbook.name.clone()),
                ("phase", phase.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        self.metrics
            .run_seconds
            .get_or_create(&vec![("phase", phase.to_owned())])
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

    /// Ends a job with a timeline entry and, for failures, an escalation.
    async fn finish(
        &self,
        job: &Job,
        state: &str,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let (job_id, incident, name, state_owned) = (
            job.id,
            job.incident.clone(),
            job.runbook.clone(),
            state.to_owned(),
        );
        self.store
            .write(move |conn| {
                jobs::set_state(conn, job_id, &state_owned)?;
                if let Some(reason) = reason {
                    let (at, _) = now();
                    event(
                        conn,
                        &incident,
                        &at,
                        &state_owned,
                        Some(&name),
                        &reason,
                        None,
                    )?;
                    escalate(conn, &incident, &at, &reason)?;
                }
                Ok(())
            })
            .await
    }

    /// Ends a job with a timeline entry and no escalation.
    async fn note(
        &self,
        job: &Job,
        state: &str,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let (job_id, incident, name) = (job.id, job.incident.clone(), job.runbook.clone());
        let (state, kind, message) = (state.to_owned(), kind.to_owned(), message.to_owned());
        self.store
            .write(move |conn| {
                let (at, _) = now();
                jobs::set_state(conn, job_id, &state)?;
                event(conn, &incident, &at, &kind, Some(&name), &message, None)
            })
            .await
    }
}

fn is_resolved(conn: &rusqlite::Connection, incident: &str) -> Result<bool, StoreError> {
    let status: String = conn
        .prepare_cached("SELECT status FROM incidents WHERE id = ?1")?
        .query_row([incident], |row| row.get(0))?;
    Ok(status == "resolved")
}

/// Escalates when every runbook selected for the incident declined it.
fn nothing_matched(
    conn: &rusqlite::Connection,
    incident: &str,
    at: &str,
) -> Result<bool, StoreError> {
    let (live, matched): (i64, i64) = conn
        .prepare_cached(
            "SELECT
                 (SELECT count(*) FROM jobs WHERE incident_id = ?1
                    AND state IN ('queued', 'running', 'awaiting_approval')),
                 (SELECT count(*) FROM runs WHERE incident_id = ?1 AND outcome != 'not-matched')",
        )?
        .query_row([incident], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if live > 0 || matched > 0 {
        return Ok(false);
    }
    event(
        conn,
        incident,
        at,
        "triage",
        None,
        "no runbook applies: manual response needed",
        None,
    )?;
    escalate(conn, incident, at, "no runbook matches this alert")?;
    Ok(true)
}

/// A remediation about to start, as its run record says.
struct StartedRun {
    job: i64,
    incident: String,
    runbook: String,
    digest: String,
    mode: String,
    dry_run: bool,
    started_at: String,
}

impl StartedRun {
    fn record(&self) -> RunRecord<'_> {
        RunRecord {
            job: self.job,
            incident: &self.incident,
            runbook: &self.runbook,
            digest: &self.digest,
            phase: "remediate",
            mode: &self.mode,
            dry_run: self.dry_run,
            started_at: &self.started_at,
            duration_ms: 0,
            outcome: "running",
            result: None,
            error: None,
            output: "",
            calls: &[],
        }
    }
}

/// What a run's record needs, owned so it can move into the writer.
struct RunContext {
    job: i64,
    incident: String,
    runbook: String,
    digest: String,
    phase: &'static str,
    mode: String,
    dry_run: bool,
    started_at: String,
    duration_ms: i64,
    output: String,
    calls: Vec<CallRecord>,
}

impl RunContext {
    fn new<T>(
        job: &Job,
        runbook: &LoadedRunbook,
        phase: &'static str,
        started_at: String,
        invocation: &Invocation<T>,
    ) -> Self {
        let mut output = invocation.stdout.clone();
        output.push_str(&invocation.stderr);
        Self {
            job: job.id,
            incident: job.incident.clone(),
            runbook: runbook.name.clone(),
            digest: runbook.digest.clone(),
            phase,
            mode: runbook.policy.runbook.mode.to_string(),
            dry_run: runbook.policy.runbook.dry_run,
            started_at,
            duration_ms: i64::try_from(invocation.duration.as_millis()).unwrap_or(i64::MAX),
            output,
            calls: invocation.calls.clone(),
        }
    }

    /// The run's record with this outcome (and every call it made).
    fn run_record<'a>(
        &'a self,
        outcome: &'a str,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> RunRecord<'a> {
        RunRecord {
            job: self.job,
            incident: &self.incident,
            runbook: &self.runbook,
            digest: &self.digest,
            phase: self.phase,
            mode: &self.mode,
            dry_run: self.dry_run,
            started_at: &self.started_at,
            duration_ms: self.duration_ms,
            outcome,
            result: result.map(|r| r.to_string()),
            error,
            output: &self.output,
            calls: &self.calls,
        }
    }

    /// Completes a run started with [`jobs::start_run`] (its calls are already journaled).
    fn finish(
        &self,
        conn: &rusqlite::Connection,
        id: i64,
        outcome: &str,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        jobs::finish_run(conn, id, &self.run_record(outcome, result, error))
    }

    /// Stores the whole run with its calls.
    fn record(
        &self,
        conn: &rusqlite::Connection,
        outcome: &str,
        result: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<i64, StoreError> {
        jobs::record_run(conn, &self.run_record(outcome, result, error))
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

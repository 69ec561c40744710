//! The remediate phase: the gate once more, the run recorded as started, every capability
//! call journaled as it is made, then the outcome.

use std::collections::HashMap;

use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;

use super::{Pipeline, finished, millis, started};
use crate::bindings::quell::runbook::types::Diagnosis;
use crate::capabilities::JournalEntry;
use crate::incident::Incident;
use crate::lifecycle::{Phase, RemediationOutcome, RunOutcome, Transition};
use crate::sandbox::LoadedRunbook;
use crate::store::{Job, Store, StoreError, now};

impl Pipeline {
    pub(super) async fn remediate(
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
            let reason = "the stored diagnosis is unreadable".to_owned();
            return self
                .apply(Transition::Unrunnable(job.to_ref(), reason))
                .await;
        };
        // Policy and pause are asked again now: either may have changed since the plan,
        // and a plan queued by auto mode has nobody's approval.
        let (started_at, ms) = now();
        let run = started(job, runbook, Phase::Remediate, started_at);
        let begun = self
            .applied(Transition::BeginRemediation {
                job: job.to_ref(),
                run: Box::new(run.clone()),
                mode: runbook.policy.runbook.mode,
                approved: job.decided_by.is_some(),
                plan: diagnosis.plan.clone(),
                expires_ms: ms + millis(self.config.approval_timeout.0),
            })
            .await?;
        let Some(run_id) = begun.run else {
            return Ok(());
        };
        let (journal, entries) = tokio::sync::mpsc::unbounded_channel();
        let journaler = tokio::spawn(journal_calls(
            self.store.clone(),
            run_id,
            job.incident.clone(),
            entries,
        ));
        let invocation = self
            .runtime
            .remediate_journaled(runbook, incident, &diagnosis, false, Some(journal))
            .await;
        // The journal's sender went with the invocation's store: this ends once it is drained.
        let _ = journaler.await;
        let (run_outcome, outcome) = match &invocation.outcome {
            Ok(r) => (
                if r.success {
                    RunOutcome::Remediated
                } else {
                    RunOutcome::Failed
                },
                RemediationOutcome::Done {
                    success: r.success,
                    action: r.action_taken.clone(),
                    details: r.details.clone(),
                },
            ),
            Err(e) => (RunOutcome::Error, RemediationOutcome::Error(e.to_string())),
        };
        self.count_run(runbook, Phase::Remediate, run_outcome, &invocation);
        let result = invocation.outcome.as_ref().ok().map(|r| json!(r));
        self.apply(Transition::Remediated {
            job: job.to_ref(),
            run_id,
            run: Box::new(finished(run, &invocation, run_outcome, result)),
            outcome,
        })
        .await
    }
}

/// Writes each capability call of run `run` to the store as it is made: a write's "started"
/// entry first (its sender waits for it to be durable before the write runs), then the
/// finished call in the same row.
async fn journal_calls(
    store: Store,
    run: i64,
    incident: String,
    mut entries: UnboundedReceiver<JournalEntry>,
) {
    let mut rows: HashMap<usize, i64> = HashMap::new();
    while let Some(entry) = entries.recv().await {
        let written = match rows.get(&entry.index) {
            Some(&row) => store.complete_call(row, entry.record).await.map(|()| row),
            None => {
                store
                    .journal_call(run, incident.clone(), entry.record)
                    .await
            }
        };
        match &written {
            Ok(row) => {
                rows.insert(entry.index, *row);
            }
            Err(e) => warn!(error = %e, "cannot journal a capability call; it is in the run's log"),
        }
        if let Some(committed) = entry.committed {
            let _ = committed.send(written.is_ok());
        }
    }
}

//! The remediate phase: the gate once more, the run recorded as started, every capability
//! call journaled as it is made, then the outcome.

use std::collections::HashMap;

use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::warn;

use super::{Pipeline, finished, millis, started};
use crate::bindings::quell::runbook::types::Diagnosis;
use crate::capabilities::{CallRecord, JournalEntry, Journaled};
use crate::incident::Incident;
use crate::lifecycle::{Phase, RemediationOutcome, RunOutcome, Transition};
use crate::sandbox::LoadedRunbook;
use crate::store::{Job, Store, StoreError, WriteClaim, now};

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
            Claims {
                run: run_id,
                incident: job.incident.clone(),
                runbook: job.runbook.clone(),
                budget: self
                    .config
                    .max_writes
                    .map(|b| (b.count, millis(b.per.0), b.per.to_string())),
            },
            entries,
        ));
        let invocation = self
            .runtime
            .remediate_journaled(runbook, incident, &diagnosis, false, Some(journal))
            .await;
        // The journal's sender went with the invocation's store: this ends once it is drained.
        // Calls whose journaling failed are written again from the invocation's own record.
        if let Ok(journal) = journaler.await {
            self.rejournal(run_id, &job.incident, journal, &invocation.calls)
                .await;
        }
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
            verify: runbook
                .policy
                .verify
                .map(|v| (millis(v.after.0), v.after.to_string())),
        })
        .await
    }
}

/// Whose calls a journal writes, and the write budget they draw on.
struct Claims {
    run: i64,
    incident: String,
    runbook: String,
    budget: Option<(u32, i64, String)>,
}

/// Writes each capability call of a run to the store as it is made: a write's "started"
/// entry first, with its target's lease (its sender waits for that to be durable, or
/// refused, before the write runs), then the finished call in the same row.
async fn journal_calls(
    store: Store,
    claims: Claims,
    mut entries: UnboundedReceiver<JournalEntry>,
) -> Journal {
    let mut journal = Journal::default();
    let rows = &mut journal.rows;
    while let Some(entry) = entries.recv().await {
        let written = match (rows.get(&entry.index), entry.target) {
            (Some(&row), _) => store
                .complete_call(row, entry.record)
                .await
                .map(|()| Ok(row)),
            (None, Some(target)) => {
                store
                    .journal_write(WriteClaim {
                        run: claims.run,
                        incident: claims.incident.clone(),
                        runbook: claims.runbook.clone(),
                        call: entry.record,
                        target,
                        budget: claims.budget.clone(),
                    })
                    .await
            }
            (None, None) => store
                .journal_call(claims.run, claims.incident.clone(), entry.record)
                .await
                .map(Ok),
        };
        let answer = match written {
            Ok(Ok(row)) => {
                rows.insert(entry.index, row);
                journal.behind.remove(&entry.index);
                Journaled::Durable
            }
            // Refused: nothing was written; the refusal is recorded as the call's outcome.
            Ok(Err(why)) => Journaled::Refused(why),
            Err(e) => {
                warn!(error = %e, "cannot journal a capability call; it is written again when the run ends");
                journal.behind.insert(entry.index);
                Journaled::Failed
            }
        };
        if let Some(committed) = entry.committed {
            let _ = committed.send(answer);
        }
    }
    journal
}

/// What the journal holds of a run's calls.
#[derive(Debug, Default)]
struct Journal {
    /// Each call's row, by its place among the run's calls.
    rows: HashMap<usize, i64>,
    /// Calls whose last journal write failed: missing, or still "started".
    behind: std::collections::BTreeSet<usize>,
}

impl Pipeline {
    /// Writes the calls the journal fell behind on from the run's own record of them.
    async fn rejournal(&self, run: i64, incident: &str, journal: Journal, calls: &[CallRecord]) {
        for index in journal.behind {
            let Some(call) = calls.get(index).cloned() else {
                continue;
            };
            let written = match journal.rows.get(&index) {
                Some(&row) => self.store.complete_call(row, call).await,
                None => self
                    .store
                    .journal_call(run, incident.to_owned(), call)
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = written {
                warn!(error = %e, "a capability call is missing from the journal: it is in the run's log only");
            }
        }
    }
}

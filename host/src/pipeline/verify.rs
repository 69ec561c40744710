//! The verify phase: after a remediation that says it worked, the runbook's `diagnose` runs
//! again (read-only, as diagnose always is); the lifecycle decides what its findings mean.

use super::{Pipeline, millis};
use crate::bindings::quell::runbook::types::{Diagnosis, Finding};
use crate::incident::Incident;
use crate::lifecycle::{
    FindingView, Phase, RunOutcome, Transition, Verification, VerifyOutcome, describe,
};
use crate::sandbox::LoadedRunbook;
use crate::store::{Job, StoreError, now};

fn views(findings: &[Finding]) -> Vec<FindingView> {
    findings
        .iter()
        .map(|f| FindingView {
            name: f.name.clone(),
            ok: f.ok,
            summary: f.summary.clone(),
        })
        .collect()
}

impl Pipeline {
    pub(super) async fn verify(
        &self,
        job: &Job,
        runbook: &LoadedRunbook,
        incident: &Incident,
    ) -> Result<(), StoreError> {
        // The policy may have changed since the remediation: a check already queued runs,
        // and is the last one if the policy no longer asks for more.
        let policy = runbook.policy.verify;
        let attempts = policy.map_or(0, |v| v.attempts.0).max(job.verifications);
        let after = policy.map_or((0, "0s".to_owned()), |v| {
            (millis(v.after.0), v.after.to_string())
        });
        let before = job
            .diagnosis
            .as_deref()
            .and_then(|text| serde_json::from_str::<Diagnosis>(text).ok())
            .map_or_else(
                || "(the diagnosis is unreadable)".to_owned(),
                |d| describe(&d.summary, &views(&d.findings)),
            );
        let (started_at, _) = now();
        let invocation = self.runtime.match_and_diagnose(runbook, incident).await;
        let (run_outcome, outcome) = match &invocation.outcome {
            Err(e) => (RunOutcome::Error, VerifyOutcome::Error(e.to_string())),
            Ok(None) => (
                RunOutcome::NotMatched,
                VerifyOutcome::Healthy("matches no longer applies to the alert".to_owned()),
            ),
            Ok(Some(d)) if d.findings.iter().all(|f| f.ok) => (
                RunOutcome::Diagnosed,
                VerifyOutcome::Healthy(d.summary.clone()),
            ),
            Ok(Some(d)) => (
                RunOutcome::Diagnosed,
                VerifyOutcome::Failing {
                    summary: d.summary.clone(),
                    findings: views(&d.findings),
                },
            ),
        };
        let run = self.diagnosis_run(
            job,
            runbook,
            Phase::Verify,
            started_at,
            &invocation,
            run_outcome,
        );
        self.apply(Transition::Verified(Box::new(Verification {
            job: job.to_ref(),
            run,
            outcome,
            attempt: job.verifications,
            attempts,
            after,
            before,
        })))
        .await
    }
}

//! The diagnose phase: the policy's selector, the run budget, `matches` and `diagnose` in
//! the sandbox, then the lifecycle decides what follows.

use serde_json::json;

use super::{Pipeline, millis};
use crate::incident::Incident;
use crate::incident::label;
use crate::lifecycle::{DiagnosisOutcome, FindingView, Phase, RunOutcome, Transition};
use crate::sandbox::LoadedRunbook;
use crate::store::{Job, StoreError, now};

impl Pipeline {
    pub(super) async fn diagnose(
        &self,
        job: &Job,
        runbook: &LoadedRunbook,
        incident: &Incident,
    ) -> Result<(), StoreError> {
        if !runbook.policy.selector.matches(|key| label(incident, key)) {
            return self.apply(Transition::SelectorDeclined(job.to_ref())).await;
        }
        let budget = runbook
            .policy
            .runbook
            .max_runs
            .map(|b| (b.count, millis(b.per.0), b.per.to_string()));
        let begun = self
            .applied(Transition::BeginDiagnosis {
                job: job.to_ref(),
                budget,
            })
            .await?;
        if !begun.proceed {
            return Ok(());
        }
        let (started_at, _) = now();
        let invocation = self.runtime.match_and_diagnose(runbook, incident).await;
        let (run_outcome, outcome) = match &invocation.outcome {
            Err(e) => (RunOutcome::Error, DiagnosisOutcome::Error(e.to_string())),
            Ok(None) => (RunOutcome::NotMatched, DiagnosisOutcome::NotMatched),
            Ok(Some(diagnosis)) => (
                RunOutcome::Diagnosed,
                DiagnosisOutcome::Diagnosed {
                    summary: diagnosis.summary.clone(),
                    findings: diagnosis
                        .findings
                        .iter()
                        .map(|f| FindingView {
                            name: f.name.clone(),
                            ok: f.ok,
                            summary: f.summary.clone(),
                        })
                        .collect(),
                    plan: diagnosis.plan.clone(),
                    detail: json!({
                        "findings": diagnosis.findings,
                        "plan": diagnosis.plan,
                        "escalation": invocation.escalation,
                    }),
                    stored: serde_json::to_string(diagnosis)?,
                    escalation: invocation.escalation.clone(),
                },
            ),
        };
        let run = self.diagnosis_run(
            job,
            runbook,
            Phase::Diagnose,
            started_at,
            &invocation,
            run_outcome,
        );
        self.apply(Transition::Diagnosed {
            job: job.to_ref(),
            run: Box::new(run),
            outcome,
            mode: runbook.policy.runbook.mode,
            expires_ms: now().1 + millis(self.config.approval_timeout.0),
        })
        .await
    }
}

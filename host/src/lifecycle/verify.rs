//! Verification: after a remediation that says it worked, the runbook's `diagnose` runs
//! again (read-only) until its checks pass or the policy's attempts are spent.

use serde_json::json;

use super::step::{detailed, notice};
use super::{
    EventKind, Facts, FindingView, IncidentStatus, JobRef, JobState, NoticeKind, RunRecord, Step,
};

/// One verification check, ended.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The job (phase `verify`).
    pub job: JobRef,
    /// The check's run record.
    pub run: RunRecord,
    /// What the check found.
    pub outcome: VerifyOutcome,
    /// Which check this was, from 1.
    pub attempt: u32,
    /// How many the policy allows.
    pub attempts: u32,
    /// The settle time before the next check (ms), and as the policy wrote it.
    pub after: (i64, String),
    /// The diagnosis the remediation acted on, in one line: shown beside the last check's
    /// when the checks fail for good.
    pub before: String,
}

/// What a verification check found.
#[derive(Debug, Clone)]
pub enum VerifyOutcome {
    /// Every finding `ok` (or `matches` no longer applies): its summary.
    Healthy(String),
    /// A finding still fails: the summary and the findings.
    Failing {
        /// The diagnosis' one line.
        summary: String,
        /// Its findings.
        findings: Vec<FindingView>,
    },
    /// The check could not run (trap, deadline, error value).
    Error(String),
}

impl VerifyOutcome {
    /// The outcome in one line: the summary, then each failing finding.
    pub fn describe(&self) -> String {
        match self {
            Self::Healthy(summary) => summary.clone(),
            Self::Failing { summary, findings } => describe(summary, findings),
            Self::Error(error) => format!("the check could not run: {error}"),
        }
    }
}

/// A diagnosis in one line: its summary, then each failing finding.
pub fn describe(summary: &str, findings: &[FindingView]) -> String {
    let failing: Vec<String> = findings
        .iter()
        .filter(|f| !f.ok)
        .map(|f| format!("✗ {}: {}", f.name, f.summary))
        .collect();
    if failing.is_empty() {
        summary.to_owned()
    } else {
        format!("{summary} ({})", failing.join("; "))
    }
}

impl Verification {
    pub(super) fn steps<F: Facts>(&self, facts: &mut F) -> Result<Vec<Step>, F::Error> {
        let name = &self.job.runbook;
        let check = format!("check {} of {}", self.attempt, self.attempts);
        let found = self.outcome.describe();
        let mut steps = vec![Step::RecordRun(Box::new(self.run.clone()))];
        let shown = json!({"check": self.attempt, "of": self.attempts, "found": found});
        // The verification is over (passed, or out of attempts): the plans behind the
        // remediation are made again now that the world has settled.
        let over =
            matches!(self.outcome, VerifyOutcome::Healthy(_)) || self.attempt >= self.attempts;
        if over {
            steps.push(Step::Rediagnose(name.clone()));
        }
        if let VerifyOutcome::Healthy(_) = self.outcome {
            steps.push(Step::Job(JobState::Done));
            steps.push(detailed(
                EventKind::Verified,
                format!("{name}'s checks pass ({check}): {found}"),
                shown,
            ));
            // Resolved stays resolved; the alert's own resolution still closes the incident.
            if !matches!(
                facts.status()?,
                IncidentStatus::Resolved | IncidentStatus::Mitigated
            ) {
                steps.push(Step::Status(IncidentStatus::Mitigated));
                steps.push(notice(
                    NoticeKind::Mitigated,
                    true,
                    format!("{name}'s remediation worked: its checks pass again ({found})"),
                ));
            }
        } else if self.attempt < self.attempts {
            steps.push(Step::QueueVerify {
                after_ms: self.after.0,
            });
            steps.push(detailed(
                EventKind::Verifying,
                format!(
                    "{check} did not pass: {found}; the next check runs in {}",
                    self.after.1
                ),
                shown,
            ));
        } else {
            steps.push(Step::Job(JobState::Failed));
            steps.push(detailed(
                EventKind::VerificationFailed,
                format!("{check} did not pass: {found}"),
                shown,
            ));
            if facts.status()? != IncidentStatus::Resolved {
                steps.push(Step::Escalate(format!(
                    "{name} remediated, but its checks still fail after {} check(s).\n\
                     Before: {}\nAfter: {found}",
                    self.attempts, self.before
                )));
            }
        }
        Ok(steps)
    }
}

//! Transitions as values, and the steps each one takes.

use serde_json::json;

use super::step::{detailed, event, incident_event, notice, plan_notice, run_notice};
use super::{
    DiagnosisOutcome, EventKind, Facts, Gate, Hold, IncidentStatus, JobState, NoticeKind,
    RemediationOutcome, RunRecord, Step, Verification, cancelled_by_resolution, gate, resolution,
};
use crate::policy::Mode;

/// The job a transition is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// Row id.
    pub id: i64,
    /// The incident.
    pub incident: String,
    /// The runbook's name.
    pub runbook: String,
}

/// A change to an incident and its jobs, applied in one transaction by
/// [`crate::store::Store::apply`].
#[derive(Debug, Clone)]
pub enum Transition {
    /// The job's incident is gone (pruned): the job is cancelled, nothing else.
    IncidentGone(JobRef),
    /// The job cannot run at all (its runbook is no longer loaded, its stored diagnosis is
    /// unreadable): failed and escalated.
    Unrunnable(JobRef, String),
    /// The incident resolved before the job was claimed.
    ResolvedFirst(JobRef),
    /// The policy's `[match]` selector no longer accepts the alert.
    SelectorDeclined(JobRef),
    /// A diagnosis is about to run; it takes one run from the budget first.
    BeginDiagnosis {
        /// The job.
        job: JobRef,
        /// `max_runs`: count per window (ms), and the window as the policy says it.
        budget: Option<(u32, i64, String)>,
    },
    /// A diagnosis ended.
    Diagnosed {
        /// The job.
        job: JobRef,
        /// Its run record.
        run: Box<RunRecord>,
        /// How it ended.
        outcome: DiagnosisOutcome,
        /// The policy's mode now.
        mode: Mode,
        /// When a plan left waiting for approval expires (Unix ms).
        expires_ms: i64,
    },
    /// A remediation is about to run: the gate is asked again (policy or pause may have
    /// changed), and the run is recorded as started before anything runs.
    BeginRemediation {
        /// The job.
        job: JobRef,
        /// The run as started.
        run: Box<RunRecord>,
        /// The policy's mode now.
        mode: Mode,
        /// Whether a human approved this plan.
        approved: bool,
        /// The plan's steps.
        plan: Vec<String>,
        /// When a held plan expires (Unix ms).
        expires_ms: i64,
    },
    /// A remediation ended.
    Remediated {
        /// The job.
        job: JobRef,
        /// The run started by [`Transition::BeginRemediation`].
        run_id: i64,
        /// Its record, complete.
        run: Box<RunRecord>,
        /// How it ended.
        outcome: RemediationOutcome,
        /// The policy's `[verify]`: the settle time (ms, and as written), when a success
        /// is to be checked.
        verify: Option<(i64, String)>,
    },
    /// A verification check ended.
    Verified(Box<Verification>),
    /// A human acknowledged the incident.
    Acknowledge {
        /// The incident.
        incident: String,
        /// What the timeline says.
        message: String,
    },
    /// The incident resolved (the alert, or a human).
    Resolve {
        /// The incident.
        incident: String,
        /// Why, for the timeline.
        why: String,
    },
    /// An approval was refused: a timeline entry only.
    ApprovalRefused {
        /// The incident.
        incident: String,
        /// Who tried.
        message: String,
    },
}

impl Transition {
    /// The incident it changes.
    pub fn incident(&self) -> &str {
        match (self, self.job()) {
            (_, Some(job)) => &job.incident,
            (
                Self::Acknowledge { incident, .. }
                | Self::Resolve { incident, .. }
                | Self::ApprovalRefused { incident, .. },
                None,
            ) => incident,
            // Every other transition is a job's.
            (_, None) => "",
        }
    }

    /// The job it changes, if any.
    pub fn job(&self) -> Option<&JobRef> {
        match self {
            Self::IncidentGone(job)
            | Self::Unrunnable(job, _)
            | Self::ResolvedFirst(job)
            | Self::SelectorDeclined(job)
            | Self::BeginDiagnosis { job, .. }
            | Self::Diagnosed { job, .. }
            | Self::BeginRemediation { job, .. }
            | Self::Remediated { job, .. } => Some(job),
            Self::Verified(verification) => Some(&verification.job),
            Self::Acknowledge { .. } | Self::Resolve { .. } | Self::ApprovalRefused { .. } => None,
        }
    }

    /// The steps this transition takes given `facts`; empty when it does not apply.
    /// Whether the work goes on is the second value.
    pub fn steps<F: Facts>(&self, facts: &mut F) -> Result<(Vec<Step>, bool), F::Error> {
        Ok(match self {
            Self::IncidentGone(_) => (vec![Step::Job(JobState::Cancelled)], false),
            Self::Unrunnable(_, reason) => (
                vec![
                    Step::Job(JobState::Failed),
                    event(EventKind::Failed, reason.clone()),
                    Step::Escalate(reason.clone()),
                ],
                false,
            ),
            Self::ResolvedFirst(_) => (
                vec![
                    Step::Job(JobState::Cancelled),
                    event(EventKind::Cancelled, "the incident resolved first"),
                ],
                false,
            ),
            Self::SelectorDeclined(_) => (
                vec![
                    Step::Job(JobState::Skipped),
                    event(
                        EventKind::NotMatched,
                        "the policy's [match] selector no longer accepts the alert",
                    ),
                ],
                false,
            ),
            Self::BeginDiagnosis { job, budget } => {
                let name = &job.runbook;
                if let Some((count, per_ms, per)) = budget
                    && !facts.take_budget(name, *count, *per_ms)?
                {
                    let why =
                        format!("run budget exhausted: {name} may run {count} times per {per}");
                    return Ok((
                        vec![
                            Step::Job(JobState::Skipped),
                            event(EventKind::BudgetExhausted, why.clone()),
                            Step::Escalate(why),
                        ],
                        false,
                    ));
                }
                (
                    vec![event(EventKind::Diagnosing, format!("running {name}"))],
                    true,
                )
            }
            Self::Diagnosed {
                job,
                run,
                outcome,
                mode,
                expires_ms,
            } => (
                diagnosed(job, run, outcome, *mode, *expires_ms, facts)?,
                false,
            ),
            Self::BeginRemediation {
                job,
                run,
                mode,
                approved,
                plan,
                expires_ms,
            } => {
                let steps =
                    begin_remediation(job, run, *mode, *approved, plan, *expires_ms, facts)?;
                let proceed = steps.iter().any(|s| matches!(s, Step::StartRun(_)));
                (steps, proceed)
            }
            Self::Remediated {
                job,
                run_id,
                run,
                outcome,
                verify,
            } => (
                remediated(job, *run_id, run, outcome, verify.as_ref()),
                false,
            ),
            Self::Verified(verification) => (verification.steps(facts)?, false),
            Self::Acknowledge { message, .. } => {
                if facts.status()? != IncidentStatus::Open {
                    return Ok((Vec::new(), false));
                }
                (
                    vec![
                        Step::Status(IncidentStatus::Acknowledged),
                        incident_event(EventKind::Acknowledged, message.clone()),
                        notice(NoticeKind::Acknowledged, false, message.clone()),
                    ],
                    false,
                )
            }
            Self::Resolve { why, .. } => {
                if facts.status()? == IncidentStatus::Resolved {
                    return Ok((Vec::new(), false));
                }
                (resolution(why), false)
            }
            Self::ApprovalRefused { message, .. } => (
                vec![incident_event(EventKind::ApprovalRefused, message.clone())],
                false,
            ),
        })
    }
}

fn diagnosed<F: Facts>(
    job: &JobRef,
    run: &RunRecord,
    outcome: &DiagnosisOutcome,
    mode: Mode,
    expires_ms: i64,
    facts: &mut F,
) -> Result<Vec<Step>, F::Error> {
    let name = &job.runbook;
    let mut steps = vec![Step::RecordRun(Box::new(run.clone()))];
    match outcome {
        DiagnosisOutcome::Error(error) => {
            steps.push(Step::Job(JobState::Failed));
            steps.push(event(EventKind::DiagnosisFailed, error.clone()));
            if facts.status()? != IncidentStatus::Resolved {
                steps.push(Step::Escalate(format!(
                    "{name} could not diagnose: {error}"
                )));
            }
        }
        DiagnosisOutcome::NotMatched => {
            steps.push(Step::Job(JobState::Done));
            steps.push(event(EventKind::NotMatched, "matches returned false"));
            if !facts.another_applies(job.id)? {
                steps.push(incident_event(
                    EventKind::Triage,
                    "no runbook applies: manual response needed",
                ));
                steps.push(Step::Escalate("no runbook matches this alert".to_owned()));
            }
        }
        DiagnosisOutcome::Diagnosed {
            summary,
            findings,
            plan,
            detail,
            stored,
            escalation,
        } => {
            steps.push(event(EventKind::Matched, format!("{name} applies")));
            steps.push(detailed(
                EventKind::Diagnosed,
                summary.clone(),
                detail.clone(),
            ));
            steps.push(Step::Notice {
                kind: NoticeKind::Diagnosed,
                runbook: true,
                message: summary.clone(),
                findings: findings.clone(),
                plan: Vec::new(),
                commands: Vec::new(),
            });
            if facts.status()? == IncidentStatus::Resolved {
                steps.push(Step::Job(JobState::Done));
                steps.push(event(
                    EventKind::Skipped,
                    "the incident resolved during diagnosis: no remediation, no escalation",
                ));
                return Ok(steps);
            }
            // The runbook said there is nothing to automate: on-call now, no plan to approve.
            if let Some(reason) = escalation {
                steps.push(Step::Job(JobState::Done));
                steps.push(Step::Escalate(format!(
                    "{name} hands over to on-call: {reason}"
                )));
                return Ok(steps);
            }
            let shown = json!({"plan": plan});
            let paused = facts.paused()?;
            let diagnosis = stored.clone();
            match gate(mode, false, paused) {
                Gate::HandOver => {
                    steps.push(Step::Job(JobState::Done));
                    steps.push(Step::Escalate(format!(
                        "{name} diagnosed the incident; its mode is diagnose, so the findings go to on-call"
                    )));
                }
                Gate::Hold(hold) => {
                    let (event_text, notice_text) = match hold {
                        Hold::Approval => ("the plan awaits approval", "awaiting approval"),
                        Hold::Paused => (
                            "remediation is paused: the plan awaits approval",
                            "remediation is paused: awaiting approval",
                        ),
                    };
                    steps.push(Step::AwaitApproval {
                        diagnosis,
                        expires_ms,
                    });
                    steps.push(detailed(EventKind::Plan, event_text, shown));
                    steps.push(plan_notice(notice_text, plan));
                }
                Gate::Remediate => {
                    steps.push(Step::QueueRemediation { diagnosis });
                    steps.push(detailed(
                        EventKind::Plan,
                        "remediating automatically",
                        shown,
                    ));
                }
            }
        }
    }
    Ok(steps)
}

fn begin_remediation<F: Facts>(
    job: &JobRef,
    run: &RunRecord,
    mode: Mode,
    approved: bool,
    plan: &[String],
    expires_ms: i64,
    facts: &mut F,
) -> Result<Vec<Step>, F::Error> {
    let name = &job.runbook;
    if facts.status()? == IncidentStatus::Resolved {
        let mut steps = vec![Step::Job(JobState::Cancelled)];
        steps.extend(cancelled_by_resolution());
        return Ok(steps);
    }
    let paused = facts.paused()?;
    Ok(match gate(mode, approved, paused) {
        Gate::HandOver => {
            let why = format!("{name}'s policy now says mode diagnose; the plan was not run");
            vec![
                Step::Job(JobState::Skipped),
                event(EventKind::Skipped, why.clone()),
                Step::Escalate(why),
            ]
        }
        Gate::Hold(Hold::Approval) => vec![
            Step::HoldPlan { expires_ms },
            detailed(
                EventKind::Plan,
                format!("{name}'s policy now says mode approve: the plan awaits approval"),
                json!({"plan": plan}),
            ),
            plan_notice("awaiting approval", plan),
        ],
        Gate::Hold(Hold::Paused) => vec![
            Step::HoldPlan { expires_ms },
            event(
                EventKind::Paused,
                "remediation is paused; the plan waits for approval after the pause",
            ),
        ],
        Gate::Remediate => vec![
            event(EventKind::Remediating, "attempting the plan"),
            Step::StartRun(Box::new(run.clone())),
        ],
    })
}

fn remediated(
    job: &JobRef,
    run_id: i64,
    run: &RunRecord,
    outcome: &RemediationOutcome,
    verify: Option<&(i64, String)>,
) -> Vec<Step> {
    let name = &job.runbook;
    let dry = if run.dry_run {
        " (dry run: writes were recorded, not executed)"
    } else {
        ""
    };
    let mut steps = vec![Step::FinishRun(run_id, Box::new(run.clone()))];
    // Whatever the outcome, a run that was not dry may have changed the world: the plans
    // behind it are made again, once the world has settled (after its verification, when
    // it is checked).
    let verifying = verify.is_some()
        && !run.dry_run
        && matches!(outcome, RemediationOutcome::Done { success: true, .. });
    if !run.dry_run && !verifying {
        steps.push(Step::Rediagnose(name.clone()));
    }
    match outcome {
        RemediationOutcome::Done {
            success: true,
            action,
            details,
        } => {
            match verify.filter(|_| !run.dry_run) {
                Some((after_ms, after)) => {
                    steps.push(Step::QueueVerify {
                        after_ms: *after_ms,
                    });
                    steps.push(event(
                        EventKind::Verifying,
                        format!("{name} says it worked; its checks run again in {after}"),
                    ));
                }
                None => steps.push(Step::Job(JobState::Done)),
            }
            if !run.dry_run {
                steps.push(Step::MarkRemediated);
            }
            steps.push(detailed(
                EventKind::Remediated,
                format!("{action}{dry}"),
                json!({"details": details}),
            ));
            steps.push(run_notice(
                NoticeKind::Remediated,
                format!("{action}{dry}\n{details}"),
                run,
            ));
        }
        RemediationOutcome::Done {
            success: false,
            action,
            details,
        } => {
            steps.push(Step::Job(JobState::Failed));
            steps.push(detailed(
                EventKind::RemediationFailed,
                format!("{action}{dry}"),
                json!({"details": details}),
            ));
            steps.push(run_notice(
                NoticeKind::RemediationFailed,
                format!("{action}{dry}: {details}"),
                run,
            ));
            steps.push(Step::Escalate(format!("{name}: {details}")));
        }
        RemediationOutcome::Error(error) => {
            steps.push(Step::Job(JobState::Failed));
            steps.push(event(EventKind::RemediationFailed, error.clone()));
            steps.push(Step::Escalate(format!(
                "{name} could not remediate: {error}"
            )));
        }
    }
    steps
}

//! The steps a transition writes, and the step lists of the store's set operations
//! (decide, expire, recover, resolve).

use serde_json::Value;

use super::{CommandView, EventKind, FindingView, IncidentStatus, JobState, NoticeKind, RunRecord};

/// One thing a transition writes. The store applies them in order, in one transaction.
#[derive(Debug, Clone)]
pub enum Step {
    /// The job's new state.
    Job(JobState),
    /// The job waits for approval of this plan (diagnosis JSON) until `expires_ms`.
    AwaitApproval {
        /// The stored diagnosis.
        diagnosis: String,
        /// When the wait ends.
        expires_ms: i64,
    },
    /// A claimed remediation goes back to wait for approval until `expires_ms`.
    HoldPlan {
        /// When the wait ends.
        expires_ms: i64,
    },
    /// The job's verification is queued to run `after_ms` from now (the next of its checks).
    QueueVerify {
        /// The settle time.
        after_ms: i64,
    },
    /// The job's remediate phase is queued now.
    QueueRemediation {
        /// The stored diagnosis.
        diagnosis: String,
    },
    /// The incident's new status.
    Status(IncidentStatus),
    /// The queued and waiting jobs of the incident are cancelled, each with a timeline entry.
    CancelPendingJobs,
    /// The incident was remediated (not in dry run).
    MarkRemediated,
    /// An earlier remediation of the incident ran (the named runbook's): every other plan
    /// of the incident that is still waiting (queued, or awaiting approval) was made for a
    /// world that may be gone, so it goes back to diagnosis, and an approval it had lapses.
    Rediagnose(String),
    /// A timeline entry.
    Event {
        /// Kind.
        kind: EventKind,
        /// Whether it is about the transition's runbook.
        runbook: bool,
        /// What happened.
        message: String,
        /// Structured detail.
        detail: Option<Value>,
    },
    /// A notice for the outbox.
    Notice {
        /// Kind.
        kind: NoticeKind,
        /// Whether it is about the transition's runbook.
        runbook: bool,
        /// What happened.
        message: String,
        /// Findings.
        findings: Vec<FindingView>,
        /// A plan's steps.
        plan: Vec<String>,
        /// A remediation's calls.
        commands: Vec<CommandView>,
    },
    /// On-call is needed: the incident is marked escalated, with a timeline entry and a
    /// notice saying why.
    Escalate(String),
    /// Records a whole run with its calls.
    RecordRun(Box<RunRecord>),
    /// Records a run as started (outcome `running`): calls are journaled against it.
    StartRun(Box<RunRecord>),
    /// Completes a started run.
    FinishRun(i64, Box<RunRecord>),
}

/// What the store knows, read inside the transaction that applies a transition.
pub trait Facts {
    /// The backend's error.
    type Error;
    /// The incident's status.
    fn status(&mut self) -> Result<IncidentStatus, Self::Error>;
    /// Whether remediation is paused.
    fn paused(&mut self) -> Result<bool, Self::Error>;
    /// Takes one run of `runbook` from a budget of `count` per `per_ms`; false when spent.
    fn take_budget(&mut self, runbook: &str, count: u32, per_ms: i64) -> Result<bool, Self::Error>;
    /// Whether another runbook may still apply to the incident: a live job other than
    /// `job`, or a run that matched.
    fn another_applies(&mut self, job: i64) -> Result<bool, Self::Error>;
}

/// What applying a transition did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether anything changed (false: the transition did not apply, e.g. already
    /// acknowledged).
    pub changed: bool,
    /// Whether the work goes on (a diagnosis within its budget; a remediation past the gate).
    pub proceed: bool,
    /// How many escalations it made.
    pub escalations: u32,
    /// The run started by [`Step::StartRun`].
    pub run: Option<i64>,
}

pub(super) fn event(kind: EventKind, message: impl Into<String>) -> Step {
    Step::Event {
        kind,
        runbook: true,
        message: message.into(),
        detail: None,
    }
}

pub(super) fn incident_event(kind: EventKind, message: impl Into<String>) -> Step {
    Step::Event {
        kind,
        runbook: false,
        message: message.into(),
        detail: None,
    }
}

pub(super) fn detailed(kind: EventKind, message: impl Into<String>, detail: Value) -> Step {
    Step::Event {
        kind,
        runbook: true,
        message: message.into(),
        detail: Some(detail),
    }
}

pub(super) fn notice(kind: NoticeKind, runbook: bool, message: impl Into<String>) -> Step {
    Step::Notice {
        kind,
        runbook,
        message: message.into(),
        findings: Vec::new(),
        plan: Vec::new(),
        commands: Vec::new(),
    }
}

/// A notice about a remediation run, carrying the commands it ran.
pub(super) fn run_notice(kind: NoticeKind, message: impl Into<String>, run: &RunRecord) -> Step {
    Step::Notice {
        kind,
        runbook: true,
        message: message.into(),
        findings: Vec::new(),
        plan: Vec::new(),
        commands: run.calls.iter().map(CommandView::of).collect(),
    }
}

pub(super) fn plan_notice(message: &str, plan: &[String]) -> Step {
    Step::Notice {
        kind: NoticeKind::Plan,
        runbook: true,
        message: message.to_owned(),
        findings: Vec::new(),
        plan: plan.to_vec(),
        commands: Vec::new(),
    }
}

/// What happens after a plan is decided, one runbook at a time.
pub fn decided(approve: bool, who: &str) -> Vec<Step> {
    let (event_kind, notice_kind, message) = if approve {
        (
            EventKind::Approved,
            NoticeKind::Approved,
            format!("plan approved by {who}"),
        )
    } else {
        (
            EventKind::Rejected,
            NoticeKind::Rejected,
            format!("plan rejected by {who}"),
        )
    };
    vec![
        event(event_kind, message.clone()),
        notice(notice_kind, true, message),
    ]
}

/// What a rejection adds, once for the incident.
pub fn rejected(who: &str) -> Vec<Step> {
    vec![Step::Escalate(format!("remediation rejected by {who}"))]
}

/// A plan nobody approved in time.
pub fn expired(runbook: &str) -> Vec<Step> {
    vec![
        event(
            EventKind::ApprovalExpired,
            "nobody approved the plan in time",
        ),
        Step::Escalate(format!("the plan of {runbook} was not approved in time")),
    ]
}

/// A diagnosis that was running when the daemon stopped: it only reads, so it runs again.
pub fn requeued(halt: Halt) -> Vec<Step> {
    vec![event(
        EventKind::Requeued,
        format!("{} during diagnosis; diagnosis runs again", halt.what()),
    )]
}

/// What stopped a run before its end was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// The daemon stopped (a crash, or a shutdown past its grace).
    Stopped,
    /// The daemon kept running, but the run's end could not be written.
    Unrecorded,
}

impl Halt {
    fn what(self) -> &'static str {
        match self {
            Self::Stopped => "the daemon stopped",
            Self::Unrecorded => "the result could not be recorded (the database refused it)",
        }
    }
}

/// A waiting plan sent back to diagnosis because `by`'s remediation ran first.
pub fn rediagnosed(by: &str) -> Vec<Step> {
    vec![event(
        EventKind::Rediagnosing,
        format!(
            "{by}'s remediation of this incident ran first; this plan was made before it, so \
             it is diagnosed again (and approved again, where the mode asks for approval)"
        ),
    )]
}

/// A remediation that was running when the daemon stopped: never re-run.
pub fn interrupted(runbook: &str, halt: Halt) -> Vec<Step> {
    vec![
        event(
            EventKind::Interrupted,
            format!(
                "{} during remediation; it is not re-run automatically",
                halt.what()
            ),
        ),
        Step::Rediagnose(runbook.to_owned()),
        Step::Escalate(format!(
            "remediation by {runbook} was interrupted; check what it did"
        )),
    ]
}

/// A job cancelled because its incident resolved.
pub fn cancelled_by_resolution() -> Vec<Step> {
    vec![event(
        EventKind::Cancelled,
        "the incident resolved before this runbook's work started",
    )]
}

/// Resolving an open incident: its status, the timeline, the notice, and the work not yet
/// started cancelled.
pub fn resolution(why: &str) -> Vec<Step> {
    vec![
        Step::Status(IncidentStatus::Resolved),
        incident_event(EventKind::Resolved, why),
        notice(NoticeKind::Resolved, false, why),
        Step::CancelPendingJobs,
    ]
}

//! The incident lifecycle: every state as a type, and every change as a value.
//!
//! An incident is `open`, `acknowledged` or `resolved`; each (incident, runbook) pair is a
//! job moving through the [`Phase`]s `diagnose` and `remediate` and the [`JobState`]s below.
//! A change is a [`Transition`]: the store applies it in one transaction — the state, its
//! timeline event, its notices and the jobs that follow — by asking the transition for its
//! [`Step`]s ([`Transition::steps`]) with the facts it needs read inside that transaction.
//! The decisions (the mode gate, the run budget, the pause switch, "already resolved") are
//! made here, once, and nowhere else.

mod notice;
mod run;
mod step;
mod transitions;
mod verify;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use notice::{CommandView, FindingView, IncidentView, Notice};
pub use run::{DiagnosisOutcome, RemediationOutcome, RunRecord};
pub use step::{
    Applied, Facts, Halt, Step, cancelled_by_resolution, decided, expired, interrupted,
    rediagnosed, rejected, requeued, resolution,
};
pub use transitions::{JobRef, Transition};
pub use verify::{Verification, VerifyOutcome, describe};

use crate::policy::Mode;

/// Declares a closed set of names stored and shown as kebab- or snake-case text.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            /// The name as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The value called `text`.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names! {
    /// Where an incident stands.
    IncidentStatus {
        /// Firing, nobody has said they are on it.
        Open = "open",
        /// A human said they are on it.
        Acknowledged = "acknowledged",
        /// A remediation worked and its runbook's checks pass again; the alert itself has
        /// not resolved yet.
        Mitigated = "mitigated",
        /// The alert resolved, or a human resolved it.
        Resolved = "resolved",
    }
}

names! {
    /// What runs when a job is claimed.
    Phase {
        /// `matches`, then `diagnose`.
        Diagnose = "diagnose",
        /// `remediate`, with the stored diagnosis.
        Remediate = "remediate",
        /// `diagnose` again after a remediation that worked, to check that it did.
        Verify = "verify",
    }
}

names! {
    /// Where a job stands. `queued`, `running` and `awaiting_approval` are live: at most one
    /// live job per incident and runbook.
    JobState {
        /// Ready to be claimed at its `run_at`.
        Queued = "queued",
        /// Claimed by a worker.
        Running = "running",
        /// Diagnosed; its plan waits for a human (or the pause to end).
        AwaitingApproval = "awaiting_approval",
        /// Finished.
        Done = "done",
        /// The runbook failed, or could not run.
        Failed = "failed",
        /// Handed to a human.
        Escalated = "escalated",
        /// A remediation was running when the daemon stopped: never re-run.
        Interrupted = "interrupted",
        /// The incident resolved, or disappeared, before the work started.
        Cancelled = "cancelled",
        /// Nobody approved the plan in time.
        Expired = "expired",
        /// A human rejected the plan.
        Rejected = "rejected",
        /// Not run: the selector, the budget or the policy's mode said no.
        Skipped = "skipped",
    }
}

impl JobState {
    /// The states of a job still in flight.
    pub const LIVE: [Self; 3] = [Self::Queued, Self::Running, Self::AwaitingApproval];
}

names! {
    /// What a notice tells people; destinations route on it.
    NoticeKind {
        /// A new incident.
        Created = "created",
        /// A resolved incident fired again within the reopen window.
        Reopened = "reopened",
        /// Another alert joined a grouped incident.
        AlertJoined = "alert-joined",
        /// A runbook's findings.
        Diagnosed = "diagnosed",
        /// A plan that waits for approval.
        Plan = "plan",
        /// A remediation that worked.
        Remediated = "remediated",
        /// A remediation that did not.
        RemediationFailed = "remediation-failed",
        /// On-call is needed.
        Escalated = "escalated",
        /// Somebody is on it.
        Acknowledged = "acknowledged",
        /// A remediation was verified: the runbook's checks pass again.
        Mitigated = "mitigated",
        /// A plan was approved.
        Approved = "approved",
        /// A plan was rejected.
        Rejected = "rejected",
        /// The incident is over.
        Resolved = "resolved",
    }
}

names! {
    /// A timeline entry's kind.
    EventKind {
        /// The incident was opened.
        Created = "created",
        /// A firing re-send for the open incident.
        Refired = "re-fired",
        /// Another alert of the group joined the incident.
        AlertJoined = "alert-joined",
        /// One alert of the group resolved; others still fire.
        AlertResolved = "alert-resolved",
        /// Fired again within the reopen window.
        Reopened = "reopened",
        /// A delivery about an episode that is already over.
        Stale = "stale",
        /// The sender dropped alerts of the group.
        Truncated = "truncated",
        /// The incident resolved.
        Resolved = "resolved",
        /// Acknowledged by a human.
        Acknowledged = "acknowledged",
        /// Handed to a human, with why.
        Escalated = "escalated",
        /// No runbook applies.
        Triage = "triage",
        /// A runbook's diagnosis started.
        Diagnosing = "diagnosing",
        /// The run budget said no.
        BudgetExhausted = "budget-exhausted",
        /// The runbook's `matches` accepted the alert.
        Matched = "matched",
        /// The selector or `matches` declined the alert.
        NotMatched = "not-matched",
        /// Findings and plan.
        Diagnosed = "diagnosed",
        /// `diagnose` failed.
        DiagnosisFailed = "diagnosis-failed",
        /// What happens to the plan.
        Plan = "plan",
        /// The plan waits for the pause to end.
        Paused = "paused",
        /// Work that was not done, with why.
        Skipped = "skipped",
        /// Work cancelled before it started.
        Cancelled = "cancelled",
        /// A job that could not run at all.
        Failed = "failed",
        /// `remediate` started.
        Remediating = "remediating",
        /// `remediate` worked.
        Remediated = "remediated",
        /// `remediate` did not.
        RemediationFailed = "remediation-failed",
        /// A plan was approved.
        Approved = "approved",
        /// A plan was rejected.
        Rejected = "rejected",
        /// Somebody who may not approve tried to.
        ApprovalRefused = "approval-refused",
        /// Nobody approved in time.
        ApprovalExpired = "approval-expired",
        /// A verification check is due (or another one, after a check that did not pass).
        Verifying = "verifying",
        /// Every check passes after the remediation.
        Verified = "verified",
        /// The checks still fail after every attempt.
        VerificationFailed = "verification-failed",
        /// A diagnosis in flight at a stop runs again.
        Requeued = "requeued",
        /// A waiting plan is diagnosed again: an earlier remediation of the incident ran.
        Rediagnosing = "re-diagnosing",
        /// A remediation in flight at a stop.
        Interrupted = "interrupted",
    }
}

names! {
    /// How one export call of a runbook ended, as its run record says.
    RunOutcome {
        /// Recorded before `remediate` runs; what a crash leaves.
        Running = "running",
        /// `matches` said no.
        NotMatched = "not-matched",
        /// `diagnose` returned findings.
        Diagnosed = "diagnosed",
        /// `remediate` said it worked.
        Remediated = "remediated",
        /// `remediate` said it did not.
        Failed = "failed",
        /// The export trapped, timed out, or returned an error.
        Error = "error",
        /// The daemon stopped while it ran.
        Interrupted = "interrupted",
    }
}

/// Why a plan does not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The policy's mode is `approve` and nobody approved this plan.
    Approval,
    /// Remediation is paused for every runbook.
    Paused,
}

/// What the mode gate says about a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The mode is `diagnose`: the findings go to a human, the plan never runs.
    HandOver,
    /// The plan waits.
    Hold(Hold),
    /// Run `remediate`.
    Remediate,
}

/// A short digest of a plan's steps: a decision names the plan it was shown, so a plan
/// diagnosed again since is not decided by a button on the old one.
pub fn plan_digest(steps: &[String]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(steps.join("\n").as_bytes());
    hex::encode(&digest[..6])
}

/// The mode gate, for the daemon and `quell run` alike: what happens to a plan under
/// `mode`, whether a human `approved` it, and whether remediation is `paused`.
pub fn gate(mode: Mode, approved: bool, paused: bool) -> Gate {
    match mode {
        Mode::Diagnose => Gate::HandOver,
        Mode::Approve if !approved => Gate::Hold(Hold::Approval),
        _ if paused => Gate::Hold(Hold::Paused),
        Mode::Approve | Mode::Auto => Gate::Remediate,
    }
}

#[cfg(test)]
mod tests;

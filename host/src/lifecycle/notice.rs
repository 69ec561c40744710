//! What the outbox carries: a notice, with the incident as it was when it was written.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::NoticeKind;
use crate::capabilities::CallRecord;

/// The incident as a notice shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentView {
    /// `INC-XXXXXXXX`
    pub id: String,
    /// Title.
    pub title: String,
    /// Severity name.
    pub severity: String,
    /// `open`, `acknowledged`, `resolved`.
    pub status: String,
    /// Alert source.
    pub source: String,
    /// RFC 3339.
    pub created_at: String,
    /// Whether on-call was called in.
    pub escalated: bool,
    /// Labels.
    pub labels: Value,
}

/// A finding as notices carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingView {
    /// Check name.
    pub name: String,
    /// Whether it looked healthy.
    pub ok: bool,
    /// One line.
    pub summary: String,
}

/// A capability call as a notice shows it: the command the host ran (or would have run), and
/// what the policy decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandView {
    /// The rendered command: `kubectl rollout undo deployment/api --namespace=production`.
    pub command: String,
    /// `allowed`, `denied` or `dry-run`.
    pub decision: String,
    /// The rule that allowed it, or why it was refused.
    pub rule: String,
}

impl CommandView {
    /// The view of a recorded call; a call with no rendered form (refused before it could
    /// be rendered) shows its capability and request.
    pub fn of(call: &CallRecord) -> Self {
        Self {
            command: call
                .command
                .clone()
                .unwrap_or_else(|| format!("{} {}", call.capability, call.request)),
            decision: call.decision.to_string(),
            rule: call.rule.clone(),
        }
    }
}

/// One thing to tell people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// When.
    pub at: String,
    /// The incident as it was at that moment.
    pub incident: IncidentView,
    /// The runbook concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// What happened, in a sentence.
    pub message: String,
    /// Diagnosis findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingView>,
    /// A plan's steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    /// A remediation's capability calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandView>,
}

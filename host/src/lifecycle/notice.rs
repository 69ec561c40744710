//! What the outbox carries: a notice, with the incident as it was when it was written.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::NoticeKind;

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
}

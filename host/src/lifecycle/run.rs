//! A run of a runbook's export, as recorded, and how it ended.

use serde_json::Value;

use super::{FindingView, Phase, RunOutcome};
use crate::capabilities::CallRecord;
use crate::policy::Mode;

/// How a diagnosis ended.
#[derive(Debug, Clone)]
pub enum DiagnosisOutcome {
    /// The export failed (trap, deadline, error value).
    Error(String),
    /// `matches` said no.
    NotMatched,
    /// Findings and a plan.
    Diagnosed {
        /// One line.
        summary: String,
        /// The findings, as notices show them.
        findings: Vec<FindingView>,
        /// The plan's steps.
        plan: Vec<String>,
        /// The timeline event's detail (findings and plan in full).
        detail: Value,
        /// The diagnosis as `remediate` will get it back (JSON).
        stored: String,
        /// Why the runbook handed the incident to on-call (`run-context.escalate`): no plan
        /// is run or awaited, whatever the mode.
        escalation: Option<String>,
    },
}

/// How a remediation ended.
#[derive(Debug, Clone)]
pub enum RemediationOutcome {
    /// The export failed (trap, deadline, error value).
    Error(String),
    /// `remediate` returned; `success` says whether it worked.
    Done {
        /// Whether it worked.
        success: bool,
        /// What it did, in a line.
        action: String,
        /// More.
        details: String,
    },
}

/// One run of an export, as its record says.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The job.
    pub job: i64,
    /// The incident.
    pub incident: String,
    /// The runbook.
    pub runbook: String,
    /// Its component digest.
    pub digest: String,
    /// The phase.
    pub phase: Phase,
    /// The policy mode.
    pub mode: Mode,
    /// Whether writes were simulated.
    pub dry_run: bool,
    /// When it started.
    pub started_at: String,
    /// How long it took.
    pub duration_ms: i64,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The export's value as JSON.
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Captured guest output.
    pub output: String,
    /// Every capability call.
    pub calls: Vec<CallRecord>,
}

//! The WIT types under friendly names, with constructors and accessors.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::quell::runbook::types::{
    CommandOutput, Diagnosis, Finding, Incident, Remediation, Severity,
};

/// Why a capability call did not produce a result (WIT `host-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The policy refused the call; the text names the rule that would allow it.
    Denied(String),
    /// The call was allowed but could not be carried out.
    Failed(String),
    /// The call ran past its deadline and was stopped.
    Timeout,
    /// The result was larger than the host's cap.
    TooLarge,
}

impl HostError {
    /// Whether the policy refused the call.
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Denied(_))
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(reason) => write!(f, "denied: {reason}"),
            Self::Failed(message) => write!(f, "failed: {message}"),
            Self::Timeout => f.write_str("timed out"),
            Self::TooLarge => f.write_str("result too large"),
        }
    }
}

impl std::error::Error for HostError {}

impl Incident {
    /// The value of the alert label `key`, if the alert has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }

    /// The value of the alert annotation `key`, if the alert has it.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Severity {
    /// The lowercase name used in alerts: `critical`, `high`, `medium`, `low`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
            Self::Info => "info",
        }
    }
}

impl Finding {
    /// A check that passed.
    pub fn ok(name: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            summary: summary.into(),
            detail_json: None,
        }
    }

    /// A check that found a problem, or could not be made.
    pub fn failed(name: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            summary: summary.into(),
            detail_json: None,
        }
    }

    /// Attaches structured detail, shown with the finding.
    pub fn with_detail(mut self, detail: &serde_json::Value) -> Self {
        self.detail_json = Some(detail.to_string());
        self
    }
}

impl Diagnosis {
    /// A diagnosis with this summary, no findings, an empty plan and `{}` as data.
    pub fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            findings: Vec::new(),
            plan: Vec::new(),
            data_json: "{}".to_owned(),
        }
    }

    /// Adds a finding.
    pub fn finding(mut self, finding: Finding) -> Self {
        self.findings.push(finding);
        self
    }

    /// Adds a plan step: one line of what `remediate` would do.
    pub fn step(mut self, step: impl Into<String>) -> Self {
        self.plan.push(step.into());
        self
    }

    /// Stores `data` as JSON for `remediate` to read back with [`Diagnosis::data`].
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Result<Self, serde_json::Error> {
        self.data_json = serde_json::to_string(data)?;
        Ok(self)
    }

    /// Reads back what [`Diagnosis::with_data`] stored. The error says what did not parse.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.data_json)
            .map_err(|e| format!("diagnosis data does not parse: {e}"))
    }
}

impl Remediation {
    /// The remediation worked.
    pub fn succeeded(action_taken: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            success: true,
            action_taken: action_taken.into(),
            details: details.into(),
        }
    }

    /// The remediation did not fix the incident; a human takes over.
    pub fn failed(action_taken: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            success: false,
            action_taken: action_taken.into(),
            details: details.into(),
        }
    }
}

impl CommandOutput {
    /// Whether the command exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0
    }
}

//! The record of one capability call: enough to audit it and to replay the run later.

use std::fmt;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use super::{CallContext, Capability, Phase};
use crate::bindings::quell::runbook::types::HostError;

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// The call ran.
    Allowed,
    /// The call was refused; the record's `rule` says why.
    Denied,
    /// A write in dry-run: recorded, not executed.
    DryRun,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::DryRun => "dry-run",
        })
    }
}

/// One capability call, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// The runbook that made the call.
    pub runbook: String,
    /// Its component's sha256.
    pub digest: String,
    /// The export it was in.
    pub phase: Phase,
    /// `kubectl`, `ssh` or `http`.
    pub capability: String,
    /// The request as the runbook made it (secrets never appear here).
    pub request: Value,
    /// The command the host ran, or would have run: the kubectl argv without the pinned
    /// kubeconfig and context, the ssh host and rendered template, the HTTP method and URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Allowed, denied or dry-run.
    pub decision: Decision,
    /// The rule that allowed it, or the reason it was refused.
    pub rule: String,
    /// When it started, RFC 3339 UTC.
    pub started_at: String,
    /// How long it took.
    pub duration_ms: f64,
    /// The exit status of the process, for kubectl and ssh; the HTTP status for http.
    pub exit_status: Option<i32>,
    /// Bytes of output the call produced.
    pub output_bytes: u64,
    /// What the runbook received: `{"ok": …}` or `{"error": …}`.
    pub result: Value,
}

impl CallRecord {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new<T: Serialize>(
        ctx: &CallContext,
        capability: Capability,
        request: Value,
        decision: Decision,
        rule: String,
        started: Instant,
        result: &Result<T, HostError>,
        exit_status: Option<i32>,
        output_bytes: u64,
    ) -> Self {
        let elapsed = started.elapsed();
        let started_at = SystemTime::now()
            .checked_sub(elapsed)
            .unwrap_or_else(SystemTime::now);
        Self {
            runbook: ctx.runbook.clone(),
            digest: ctx.digest.clone(),
            phase: ctx.phase,
            capability: capability.name().to_owned(),
            request,
            command: None,
            decision,
            rule,
            started_at: humantime::format_rfc3339_millis(started_at).to_string(),
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            exit_status,
            output_bytes,
            result: match result {
                Ok(value) => json!({ "ok": value }),
                Err(error) => json!({ "error": host_error_json(error) }),
            },
        }
    }
}

/// A capability call on its way to the journal.
#[derive(Debug)]
pub struct JournalEntry {
    /// The call's place among its export's calls; a later entry with the same index
    /// completes the record an earlier one started.
    pub index: usize,
    /// The record: "started, result unknown" before a write runs, the whole call after.
    pub record: CallRecord,
    /// What a write changes; the journal takes its lease (or refuses the write) in the same
    /// transaction that makes the entry durable.
    pub target: Option<Target>,
    /// Told once the entry is durable (or refused); a write waits for it before it runs.
    pub committed: Option<tokio::sync::oneshot::Sender<Journaled>>,
}

/// What a write changes, for the target locks: a running remediation's write holds its
/// target until its run ends, and another run's write to it is refused meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The lock's key, one per object: `kubectl deployments/production/api`.
    pub key: String,
    /// How it reads in a refusal: `deployment/api in production`.
    pub shown: String,
}

/// What became of a write's journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Journaled {
    /// Durable, with the target's lease held: the write may run.
    Durable,
    /// Not run, and why: the target is held by another run, or the global write budget is
    /// spent.
    Refused(String),
    /// The journal could not be written.
    Failed,
}

/// A host error as JSON: `{"denied": "reason"}`, `"timeout"`, …
pub fn host_error_json(error: &HostError) -> Value {
    match error {
        HostError::Denied(reason) => json!({ "denied": reason }),
        HostError::Failed(message) => json!({ "failed": message }),
        HostError::Timeout => json!("timeout"),
        HostError::TooLarge => json!("too-large"),
    }
}

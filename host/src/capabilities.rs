//! The host functions a runbook can call, each checked against the runbook's policy first
//! and recorded, whatever the outcome.
//!
//! A capability is one module: its request validation, its check against its policy section
//! and its host function. The sections themselves are defined in [`crate::policy`], which
//! never imports this module. [`Capabilities`] holds the host side of each (binaries,
//! clients, secrets), built once; [`CallContext`] is the per-invocation state a host function
//! sees: which runbook, which phase, whether writes are simulated, and the record of every
//! call.

mod audit;
pub mod http;
pub mod kubectl;
mod process;
pub mod redact;
pub mod ssh;
mod timeline;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::bindings::quell::runbook::types::{CommandOutput, HostError};
use crate::config::Config;
use crate::policy::Policy;

pub use crate::policy::{Capability, Effect, HttpPolicy, KubectlPolicy, SshPolicy};
pub use audit::{CallRecord, Decision, JournalEntry, Journaled, Target};
pub use http::HttpCap;
pub use kubectl::KubectlCap;
pub use redact::Redactor;
pub use ssh::SshCap;

/// Which export a call happens in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `matches`: no capability calls at all.
    Matches,
    /// `diagnose`: reads only.
    Diagnose,
    /// `remediate`: reads and writes, writes simulated in dry-run.
    Remediate,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Matches => "matches",
            Self::Diagnose => "diagnose",
            Self::Remediate => "remediate",
        })
    }
}

/// The host side of every capability, built once from the configuration.
#[derive(Debug)]
pub struct Capabilities {
    /// Runs the real `kubectl`.
    pub kubectl: KubectlCap,
    /// Runs the real `ssh`.
    pub ssh: SshCap,
    /// Sends HTTP requests behind the SSRF guard.
    pub http: HttpCap,
    /// Keeps the `[secrets]` values out of everything a runbook is handed or that is recorded.
    pub redact: Redactor,
}

impl Capabilities {
    /// Resolves binaries and prepares clients. Fails on a configuration that cannot work.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let home = config.sandbox.cache_dir.join("home");
        std::fs::create_dir_all(&home)?;
        let secrets = config.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        Ok(Self {
            kubectl: KubectlCap::new(&config.kubectl, &home)?,
            ssh: SshCap::new(&config.ssh, &home)?,
            http: HttpCap::new(&config.http, config.secrets.clone()),
            redact: Redactor::new(secrets).map_err(anyhow::Error::msg)?,
        })
    }
}

/// What a host function sees of the invocation it serves.
pub struct CallContext {
    /// The runbook's name.
    pub runbook: String,
    /// The component's sha256.
    pub digest: String,
    /// Which export is running.
    pub phase: Phase,
    /// Whether writes are recorded instead of executed.
    pub dry_run: bool,
    /// The runbook's policy.
    pub policy: Arc<Policy>,
    /// The host side of the capabilities.
    pub caps: Arc<Capabilities>,
    /// The runbook's HTTP client (its resolver knows the policy's networks).
    pub http_client: reqwest::Client,
    /// Every capability call made so far, in order.
    pub calls: Vec<CallRecord>,
    /// Lines the runbook added to the timeline.
    pub notes: Vec<String>,
    /// Why `diagnose` handed the incident to on-call (`run-context.escalate`), if it did.
    pub escalation: Option<String>,
    /// When the running export's deadline passes; no call may outlive it.
    pub deadline: Instant,
    /// Calls refused and not recorded because the call budget was spent.
    pub dropped_calls: u64,
    /// Bytes of results recorded so far, against [`RECORD_BUDGET`].
    pub recorded_bytes: usize,
    /// When replaying a recorded incident (`quell replay`): every call that passes the gate is
    /// answered from the recording instead of being run.
    pub replay: Option<Arc<crate::replay::Recording>>,
    /// Where each record also goes the moment it is made (the daemon journals remediation
    /// calls to the database as they happen, so a crash cannot lose what was done); a write
    /// is journaled as started, and waits for that to be durable, before it runs.
    pub journal: Option<tokio::sync::mpsc::UnboundedSender<JournalEntry>>,
}

/// At most this many capability calls per export call; later ones are refused unrecorded.
pub const MAX_CALLS: usize = 256;
/// Results handed to the runbook, as recorded, per export call. A result that would go past
/// it is not handed over (`too-large`): whatever a runbook read is in its record.
pub const RECORD_BUDGET: usize = 8 << 20;
/// The largest request a command capability takes (kubectl, ssh: the request as JSON);
/// beyond it the runbook gets `too-large`.
pub const MAX_COMMAND_REQUEST: usize = 64 << 10;
/// Requests and reasons longer than this are cut in the record.
const MAX_RECORDED_TEXT: usize = 4096;

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("runbook", &self.runbook)
            .field("phase", &self.phase)
            .field("dry_run", &self.dry_run)
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

/// What a finished call measured besides its result.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Measured {
    /// Exit status of the process, or the HTTP status.
    pub exit_status: Option<i32>,
    /// Bytes of output produced.
    pub output_bytes: u64,
}

/// What the gate decided for one call.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Run it (a read); the string names the rule that allowed it.
    Execute(String),
    /// Run it (a write): journaled as started before it runs.
    Write(String),
    /// Record it as if it ran, but do not run it (dry-run write).
    Simulate(String),
    /// Refuse it with this reason.
    Deny(String),
}

impl CallContext {
    /// Time until the running export's deadline.
    pub(crate) fn time_left(&self) -> std::time::Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The one place where the phase, the policy and dry-run combine into a decision.
    /// `policy` is the capability's own policy check: the allowing rule, or why none does.
    pub(crate) fn gate(&self, effect: Effect, policy: Result<String, String>) -> Verdict {
        if self.calls.len() >= MAX_CALLS {
            return Verdict::Deny(format!(
                "call budget exhausted: at most {MAX_CALLS} capability calls per export call"
            ));
        }
        if self.phase == Phase::Matches {
            return Verdict::Deny("capability calls are not allowed in matches".to_owned());
        }
        let rule = match policy {
            Ok(rule) => rule,
            Err(reason) => return Verdict::Deny(reason),
        };
        match (effect, self.phase, self.dry_run) {
            (Effect::Write, Phase::Diagnose, _) => Verdict::Deny(
                "this call writes, and diagnose may only read; writes run in remediate".to_owned(),
            ),
            (Effect::Write, _, true) => Verdict::Simulate(rule),
            (Effect::Write, _, false) => Verdict::Write(rule),
            (Effect::Read, _, _) => Verdict::Execute(rule),
        }
    }

    /// The recorded answer to a call that passed the gate, when replaying; `None` otherwise.
    /// The request is looked up as it would be recorded (bounded, secrets redacted).
    pub(crate) fn replayed<T: serde::de::DeserializeOwned>(
        &self,
        capability: Capability,
        request: &serde_json::Value,
    ) -> Option<Result<T, HostError>> {
        let recording = self.replay.as_ref()?;
        Some(recording.answer(
            &self.runbook,
            &self.phase.to_string(),
            capability.name(),
            &self.as_recorded(request.clone()),
        ))
    }

    /// A request as its call record holds it: bounded, and every secret redacted. Records
    /// and replay lookups both go through here, so they always agree.
    fn as_recorded(&self, mut request: serde_json::Value) -> serde_json::Value {
        bound_json(&mut request);
        self.caps.redact.json(&mut request);
        request
    }

    /// Journals a write as started, and waits until that is durable, before it runs: a
    /// crash while it runs leaves "started, result unknown", never nothing. The journal
    /// takes the write's `target` for this run at the same time; a target another run holds,
    /// or a spent global write budget, turns the verdict into a refusal. Without a journal
    /// (`quell run`) there is nothing to wait for.
    pub(crate) async fn journal_start(
        &mut self,
        capability: Capability,
        request: &serde_json::Value,
        verdict: Verdict,
        command: Option<&str>,
        target: Option<Target>,
    ) -> (Verdict, Result<(), HostError>) {
        let (Some(journal), Verdict::Write(rule)) = (&self.journal, &verdict) else {
            return (verdict, Ok(()));
        };
        let mut request = request.clone();
        bound_json(&mut request);
        let mut record = CallRecord::new(
            self,
            capability,
            request,
            Decision::Allowed,
            cut(rule.clone()),
            Instant::now(),
            &Ok::<(), HostError>(()),
            None,
            0,
        );
        record.command = command.map(|c| cut(c.to_owned()));
        record.result = serde_json::json!({ "pending": "started; the result is not known yet" });
        let (committed, durable) = tokio::sync::oneshot::channel();
        let entry = JournalEntry {
            index: self.calls.len(),
            record,
            target,
            committed: Some(committed),
        };
        let journaled = if journal.send(entry).is_ok() {
            tokio::time::timeout(self.time_left(), durable).await
        } else {
            Ok(Ok(Journaled::Failed))
        };
        match journaled {
            Ok(Ok(Journaled::Durable)) => (verdict, Ok(())),
            Ok(Ok(Journaled::Refused(reason))) => (Verdict::Deny(reason), Ok(())),
            _ => (
                verdict,
                Err(HostError::Failed(
                    "the call could not be journaled before it ran, so it was not run".to_owned(),
                )),
            ),
        }
    }

    /// Records a finished call and hands its result back. The result is what the runbook
    /// gets, and exactly that is recorded: one that would take the export past
    /// [`RECORD_BUDGET`] is withheld (`too-large`) rather than handed over unrecorded.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record<T: serde::Serialize>(
        &mut self,
        capability: Capability,
        request: serde_json::Value,
        verdict: &Verdict,
        started: Instant,
        result: Result<T, HostError>,
        measured: Measured,
        command: Option<String>,
    ) -> Result<T, HostError> {
        let (decision, rule) = match verdict {
            Verdict::Execute(rule) | Verdict::Write(rule) => (Decision::Allowed, rule.clone()),
            Verdict::Simulate(rule) => (Decision::DryRun, rule.clone()),
            Verdict::Deny(reason) => (Decision::Denied, reason.clone()),
        };
        if self.calls.len() >= MAX_CALLS {
            self.dropped_calls += 1;
            return result;
        }
        let rule = cut(rule);
        let request = self.as_recorded(request);
        let mut record = CallRecord::new(
            self,
            capability,
            request,
            decision,
            rule,
            started,
            &result,
            measured.exit_status,
            measured.output_bytes,
        );
        // A backstop: nothing recorded may hold a secret, even one a runbook got hold of.
        let redact = &self.caps.redact;
        record.command = command.map(|c| cut(redact.text(c)));
        record.rule = redact.text(std::mem::take(&mut record.rule));
        tracing::info!(
            runbook = %self.runbook,
            phase = %self.phase,
            capability = %capability,
            decision = %record.decision,
            duration_ms = record.duration_ms,
            "capability call"
        );
        // A refusal can quote the guest's input at length; outputs are capped by the host.
        if let Some(error) = record.result.get_mut("error") {
            bound_json(error);
        }
        let size =
            record.result.to_string().len() + record.request.to_string().len() + record.rule.len();
        let result = if self.recorded_bytes + size > RECORD_BUDGET {
            record.result = serde_json::json!({
                "error": audit::host_error_json(&HostError::TooLarge),
                "withheld": format!(
                    "{size} bytes: the export's record budget of {} is spent, so the result \
                     was not handed to the runbook",
                    crate::config::ByteSize(RECORD_BUDGET as u64)
                ),
            });
            Err(HostError::TooLarge)
        } else {
            self.recorded_bytes += size;
            result
        };
        if let Some(journal) = &self.journal {
            let _ = journal.send(JournalEntry {
                index: self.calls.len(),
                record: record.clone(),
                target: None,
                committed: None,
            });
        }
        self.calls.push(record);
        result
    }
}

/// Cuts text to [`MAX_RECORDED_TEXT`] bytes on a character boundary, marking the cut.
pub(crate) fn cut(mut text: String) -> String {
    if text.len() > MAX_RECORDED_TEXT {
        let mut end = MAX_RECORDED_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("… (cut)");
    }
    text
}

/// Cuts every string in a JSON value to [`MAX_RECORDED_TEXT`] bytes and every array to 64
/// entries, in place: a guest's request is recorded, but never at the guest's chosen size.
fn bound_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) if text.len() > MAX_RECORDED_TEXT => *text = cut(std::mem::take(text)),
        Value::Array(items) => {
            items.truncate(64);
            items.iter_mut().for_each(bound_json);
        }
        Value::Object(map) => map.values_mut().for_each(bound_json),
        _ => {}
    }
}

/// Refuses a command request whose strings add up to more than [`MAX_COMMAND_REQUEST`]
/// before anything is built from them (no JSON, no message quoting them): the call is
/// recorded with its size only, and the runbook gets `too-large`.
pub(crate) fn refuse_oversized(
    ctx: &mut CallContext,
    capability: Capability,
    bytes: usize,
) -> Option<Result<CommandOutput, HostError>> {
    if bytes <= MAX_COMMAND_REQUEST {
        return None;
    }
    let why = format!(
        "too large: the request is at least {bytes} bytes, over the {MAX_COMMAND_REQUEST}-byte limit"
    );
    Some(ctx.record(
        capability,
        serde_json::json!({ "bytes": bytes }),
        &Verdict::Deny(why),
        Instant::now(),
        Err::<CommandOutput, _>(HostError::TooLarge),
        Measured::default(),
        None,
    ))
}

/// A command ready to run: the process, how it reads in records, and what it changes.
#[derive(Debug)]
pub(crate) struct Rendered {
    /// The process to start.
    pub spec: process::Spec,
    /// The command line as records show it.
    pub shown: String,
    /// The object it acts on (its lock, when it writes).
    pub target: Target,
}

/// Shared by the capabilities that run a command (kubectl, ssh): executes, simulates or
/// refuses according to the verdict, and records the call. What the command printed is
/// handed over with every secret redacted.
pub(crate) async fn run_command(
    ctx: &mut CallContext,
    capability: Capability,
    request: serde_json::Value,
    verdict: Verdict,
    rendered: Option<Rendered>,
) -> Result<CommandOutput, HostError> {
    let started = Instant::now();
    let size = request.to_string().len();
    let (verdict, rendered) = if size > MAX_COMMAND_REQUEST {
        let why = format!(
            "too large: the request is {size} bytes, over the {MAX_COMMAND_REQUEST}-byte limit"
        );
        (Verdict::Deny(why), None)
    } else {
        (verdict, rendered)
    };
    let shown = rendered.as_ref().map(|r| r.shown.clone());
    let target = rendered.as_ref().map(|r| r.target.clone());
    let spec = rendered.map(|r| (r.spec, r.shown));
    let (verdict, journaled) = ctx
        .journal_start(capability, &request, verdict, shown.as_deref(), target)
        .await;
    // No call outlives the export's deadline, so it ends in time to be recorded.
    let time_left = ctx.time_left();
    let spec = spec.map(|(mut spec, shown)| {
        spec.timeout = spec.timeout.min(time_left);
        (spec, shown)
    });
    let redact = &ctx.caps.redact;
    let replayed = match &verdict {
        Verdict::Deny(_) => None,
        _ => ctx.replayed::<CommandOutput>(capability, &request),
    };
    let (result, exit, bytes) = match (&verdict, spec, journaled) {
        (_, _, _) if let Some(result) = replayed => {
            let exit = result.as_ref().ok().map(|o| o.exit_code);
            (result, exit, 0)
        }
        (Verdict::Deny(_), _, _) if size > MAX_COMMAND_REQUEST => {
            (Err(HostError::TooLarge), None, 0)
        }
        (Verdict::Deny(reason), _, _) => (Err(HostError::Denied(reason.clone())), None, 0),
        (_, _, Err(error)) => (Err(error), None, 0),
        (_, None, _) => (
            Err(HostError::Failed(
                "host bug: no command was rendered".to_owned(),
            )),
            None,
            0,
        ),
        (Verdict::Simulate(_), Some((_, line)), _) => {
            let output = CommandOutput {
                exit_code: 0,
                stdout: format!("dry run: not executed: {line}\n"),
                stderr: String::new(),
                truncated: false,
            };
            (Ok(output), None, 0)
        }
        (Verdict::Execute(_) | Verdict::Write(_), Some((spec, _)), Ok(())) => {
            match process::run(spec).await {
                Ok(out) => {
                    let output = CommandOutput {
                        exit_code: out.exit_code,
                        stdout: redact.text(String::from_utf8_lossy(&out.stdout).into_owned()),
                        stderr: redact.text(String::from_utf8_lossy(&out.stderr).into_owned()),
                        truncated: out.truncated,
                    };
                    (Ok(output), Some(out.exit_code), out.total_bytes)
                }
                Err(process::Error::Timeout(_)) => (Err(HostError::Timeout), None, 0),
                Err(e) => (Err(HostError::Failed(redact.text(e.to_string()))), None, 0),
            }
        }
    };
    ctx.record(
        capability,
        request,
        &verdict,
        started,
        result,
        Measured {
            exit_status: exit,
            output_bytes: bytes,
        },
        shown,
    )
}

/// Helpers for unit-testing capabilities without wasm.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A call context for a policy text, with default host configuration.
    pub fn context(policy: &str, phase: Phase, dry_run: bool) -> CallContext {
        let mut config = Config::default();
        let dir = std::env::temp_dir().join(format!("quell-unit-{}", std::process::id()));
        config.sandbox.cache_dir = dir;
        let policy = Policy::parse(policy).expect("test policy parses");
        let caps = Capabilities::new(&config).expect("capabilities");
        let http_client = caps.http.client(&policy.http).expect("client");
        CallContext {
            runbook: "t".to_owned(),
            digest: "0".repeat(64),
            phase,
            dry_run,
            policy: Arc::new(policy),
            caps: Arc::new(caps),
            http_client,
            calls: Vec::new(),
            notes: Vec::new(),
            escalation: None,
            deadline: Instant::now() + std::time::Duration::from_secs(60),
            dropped_calls: 0,
            recorded_bytes: 0,
            replay: None,
            journal: None,
        }
    }
}

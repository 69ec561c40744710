//! One incident through the runbooks: select, match, diagnose, gate by mode, remediate.
//!
//! This is what `quell run` prints and what the daemon's pipeline records; it owns no state.

use std::fmt::Write as _;

use serde::Serialize;

use crate::bindings::quell::runbook::types::{Diagnosis, Remediation};
use crate::capabilities::CallRecord;
use crate::incident::Incident;
use crate::incident::severity_name;
use crate::lifecycle::{Gate, gate};
use crate::sandbox::{Invocation, LoadedRunbook, Runtime};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Record writes instead of executing them, whatever the policy says.
    pub dry_run: bool,
    /// Treat an `approve`-mode plan as approved (the author's stand-in for a human).
    pub approve: bool,
    /// When set (a replay), remediate only these runbooks, whatever their mode: the ones
    /// whose remediation ran when the incident was recorded.
    pub remediate_only: Option<Vec<String>>,
}

/// Everything that happened to one incident.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The incident's id.
    pub incident_id: String,
    /// Its title.
    pub title: String,
    /// Its severity.
    pub severity: &'static str,
    /// One entry per runbook, matched or not.
    pub runbooks: Vec<RunbookReport>,
}

/// What one runbook did.
#[derive(Debug, Serialize)]
pub struct RunbookReport {
    /// The runbook.
    pub name: String,
    /// Its component's sha256.
    pub digest: String,
    /// Its policy's mode.
    pub mode: String,
    /// Whether writes were simulated.
    pub dry_run: bool,
    /// Whether it applied, and why not when it did not.
    #[serde(serialize_with = "as_outcome")]
    pub matched: Result<(), String>,
    /// The diagnosis, or why there is none.
    #[serde(serialize_with = "as_optional_outcome")]
    pub diagnosis: Option<Result<Diagnosis, String>>,
    /// The remediation, why it failed, or why it did not run.
    #[serde(serialize_with = "as_optional_outcome")]
    pub remediation: Option<Result<Remediation, String>>,
    /// Why remediation did not run, when it did not.
    pub remediation_skipped: Option<String>,
    /// Why the runbook handed the incident to on-call from `diagnose`, if it did.
    pub escalation: Option<String>,
    /// Every capability call with its decision, in order.
    pub calls: Vec<CallRecord>,
    /// Lines the runbook added to the timeline.
    pub notes: Vec<String>,
    /// Captured guest output (stdout then stderr), capped.
    pub output: String,
}

/// `{"ok": value}` or `{"error": "why"}`, the shape audit records use too.
fn as_outcome<T: Serialize, S: serde::Serializer>(
    outcome: &Result<T, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(1))?;
    match outcome {
        Ok(value) => map.serialize_entry("ok", value)?,
        Err(error) => map.serialize_entry("error", error)?,
    }
    map.end()
}

fn as_optional_outcome<T: Serialize, S: serde::Serializer>(
    outcome: &Option<Result<T, String>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match outcome {
        Some(outcome) => as_outcome(outcome, serializer),
        None => serializer.serialize_none(),
    }
}

impl RunbookReport {
    fn absorb<T>(&mut self, invocation: Invocation<T>) -> Result<T, String> {
        if let Some(reason) = invocation.escalation {
            self.escalation = Some(reason);
        }
        self.calls.extend(invocation.calls);
        self.notes.extend(invocation.notes);
        for text in [invocation.stdout, invocation.stderr] {
            if !text.is_empty() {
                self.output.push_str(&text);
            }
        }
        invocation.outcome.map_err(|e| e.to_string())
    }
}

/// Runs `incident` through every runbook and reports what happened.
pub async fn run(
    runtime: &Runtime,
    runbooks: &[LoadedRunbook],
    incident: &Incident,
    options: &RunOptions,
) -> RunReport {
    let mut reports = Vec::new();
    for runbook in runbooks {
        reports.push(run_one(runtime, runbook, incident, options).await);
    }
    RunReport {
        incident_id: incident.id.clone(),
        title: incident.title.clone(),
        severity: severity_name(incident.severity),
        runbooks: reports,
    }
}

async fn run_one(
    runtime: &Runtime,
    runbook: &LoadedRunbook,
    incident: &Incident,
    options: &RunOptions,
) -> RunbookReport {
    let policy = &runbook.policy.runbook;
    let mut report = RunbookReport {
        name: runbook.name.clone(),
        digest: runbook.digest.clone(),
        mode: policy.mode.to_string(),
        dry_run: options.dry_run || policy.dry_run,
        matched: Ok(()),
        diagnosis: None,
        remediation: None,
        remediation_skipped: None,
        escalation: None,
        calls: Vec::new(),
        notes: Vec::new(),
        output: String::new(),
    };
    let label = |key: &str| crate::incident::label(incident, key);
    if !runbook.policy.selector.matches(label) {
        report.matched =
            Err("the policy's [match] selector does not match the alert's labels".to_owned());
        return report;
    }
    let diagnose = runtime.match_and_diagnose_as(runbook, incident, options.dry_run);
    let diagnosis = match report.absorb(diagnose.await) {
        Ok(None) => {
            report.matched = Err("the runbook's matches returned false".to_owned());
            return report;
        }
        Ok(Some(diagnosis)) => diagnosis,
        Err(e) => {
            report.diagnosis = Some(Err(e));
            report.remediation_skipped = Some("diagnosis failed".to_owned());
            return report;
        }
    };
    report.diagnosis = Some(Ok(diagnosis.clone()));
    if let Some(reason) = &report.escalation {
        report.remediation_skipped = Some(format!("the runbook hands over to on-call: {reason}"));
        return report;
    }
    let skipped = match &options.remediate_only {
        // A replay remediates what was remediated when the incident was recorded.
        Some(only) => (!only.contains(&runbook.name))
            .then(|| "no remediation ran when the incident was recorded".to_owned()),
        // `quell run` has no pause switch; `--approve` stands in for a human's approval.
        None => match gate(policy.mode, options.approve, false) {
            Gate::HandOver => {
                Some("the policy's mode is diagnose: findings go to a human".to_owned())
            }
            Gate::Hold(_) => Some(
                "the policy's mode is approve: the plan awaits approval (pass --approve to run it)"
                    .to_owned(),
            ),
            Gate::Remediate => None,
        },
    };
    if let Some(reason) = skipped {
        report.remediation_skipped = Some(reason);
        return report;
    }
    let remediation = report.absorb(
        runtime
            .remediate(runbook, incident, &diagnosis, options.dry_run)
            .await,
    );
    report.remediation = Some(remediation);
    report
}

impl RunReport {
    /// The report as text for a terminal. Control characters from the runbook (terminal
    /// escape sequences included) are shown as U+FFFD, never passed to the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "incident {}: {} ({})",
            self.incident_id, self.title, self.severity
        );
        for rb in &self.runbooks {
            let _ = writeln!(
                out,
                "\nrunbook {} (mode {}{}, sha256 {})",
                rb.name,
                rb.mode,
                if rb.dry_run { ", dry run" } else { "" },
                &rb.digest[..12.min(rb.digest.len())]
            );
            if let Err(why) = &rb.matched {
                let _ = writeln!(out, "  not matched: {why}");
                continue;
            }
            let _ = writeln!(out, "  matched");
            match &rb.diagnosis {
                Some(Ok(d)) => {
                    let _ = writeln!(out, "  diagnosis: {}", d.summary);
                    for f in &d.findings {
                        let _ = writeln!(
                            out,
                            "    [{}] {}: {}",
                            if f.ok { "ok" } else { "!!" },
                            f.name,
                            f.summary
                        );
                    }
                    if !d.plan.is_empty() {
                        let _ = writeln!(out, "  plan:");
                        for step in &d.plan {
                            let _ = writeln!(out, "    - {step}");
                        }
                    }
                }
                Some(Err(e)) => {
                    let _ = writeln!(out, "  diagnosis failed: {e}");
                }
                None => {}
            }
            if !rb.calls.is_empty() {
                let _ = writeln!(out, "  capability calls:");
                for call in &rb.calls {
                    // The command the host ran, as an engineer reads it; the request JSON
                    // only for a call refused before it could be rendered.
                    let shown = call
                        .command
                        .clone()
                        .unwrap_or_else(|| compact(&call.request).to_string());
                    let _ = writeln!(
                        out,
                        "    {:<9} {:<8} {:<7} {shown} — {}",
                        call.phase.to_string(),
                        call.capability,
                        call.decision.to_string(),
                        call.rule
                    );
                }
            }
            for note in &rb.notes {
                let _ = writeln!(out, "  note: {note}");
            }
            if let Some(why) = &rb.remediation_skipped {
                let _ = writeln!(out, "  remediation not run: {why}");
            }
            match &rb.remediation {
                Some(Ok(r)) => {
                    let _ = writeln!(
                        out,
                        "  remediation: {} — {} ({})",
                        if r.success {
                            "succeeded"
                        } else {
                            "did not succeed"
                        },
                        r.action_taken,
                        r.details
                    );
                }
                Some(Err(e)) => {
                    let _ = writeln!(out, "  remediation failed: {e}");
                }
                None => {}
            }
            if !rb.output.is_empty() {
                let _ = writeln!(out, "  guest output:\n{}", indent(&rb.output, "    "));
            }
        }
        out.chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect()
    }
}

/// A request without its empty fields, for one-line display.
fn compact(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), compact(v)))
                .filter(|(_, v)| {
                    !matches!(v, Value::Null | Value::Bool(false))
                        && v != &Value::Object(Default::default())
                        && v != &Value::Array(Vec::new())
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

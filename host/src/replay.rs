//! Recorded incidents, replayed offline: `quell export` writes an incident with every run and
//! every capability call (request, decision, result) to one JSON file; `quell replay` runs the
//! runbooks of a directory against it, answering each capability call from the recording
//! instead of the world, and says what the new version decides differently.
//!
//! A call is matched by runbook, phase, capability and request (the request exactly as the
//! recording holds it: bounded and redacted). Calls with the same key are answered in the
//! order they were recorded, the last answer repeating. A call the recording does not have
//! gets `failed("not in the recording")` and is reported. Nothing is executed, writes
//! included: every answer comes from the file.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::quell::runbook::types::HostError;
use crate::runner::RunbookReport;

/// The format version of an export file.
pub const EXPORT_VERSION: u32 = 1;

/// What `quell export` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Export {
    /// [`EXPORT_VERSION`].
    pub quell_export: u32,
    /// When it was written, RFC 3339.
    pub exported_at: String,
    /// The incident as the API shows it: the alert, the timeline, every run and its calls.
    pub incident: Value,
}

impl Export {
    /// Wraps an incident's API detail.
    pub fn new(incident: Value) -> Self {
        Self {
            quell_export: EXPORT_VERSION,
            exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            incident,
        }
    }

    /// Reads an export file's text; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let export: Self = serde_json::from_str(text).map_err(|e| {
            format!("not a quell export ({e}); write one with `quell export INC-…`")
        })?;
        if export.quell_export != EXPORT_VERSION {
            return Err(format!(
                "export format {} is not the one this quell reads ({EXPORT_VERSION})",
                export.quell_export
            ));
        }
        for field in ["id", "alert", "source", "runs"] {
            if export.incident.get(field).is_none() {
                return Err(format!("the export's incident has no {field:?}"));
            }
        }
        Ok(export)
    }

    /// The recorded runs, oldest first.
    pub fn runs(&self) -> &[Value] {
        self.incident["runs"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The runbooks that ran, in the order they first did.
    pub fn runbooks(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for run in self.runs() {
            let name = run["runbook"].as_str().unwrap_or_default();
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// What a replay compares `runbook` with: its last diagnosis and what followed it
    /// (its remediation), verifications left out. An incident diagnosed more than once
    /// (reopened, a joining alert, a retry after a crash) is replayed as its last episode.
    pub fn episode(&self, runbook: &str) -> Vec<&Value> {
        let runs: Vec<&Value> = self
            .runs()
            .iter()
            .filter(|r| r["runbook"] == runbook && r["phase"] != "verify")
            .collect();
        let last = runs.iter().rposition(|r| r["phase"] == "diagnose");
        runs[last.unwrap_or(0)..].to_vec()
    }

    /// The runbooks whose last episode includes a remediation: the ones a replay remediates.
    pub fn remediated(&self) -> Vec<String> {
        self.runbooks()
            .into_iter()
            .filter(|name| self.episode(name).iter().any(|r| r["phase"] == "remediate"))
            .collect()
    }
}

type Key = (String, String, String, String);

/// The recorded answers, consumed as the replay asks.
#[derive(Debug, Default)]
pub struct Recording {
    answers: Mutex<BTreeMap<Key, VecDeque<Value>>>,
    unrecorded: Mutex<Vec<String>>,
}

impl Recording {
    /// Every recorded call of each runbook's last episode ([`Export::episode`]), by runbook,
    /// phase, capability and request.
    pub fn of(export: &Export) -> Self {
        let mut answers: BTreeMap<Key, VecDeque<Value>> = BTreeMap::new();
        let runbooks = export.runbooks();
        let runs = runbooks.iter().flat_map(|name| export.episode(name));
        for run in runs {
            for call in run["calls"].as_array().into_iter().flatten() {
                let key = key(
                    call["runbook"].as_str().unwrap_or_default(),
                    call["phase"].as_str().unwrap_or_default(),
                    call["capability"].as_str().unwrap_or_default(),
                    &call["request"],
                );
                answers
                    .entry(key)
                    .or_default()
                    .push_back(call["result"].clone());
            }
        }
        Self {
            answers: Mutex::new(answers),
            unrecorded: Mutex::new(Vec::new()),
        }
    }

    /// The recorded answer to a call, or `failed("not in the recording")` (and the call is
    /// remembered for the report).
    pub fn answer<T: DeserializeOwned>(
        &self,
        runbook: &str,
        phase: &str,
        capability: &str,
        request: &Value,
    ) -> Result<T, HostError> {
        let key = key(runbook, phase, capability, request);
        let recorded = {
            let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            answers.get_mut(&key).and_then(|queue| {
                if queue.len() > 1 {
                    queue.pop_front()
                } else {
                    queue.front().cloned()
                }
            })
        };
        let Some(result) = recorded else {
            self.unrecorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("{runbook} {phase} {capability} {request}"));
            return Err(HostError::Failed("not in the recording".to_owned()));
        };
        decode(&result)
    }

    /// The calls the replay made that the recording did not have.
    pub fn unrecorded(&self) -> Vec<String> {
        self.unrecorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn key(runbook: &str, phase: &str, capability: &str, request: &Value) -> Key {
    (
        runbook.to_owned(),
        phase.to_owned(),
        capability.to_owned(),
        request.to_string(),
    )
}

/// A recorded result (`{"ok": …}` or `{"error": …}`) as the capability's return value.
fn decode<T: DeserializeOwned>(result: &Value) -> Result<T, HostError> {
    if let Some(ok) = result.get("ok") {
        return serde_json::from_value(ok.clone()).map_err(|e| {
            HostError::Failed(format!("the recorded result does not read back: {e}"))
        });
    }
    let error = &result["error"];
    Err(match error {
        Value::String(s) if s == "timeout" => HostError::Timeout,
        Value::String(s) if s == "too-large" => HostError::TooLarge,
        _ if error.get("denied").is_some() => {
            HostError::Denied(error["denied"].as_str().unwrap_or_default().to_owned())
        }
        _ if error.get("failed").is_some() => {
            HostError::Failed(error["failed"].as_str().unwrap_or_default().to_owned())
        }
        _ => HostError::Failed(format!("the recording holds no answer: {result}")),
    })
}

/// What one runbook decided, in the terms a replay compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decisions {
    /// Whether it applied.
    pub matched: bool,
    /// Why its diagnosis or remediation failed, when one did.
    pub failed: Option<String>,
    /// Each finding's name and whether it looked healthy.
    pub findings: Vec<(String, bool)>,
    /// The plan.
    pub plan: Vec<String>,
    /// The remediation: whether it worked and what it did.
    pub remediation: Option<(bool, String)>,
    /// Each call: phase, capability, what it ran (or asked), the decision.
    pub calls: Vec<String>,
}

impl Decisions {
    /// What the recording says `runbook` decided; `None` when it did not run.
    pub fn recorded(export: &Export, runbook: &str) -> Option<Self> {
        let runs = export.episode(runbook);
        let diagnose = runs.iter().find(|r| r["phase"] == "diagnose")?;
        let matched = diagnose["outcome"] != "not-matched";
        let failed = runs
            .iter()
            .find_map(|r| r["error"].as_str().map(str::to_owned));
        let result = &diagnose["result"];
        let findings = result["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or_default().to_owned(),
                    f["ok"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let plan = strings(&result["plan"]);
        let remediation = runs.iter().find(|r| r["phase"] == "remediate").map(|r| {
            let result = &r["result"];
            (
                result["success"].as_bool().unwrap_or(false),
                result["action_taken"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        });
        let calls = runs
            .iter()
            .flat_map(|r| r["calls"].as_array().into_iter().flatten())
            .map(|c| {
                call_line(
                    c["phase"].as_str().unwrap_or_default(),
                    c["capability"].as_str().unwrap_or_default(),
                    c["command"].as_str(),
                    &c["request"],
                    c["decision"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        Some(Self {
            matched,
            failed,
            findings,
            plan,
            remediation,
            calls,
        })
    }

    /// What a replayed run decided.
    pub fn replayed(report: &RunbookReport) -> Self {
        let diagnosis = report.diagnosis.as_ref().and_then(|d| d.as_ref().ok());
        let failed = match (&report.diagnosis, &report.remediation) {
            (Some(Err(e)), _) | (_, Some(Err(e))) => Some(e.clone()),
            _ => None,
        };
        Self {
            matched: report.matched.is_ok(),
            failed,
            findings: diagnosis
                .map(|d| d.findings.iter().map(|f| (f.name.clone(), f.ok)).collect())
                .unwrap_or_default(),
            plan: diagnosis.map(|d| d.plan.clone()).unwrap_or_default(),
            remediation: report
                .remediation
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|r| (r.success, r.action_taken.clone())),
            calls: report
                .calls
                .iter()
                .map(|c| {
                    call_line(
                        &c.phase.to_string(),
                        &c.capability,
                        c.command.as_deref(),
                        &c.request,
                        &c.decision.to_string(),
                    )
                })
                .collect(),
        }
    }

    /// What differs from `before` (the recording) to `self` (the replay), one line each.
    pub fn differences(&self, before: &Self) -> Vec<String> {
        let mut out = Vec::new();
        if self.matched != before.matched {
            out.push(format!("matched: {} → {}", before.matched, self.matched));
        }
        if self.failed.is_some() != before.failed.is_some() {
            let said = |f: &Option<String>| f.clone().unwrap_or_else(|| "no failure".to_owned());
            out.push(format!(
                "failed: {} → {}",
                said(&before.failed),
                said(&self.failed)
            ));
        }
        if self.findings != before.findings {
            out.push(format!(
                "findings: {} → {}",
                findings(&before.findings),
                findings(&self.findings)
            ));
        }
        if self.plan != before.plan {
            out.push(format!("plan: {:?} → {:?}", before.plan, self.plan));
        }
        if self.remediation != before.remediation {
            out.push(format!(
                "remediation: {} → {}",
                remediation(before.remediation.as_ref()),
                remediation(self.remediation.as_ref())
            ));
        }
        if self.calls != before.calls {
            out.push(format!(
                "calls:\n      recorded: {}\n      replayed: {}",
                before.calls.join("\n                ").as_str(),
                self.calls.join("\n                ").as_str()
            ));
        }
        out
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn call_line(
    phase: &str,
    capability: &str,
    command: Option<&str>,
    request: &Value,
    decision: &str,
) -> String {
    let shown = command.map_or_else(|| request.to_string(), str::to_owned);
    format!("{phase} {capability} {decision}: {shown}")
}

fn findings(list: &[(String, bool)]) -> String {
    let shown: Vec<String> = list
        .iter()
        .map(|(name, ok)| format!("{name} {}", if *ok { "ok" } else { "!!" }))
        .collect();
    format!("[{}]", shown.join(", "))
}

fn remediation(r: Option<&(bool, String)>) -> String {
    match r {
        None => "none".to_owned(),
        Some((true, action)) => format!("succeeded: {action}"),
        Some((false, action)) => format!("failed: {action}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bindings::quell::runbook::types::CommandOutput;

    fn export(calls: Value) -> Export {
        Export::new(json!({
            "id": "INC-1", "source": "alertmanager", "alert": {},
            "runs": [{"runbook": "rb", "phase": "diagnose", "outcome": "diagnosed", "calls": calls}],
        }))
    }

    fn call(request: Value, result: Value) -> Value {
        json!({"runbook": "rb", "phase": "diagnose", "capability": "kubectl",
               "request": request, "result": result})
    }

    fn output(stdout: &str) -> Value {
        json!({"ok": {"exit_code": 0, "stdout": stdout, "stderr": "", "truncated": false}})
    }

    #[test]
    fn the_same_request_is_answered_in_recorded_order_and_the_last_answer_repeats() {
        let request = json!({"verb": "Get", "resource": "pods"});
        let recording = Recording::of(&export(json!([
            call(request.clone(), output("first")),
            call(request.clone(), output("second")),
        ])));
        let answers: Vec<String> = (0..3)
            .map(|_| {
                recording
                    .answer::<CommandOutput>("rb", "diagnose", "kubectl", &request)
                    .unwrap()
                    .stdout
            })
            .collect();
        assert_eq!(answers, ["first", "second", "second"]);
        assert!(recording.unrecorded().is_empty());
    }

    #[test]
    fn recorded_errors_come_back_as_errors_and_unknown_calls_fail_and_are_reported() {
        let denied = json!({"verb": "Delete"});
        let slow = json!({"verb": "Logs"});
        let recording = Recording::of(&export(json!([
            call(denied.clone(), json!({"error": {"denied": "no rule"}})),
            call(slow.clone(), json!({"error": "timeout"})),
        ])));
        let ask = |request: &Value, phase: &str| {
            recording.answer::<CommandOutput>("rb", phase, "kubectl", request)
        };
        assert!(matches!(ask(&denied, "diagnose"), Err(HostError::Denied(r)) if r == "no rule"));
        assert!(matches!(ask(&slow, "diagnose"), Err(HostError::Timeout)));
        // The same request in another phase is another call.
        assert!(
            matches!(ask(&denied, "remediate"), Err(HostError::Failed(r)) if r == "not in the recording")
        );
        assert_eq!(recording.unrecorded().len(), 1);
        assert!(recording.unrecorded()[0].starts_with("rb remediate kubectl"));
    }

    #[test]
    fn an_incident_diagnosed_twice_is_replayed_as_its_last_episode() {
        let request = json!({"verb": "Get", "resource": "pods"});
        let run = |phase: &str, stdout: &str, plan: &str| {
            json!({"runbook": "rb", "phase": phase, "outcome": "diagnosed",
                   "result": {"findings": [], "plan": [plan]},
                   "calls": [call(request.clone(), output(stdout))]})
        };
        let export = Export::new(json!({
            "id": "INC-1", "source": "alertmanager", "alert": {},
            "runs": [run("diagnose", "first", "old plan"), run("verify", "checked", "-"),
                     run("diagnose", "second", "new plan")],
        }));
        let recording = Recording::of(&export);
        let answer = recording
            .answer::<CommandOutput>("rb", "diagnose", "kubectl", &request)
            .unwrap();
        assert_eq!(answer.stdout, "second");
        let decisions = Decisions::recorded(&export, "rb").unwrap();
        assert_eq!(decisions.plan, ["new plan"]);
        assert_eq!(decisions.calls.len(), 1, "{:?}", decisions.calls);
        assert!(export.remediated().is_empty());
    }

    #[test]
    fn a_file_that_is_not_an_export_says_what_it_is_missing() {
        assert!(
            Export::parse("{}")
                .unwrap_err()
                .contains("not a quell export")
        );
        let wrong = json!({"quell_export": 9, "exported_at": "", "incident": {}}).to_string();
        assert!(
            Export::parse(&wrong)
                .unwrap_err()
                .contains("export format 9")
        );
        let partial = json!({"quell_export": 1, "exported_at": "", "incident": {"id": "x"}});
        assert_eq!(
            Export::parse(&partial.to_string()).unwrap_err(),
            "the export's incident has no \"alert\""
        );
    }
}

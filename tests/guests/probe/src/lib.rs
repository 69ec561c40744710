//! `probe`: a scriptable runbook for Quell's host tests.
//!
//! The incident's annotations say what to do:
//!
//! - `quell.test/behaviour`: `spin-matches` or `spin-diagnose` loop forever in that export;
//!   `bomb` allocates and touches memory 1 MiB at a time until allocation fails; `print`
//!   writes 10 MiB to stdout and to stderr, then carries on; `panic` panics in `diagnose`;
//!   `sleep` sleeps an hour in `diagnose` (WASI clocks); `big-result:<bytes>` returns a
//!   diagnosis whose `data-json` is that many bytes.
//! - `quell.test/diagnose-calls` and `quell.test/remediate-calls`: a JSON array of capability
//!   calls to make in that export, for example
//!   `[{"kubectl": {"verb": "get", "resource": "pods", "namespace": "ns"}}, {"note": "hi"}]`,
//!   `{"ssh": {"host": "h", "command": "id", "params": {"k": "v"}}}`,
//!   `{"http": {"method": "GET", "url": "…", "headers": [["k", "v"]], "body": null}}`
//!   (`"body_bytes": n` sends a body of n bytes; `"lengths_only": true` hands back only the
//!   status and the body's length), `{"note_bytes": n}` adds a note of n bytes; a kubectl
//!   call with `"field_selector": "…"` goes through `run_selected`; `{"escalate": "why"}`
//!   hands over to on-call; `{"dry_run": null}` asks whether writes are simulated.
//!
//! Each call becomes a finding `call-<index>` whose summary is `ok`, `denied: <reason>`,
//! `failed: <message>`, `timeout` or `too-large` and whose detail is the call's output as
//! JSON (`null` for notes and errors). `remediate` succeeds when every call did, with the
//! summaries as a JSON array in `details`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;

use quell_runbook_sdk::kubectl::{self, OutputFormat, Verb};
use quell_runbook_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

const BEHAVIOUR: &str = "quell.test/behaviour";
const DIAGNOSE_CALLS: &str = "quell.test/diagnose-calls";
const REMEDIATE_CALLS: &str = "quell.test/remediate-calls";
const MIB: usize = 1 << 20;

/// The runbook.
pub struct Probe;

quell_runbook_sdk::export_runbook!(Probe);

impl Runbook for Probe {
    fn matches(incident: &Incident) -> bool {
        if incident.annotation(BEHAVIOUR) == Some("spin-matches") {
            spin();
        }
        true
    }

    fn diagnose(incident: &Incident) -> Result<Diagnosis, String> {
        match incident.annotation(BEHAVIOUR) {
            Some("spin-diagnose") => spin(),
            Some("bomb") => return Err(bomb()),
            Some("print") => print(),
            Some("panic") => panic!("probe panicked"),
            Some("sleep") => std::thread::sleep(std::time::Duration::from_secs(3600)),
            _ => {}
        }
        let findings = execute(incident, DIAGNOSE_CALLS)?;
        let data_json = match incident
            .annotation(BEHAVIOUR)
            .and_then(|b| b.strip_prefix("big-result:"))
        {
            Some(bytes) => {
                let bytes: usize = bytes.parse().map_err(|e| format!("big-result: {e}"))?;
                json!("x".repeat(bytes)).to_string()
            }
            None => "{}".to_owned(),
        };
        Ok(Diagnosis {
            findings,
            data_json,
            ..Diagnosis::new("probe")
        })
    }

    fn remediate(incident: &Incident, _diagnosis: &Diagnosis) -> Result<Remediation, String> {
        let findings = execute(incident, REMEDIATE_CALLS)?;
        let summaries: Vec<&str> = findings.iter().map(|f| f.summary.as_str()).collect();
        let success = findings.iter().all(|f| f.ok);
        Ok(Remediation {
            success,
            action_taken: "probe".to_owned(),
            details: json!(summaries).to_string(),
        })
    }
}

/// Loops forever in a way the optimiser cannot remove.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB chunks, keeping them all, until an allocation fails.
fn bomb() -> String {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(MIB).is_err() || hoard.try_reserve(1).is_err() {
            return format!("allocation failed after {} MiB", black_box(&hoard).len());
        }
        chunk.resize(MIB, 0xa5);
        hoard.push(black_box(chunk));
    }
}

/// Writes 10 MiB to stdout and to stderr; stops a stream at its first error.
fn print() {
    let line = format!("{}\n", "probe output ".repeat(80));
    let lines = 10 * MIB / line.len() + 1;
    let _ = (0..lines).try_for_each(|_| std::io::stdout().write_all(line.as_bytes()));
    let _ = (0..lines).try_for_each(|_| std::io::stderr().write_all(line.as_bytes()));
    let _ = std::io::stdout().flush();
}

/// One scripted call.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Call {
    Kubectl(KubectlCall),
    Ssh(SshCall),
    Http(HttpCall),
    Note(String),
    #[serde(rename = "note_bytes")]
    NoteBytes(usize),
    /// `run_context::escalate(reason)`.
    Escalate(String),
    /// `run_context::dry_run()` (the value is ignored).
    #[serde(rename = "dry_run")]
    DryRun(#[allow(dead_code)] Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubectlCall {
    verb: String,
    resource: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    tail_lines: Option<u32>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    previous: bool,
    #[serde(default)]
    to_revision: Option<u32>,
    #[serde(default)]
    replicas: Option<u32>,
    /// Sent with `run_selected` when given.
    #[serde(default)]
    field_selector: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SshCall {
    host: String,
    command: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpCall {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_bytes: Option<usize>,
    /// Hand back only the status and the body's length (for calls that read a lot).
    #[serde(default)]
    lengths_only: bool,
}

/// Parses the calls in `annotation` (none if it is absent) and makes them.
fn execute(incident: &Incident, annotation: &str) -> Result<Vec<Finding>, String> {
    let Some(text) = incident.annotation(annotation) else {
        return Ok(Vec::new());
    };
    let bad = |e: String| format!("bad {annotation} annotation: {e}");
    let calls: Vec<Call> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    calls
        .into_iter()
        .enumerate()
        .map(|(index, call)| Ok(finding(index, make(call).map_err(bad)?)))
        .collect()
}

/// Makes one call. The outer error is a malformed call; the inner result is the host's answer.
fn make(call: Call) -> Result<Result<Value, HostError>, String> {
    Ok(match call {
        Call::Kubectl(call) => {
            let fields = call.field_selector.clone();
            let request = call.request()?;
            match fields {
                Some(fields) => kubectl::run_selected(&request, &fields),
                None => kubectl::run(&request),
            }
            .map(|out| command_json(&out))
        }
        Call::Escalate(reason) => {
            run_context::escalate(&reason);
            Ok(Value::Null)
        }
        Call::DryRun(_) => Ok(json!(run_context::dry_run())),
        Call::Ssh(call) => {
            let params: Vec<(&str, &str)> = call
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            ssh::run(&call.host, &call.command, &params).map(|out| command_json(&out))
        }
        Call::Http(call) => {
            let mut request = http::Request::new(call.method.parse()?, call.url);
            request.headers = call.headers;
            request.body = call
                .body
                .map(String::into_bytes)
                .or_else(|| call.body_bytes.map(|n| vec![b'b'; n]));
            http::send(&request).map(|response| {
                if call.lengths_only {
                    json!({ "status": response.status, "body_len": response.body.len() })
                } else {
                    json!({ "status": response.status, "headers": response.headers, "body": response.text() })
                }
            })
        }
        Call::Note(text) => {
            timeline::note(&text);
            Ok(Value::Null)
        }
        Call::NoteBytes(bytes) => {
            timeline::note(&"n".repeat(bytes));
            Ok(Value::Null)
        }
    })
}

impl KubectlCall {
    fn request(self) -> Result<kubectl::Request, String> {
        let verb: Verb = self.verb.parse()?;
        let mut request = kubectl::Request::new(verb, self.resource);
        request.namespace = self.namespace;
        request.name = self.name;
        request.selector = self.selector;
        request.options = kubectl::Options {
            output: self
                .output
                .as_deref()
                .map(str::parse::<OutputFormat>)
                .transpose()?,
            tail_lines: self.tail_lines,
            container: self.container,
            previous: self.previous,
            to_revision: self.to_revision,
            replicas: self.replicas,
        };
        Ok(request)
    }
}

fn command_json(output: &CommandOutput) -> Value {
    json!({
        "exit_code": output.exit_code,
        "stdout": output.stdout,
        "stderr": output.stderr,
        "truncated": output.truncated,
    })
}

fn finding(index: usize, result: Result<Value, HostError>) -> Finding {
    let (summary, detail) = match &result {
        Ok(value) => ("ok".to_owned(), value.clone()),
        Err(HostError::Denied(reason)) => (format!("denied: {reason}"), Value::Null),
        Err(HostError::Failed(message)) => (format!("failed: {message}"), Value::Null),
        Err(HostError::Timeout) => ("timeout".to_owned(), Value::Null),
        Err(HostError::TooLarge) => ("too-large".to_owned(), Value::Null),
    };
    Finding {
        ok: result.is_ok(),
        ..Finding::ok(format!("call-{index}"), summary)
    }
    .with_detail(&detail)
}

#[cfg(test)]
mod tests {
    use quell_runbook_sdk::testing::{self, Call, MockHost};

    use super::*;

    fn incident(annotation: &str, calls: Value) -> Incident {
        testing::incident()
            .annotation(annotation, calls.to_string())
            .build()
    }

    #[test]
    fn makes_the_scripted_calls_and_reports_each() -> Result<(), String> {
        let host = MockHost::new()
            .kubectl(|_| Ok(testing::stdout("pods")))
            .ssh(|_, _, _| Err(HostError::Denied("no ssh rule".to_owned())))
            .http(|_| Ok(testing::response(204, "")));
        let _guard = host.install();
        let calls = json!([
            {"kubectl": {"verb": "rollout undo", "resource": "deployments", "namespace": "ns", "name": "api",
                         "selector": null, "output": null, "tail_lines": null, "container": null,
                         "previous": false, "to_revision": 2, "replicas": null}},
            {"ssh": {"host": "h", "command": "id", "params": {"k": "v"}}},
            {"http": {"method": "GET", "url": "http://x.internal/health", "headers": [["a", "b"]], "body": null}},
            {"note": "hello"},
        ]);

        let diagnosis = Probe::diagnose(&incident(DIAGNOSE_CALLS, calls))?;

        let summaries: Vec<&str> = diagnosis
            .findings
            .iter()
            .map(|f| f.summary.as_str())
            .collect();
        assert_eq!(summaries, ["ok", "denied: no ssh rule", "ok", "ok"]);
        let detail: Value = serde_json::from_str(
            diagnosis.findings[0]
                .detail_json
                .as_deref()
                .unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        assert_eq!(
            detail,
            json!({"exit_code": 0, "stdout": "pods", "stderr": "", "truncated": false})
        );
        assert_eq!(diagnosis.findings[1].detail_json.as_deref(), Some("null"));
        let calls = host.calls();
        assert!(
            matches!(&calls[0], Call::Kubectl(r) if r.verb == Verb::RolloutUndo && r.options.to_revision == Some(2))
        );
        assert_eq!(calls[3], Call::Note("hello".to_owned()));
        Ok(())
    }

    #[test]
    fn remediate_succeeds_only_when_every_call_did() -> Result<(), String> {
        let _guard = MockHost::new()
            .kubectl(|_| Err(HostError::Timeout))
            .install();
        let calls = json!([{"note": "a"}, {"kubectl": {"verb": "get", "resource": "pods"}}]);
        let incident = incident(REMEDIATE_CALLS, calls);

        let remediation = Probe::remediate(&incident, &Diagnosis::new("probe"))?;

        assert!(!remediation.success);
        assert_eq!(remediation.details, r#"["ok","timeout"]"#);
        Ok(())
    }

    #[test]
    fn malformed_annotations_are_errors() {
        for calls in [
            json!({"note": "not an array"}),
            json!([{"kubectl": {"verb": "explode", "resource": "pods"}}]),
        ] {
            let result = Probe::diagnose(&incident(DIAGNOSE_CALLS, calls));
            assert!(
                result.is_err_and(|e| e.starts_with("bad quell.test/diagnose-calls annotation: "))
            );
        }
    }
}

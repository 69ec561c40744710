//! Containment at the boundary: sizes get values, not traps; deadlines hold while the host
//! works; secrets never come back; the record holds whatever the runbook read; a write is
//! journaled before it runs.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use quell::capabilities::{JournalEntry, Journaled, redact::REDACTED};
use quell::config::{ByteSize, HumanDuration};
use quell::sandbox::{InvokeError, LoadedRunbook, MAX_RESULT, Runtime};
use quell_tests::http::{HttpServer, TestRoutes};
use serde_json::{Value, json};

use crate::harness::{Env, calls, incident, load};

const SECRET: &str = "Bearer s3cret-never-shown";

fn policy(timeout: &str) -> String {
    format!(
        "mode = \"auto\"\ntimeout = \"{timeout}\"\nmemory = \"64MiB\"\n\
         [[kubectl.allow]]\nverbs = [\"get\", \"rollout restart\"]\nresources = [\"pods\", \"deployments\"]\nnamespaces = [\"production\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n[ssh.commands]\nid = {{ run = \"id\", effect = \"read\" }}\n\
         [http]\nnetworks = [\"127.0.0.2/32\"]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.2:*/**\"]\n\
         headers = {{ Authorization = \"health-token\" }}\n"
    )
}

fn probe_incident(behaviour: &str, diagnose: Value) -> quell::incident::Incident {
    incident(
        &[("alertname", "Probe")],
        &[
            ("quell.test/behaviour", behaviour),
            ("quell.test/diagnose-calls", &calls(diagnose)),
        ],
    )
}

fn server() -> HttpServer {
    let routes = TestRoutes::new();
    HttpServer::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), routes.router()).unwrap()
}

fn env() -> Env {
    let mut env = Env::new();
    env.config
        .secrets
        .insert("health-token".to_owned(), SECRET.to_owned());
    env.config.http.max_response = ByteSize(1 << 20);
    env
}

/// An echoing HTTP server, and the probe loaded with [`policy`] and `timeout`.
fn setup(timeout: &str) -> (HttpServer, Env, Runtime, LoadedRunbook) {
    let env = env();
    let runtime = env.runtime();
    let probe = load(&runtime, &env.policy("probe", "probe", &policy(timeout)));
    (server(), env, runtime, probe)
}

fn summaries(findings: &[quell::bindings::quell::runbook::types::Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.summary.as_str()).collect()
}

#[tokio::test]
async fn transfers_past_a_mebibyte_give_values_not_traps() {
    let (server, _env, runtime, probe) = setup("20s");
    let huge_name = "a".repeat(100 << 10);
    let diagnose = json!([
        { "note_bytes": 2 << 20 },
        { "http": { "method": "GET", "url": server.url("/echo"), "body_bytes": 2 << 20 } },
        { "kubectl": { "verb": "get", "resource": "pods", "namespace": "production", "name": huge_name } },
    ]);
    let two_mib = format!("big-result:{}", 2 << 20);
    let run = runtime
        .match_and_diagnose(&probe, &probe_incident(&two_mib, diagnose))
        .await;
    let diagnosis = run
        .outcome
        .expect("a diagnosis, not a trap")
        .expect("matched");
    assert_eq!(
        summaries(&diagnosis.findings),
        ["ok", "too-large", "too-large"]
    );
    assert_eq!(diagnosis.data_json.len(), (2 << 20) + 2, "2 MiB came back");
    assert_eq!(run.notes.len(), 1);
    assert!(run.notes[0].len() <= 4096, "the note is cut to 4 KiB");
    assert_eq!(run.calls[0].result["error"], "too-large");
    assert!(run.calls[0].rule.contains("over the 1048576-byte limit"));

    let too_big = format!("big-result:{}", MAX_RESULT + 1);
    let run = runtime
        .match_and_diagnose(&probe, &probe_incident(&too_big, json!([])))
        .await;
    match run.outcome {
        Err(e @ InvokeError::TooLarge { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("bytes as JSON, over the 4.0 MiB limit for an export's value"),
                "{text}"
            );
        }
        other => panic!("expected a too-large value, got {other:?}"),
    }
}

#[tokio::test]
async fn a_phase_deadline_holds_while_a_host_call_blocks() {
    let (server, _env, runtime, probe) = setup("3s");
    let stalled = json!([{ "http": { "method": "GET", "url": server.url("/stall") } }]);
    // Warm up first, so the measured runs time the deadline, not the first instantiation.
    let warm = runtime
        .match_and_diagnose(&probe, &probe_incident("none", json!([])))
        .await;
    assert!(warm.outcome.is_ok(), "{:?}", warm.outcome);
    for incident in [
        probe_incident("none", stalled),
        probe_incident("sleep", json!([])),
    ] {
        let started = Instant::now();
        let run = runtime.match_and_diagnose(&probe, &incident).await;
        let took = started.elapsed();
        assert!(
            matches!(run.outcome, Err(InvokeError::Deadline(d)) if d == HumanDuration(Duration::from_secs(3))),
            "{:?}",
            run.outcome
        );
        // Before, `matches`' 2 s were added to diagnose's deadline while a host call blocked.
        assert!(
            took < Duration::from_millis(4_500),
            "the 3 s deadline was not held: {took:?}"
        );
    }
}

#[tokio::test]
async fn a_secret_a_server_echoes_never_reaches_the_runbook_or_the_record() {
    let (server, _env, runtime, probe) = setup("20s");
    let echo = json!([{ "http": { "method": "GET", "url": server.url("/echo") } }]);
    let run = runtime
        .match_and_diagnose(&probe, &probe_incident("none", echo))
        .await;
    let diagnosis = run.outcome.unwrap().unwrap();
    let handed = diagnosis.findings[0].detail_json.clone().unwrap();
    assert!(handed.contains(REDACTED), "{handed}");
    let record = serde_json::to_string(&run.calls).unwrap();
    for (what, text) in [
        ("what the runbook got", handed.as_str()),
        ("the record", &record),
        ("the export's value", &diagnosis.data_json),
    ] {
        assert!(
            !text.contains("s3cret-never-shown"),
            "the secret is in {what}: {text:.300}"
        );
    }
}

#[tokio::test]
async fn a_body_the_host_cannot_read_plainly_is_never_handed_over() {
    let (server, _env, runtime, probe) = setup("20s");
    let calls = json!([
        { "http": { "method": "GET", "url": server.url("/encoded") } },
        { "http": { "method": "GET", "url": server.url("/echo"), "headers": [["Accept-Encoding", "gzip"]] } },
        { "http": { "method": "GET", "url": server.url("/echo"), "headers": [["Range", "bytes=0-9"]] } },
    ]);
    let run = runtime
        .match_and_diagnose(&probe, &probe_incident("none", calls))
        .await;
    let diagnosis = run.outcome.unwrap().unwrap();
    let got = summaries(&diagnosis.findings);
    assert!(
        got[0].starts_with("failed: the server sent a gzip-encoded body"),
        "{got:?}"
    );
    for refused in &got[1..] {
        assert!(
            refused.contains("is set by the host, not the runbook"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn whatever_a_runbook_read_is_in_its_record() {
    let (server, _env, runtime, probe) = setup("60s");
    let big = json!({ "http": { "method": "GET", "url": server.url("/big?mib=1"), "lengths_only": true } });
    let run = runtime
        .match_and_diagnose(&probe, &probe_incident("none", json!(vec![big; 10])))
        .await;
    let diagnosis = run.outcome.unwrap().unwrap();
    let got = summaries(&diagnosis.findings);
    assert!(got.contains(&"ok") && got.contains(&"too-large"), "{got:?}");
    assert_eq!(run.calls.len(), 10);
    for (finding, record) in diagnosis.findings.iter().zip(&run.calls) {
        if finding.summary == "ok" {
            let handed: Value =
                serde_json::from_str(finding.detail_json.as_deref().unwrap()).unwrap();
            assert_eq!(handed["body_len"], 1 << 20);
            assert_eq!(
                record.result["ok"]["body"].as_str().map(str::len),
                Some(1 << 20),
                "the record holds what the runbook was handed"
            );
        } else {
            assert_eq!(record.result["error"], "too-large");
        }
    }
}

/// A kubectl stand-in that writes down every command it runs.
fn witness_kubectl(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("ran.log");
    let script = dir.join("kubectl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

#[tokio::test]
async fn a_write_is_journaled_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (script, log) = witness_kubectl(dir.path());
    let mut env = env();
    env.config.kubectl.binary = script;
    let runtime = env.runtime();
    let probe = load(&runtime, &env.policy("probe", "probe", &policy("20s")));
    let restart = json!([{ "kubectl": { "verb": "rollout restart", "resource": "deployments", "namespace": "production", "name": "api" } }]);
    let incident = incident(
        &[("alertname", "Probe")],
        &[("quell.test/remediate-calls", &calls(restart))],
    );
    let diagnosis = runtime
        .match_and_diagnose(&probe, &incident)
        .await
        .outcome
        .unwrap()
        .unwrap();

    for durable in [true, false] {
        let _ = std::fs::remove_file(&log);
        let (journal, mut entries) = tokio::sync::mpsc::unbounded_channel::<JournalEntry>();
        let watcher = tokio::spawn({
            let log = log.clone();
            async move {
                let mut seen = Vec::new();
                while let Some(entry) = entries.recv().await {
                    let ran = log.exists();
                    let started = entry.record.result.get("pending").is_some();
                    seen.push((entry.index, started, ran));
                    if let Some(committed) = entry.committed {
                        let answer = if durable {
                            Journaled::Durable
                        } else {
                            Journaled::Failed
                        };
                        committed.send(answer).unwrap();
                    }
                }
                seen
            }
        });
        let run = runtime
            .remediate_journaled(&probe, &incident, &diagnosis, false, Some(journal))
            .await;
        let seen = watcher.await.unwrap();
        let remediation = run.outcome.unwrap();
        if durable {
            assert_eq!(
                seen,
                [(0, true, false), (0, false, true)],
                "started (before kubectl ran), then finished"
            );
            assert!(remediation.success, "{}", remediation.details);
            assert_eq!(
                run.calls[0].command.as_deref(),
                Some("kubectl rollout restart deployment/api --namespace=production")
            );
        } else {
            assert!(!log.exists(), "a write that could not be journaled ran");
            assert!(!remediation.success);
            assert!(
                remediation.details.contains("could not be journaled"),
                "{}",
                remediation.details
            );
        }
    }
}

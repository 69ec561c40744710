//! Hostile guests are contained and recorded, and the host keeps serving afterwards.

use std::time::Duration;

use quell::config::{ByteSize, HumanDuration};
use quell::runner::{RunOptions, run};
use quell::sandbox::InvokeError;
use quell_tests::kube_sim::{KubeSim, Scenario};
use serde_json::json;

use crate::harness::{Env, calls, incident, load};

const POLICY: &str = "timeout = \"1s\"\nmemory = \"16MiB\"\n\
    [[kubectl.allow]]\nverbs = [\"get\"]\nresources = [\"pods\"]\nnamespaces = [\"production\"]\n\
    [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n[ssh.commands]\nid = { run = \"id\", effect = \"read\" }\n\
    [http]\nnetworks = [\"127.0.0.0/8\"]\n[[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n";

/// [`POLICY`] with a deadline no busy machine gets near, for the cases that are not about
/// the deadline.
fn patient() -> String {
    POLICY.replace("timeout = \"1s\"", "timeout = \"30s\"")
}

fn behaving(behaviour: &str) -> quell::incident::Incident {
    incident(
        &[("alertname", "Hostile")],
        &[("quell.test/behaviour", behaviour)],
    )
}

fn normal() -> quell::incident::Incident {
    incident(
        &[("alertname", "Fine")],
        &[(
            "quell.test/diagnose-calls",
            &calls(json!([{ "note": "still serving" }])),
        )],
    )
}

#[tokio::test]
async fn runaway_guests_are_stopped_and_the_host_keeps_serving() {
    let env = Env::new();
    let runtime = env.runtime();
    let probe = load(&runtime, &env.policy("probe", "probe", POLICY));
    let deadline = HumanDuration(Duration::from_secs(1));
    let patient = load(&runtime, &env.policy("patient", "probe", &patient()));

    let spin = runtime
        .match_and_diagnose(&probe, &behaving("spin-diagnose"))
        .await;
    assert!(
        matches!(spin.outcome, Err(InvokeError::Deadline(d)) if d == deadline),
        "{:?}",
        spin.outcome
    );

    let spin_matches = runtime
        .match_and_diagnose(&probe, &behaving("spin-matches"))
        .await;
    assert!(
        matches!(spin_matches.outcome, Err(InvokeError::Deadline(_))),
        "{:?}",
        spin_matches.outcome
    );

    let bomb = runtime
        .match_and_diagnose(&patient, &behaving("bomb"))
        .await;
    assert!(
        matches!(bomb.outcome, Err(InvokeError::Memory(ByteSize(m))) if m == 16 << 20),
        "{:?}",
        bomb.outcome
    );

    let panic = runtime
        .match_and_diagnose(&patient, &behaving("panic"))
        .await;
    assert!(
        matches!(&panic.outcome, Err(InvokeError::Trap(_))),
        "{:?}",
        panic.outcome
    );
    assert!(
        panic.stderr.contains("probe panicked"),
        "panic message not captured: {}",
        panic.stderr
    );

    let chatty = runtime
        .match_and_diagnose(&patient, &behaving("print"))
        .await;
    assert!(chatty.outcome.is_ok(), "{:?}", chatty.outcome);
    assert!(
        chatty.stdout.len() < 128 << 10,
        "stdout not capped: {} bytes",
        chatty.stdout.len()
    );
    assert!(
        chatty.stdout.ends_with("more bytes dropped]"),
        "{}",
        &chatty.stdout[chatty.stdout.len() - 80..]
    );

    // After all of that, the same runtime runs a well-behaved call.
    let fine = runtime.match_and_diagnose(&patient, &normal()).await;
    assert!(matches!(&fine.outcome, Ok(Some(_))), "{:?}", fine.outcome);
    assert_eq!(fine.notes, ["still serving"]);
}

fn kubeconfig_of(env: &Env) -> String {
    env.config
        .kubectl
        .kubeconfig
        .as_ref()
        .unwrap()
        .display()
        .to_string()
}

/// Waits until no process names `kubeconfig` (a killed process group takes a moment to be
/// reaped); fails after a minute with what is left.
async fn assert_all_gone(kubeconfig: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = kubectl_processes(kubeconfig);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Processes whose command line names this kubeconfig: kubectl and anything it started.
fn kubectl_processes(kubeconfig: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(kubeconfig) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

#[tokio::test]
async fn a_host_call_that_never_returns_is_cut_off_with_no_process_left() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::healthy(1));
    sim.set_stall(true);
    let mut env = Env::new().kube(&sim);
    env.config.kubectl.timeout = HumanDuration(Duration::from_millis(1500));
    let kubeconfig = kubeconfig_of(&env);
    let runtime = env.runtime();
    let probe = load(
        &runtime,
        &env.policy(
            "probe",
            "probe",
            &POLICY.replace("timeout = \"1s\"", "timeout = \"10s\""),
        ),
    );
    let get =
        json!([{ "kubectl": { "verb": "get", "resource": "pods", "namespace": "production" } }]);

    // kubectl's own deadline is 1.5 s: the host kills its process group and the guest sees
    // `timeout`, then goes on.
    let incident = incident(
        &[("alertname", "Hung")],
        &[("quell.test/diagnose-calls", &calls(get.clone()))],
    );
    let mut report = run(
        &runtime,
        std::slice::from_ref(&probe),
        &incident,
        &RunOptions::default(),
    )
    .await;
    let report = report.runbooks.remove(0);
    let findings = report.diagnosis.clone().unwrap().unwrap().findings;
    assert_eq!(findings[0].summary, "timeout");
    assert_eq!(report.calls[0].result["error"], "timeout");
    assert_all_gone(&kubeconfig).await;

    // The export's outer deadline also covers host calls: a 1 s policy timeout stops a call
    // that kubectl's own (longer) deadline would not.
    let mut slow = Env::new().kube(&sim);
    slow.config.kubectl.timeout = HumanDuration(Duration::from_secs(60));
    let kubeconfig = kubeconfig_of(&slow);
    let runtime = slow.runtime();
    let probe = load(&runtime, &slow.policy("probe", "probe", POLICY));
    let cut = runtime.match_and_diagnose(&probe, &incident).await;
    assert!(
        matches!(cut.outcome, Err(InvokeError::Deadline(_))),
        "{:?}",
        cut.outcome
    );
    assert_all_gone(&kubeconfig).await;

    sim.set_stall(false);
    let probe = load(&runtime, &slow.policy("patient", "probe", &patient()));
    let after = runtime.match_and_diagnose(&probe, &incident).await;
    assert!(
        matches!(&after.outcome, Ok(Some(d)) if d.findings[0].summary == "ok"),
        "{:?}",
        after.outcome
    );
}

#[tokio::test]
async fn a_flood_of_calls_is_cut_at_the_call_budget() {
    let env = Env::new();
    let runtime = env.runtime();
    let probe = load(&runtime, &env.policy("probe", "probe", &patient()));
    let denied =
        json!({ "kubectl": { "verb": "get", "resource": "pods", "namespace": "kube-system" } });
    let flood = serde_json::Value::Array(vec![denied; quell::capabilities::MAX_CALLS + 50]);
    let incident = incident(
        &[("alertname", "Flood")],
        &[("quell.test/diagnose-calls", &calls(flood))],
    );

    let invocation = runtime.match_and_diagnose(&probe, &incident).await;

    let findings = invocation.outcome.unwrap().unwrap().findings;
    assert_eq!(invocation.calls.len(), quell::capabilities::MAX_CALLS);
    assert!(
        findings[quell::capabilities::MAX_CALLS - 1]
            .summary
            .starts_with("denied: no [[kubectl.allow]]")
    );
    assert_eq!(
        findings[quell::capabilities::MAX_CALLS].summary,
        "denied: call budget exhausted: at most 256 capability calls per export call"
    );
}

/// On a single-threaded executor, other work keeps running while a runbook spins: the guest
/// yields at every epoch tick until its deadline stops it.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_starve_the_executor() {
    let env = Env::new();
    let runtime = env.runtime();
    let probe = load(&runtime, &env.policy("probe", "probe", POLICY));
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = std::sync::Arc::clone(&ticks);
    let heartbeat = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });

    let spin = runtime
        .match_and_diagnose(&probe, &behaving("spin-diagnose"))
        .await;
    heartbeat.abort();

    assert!(
        matches!(spin.outcome, Err(InvokeError::Deadline(_))),
        "{:?}",
        spin.outcome
    );
    // About 50 beats fit in the 1 s deadline; none would if the guest held the thread (a
    // busy machine may run fewer, never none).
    let beats = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        beats >= 3,
        "the executor ran only {beats} heartbeats while the guest spun"
    );
}

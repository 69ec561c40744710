//! The WIT contract's 0.1.1 additions (`kubectl.run-selected`, `run-context`) and the
//! components built before them: a 0.1.0 component links and runs unchanged, since the host
//! provides a semver-compatible superset.

use quell::capabilities::Decision;
use quell::runner::{RunOptions, RunbookReport, run};
use quell_tests::kube_sim::{KubeSim, Scenario};
use serde_json::json;

use crate::harness::{Env, calls, incident, load, workspace};

const POLICY: &str = "mode = \"auto\"\ntimeout = \"30s\"\n\
    [[kubectl.allow]]\nverbs = [\"get\", \"rollout restart\"]\nresources = [\"pods\", \"events\", \"deployments\"]\nnamespaces = [\"production\"]\n";

fn findings(report: &RunbookReport) -> Vec<quell::bindings::quell::runbook::types::Finding> {
    match &report.diagnosis {
        Some(Ok(d)) => d.findings.clone(),
        other => panic!("no diagnosis: {other:?}\n{report:#?}"),
    }
}

fn summaries(report: &RunbookReport) -> Vec<String> {
    findings(report).into_iter().map(|f| f.summary).collect()
}

async fn probe_run(
    env: &Env,
    policy: &std::path::Path,
    diagnose: serde_json::Value,
    remediate: serde_json::Value,
    options: &RunOptions,
) -> RunbookReport {
    let runtime = env.runtime();
    let runbook = load(&runtime, policy);
    let incident = incident(
        &[("alertname", "Probe")],
        &[
            ("quell.test/diagnose-calls", &calls(diagnose)),
            ("quell.test/remediate-calls", &calls(remediate)),
        ],
    );
    let mut report = run(&runtime, &[runbook], &incident, options).await;
    report.runbooks.remove(0)
}

#[tokio::test]
async fn a_component_built_for_0_1_0_links_and_runs_unchanged() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::healthy(2));
    let env = Env::new().kube(&sim);
    // Built by Quell's SDK for quell:runbook@0.1.0 before 0.1.1 existed (kept as a fixture).
    let old = workspace().join("tests/fixtures/components/probe-0.1.0.wasm");
    let dir = env.dir.path().join("old");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[runbook]\nname = \"old\"\ncomponent = {:?}\n{POLICY}",
            old.display().to_string()
        ),
    )
    .unwrap();
    let get = json!({"kubectl": {"verb": "get", "resource": "pods", "namespace": "production", "output": "json"}});
    let report = probe_run(
        &env,
        &policy,
        json!([get, {"note": "old and well"}]),
        json!([]),
        &RunOptions::default(),
    )
    .await;
    assert_eq!(summaries(&report), ["ok", "ok"], "{report:#?}");
    assert_eq!(report.notes, ["old and well"]);
    assert_eq!(report.calls[0].decision, Decision::Allowed);
}

#[tokio::test]
async fn one_objects_events_come_through_a_field_selector_and_only_for_get() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::crash_looping(4));
    sim.add_service("production", "web", Scenario::crash_looping(2));
    let env = Env::new().kube(&sim);
    let policy = env.policy("probe", "probe", POLICY);
    let pod = sim
        .list("pods", "production")
        .into_iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .find(|name| name.starts_with("api-"))
        .unwrap();
    let selected = |verb: &str, fields: &str| {
        json!({"kubectl": {"verb": verb, "resource": "events", "namespace": "production",
                           "output": "json", "field_selector": fields}})
    };
    let report = probe_run(
        &env,
        &policy,
        json!([
            selected(
                "get",
                &format!("involvedObject.kind=Pod,involvedObject.name={pod}")
            ),
            selected("get", "involvedObject.name=x;rm -rf /"),
            selected("describe", "involvedObject.name=x"),
        ]),
        json!([]),
        &RunOptions::default(),
    )
    .await;
    let s = summaries(&report);
    assert_eq!(s[0], "ok", "{report:#?}");
    let command = report.calls[0].command.as_deref().unwrap();
    assert!(
        command.contains(&format!(
            " --field-selector=involvedObject.kind=Pod,involvedObject.name={pod} "
        )),
        "{command}"
    );
    // Only that pod's events came back, not the namespace's.
    let findings = findings(&report);
    let out: serde_json::Value =
        serde_json::from_str(findings[0].detail_json.as_deref().unwrap()).unwrap();
    let listed: serde_json::Value = serde_json::from_str(out["stdout"].as_str().unwrap()).unwrap();
    let items = listed["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{listed:#}");
    assert!(
        items
            .iter()
            .all(|e| e["involvedObject"]["name"] == pod.as_str()),
        "{listed:#}"
    );
    assert!(
        s[1].starts_with("denied: invalid kubectl request: invalid field selector"),
        "{}",
        s[1]
    );
    assert!(
        s[2].contains("a field selector applies to get, not describe"),
        "{}",
        s[2]
    );
}

#[tokio::test]
async fn a_runbook_knows_its_dry_run_and_its_hand_over_skips_remediation() {
    let env = Env::new();
    let policy = env.policy("probe", "probe", POLICY);
    let ask = json!([{"dry_run": null}]);
    let dry = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let report = probe_run(&env, &policy, ask.clone(), json!([]), &dry).await;
    assert_eq!(findings(&report)[0].detail_json.as_deref(), Some("true"));
    let report = probe_run(&env, &policy, ask, json!([]), &RunOptions::default()).await;
    assert_eq!(findings(&report)[0].detail_json.as_deref(), Some("false"));

    // Mode auto, and still: the hand-over means no remediation.
    let report = probe_run(
        &env,
        &policy,
        json!([{"escalate": "replicas mismatch: nothing to automate"}]),
        json!([{"note": "must not run"}]),
        &RunOptions::default(),
    )
    .await;
    assert!(report.remediation.is_none(), "{report:#?}");
    assert_eq!(
        report.remediation_skipped.as_deref(),
        Some("the runbook hands over to on-call: replicas mismatch: nothing to automate")
    );
}

/// In the daemon: a runbook in mode approve that hands over from `diagnose` pages on-call at
/// once; no plan waits for anyone's approval.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_over_from_diagnose_escalates_at_once_with_no_plan_to_approve() {
    let env = Env::new();
    env.policy(
        "probe",
        "probe",
        &POLICY.replace("mode = \"auto\"", "mode = \"approve\""),
    );
    let app = crate::daemon::Running::start(env).await;
    let alert = crate::daemon::payload(
        "firing",
        "hand-over",
        "2026-11-30T03:00:00Z",
        json!({"quell.test/diagnose-calls":
            calls(json!([{"escalate": "replicas mismatch: nothing to automate"}]))}),
    );
    let (status, answer) = app.post("/webhooks/alertmanager", alert).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
    let detail = app
        .wait_for(&id, "the hand-over", |d| {
            crate::daemon::kinds(d).contains(&"escalated".to_owned())
        })
        .await;
    let jobs: Vec<&str> = detail["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["done"], "nothing awaits approval: {detail:#}");
    assert_eq!(detail["escalated"], true);
    let escalated = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "escalated")
        .unwrap();
    assert_eq!(
        escalated["message"],
        "probe hands over to on-call: replicas mismatch: nothing to automate"
    );
    app.stop().await;
}

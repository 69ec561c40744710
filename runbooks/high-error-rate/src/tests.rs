use quell_runbook_sdk::kubectl::{PodStatus, Verb};
use quell_runbook_sdk::testing::{self, MockHost};

use super::*;

/// A cluster where the health check answers `health`, the pods are `pods`, and
/// `rollout undo` exits with `undo_exit`.
fn host(health: Result<u16, HostError>, pods: Vec<PodStatus>, undo_exit: i32) -> MockHost {
    let pods = testing::pod_list_json(&pods);
    MockHost::new()
        .http(move |_| health.clone().map(|code| testing::response(code, "")))
        .kubectl(move |request| {
            Ok(match request.verb {
                Verb::Get => testing::stdout(pods.clone()),
                Verb::RolloutHistory => testing::stdout(
                    "deployment.apps/api\nREVISION  CHANGE-CAUSE\n1  <none>\n2  <none>\n3  <none>\n",
                ),
                Verb::RolloutUndo if undo_exit == 0 => testing::stdout("deployment.apps/api rolled back\n"),
                Verb::RolloutUndo => testing::exit(undo_exit, "error: no rollout history found"),
                Verb::RolloutRestart => testing::stdout("deployment.apps/api restarted\n"),
                _ => testing::exit(1, "unexpected verb"),
            })
        })
}

fn incident() -> Incident {
    testing::incident()
        .label("alertname", "HighErrorRate")
        .label("service", "api")
        .build()
}

fn healthy_pods() -> Vec<PodStatus> {
    vec![
        testing::pod("api-1", "Running", 0),
        testing::pod("api-2", "Running", 1),
    ]
}

fn crash_looping_pods() -> Vec<PodStatus> {
    vec![
        testing::pod("api-1", "Running", 0),
        testing::pod("api-x", "Running", 5),
    ]
}

fn unreachable() -> Result<u16, HostError> {
    Err(HostError::Failed("connection refused".to_owned()))
}

/// Runs diagnose then remediate, the way the pipeline does.
fn run(host: &MockHost) -> Result<(Diagnosis, Remediation), String> {
    let _guard = host.install();
    let incident = incident();
    let diagnosis = HighErrorRate::diagnose(&incident)?;
    let remediation = HighErrorRate::remediate(&incident, &diagnosis)?;
    Ok((diagnosis, remediation))
}

fn writes(host: &MockHost) -> Vec<Verb> {
    host.kubectl_verbs()
        .into_iter()
        .filter(|verb| !matches!(verb, Verb::Get | Verb::RolloutHistory))
        .collect()
}

#[test]
fn matches_error_rate_and_5xx_alerts_only() {
    let with_name = |name: &str| testing::incident().label("alertname", name).build();
    assert!(HighErrorRate::matches(&with_name("HighErrorRate")));
    assert!(HighErrorRate::matches(&with_name("Ingress5xxBurst")));
    assert!(!HighErrorRate::matches(&with_name("DiskSpaceLow")));
    assert!(!HighErrorRate::matches(&testing::incident().build()));
}

#[test]
fn crash_loop_is_rolled_back() -> Result<(), String> {
    let host = host(Ok(503), crash_looping_pods(), 0);

    let (diagnosis, remediation) = run(&host)?;

    assert_eq!(
        diagnosis.plan,
        ["roll back deployment/api in production (pod api-x restarted 5 times)"]
    );
    assert_eq!(writes(&host), [Verb::RolloutUndo]);
    let undo = host
        .kubectl_requests()
        .into_iter()
        .find(|r| r.verb == Verb::RolloutUndo);
    let undo = undo.ok_or("no rollout undo")?;
    assert_eq!(undo.namespace.as_deref(), Some("production"));
    assert_eq!(undo.name.as_deref(), Some("api"));
    assert!(remediation.success);
    assert_eq!(remediation.action_taken, "Rolled back deployment/api");
    Ok(())
}

#[test]
fn unreachable_service_is_restarted() -> Result<(), String> {
    let host = host(unreachable(), healthy_pods(), 0);

    let (diagnosis, remediation) = run(&host)?;

    assert_eq!(
        diagnosis.plan,
        ["restart deployment/api in production (health check unreachable)"]
    );
    assert_eq!(writes(&host), [Verb::RolloutRestart]);
    assert!(remediation.success);
    assert_eq!(remediation.action_taken, "Restarted deployment/api");
    assert_eq!(
        remediation.details,
        "Service was unreachable, initiated rolling restart"
    );
    Ok(())
}

#[test]
fn failed_rollback_of_unreachable_service_falls_back_to_restart() -> Result<(), String> {
    let host = host(Err(HostError::Timeout), crash_looping_pods(), 1);

    let (diagnosis, remediation) = run(&host)?;

    assert_eq!(diagnosis.plan.len(), 2);
    assert!(diagnosis.plan[1].starts_with("if the rollback fails, restart deployment/api"));
    assert_eq!(writes(&host), [Verb::RolloutUndo, Verb::RolloutRestart]);
    assert!(remediation.success);
    assert!(
        host.notes()
            .iter()
            .any(|note| note.contains("rollback of deployment/api failed"))
    );
    Ok(())
}

#[test]
fn failed_rollback_of_reachable_service_escalates() -> Result<(), String> {
    let host = host(Ok(500), crash_looping_pods(), 1);

    let (_, remediation) = run(&host)?;

    assert_eq!(writes(&host), [Verb::RolloutUndo]);
    assert!(!remediation.success);
    assert_eq!(
        remediation.action_taken,
        "No automatic remediation available"
    );
    Ok(())
}

#[test]
fn healthy_service_gets_no_write() -> Result<(), String> {
    let host = host(Ok(200), healthy_pods(), 0);

    let (diagnosis, remediation) = run(&host)?;

    assert_eq!(diagnosis.plan, ["no automatic remediation"]);
    assert!(
        diagnosis.findings.iter().all(|finding| finding.ok),
        "{:?}",
        diagnosis.findings
    );
    assert_eq!(writes(&host), []);
    assert!(!remediation.success);
    assert_eq!(
        remediation.action_taken,
        "No automatic remediation available"
    );
    assert_eq!(remediation.details, "Manual intervention required");
    Ok(())
}

#[test]
fn denied_health_check_is_not_unreachable() -> Result<(), String> {
    let denied = Err(HostError::Denied(
        "no [[http.allow]] rule matches GET".to_owned(),
    ));
    let host = host(denied, healthy_pods(), 0);

    let (diagnosis, remediation) = run(&host)?;

    let health = &diagnosis.findings[0];
    assert!(!health.ok);
    assert_eq!(
        health.summary,
        "health check denied: no [[http.allow]] rule matches GET"
    );
    assert_eq!(writes(&host), []);
    assert!(!remediation.success);
    Ok(())
}

#[test]
fn diagnose_only_reads_and_records_the_facts() -> Result<(), String> {
    let host = host(Ok(503), crash_looping_pods(), 0);
    let _guard = host.install();

    let diagnosis = HighErrorRate::diagnose(&incident())?;

    assert_eq!(host.kubectl_verbs(), [Verb::RolloutHistory, Verb::Get]);
    let facts: Facts = diagnosis.data()?;
    assert_eq!(facts.health, Health::Responded { code: 503 });
    assert_eq!(
        facts.recent_deployments,
        ["1  <none>", "2  <none>", "3  <none>"]
    );
    assert_eq!(facts.pods, crash_looping_pods());
    assert_eq!(host.http_requests()[0].url, "http://api.internal/health");
    let pods = &host.kubectl_requests()[1];
    assert_eq!(pods.selector.as_deref(), Some("app=api"));
    Ok(())
}

#[test]
fn health_url_annotation_and_namespace_label_are_used() -> Result<(), String> {
    let host = host(unreachable(), healthy_pods(), 0);
    let _guard = host.install();
    let incident = testing::incident()
        .label("alertname", "HighErrorRate")
        .label("service", "web")
        .label("namespace", "staging")
        .annotation("health_url", "https://web.staging.example/healthz")
        .build();

    let diagnosis = HighErrorRate::diagnose(&incident)?;
    HighErrorRate::remediate(&incident, &diagnosis)?;

    assert_eq!(
        host.http_requests()[0].url,
        "https://web.staging.example/healthz"
    );
    assert!(
        host.kubectl_requests()
            .iter()
            .all(|r| r.namespace.as_deref() == Some("staging"))
    );
    Ok(())
}

#[test]
fn remediate_rejects_foreign_data() {
    let diagnosis = Diagnosis::new("not ours");
    let result = HighErrorRate::remediate(&incident(), &diagnosis);
    assert!(result.is_err_and(|e| e.contains("diagnosis data does not parse")));
}

#[test]
fn three_restarts_are_not_a_crash_loop() -> Result<(), String> {
    let host = host(Ok(200), vec![testing::pod("api-1", "Running", 3)], 0);

    let (diagnosis, remediation) = run(&host)?;

    assert_eq!(diagnosis.plan, ["no automatic remediation"]);
    assert_eq!(writes(&host), []);
    assert!(!remediation.success);
    Ok(())
}

/// `examples/incidents/crash-loop.json` is a real incident recorded by the daemon test suite
/// (`quell export`): this runbook rolled back a crash-looping deployment. Answered from that
/// recording, the runbook makes the same decisions, call for call.
#[test]
fn a_recorded_incident_is_decided_the_same() {
    let fixture = include_str!("../../../examples/incidents/crash-loop.json");
    let recorded: serde_json::Value = serde_json::from_str(fixture).unwrap();
    let runs = &recorded["incident"]["runs"];
    let host = MockHost::from_export(fixture, Some("high-error-rate")).unwrap();
    let incident = testing::incident_of(fixture).unwrap();
    let (diagnosis, remediation) = {
        let _guard = host.install();
        let diagnosis = HighErrorRate::diagnose(&incident).unwrap();
        let remediation = HighErrorRate::remediate(&incident, &diagnosis).unwrap();
        (diagnosis, remediation)
    };
    assert_eq!(
        host.kubectl_verbs(),
        [Verb::RolloutHistory, Verb::Get, Verb::RolloutUndo]
    );
    assert_eq!(
        serde_json::json!(diagnosis.plan),
        runs[0]["result"]["plan"],
        "{diagnosis:?}"
    );
    assert_eq!(remediation.success, runs[1]["result"]["success"]);
    assert_eq!(remediation.action_taken, runs[1]["result"]["action_taken"]);
    // Not the recorded world? A call it lacks fails, and says so.
    let _guard = MockHost::from_export(fixture, Some("another-runbook"))
        .unwrap()
        .install();
    let error = quell_runbook_sdk::kubectl::rollout_restart("production", "api").unwrap_err();
    assert_eq!(error, HostError::Failed("not in the recording".to_owned()));
}

use quell_runbook_sdk::kubectl::Verb;
use quell_runbook_sdk::testing::{self, MockHost};

use super::*;

fn event(name: &str, reason: &str, message: &str, at: &str) -> Value {
    json!({
        "involvedObject": { "kind": "Pod", "name": name },
        "reason": reason,
        "message": message,
        "lastTimestamp": at,
    })
}

/// A namespace with three api pods (one crash-looping, one pending) and a db pod's events.
fn host() -> MockHost {
    let pods = testing::pod_list_json(&[
        testing::pod("api-1", "Running", 0),
        testing::pod("api-2", "Running", 7),
        testing::pod("api-3", "Pending", 0),
    ]);
    let mut items: Vec<Value> = (0..12)
        .map(|i| {
            event(
                "api-2",
                "BackOff",
                &format!("back-off {i}"),
                &format!("2024-05-01T10:{i:02}:00Z"),
            )
        })
        .collect();
    items.push(event(
        "db-0",
        "Killing",
        "stopping container",
        "2024-05-01T11:00:00Z",
    ));
    let events = json!({ "items": items }).to_string();
    MockHost::new().kubectl(move |request| {
        Ok(match (request.verb, request.resource.as_str()) {
            (Verb::Get, "pods") => testing::stdout(pods.clone()),
            (Verb::Get, "events") => testing::stdout(events.clone()),
            (Verb::RolloutHistory, _) => testing::stdout(
                "deployment.apps/api\nREVISION  CHANGE-CAUSE\n1  <none>\n2  <none>\n",
            ),
            (Verb::Logs, _) => testing::stdout("line 1\nline 2\npanic: boom\n"),
            _ => testing::exit(1, "unexpected request"),
        })
    })
}

fn incident() -> Incident {
    testing::incident()
        .label("alertname", "KubePodCrashLooping")
        .label("namespace", "shop")
        .label("app", "api")
        .build()
}

fn finding<'a>(diagnosis: &'a Diagnosis, name: &str) -> Result<&'a Finding, String> {
    diagnosis
        .findings
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("no {name} finding"))
}

#[test]
fn matches_alerts_about_a_workload_in_a_namespace() {
    let alert = |labels: &[(&str, &str)]| {
        labels
            .iter()
            .fold(testing::incident(), |builder, (k, v)| builder.label(*k, *v))
            .build()
    };
    assert!(K8sContext::matches(&alert(&[
        ("namespace", "shop"),
        ("service", "api")
    ])));
    assert!(K8sContext::matches(&alert(&[
        ("namespace", "shop"),
        ("app", "api")
    ])));
    assert!(!K8sContext::matches(&alert(&[("namespace", "shop")])));
    assert!(!K8sContext::matches(&alert(&[("service", "api")])));
    assert!(!K8sContext::matches(&alert(&[
        ("namespace", ""),
        ("service", "api")
    ])));
}

#[test]
fn gathers_logs_of_troubled_pods_only() -> Result<(), String> {
    let host = host();
    let _guard = host.install();

    let diagnosis = K8sContext::diagnose(&incident())?;

    let logs: Vec<(String, bool)> = host
        .kubectl_requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Logs)
        .map(|r| (r.name.unwrap_or_default(), r.options.previous))
        .collect();
    assert_eq!(
        logs,
        [("api-2".to_owned(), true), ("api-3".to_owned(), false)]
    );
    assert!(
        host.kubectl_requests()
            .iter()
            .all(|r| r.verb != Verb::Logs || r.options.tail_lines == Some(20))
    );
    assert!(finding(&diagnosis, "logs/api-2")?.ok);
    assert!(finding(&diagnosis, "logs/api-1").is_err());
    Ok(())
}

#[test]
fn only_reads() -> Result<(), String> {
    let host = host();
    let _guard = host.install();

    let diagnosis = K8sContext::diagnose(&incident())?;
    let remediation = K8sContext::remediate(&incident(), &diagnosis)?;

    assert!(
        host.kubectl_verbs()
            .iter()
            .all(|v| matches!(v, Verb::Get | Verb::RolloutHistory | Verb::Logs))
    );
    assert!(
        host.kubectl_requests()
            .iter()
            .all(|r| r.namespace.as_deref() == Some("shop"))
    );
    assert!(diagnosis.plan.is_empty());
    assert!(!remediation.success);
    assert_eq!(remediation.action_taken, "diagnose-only runbook");
    Ok(())
}

#[test]
fn keeps_the_newest_ten_events_about_the_service() -> Result<(), String> {
    let host = host();
    let _guard = host.install();

    let diagnosis = K8sContext::diagnose(&incident())?;

    let events = finding(&diagnosis, "events")?;
    let lines: Vec<String> =
        serde_json::from_str(events.detail_json.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
    let expected: Vec<String> = (2..12)
        .rev()
        .map(|i| format!("BackOff: back-off {i}"))
        .collect();
    assert_eq!(lines, expected);
    Ok(())
}

#[test]
fn reports_pods_and_history() -> Result<(), String> {
    let host = host();
    let _guard = host.install();

    let diagnosis = K8sContext::diagnose(&incident())?;

    let pods = finding(&diagnosis, "pods")?;
    assert!(!pods.ok);
    assert!(
        pods.summary.contains("api-2 Running not ready, 7 restarts"),
        "{}",
        pods.summary
    );
    assert_eq!(
        finding(&diagnosis, "rollout-history")?.summary,
        "deployment/api: 2 revisions"
    );
    assert_eq!(
        diagnosis.summary,
        "api in shop: 3 pods, 2 with restarts or not running"
    );
    let selector = host.kubectl_requests()[0].selector.clone();
    assert_eq!(selector.as_deref(), Some("app=api"));
    Ok(())
}

#[test]
fn refused_reads_become_failed_findings() -> Result<(), String> {
    let host =
        MockHost::new().kubectl(|r| Err(HostError::Denied(format!("no rule allows {}", r.verb))));
    let _guard = host.install();

    let diagnosis = K8sContext::diagnose(&incident())?;

    assert_eq!(diagnosis.findings.len(), 3);
    assert!(
        diagnosis
            .findings
            .iter()
            .all(|f| !f.ok && f.summary.contains("denied: no rule allows"))
    );
    Ok(())
}

use super::*;
use crate::testing::{self, MockHost};

fn pods_fixture() -> String {
    serde_json::json!({
        "items": [
            {
                "metadata": { "name": "api-1" },
                "status": {
                    "phase": "Running",
                    "conditions": [{ "type": "Ready", "status": "True" }],
                    "containerStatuses": [{ "restartCount": 2 }, { "restartCount": 3 }],
                },
            },
            { "metadata": { "name": "api-2" }, "status": { "phase": "Pending" } },
        ],
    })
    .to_string()
}

#[test]
fn get_pods_sums_restarts_and_reads_readiness() -> Result<(), HostError> {
    let host = MockHost::new().kubectl(|_| Ok(testing::stdout(pods_fixture())));
    let _guard = host.install();

    let pods = get_pods("production", Some("app=api"))?;

    assert_eq!(
        pods,
        [
            PodStatus {
                name: "api-1".into(),
                phase: "Running".into(),
                restarts: 5,
                ready: true,
                waiting_reason: None,
            },
            PodStatus {
                name: "api-2".into(),
                phase: "Pending".into(),
                restarts: 0,
                ready: false,
                waiting_reason: None,
            },
        ]
    );
    let expected = Request::new(Verb::Get, "pods")
        .namespace("production")
        .selector("app=api")
        .output(OutputFormat::Json);
    assert_eq!(host.kubectl_requests(), [expected]);
    Ok(())
}

#[test]
fn pod_list_fixture_round_trips() -> Result<(), HostError> {
    let pods = vec![
        testing::pod("a", "Running", 0),
        testing::pod("b", "Running", 7),
        testing::pod_waiting("c", "CrashLoopBackOff", 9),
        testing::pod_waiting("d", "ImagePullBackOff", 0),
    ];
    let json = testing::pod_list_json(&pods);
    let _guard = MockHost::new()
        .kubectl(move |_| Ok(testing::stdout(json.clone())))
        .install();
    assert_eq!(get_pods("ns", None)?, pods);
    Ok(())
}

#[test]
fn non_zero_exit_is_failed_with_stderr() {
    let _guard = MockHost::new()
        .kubectl(|_| {
            Ok(testing::exit(
                1,
                "Error from server (NotFound): deployments \"api\" not found\n",
            ))
        })
        .install();

    assert_eq!(
        rollout_history("production", "api"),
        Err(HostError::Failed(
            "Error from server (NotFound): deployments \"api\" not found".into()
        ))
    );
}

#[test]
fn non_zero_exit_without_stderr_names_the_verb() {
    let _guard = MockHost::new()
        .kubectl(|_| Ok(testing::exit(3, "")))
        .install();
    assert_eq!(
        rollout_restart("production", "api"),
        Err(HostError::Failed(
            "kubectl rollout restart exited with status 3".into()
        ))
    );
}

#[test]
fn invalid_json_is_failed() {
    let _guard = MockHost::new()
        .kubectl(|_| Ok(testing::stdout("not json")))
        .install();
    assert!(
        matches!(get_json("pods", "ns", None), Err(HostError::Failed(m)) if m.contains("invalid JSON"))
    );
}

#[test]
fn rollout_history_keeps_non_empty_lines() -> Result<(), HostError> {
    let host = MockHost::new().kubectl(|_| {
        Ok(testing::stdout(
            "deployment.apps/api \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n",
        ))
    });
    let _guard = host.install();

    let lines = rollout_history("production", "api")?;

    assert_eq!(
        lines,
        [
            "deployment.apps/api",
            "REVISION  CHANGE-CAUSE",
            "1         <none>",
            "2         <none>"
        ]
    );
    let request = &host.kubectl_requests()[0];
    assert_eq!(request.verb, Verb::RolloutHistory);
    assert_eq!(request.resource, "deployments");
    assert_eq!(request.name.as_deref(), Some("api"));
    Ok(())
}

#[test]
fn write_helpers_build_the_expected_requests() -> Result<(), HostError> {
    let host = MockHost::new().kubectl(|_| Ok(testing::stdout("")));
    let _guard = host.install();

    rollout_undo("production", "api", Some(4))?;
    logs("production", "api-1", Some(20), true)?;

    let requests = host.kubectl_requests();
    assert_eq!(requests[0].verb, Verb::RolloutUndo);
    assert_eq!(requests[0].options.to_revision, Some(4));
    assert_eq!(requests[1].verb, Verb::Logs);
    assert_eq!(requests[1].resource, "pods");
    assert_eq!(requests[1].name.as_deref(), Some("api-1"));
    assert_eq!(requests[1].options.tail_lines, Some(20));
    assert!(requests[1].options.previous);
    Ok(())
}

#[test]
fn without_a_double_calls_are_denied() {
    assert_eq!(
        run(&Request::new(Verb::Get, "pods")),
        Err(HostError::Denied(
            "no test double installed for kubectl".into()
        ))
    );
}

#[test]
fn a_double_without_a_handler_denies_but_records() {
    let host = MockHost::new();
    let _guard = host.install();
    assert!(run(&Request::new(Verb::Get, "pods")).is_err_and(|e| e.is_denied()));
    assert_eq!(host.kubectl_verbs(), [Verb::Get]);
}

#[test]
fn verbs_parse_as_policies_spell_them() {
    for verb in Verb::ALL {
        assert_eq!(verb.as_str().parse::<Verb>(), Ok(verb));
    }
    assert_eq!("rollout undo".parse::<Verb>(), Ok(Verb::RolloutUndo));
    assert!("rollout-undo".parse::<Verb>().is_err());
}

#[test]
fn guards_nest_and_restore() {
    let outer = MockHost::new().kubectl(|_| Ok(testing::stdout("outer")));
    let inner = MockHost::new().kubectl(|_| Ok(testing::stdout("inner")));
    let request = Request::new(Verb::Get, "pods");
    let _outer = outer.install();
    {
        let _inner = inner.install();
        assert_eq!(run(&request).map(|o| o.stdout), Ok("inner".to_owned()));
    }
    assert_eq!(run(&request).map(|o| o.stdout), Ok("outer".to_owned()));
    assert_eq!(outer.calls().len(), 1);
    assert_eq!(inner.calls().len(), 1);
}

#[test]
fn one_object_and_a_deployment_view_with_its_selector() -> Result<(), HostError> {
    let deployment = serde_json::json!({
        "metadata": { "name": "api" },
        "spec": { "replicas": 3, "selector": {
            "matchLabels": { "app": "api" },
            "matchExpressions": [
                { "key": "tier", "operator": "In", "values": ["web", "edge"] },
                { "key": "canary", "operator": "DoesNotExist" },
            ],
        } },
        "status": { "readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1 },
    })
    .to_string();
    let host = MockHost::new().kubectl(move |_| Ok(testing::stdout(deployment.clone())));
    let _guard = host.install();
    let status = get_deployment("production", "api")?;
    assert_eq!(
        status,
        DeploymentStatus {
            name: "api".into(),
            desired: 3,
            ready: 1,
            updated: 2,
            available: 1,
            selector: "app=api,tier in (web,edge),!canary".into(),
        }
    );
    let expected = Request::new(Verb::Get, "deployments")
        .namespace("production")
        .name("api")
        .output(OutputFormat::Json);
    assert_eq!(host.kubectl_requests(), [expected]);
    drop(_guard);

    let fixture = testing::deployment_json("web", 2, 2, &[("app", "web")]);
    let _guard = MockHost::new()
        .kubectl(move |_| Ok(testing::stdout(fixture.clone())))
        .install();
    let web = get_deployment("production", "web")?;
    assert_eq!(
        (web.desired, web.ready, web.selector.as_str()),
        (2, 2, "app=web")
    );
    Ok(())
}

#[test]
fn one_objects_events_are_asked_for_with_a_field_selector() -> Result<(), HostError> {
    let events = serde_json::json!({"items": [{"reason": "BackOff"}]}).to_string();
    let host = MockHost::new().kubectl(move |_| Ok(testing::stdout(events.clone())));
    let _guard = host.install();
    let found = events_for("production", "Pod", "api-1")?;
    assert_eq!(found["items"][0]["reason"], "BackOff");
    let calls = host.calls();
    let testing::Call::KubectlSelected(request, fields) = &calls[0] else {
        panic!("{calls:?}");
    };
    assert_eq!(fields, "involvedObject.kind=Pod,involvedObject.name=api-1");
    assert_eq!(
        (request.verb, request.resource.as_str()),
        (Verb::Get, "events")
    );
    Ok(())
}

#[test]
fn the_run_context_reads_dry_run_and_records_escalations() {
    assert!(!crate::run_context::dry_run(), "no double: not a dry run");
    let host = MockHost::new().dry_run(true);
    let _guard = host.install();
    assert!(crate::run_context::dry_run());
    crate::run_context::escalate("nothing to automate");
    assert_eq!(host.escalations(), ["nothing to automate"]);
}

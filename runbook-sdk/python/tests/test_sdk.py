"""The Python SDK's own tests: ``.quell/venv-python/bin/pytest runbook-sdk/python``."""

import json

import pytest

from quell_runbook import Denied, Failed, http, kubectl, ssh, testing, timeline
from quell_runbook.kubectl import PodStatus


def test_without_a_host_every_call_is_denied_and_notes_are_dropped():
    with pytest.raises(Denied, match="no host"):
        kubectl.get_pods("production")
    with pytest.raises(Denied):
        ssh.run("db-1", "df")
    with pytest.raises(Denied):
        http.get("http://api.internal/health")
    timeline.note("nobody hears this")


def test_a_mock_host_answers_records_and_uninstalls():
    host = testing.MockHost(
        kubectl=lambda req: testing.stdout("rolled back\n")
        if req.verb == "rollout undo" else testing.exit(1, "Error from server (NotFound)"),
        ssh=lambda host, command, params: testing.stdout(f"{command} {params['path']}\n"),
    )
    with host:
        assert kubectl.rollout_undo("production", "api").stdout == "rolled back\n"
        with pytest.raises(Failed, match=r"Error from server \(NotFound\)"):
            kubectl.rollout_restart("production", "api")
        assert ssh.run("db-1", "du", path="/var").stdout == "du /var\n"
        with pytest.raises(Denied, match="no http handler"):
            http.get("http://x")
        timeline.note("rolled back deployment/api")
    assert host.kubectl_verbs() == ["rollout undo", "rollout restart"]
    assert host.ssh_commands() == [("db-1", "du")]
    assert host.notes() == ["rolled back deployment/api"]
    assert [r.url for r in host.http_requests()] == ["http://x"]
    with pytest.raises(Denied):  # uninstalled
        kubectl.rollout_undo("production", "api")


def test_pods_report_restarts_readiness_and_why_a_container_waits():
    listing = testing.pod_list_json([
        testing.pod("api-1", restarts=7, waiting_reason="CrashLoopBackOff"),
        testing.pod("api-2"),
    ])
    host = testing.MockHost(kubectl=lambda req: testing.stdout(listing))
    with host:
        pods = kubectl.get_pods("production", "app=api")
    assert pods == [
        PodStatus("api-1", "Running", 7, False, "CrashLoopBackOff"),
        PodStatus("api-2", "Running", 0, True, None),
    ]
    request = host.kubectl_requests()[0]
    assert (request.verb, request.resource, request.selector, request.output) == (
        "get", "pods", "app=api", "json")


def test_invalid_json_from_kubectl_is_a_failure_not_a_crash():
    with testing.MockHost(kubectl=lambda req: testing.stdout("not json")):
        with pytest.raises(Failed, match="invalid JSON"):
            kubectl.get_json("pods", "production")


def test_responses_read_headers_any_case_and_text_leniently():
    response = http.Response(200, [("Content-Type", "text/plain")], b"ok \xff")
    assert response.ok and response.header("content-type") == "text/plain"
    assert response.text() == "ok \ufffd"
    assert json.loads(testing.pod_list_json([]))["items"] == []


def test_a_recorded_incident_answers_by_request_and_refuses_what_it_lacks():
    export = {"incident": {"runs": [{"calls": [
        {"runbook": "rb", "capability": "kubectl",
         "request": {"verb": "RolloutUndo", "resource": "deployments", "namespace": "production",
                     "name": "api", "selector": None,
                     "options": {"output": None, "tail_lines": None, "container": None,
                                 "previous": False, "to_revision": None, "replicas": None}},
         "result": {"ok": {"exit_code": 0, "stdout": "rolled back\n", "stderr": "",
                           "truncated": False}}},
        {"runbook": "rb", "capability": "ssh",
         "request": {"host": "db-1", "command": "df", "params": []},
         "result": {"error": {"denied": "no [ssh] section"}}},
        {"runbook": "other", "capability": "http",
         "request": {"method": "GET", "url": "http://x/health", "headers": [], "body_bytes": 0},
         "result": {"ok": {"status": 503, "headers": [["retry-after", "5"]], "body": "down"}}},
    ]}]}}
    with testing.from_export(export):
        assert kubectl.rollout_undo("production", "api").stdout == "rolled back\n"
        with pytest.raises(Denied, match=r"no \[ssh\] section"):
            ssh.run("db-1", "df")
        response = http.get("http://x/health")
        assert (response.status, response.header("Retry-After"), response.text()) == (
            503, "5", "down")
        with pytest.raises(Failed, match="not in the recording"):
            kubectl.rollout_restart("production", "api")
    with testing.from_export(export, runbook="rb"):
        with pytest.raises(Failed, match="not in the recording"):
            http.get("http://x/health")


def test_errors_read_as_the_rust_sdk_prints_them():
    assert str(Denied("no rule")) == "denied: no rule"
    assert Denied("no rule").reason == "no rule"
    assert str(Failed("exit 1")) == "failed: exit 1"
    assert str(testing._recorded_error("timeout")) == "timed out"
    assert str(testing._recorded_error("too-large")) == "result too large"


def test_one_object_and_a_deployment_view_with_its_selector():
    deployment = json.dumps({
        "metadata": {"name": "api"},
        "spec": {"replicas": 3, "selector": {
            "matchLabels": {"app": "api"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "edge"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
    })
    host = testing.MockHost(kubectl=lambda req: testing.stdout(deployment))
    with host:
        status = kubectl.get_deployment("production", "api")
    assert status == kubectl.DeploymentStatus("api", 3, 1, 2, 1, "app=api,tier in (web,edge),!canary")
    request = host.kubectl_requests()[0]
    assert (request.verb, request.resource, request.name, request.output) == (
        "get", "deployments", "api", "json")
    with testing.MockHost(kubectl=lambda req: testing.stdout(
            testing.deployment_json("web", 2, 2, {"app": "web"}))):
        assert kubectl.get_deployment("production", "web").selector == "app=web"


def test_a_non_zero_exit_is_kubectls_last_word():
    stderr = "E1130 retrying\nError from server (NotFound): deployments.apps \"x\" not found\n"
    with testing.MockHost(kubectl=lambda req: testing.exit(1, stderr)):
        with pytest.raises(Failed) as raised:
            kubectl.get("deployments", "production", "x")
    assert raised.value.reason == 'Error from server (NotFound): deployments.apps "x" not found'
    with testing.MockHost(kubectl=lambda req: testing.exit(2, "")):
        with pytest.raises(Failed, match="kubectl rollout undo exited with status 2"):
            kubectl.rollout_undo("production", "api")


def test_a_typo_in_a_request_fails_where_it_is_made():
    with pytest.raises(ValueError, match="kubectl verb 'rollout-undo' is not one of: get"):
        kubectl.Request("rollout-undo", "deployments")
    with pytest.raises(ValueError, match="kubectl output 'JSON' is not one of: json"):
        kubectl.Request("get", "pods", output="JSON")
    with pytest.raises(ValueError, match="HTTP method 'FETCH' is not one of: GET"):
        http.Request("FETCH", "http://x")


def test_one_objects_events_dry_run_and_escalation():
    from quell_runbook import dry_run, escalate
    host = testing.MockHost(kubectl=lambda req: testing.stdout('{"items": [{"reason": "BackOff"}]}'),
                            dry_run=True)
    assert not dry_run()
    with host:
        events = kubectl.events_for("production", "Pod", "api-1")
        assert dry_run()
        escalate("nothing to automate")
    assert events["items"][0]["reason"] == "BackOff"
    request = host.kubectl_requests()[0]
    assert (request.resource, request.field_selector) == (
        "events", "involvedObject.kind=Pod,involvedObject.name=api-1")
    assert host.escalations() == ["nothing to automate"]

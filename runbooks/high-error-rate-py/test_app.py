"""Unit tests of high-error-rate-py, natively with the SDK's MockHost (no wasm built):
``.quell/venv-python/bin/pytest runbooks/high-error-rate-py``."""

import json
from pathlib import Path

from quell_runbook import Denied, Failed, testing

from app import HighErrorRate


def incident(health_url="http://api.internal/health"):
    i = testing.incident(alertname="HighErrorRate", service="api", namespace="production")
    i.annotations["health_url"] = health_url
    return i


def cluster(pods, health=None, undo=None):
    """A host whose kubectl lists ``pods`` and answers rollouts, and whose health endpoint
    answers ``health`` (a status) or raises it (a HostError)."""
    def kubectl(req):
        if req.verb == "get":
            return testing.stdout(testing.pod_list_json(pods))
        if req.verb == "rollout history":
            return testing.stdout("REVISION  CHANGE-CAUSE\n1 <none>\n2 <none>\n")
        if req.verb == "rollout undo" and undo is not None:
            return undo
        return testing.stdout(f"deployment.apps/api {req.verb.split()[-1]}ed\n")

    def http(req):
        if isinstance(health, Exception):
            raise health
        return testing.response(health or 200, "ok")

    return testing.MockHost(kubectl=kubectl, http=http)


def test_matches_error_rate_alerts_only():
    assert HighErrorRate().matches(testing.incident(alertname="HighErrorRate"))
    assert HighErrorRate().matches(testing.incident(alertname="Api5xx"))
    assert not HighErrorRate().matches(testing.incident(alertname="DiskFull"))


def test_a_crash_looping_pod_is_rolled_back():
    host = cluster([testing.pod("api-1", restarts=5), testing.pod("api-2")])
    with host:
        diagnosis = HighErrorRate().diagnose(incident())
        assert diagnosis.plan == [
            "roll back deployment/api in production (pod api-1 restarted 5 times)"
        ]
        done = HighErrorRate().remediate(incident(), diagnosis)
    assert (done.success, done.action) == (True, "Rolled back deployment/api")
    assert host.kubectl_verbs() == ["rollout history", "get", "rollout undo"]


def test_an_unreachable_service_is_restarted():
    host = cluster([testing.pod("api-1")], health=Failed("connection refused"))
    with host:
        diagnosis = HighErrorRate().diagnose(incident())
        done = HighErrorRate().remediate(incident(), diagnosis)
    assert (done.success, done.action) == (True, "Restarted deployment/api")
    assert host.kubectl_verbs()[-1] == "rollout restart"


def test_a_failed_rollback_falls_back_to_a_restart_when_unreachable():
    host = cluster([testing.pod("api-1", restarts=9)], health=Failed("timed out"),
                   undo=testing.exit(1, "no rollout history found"))
    with host:
        diagnosis = HighErrorRate().diagnose(incident())
        assert diagnosis.plan[1].startswith("if the rollback fails, restart")
        done = HighErrorRate().remediate(incident(), diagnosis)
    assert done.action == "Restarted deployment/api"
    assert any("rollback of deployment/api failed" in n for n in host.notes())


def test_a_denied_health_check_never_restarts():
    host = cluster([testing.pod("api-1")], health=Denied("no [[http.allow]] covers it"))
    with host:
        diagnosis = HighErrorRate().diagnose(incident())
        done = HighErrorRate().remediate(incident(), diagnosis)
    assert diagnosis.findings[0].summary.startswith("health check denied")
    assert not done.success
    assert "rollout restart" not in host.kubectl_verbs()


def test_a_healthy_service_gets_no_write():
    host = cluster([testing.pod("api-1"), testing.pod("api-2")])
    with host:
        diagnosis = HighErrorRate().diagnose(incident())
        done = HighErrorRate().remediate(incident(), diagnosis)
    assert diagnosis.plan == ["no automatic remediation"]
    assert (done.success, done.action) == (False, "No automatic remediation available")
    assert [v for v in host.kubectl_verbs() if v.startswith("rollout") and v != "rollout history"] == []


def test_a_recorded_incident_is_decided_the_same():
    """examples/incidents/crash-loop.json is a real incident, recorded by the daemon test
    suite (`quell export`): the Rust high-error-rate rolled back a crash-looping deployment.
    This runbook, answered from that recording, makes the same decisions."""
    fixture = str(Path(__file__).parents[2] / "examples" / "incidents" / "crash-loop.json")
    recorded = json.load(open(fixture, encoding="utf-8"))["incident"]["runs"]
    host = testing.from_export(fixture, runbook="high-error-rate")
    incident = testing.incident_of(fixture)
    with host:
        diagnosis = HighErrorRate().diagnose(incident)
        done = HighErrorRate().remediate(incident, diagnosis)
    assert diagnosis.plan == recorded[0]["result"]["plan"]
    assert [(f.name, f.ok) for f in diagnosis.findings] == [
        (f["name"], f["ok"]) for f in recorded[0]["result"]["findings"]
    ]
    assert (done.success, done.action) == (
        recorded[1]["result"]["success"], recorded[1]["result"]["action_taken"])
    assert host.kubectl_verbs() == ["rollout history", "get", "rollout undo"]

"""Unit tests of {{name}}, natively with the SDK's MockHost: ``pytest {{dir}}``."""

from quell_runbook import testing

from app import {{class}}


def incident():
    return testing.incident(alertname="{{alertname}}", service="api")


def test_matches_its_alert_only():
    assert {{class}}().matches(incident())
    assert not {{class}}().matches(testing.incident(alertname="Other"))


def test_a_pod_not_ready_is_a_failed_finding():
    listing = testing.pod_list_json([testing.pod("api-1"), testing.pod("api-2", phase="Pending")])
    host = testing.MockHost(kubectl=lambda req: testing.stdout(listing))
    with host:
        diagnosis = {{class}}().diagnose(incident())
    assert host.kubectl_verbs() == ["get"]
    assert not diagnosis.findings[0].ok
    assert diagnosis.findings[0].summary == "1 of 2 pods ready"

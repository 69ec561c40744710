"""``high-error-rate-py``: the sketch's ``HighErrorRateRunbook`` in Python, making the same
decisions as its Rust twin ``runbooks/high-error-rate``.

Applies to alerts whose ``alertname`` contains ``ErrorRate`` or ``5xx``. ``diagnose`` checks
the service's health endpoint, reads the deployment's recent rollout history and the pods'
restart counts. ``remediate``:

1. a pod restarted more than 3 times (crash-looping) → ``rollout undo``; done if it worked;
2. otherwise, or if the rollback failed, and the health check was unreachable →
   ``rollout restart``;
3. otherwise → no automatic remediation; a human takes over.

A health check the policy refused is reported, never counted as "unreachable": a missing
grant must not restart a deployment.

Labels: ``service`` (default ``unknown``), ``namespace`` (default ``production``).
Annotation ``health_url`` overrides ``http://{service}.internal/health``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Optional

from quell_runbook import (
    Denied,
    Diagnosis,
    Finding,
    HostError,
    Incident,
    Remediation,
    Runbook,
    export,
    http,
    kubectl,
    timeline,
)
from quell_runbook.kubectl import PodStatus

#: A pod restarted more than this many times is crash-looping.
CRASH_LOOP_RESTARTS = 3
#: The namespace when the alert has no ``namespace`` label, as in the sketch.
DEFAULT_NAMESPACE = "production"
#: Rollout history lines kept, as in the sketch.
HISTORY_LINES = 3


def crash_looping(pods: list[PodStatus]) -> Optional[PodStatus]:
    """The pod with the most restarts, if it restarted more than the limit."""
    looping = [p for p in pods if p.restarts > CRASH_LOOP_RESTARTS]
    # Ties go to the last pod listed, as Rust's max_by_key does in the twin.
    return max(reversed(looping), key=lambda p: p.restarts) if looping else None


def plan(facts: dict[str, Any]) -> list[str]:
    """What ``remediate`` will try, one line per step."""
    target = f"deployment/{facts['service']} in {facts['namespace']}"
    steps = []
    pod = crash_looping([PodStatus(**p) for p in facts["pods"]])
    if pod:
        steps.append(f"roll back {target} (pod {pod.name} restarted {pod.restarts} times)")
    if facts["health"]["status"] == "unreachable":
        when = "if the rollback fails, " if steps else ""
        steps.append(f"{when}restart {target} (health check unreachable)")
    return steps or ["no automatic remediation"]


class HighErrorRate(Runbook):
    def matches(self, incident: Incident) -> bool:
        alertname = incident.label("alertname", "")
        return "ErrorRate" in alertname or "5xx" in alertname

    def diagnose(self, incident: Incident) -> Diagnosis:
        service = incident.label("service", "unknown")
        namespace = incident.label("namespace", DEFAULT_NAMESPACE)
        url = incident.annotation("health_url", f"http://{service}.internal/health")
        timeline.note(f"checking {service} in {namespace}: health, rollouts, pods")

        health, health_finding = check_health(url)
        recent, history_finding = recent_deployments(namespace, service)
        pods, pods_finding = pod_statuses(namespace, service)
        facts = {
            "service": service,
            "namespace": namespace,
            "health": health,
            "recent_deployments": recent,
            "pods": [asdict(p) for p in pods],
        }
        summary = f"{service} in {namespace}: {health_finding.summary}; {pods_finding.summary}"
        return Diagnosis(
            summary,
            findings=[health_finding, history_finding, pods_finding],
            plan=plan(facts),
            data=facts,
        )

    def remediate(self, incident: Incident, diagnosis: Diagnosis) -> Remediation:
        facts = diagnosis.data
        service, namespace = facts["service"], facts["namespace"]
        target = f"deployment/{service}"
        pod = crash_looping([PodStatus(**p) for p in facts["pods"]])
        if pod:
            timeline.note(f"rolling back {target} in {namespace}: "
                          f"pod {pod.name} restarted {pod.restarts} times")
            try:
                output = kubectl.rollout_undo(namespace, service)
                return Remediation.succeeded(f"Rolled back {target}", output.stdout)
            except HostError as error:
                timeline.note(f"rollback of {target} failed: {error}")
        if facts["health"]["status"] == "unreachable":
            timeline.note(f"restarting {target} in {namespace}: health check unreachable")
            try:
                kubectl.rollout_restart(namespace, service)
                return Remediation.succeeded(
                    f"Restarted {target}", "Service was unreachable, initiated rolling restart"
                )
            except HostError as error:
                timeline.note(f"restart of {target} failed: {error}")
        return Remediation.failed("No automatic remediation available",
                                  "Manual intervention required")


def check_health(url: str) -> tuple[dict[str, Any], Finding]:
    try:
        response = http.get(url)
    except Denied as denied:
        return ({"status": "denied", "reason": denied.reason},
                Finding.failed("health", f"health check denied: {denied.reason}"))
    except HostError as error:
        return ({"status": "unreachable", "error": str(error)},
                Finding.failed("health", f"GET {url} unreachable: {error}"))
    summary = f"GET {url} returned {response.status}"
    finding = (Finding.passed if response.status == 200 else Finding.failed)("health", summary)
    return {"status": "responded", "code": response.status}, finding


def recent_deployments(namespace: str, service: str) -> tuple[list[str], Finding]:
    try:
        lines = kubectl.rollout_history(namespace, service)
    except HostError as error:
        return [], Finding.failed("recent-deployments", f"rollout history unavailable: {error}")
    recent = lines[-HISTORY_LINES:]
    return recent, Finding.passed(
        "recent-deployments", f"last rollout history: {' | '.join(recent)}", detail=recent
    )


def pod_statuses(namespace: str, service: str) -> tuple[list[PodStatus], Finding]:
    selector = f"app={service}"
    try:
        pods = kubectl.get_pods(namespace, selector)
    except HostError as error:
        return [], Finding.failed("pods", f"pods unavailable: {error}")
    pod = crash_looping(pods)
    if not pods:
        finding = Finding.failed("pods", f"no pods match {selector}")
    elif pod:
        finding = Finding.failed(
            "pods", f"{len(pods)} pods, crash-looping: {pod.name} restarted {pod.restarts} times"
        )
    else:
        finding = Finding.passed("pods", f"{len(pods)} pods, none crash-looping")
    finding.detail = [asdict(p) for p in pods]
    return pods, finding


WitWorld = export(HighErrorRate)

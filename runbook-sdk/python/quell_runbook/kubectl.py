"""Structured kubectl requests. The host renders the argv and pins the kubeconfig and
context; a runbook names a verb, a resource and its target, never a command line.

Verbs are written as the policy writes them: ``get``, ``describe``, ``logs``, ``top``,
``rollout history``, ``rollout status``, ``rollout undo``, ``rollout restart``, ``scale``,
``delete``, ``cordon``, ``uncordon``. Writes are allowed only in ``remediate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from . import _host
from ._types import CommandOutput, Failed


#: The verbs, as policies write them.
VERBS = ("get", "describe", "logs", "top", "rollout history", "rollout status", "rollout undo",
         "rollout restart", "scale", "delete", "cordon", "uncordon")
#: The output formats.
OUTPUTS = ("json", "yaml", "wide", "name")


@dataclass
class Request:
    """One kubectl request."""

    verb: str
    #: A resource kind such as ``pods``, ``deployments``, ``events``.
    resource: str
    #: Required for namespaced resources.
    namespace: Optional[str] = None
    name: Optional[str] = None
    #: A label selector such as ``app=api,tier=web``.
    selector: Optional[str] = None
    #: ``json``, ``yaml``, ``wide`` or ``name``.
    output: Optional[str] = None
    #: ``logs``: only the last N lines.
    tail_lines: Optional[int] = None
    #: ``logs``: the container to read.
    container: Optional[str] = None
    #: ``logs``: the previous (crashed) container instance.
    previous: bool = False
    #: ``rollout undo``: the revision to go back to.
    to_revision: Optional[int] = None
    #: ``scale``: the new replica count.
    replicas: Optional[int] = None
    #: ``get``: a field selector (``involvedObject.name=api-1``), since WIT 0.1.1.
    field_selector: Optional[str] = None

    def __post_init__(self) -> None:
        # Checked here, so a typo fails the unit test, not only the built component.
        if self.verb not in VERBS:
            raise ValueError(f"kubectl verb {self.verb!r} is not one of: {', '.join(VERBS)}")
        if self.output is not None and self.output not in OUTPUTS:
            raise ValueError(f"kubectl output {self.output!r} is not one of: {', '.join(OUTPUTS)}")


def run(request: Request) -> CommandOutput:
    """Sends one request. A non-zero exit is still returned: check ``exit_code``."""
    return _host.current().kubectl(request)


def checked(request: Request) -> CommandOutput:
    """Sends one request; a non-zero exit raises :class:`Failed` with kubectl's verdict (the
    last line it printed on stderr), as the Rust SDK does."""
    output = run(request)
    if output.exit_code != 0:
        lines = output.stderr.strip().splitlines()
        verdict = lines[-1].strip() if lines else ""
        raise Failed(verdict or f"kubectl {request.verb} exited with status {output.exit_code}")
    return output


def get_json(resource: str, namespace: str, selector: Optional[str] = None,
             name: Optional[str] = None) -> Any:
    """``kubectl get <resource>[/<name>] -n <namespace> [-l <selector>] -o json``, parsed."""
    output = checked(Request("get", resource, namespace, name, selector, output="json"))
    try:
        return json.loads(output.stdout)
    except ValueError as e:
        raise Failed(f"kubectl printed invalid JSON: {e}") from None


def get(resource: str, namespace: str, name: str) -> Any:
    """``kubectl get <resource>/<name> -n <namespace> -o json``: one object, parsed."""
    return get_json(resource, namespace, name=name)


@dataclass
class DeploymentStatus:
    """What :func:`get_deployment` reports of a deployment."""

    name: str
    #: ``spec.replicas``: how many pods it wants.
    desired: int
    #: ``status.readyReplicas``.
    ready: int
    #: ``status.updatedReplicas``: pods of the current revision.
    updated: int
    #: ``status.availableReplicas``.
    available: int
    #: ``spec.selector`` as a label selector for :func:`get_pods` (``matchLabels`` and
    #: ``matchExpressions``).
    selector: str

    @classmethod
    def from_json(cls, deployment: Any) -> "DeploymentStatus":
        """From ``kubectl get deployment -o json``."""
        status = deployment.get("status") or {}
        spec = deployment.get("spec") or {}
        return cls(
            name=(deployment.get("metadata") or {}).get("name", ""),
            desired=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            selector=_selector(spec.get("selector") or {}),
        )


def _selector(selector: Any) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, values = expression.get("key", ""), ",".join(expression.get("values") or [])
        operator = expression.get("operator")
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                      "DoesNotExist": f"!{key}"}.get(operator, key))
    return ",".join(parts)


def get_deployment(namespace: str, name: str) -> DeploymentStatus:
    """One deployment's desired and ready replicas, and its pod selector."""
    return DeploymentStatus.from_json(get("deployments", namespace, name))


@dataclass
class PodStatus:
    """What :func:`get_pods` reports of one pod."""

    name: str
    #: ``Pending``, ``Running``, ``Succeeded``, ``Failed`` or ``Unknown``.
    phase: str
    #: ``restartCount`` summed over the pod's containers.
    restarts: int
    #: Whether the pod's ``Ready`` condition is ``True``.
    ready: bool
    #: Why a container is waiting (``CrashLoopBackOff``, ``ImagePullBackOff``), if one is.
    waiting_reason: Optional[str] = None

    @classmethod
    def from_json(cls, pod: Any) -> "PodStatus":
        """From one item of ``kubectl get pods -o json``."""
        status = pod.get("status") or {}
        containers = status.get("containerStatuses") or []
        waiting = [
            (c.get("state") or {}).get("waiting", {}).get("reason")
            for c in containers
            if (c.get("state") or {}).get("waiting")
        ]
        return cls(
            name=(pod.get("metadata") or {}).get("name", ""),
            phase=status.get("phase", "Unknown"),
            restarts=sum(int(c.get("restartCount", 0)) for c in containers),
            ready=any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            ),
            waiting_reason=next((r for r in waiting if r), None),
        )


def get_pods(namespace: str, selector: Optional[str] = None) -> list[PodStatus]:
    """The pods in ``namespace`` matching ``selector`` (e.g. ``app=api``)."""
    listing = get_json("pods", namespace, selector)
    return [PodStatus.from_json(item) for item in listing.get("items") or []]


def events_for(namespace: str, kind: str, name: str) -> Any:
    """The events about one object (``kind`` as Kubernetes spells it: ``Pod``), found with a
    field selector instead of listing the namespace's events."""
    fields = f"involvedObject.kind={kind},involvedObject.name={name}"
    output = checked(Request("get", "events", namespace, output="json", field_selector=fields))
    try:
        return json.loads(output.stdout)
    except ValueError as e:
        raise Failed(f"kubectl printed invalid JSON: {e}") from None


def rollout_history(namespace: str, deployment: str) -> list[str]:
    """``kubectl rollout history deployments/<deployment>``: the non-empty lines."""
    output = checked(Request("rollout history", "deployments", namespace, deployment))
    return [line.rstrip() for line in output.stdout.splitlines() if line.strip()]


def rollout_undo(namespace: str, deployment: str,
                 to_revision: Optional[int] = None) -> CommandOutput:
    """``kubectl rollout undo deployments/<deployment>``. A write."""
    return checked(Request("rollout undo", "deployments", namespace, deployment,
                           to_revision=to_revision))


def rollout_restart(namespace: str, deployment: str) -> CommandOutput:
    """``kubectl rollout restart deployments/<deployment>``. A write."""
    return checked(Request("rollout restart", "deployments", namespace, deployment))


def logs(namespace: str, pod: str, tail_lines: Optional[int] = None,
         previous: bool = False, container: Optional[str] = None) -> str:
    """``kubectl logs <pod> [--tail=N] [--previous]``: what the pod printed."""
    request = Request("logs", "pods", namespace, pod, tail_lines=tail_lines,
                      previous=previous, container=container)
    return checked(request).stdout

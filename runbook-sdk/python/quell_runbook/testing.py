"""A scripted host for native unit tests of runbooks (``pytest``), mirroring the Rust SDK's
``testing`` module: no wasm is built; each handler answers one capability, and every call
is recorded so a test can assert what a runbook asked for as well as what it decided.
A capability with no handler is denied, like a policy that grants nothing::

    from quell_runbook import kubectl, testing

    def test_rolls_back():
        host = testing.MockHost(
            kubectl=lambda req: testing.stdout("rolled back\\n")
            if req.verb == "rollout undo" else testing.exit(1, "not found"),
        )
        with host:
            kubectl.rollout_undo("production", "api")
        assert host.kubectl_verbs() == ["rollout undo"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from . import _host
from ._types import CommandOutput, Denied, Failed, Incident, Timeout, TooLarge
from .http import Request as HttpRequest
from .http import Response
from .kubectl import PodStatus
from .kubectl import Request as KubectlRequest


@dataclass
class Ssh:
    """An ``ssh.run`` call."""

    host: str
    command: str
    params: list[tuple[str, str]]


@dataclass
class Note:
    """A ``timeline.note`` call."""

    text: str


@dataclass
class Escalate:
    """An ``escalate`` call."""

    reason: str


Call = Union[KubectlRequest, Ssh, HttpRequest, Note, Escalate]


@dataclass
class MockHost:
    """Answers capability calls while installed (``with host:`` or :meth:`install`)."""

    kubectl: Optional[Callable[[KubectlRequest], CommandOutput]] = None
    ssh: Optional[Callable[[str, str, dict[str, str]], CommandOutput]] = None
    http: Optional[Callable[[HttpRequest], Response]] = None
    #: What ``dry_run()`` answers.
    dry_run: bool = False
    #: Every call, in order.
    calls: list[Call] = field(default_factory=list)
    _previous: list[Any] = field(default_factory=list, repr=False)

    def install(self) -> "MockHost":
        """Makes this the host until :meth:`uninstall`."""
        self._previous.append(_host.install(_Answering(self)))
        return self

    def uninstall(self) -> None:
        """Puts back the host that was installed before."""
        _host.install(self._previous.pop())

    def __enter__(self) -> "MockHost":
        return self.install()

    def __exit__(self, *_: object) -> None:
        self.uninstall()

    def kubectl_requests(self) -> list[KubectlRequest]:
        """The kubectl requests, in order."""
        return [c for c in self.calls if isinstance(c, KubectlRequest)]

    def kubectl_verbs(self) -> list[str]:
        """The kubectl verbs, in order."""
        return [c.verb for c in self.kubectl_requests()]

    def http_requests(self) -> list[HttpRequest]:
        """The HTTP requests, in order."""
        return [c for c in self.calls if isinstance(c, HttpRequest)]

    def ssh_commands(self) -> list[tuple[str, str]]:
        """``(host, command)`` of each ssh call, in order."""
        return [(c.host, c.command) for c in self.calls if isinstance(c, Ssh)]

    def notes(self) -> list[str]:
        """The timeline notes, in order."""
        return [c.text for c in self.calls if isinstance(c, Note)]

    def escalations(self) -> list[str]:
        """The reasons given to ``escalate``, in order."""
        return [c.reason for c in self.calls if isinstance(c, Escalate)]


class _Answering:
    """The installed form of a MockHost: records, then asks its handler."""

    def __init__(self, mock: MockHost) -> None:
        self.mock = mock

    def kubectl(self, request: KubectlRequest) -> CommandOutput:
        self.mock.calls.append(request)
        if self.mock.kubectl is None:
            raise Denied("the MockHost has no kubectl handler")
        return self.mock.kubectl(request)

    def ssh(self, host: str, command: str, params: list[tuple[str, str]]) -> CommandOutput:
        self.mock.calls.append(Ssh(host, command, params))
        if self.mock.ssh is None:
            raise Denied("the MockHost has no ssh handler")
        return self.mock.ssh(host, command, dict(params))

    def http(self, request: HttpRequest) -> Response:
        self.mock.calls.append(request)
        if self.mock.http is None:
            raise Denied("the MockHost has no http handler")
        return self.mock.http(request)

    def note(self, text: str) -> None:
        self.mock.calls.append(Note(text))

    def dry_run(self) -> bool:
        return self.mock.dry_run

    def escalate(self, reason: str) -> None:
        self.mock.calls.append(Escalate(reason))


def from_export(export: Union[str, dict], runbook: Optional[str] = None) -> MockHost:
    """A MockHost answering from a recorded incident (a ``quell export`` file's path, or its
    parsed JSON): each call gets what the same request got when the incident happened, in the
    recorded order (the last answer repeating), and a call the recording lacks is refused with
    ``Failed("not in the recording")``. ``runbook`` keeps only that runbook's calls."""
    if isinstance(export, str):
        with open(export, encoding="utf-8") as f:
            export = json.load(f)
    answers: dict[tuple[str, str], list[Any]] = {}
    for run in export["incident"]["runs"]:
        for call in run.get("calls") or []:
            if runbook is not None and call.get("runbook") != runbook:
                continue
            key = (call["capability"], _canonical(call["request"]))
            answers.setdefault(key, []).append(call["result"])

    def answer(capability: str, request: Any) -> Any:
        queue = answers.get((capability, _canonical(request)))
        if not queue:
            raise Failed("not in the recording")
        result = queue.pop(0) if len(queue) > 1 else queue[0]
        if "ok" in result:
            return result["ok"]
        raise _recorded_error(result.get("error"))

    def kubectl(req: KubectlRequest) -> CommandOutput:
        return CommandOutput(**answer("kubectl", _kubectl_request(req)))

    def ssh(host: str, command: str, params: dict[str, str]) -> CommandOutput:
        request = {"host": host, "command": command, "params": [list(p) for p in params.items()]}
        return CommandOutput(**answer("ssh", request))

    def http(req: HttpRequest) -> Response:
        request = {"method": req.method.upper(), "url": req.url,
                   "headers": [k for k, _ in req.headers], "body_bytes": len(req.body or b"")}
        ok = answer("http", request)
        return Response(ok["status"], [tuple(h) for h in ok["headers"]], ok["body"].encode())

    return MockHost(kubectl=kubectl, ssh=ssh, http=http)


def incident_of(export: Union[str, dict]) -> Incident:
    """The incident of a recorded export (its labels, annotations and alert)."""
    if isinstance(export, str):
        with open(export, encoding="utf-8") as f:
            export = json.load(f)
    recorded = export["incident"]
    return Incident(
        id=recorded["id"],
        title=recorded.get("title", ""),
        severity=recorded.get("severity", "critical"),
        source=recorded.get("source", "alertmanager"),
        status="resolved" if recorded.get("status") == "resolved" else "firing",
        starts_at=recorded.get("starts_at"),
        labels=dict(recorded.get("labels") or {}),
        annotations=dict(recorded.get("annotations") or {}),
        fingerprint=recorded.get("fingerprint", ""),
        alert_json=json.dumps(recorded.get("alert")),
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_VERBS = {"get": "Get", "describe": "Describe", "logs": "Logs", "top": "Top",
          "rollout history": "RolloutHistory", "rollout status": "RolloutStatus",
          "rollout undo": "RolloutUndo", "rollout restart": "RolloutRestart", "scale": "Scale",
          "delete": "Delete", "cordon": "Cordon", "uncordon": "Uncordon"}


def _kubectl_request(req: KubectlRequest) -> dict[str, Any]:
    """The request as the host records it."""
    recorded = {
        "verb": _VERBS.get(req.verb, req.verb),
        "resource": req.resource,
        "namespace": req.namespace,
        "name": req.name,
        "selector": req.selector,
        "options": {
            "output": req.output.capitalize() if req.output else None,
            "tail_lines": req.tail_lines,
            "container": req.container,
            "previous": req.previous,
            "to_revision": req.to_revision,
            "replicas": req.replicas,
        },
    }
    if req.field_selector is not None:
        recorded["field_selector"] = req.field_selector
    return recorded


def _recorded_error(error: Any) -> Exception:
    if error == "timeout":
        return Timeout("timeout")
    if error == "too-large":
        return TooLarge("too-large")
    if isinstance(error, dict) and "denied" in error:
        return Denied(error["denied"])
    if isinstance(error, dict) and "failed" in error:
        return Failed(error["failed"])
    return Failed(f"the recording holds no answer: {error!r}")


def stdout(text: str) -> CommandOutput:
    """A command that printed ``text`` and exited 0."""
    return CommandOutput(0, text, "", False)


def exit(code: int, stderr: str) -> CommandOutput:  # noqa: A001: the Rust SDK's name
    """A command that exited ``code`` saying ``stderr``."""
    return CommandOutput(code, "", stderr, False)


def response(status: int, body: Union[str, bytes] = b"") -> Response:
    """An HTTP response."""
    return Response(status, [], body.encode() if isinstance(body, str) else body)


def pod(name: str, phase: str = "Running", restarts: int = 0,
        waiting_reason: Optional[str] = None) -> PodStatus:
    """A pod as :func:`quell_runbook.kubectl.get_pods` reports it: ready when ``Running`` with
    no restarts and nothing waiting (as the Rust SDK's ``testing::pod``)."""
    return PodStatus(name, phase, restarts,
                     phase == "Running" and restarts == 0 and not waiting_reason,
                     waiting_reason)


def pod_waiting(name: str, reason: str, restarts: int = 0) -> PodStatus:
    """A pod whose container waits for ``reason`` (``CrashLoopBackOff``, ``ImagePullBackOff``):
    not ready; ``Pending`` for a pull that fails, else ``Running``."""
    phase = "Pending" if "Pull" in reason or reason == "ContainerCreating" else "Running"
    return PodStatus(name, phase, restarts, False, reason)


def deployment_json(name: str, desired: int, ready: int, labels: dict[str, str]) -> str:
    """``kubectl get deployment -o json``: ``desired`` replicas, ``ready`` of them ready."""
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": desired, "selector": {"matchLabels": labels}},
        "status": {"replicas": desired, "readyReplicas": ready, "updatedReplicas": ready,
                   "availableReplicas": ready},
    })


def pod_list_json(pods: list[PodStatus]) -> str:
    """``kubectl get pods -o json`` listing ``pods``."""
    items = []
    for p in pods:
        state = {"waiting": {"reason": p.waiting_reason}} if p.waiting_reason else {"running": {}}
        items.append({
            "metadata": {"name": p.name},
            "status": {
                "phase": p.phase,
                "containerStatuses": [{"restartCount": p.restarts, "state": state}],
                "conditions": [{"type": "Ready", "status": "True" if p.ready else "False"}],
            },
        })
    return json.dumps({"kind": "List", "items": items})


def incident(**labels: str) -> Incident:
    """An incident with ``labels`` (annotations: set ``.annotations``): a firing ``high``
    alert from ``cli``, as the Rust SDK's ``testing::incident()``."""
    return Incident(id="INC-TEST0001", title="test incident", severity="high", source="cli",
                    fingerprint="0000000000000000", labels=dict(labels))

"""The component's host: the WIT imports componentize-py generates (``wit_world``), with
Quell's values converted both ways. Importable only inside a build."""

from __future__ import annotations

from componentize_py_types import Err
from wit_world.imports import http as wit_http
from wit_world.imports import kubectl as wit_kubectl
from wit_world.imports import run_context as wit_run_context
from wit_world.imports import ssh as wit_ssh
from wit_world.imports import timeline as wit_timeline
from wit_world.imports import types as wit_types

from . import http, kubectl
from ._types import CommandOutput, Denied, Failed, HostError, Timeout, TooLarge

_VERBS = {
    "get": wit_kubectl.Verb.GET,
    "describe": wit_kubectl.Verb.DESCRIBE,
    "logs": wit_kubectl.Verb.LOGS,
    "top": wit_kubectl.Verb.TOP,
    "rollout history": wit_kubectl.Verb.ROLLOUT_HISTORY,
    "rollout status": wit_kubectl.Verb.ROLLOUT_STATUS,
    "rollout undo": wit_kubectl.Verb.ROLLOUT_UNDO,
    "rollout restart": wit_kubectl.Verb.ROLLOUT_RESTART,
    "scale": wit_kubectl.Verb.SCALE,
    "delete": wit_kubectl.Verb.DELETE,
    "cordon": wit_kubectl.Verb.CORDON,
    "uncordon": wit_kubectl.Verb.UNCORDON,
}
_FORMATS = {
    "json": wit_kubectl.OutputFormat.JSON,
    "yaml": wit_kubectl.OutputFormat.YAML,
    "wide": wit_kubectl.OutputFormat.WIDE,
    "name": wit_kubectl.OutputFormat.NAME,
}
_METHODS = {
    "GET": wit_http.Method.GET,
    "HEAD": wit_http.Method.HEAD,
    "POST": wit_http.Method.POST,
    "PUT": wit_http.Method.PUT,
    "PATCH": wit_http.Method.PATCH,
    "DELETE": wit_http.Method.DELETE,
}


def _error(value: object) -> HostError:
    if isinstance(value, wit_types.HostError_Denied):
        return Denied(value.value)
    if isinstance(value, wit_types.HostError_Failed):
        return Failed(value.value)
    if isinstance(value, wit_types.HostError_Timeout):
        return Timeout("timeout")
    if isinstance(value, wit_types.HostError_TooLarge):
        return TooLarge("too-large")
    return Failed(f"unknown host error {value!r}")


def _output(output: wit_types.CommandOutput) -> CommandOutput:
    return CommandOutput(output.exit_code, output.stdout, output.stderr, output.truncated)


class WasmHost:
    """Calls the Quell host through the component's imports."""

    def kubectl(self, request: kubectl.Request) -> CommandOutput:
        try:
            verb = _VERBS[request.verb]
        except KeyError:
            raise Failed(f"unknown kubectl verb {request.verb!r}; one of {', '.join(_VERBS)}") from None
        options = wit_kubectl.Options(
            output=_FORMATS[request.output] if request.output else None,
            tail_lines=request.tail_lines,
            container=request.container,
            previous=request.previous,
            to_revision=request.to_revision,
            replicas=request.replicas,
        )
        wit = wit_kubectl.Request(
            verb, request.resource, request.namespace, request.name, request.selector, options
        )
        try:
            if request.field_selector is not None:
                return _output(wit_kubectl.run_selected(wit, request.field_selector))
            return _output(wit_kubectl.run(wit))
        except Err as e:
            raise _error(e.value) from None

    def ssh(self, host: str, command: str, params: list[tuple[str, str]]) -> CommandOutput:
        try:
            return _output(wit_ssh.run(host, command, params))
        except Err as e:
            raise _error(e.value) from None

    def http(self, request: http.Request) -> http.Response:
        try:
            method = _METHODS[request.method.upper()]
        except KeyError:
            raise Failed(f"unknown HTTP method {request.method!r}") from None
        wit = wit_http.Request(method, request.url, list(request.headers), request.body)
        try:
            response = wit_http.send(wit)
        except Err as e:
            raise _error(e.value) from None
        return http.Response(response.status, list(response.headers), bytes(response.body))

    def note(self, text: str) -> None:
        wit_timeline.note(text)

    def dry_run(self) -> bool:
        return bool(wit_run_context.dry_run())

    def escalate(self, reason: str) -> None:
        wit_run_context.escalate(reason)

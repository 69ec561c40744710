"""Where capability calls go: the Quell host inside the component, or the test double
installed by :mod:`quell_runbook.testing` in a native test."""

from __future__ import annotations

from typing import Any, Optional, Protocol

from ._types import CommandOutput, Denied, Failed, HostError, Timeout, TooLarge


class Host(Protocol):
    """What a capability call needs from whoever answers it."""

    def kubectl(self, request: Any) -> CommandOutput: ...

    def ssh(self, host: str, command: str, params: list[tuple[str, str]]) -> CommandOutput: ...

    def http(self, request: Any) -> Any: ...

    def note(self, text: str) -> None: ...

    def dry_run(self) -> bool: ...

    def escalate(self, reason: str) -> None: ...


_installed: Optional[Host] = None


def install(host: Optional[Host]) -> Optional[Host]:
    """Makes ``host`` answer calls (``None``: the real host again); returns the previous one."""
    global _installed
    previous, _installed = _installed, host
    return previous


def current() -> Host:
    """The installed test double, else the component's host, else a host that refuses."""
    if _installed is not None:
        return _installed
    try:
        from ._wasm import WasmHost
    except ImportError:  # a native run with no double: wit_world exists only in the build
        return _Refusing()
    return WasmHost()


class _Refusing:
    """No host at all (a native run without a MockHost): like a policy that grants nothing."""

    _why = "no host: install a quell_runbook.testing.MockHost to script this call"

    def kubectl(self, request: Any) -> CommandOutput:
        raise Denied(self._why)

    def ssh(self, host: str, command: str, params: list[tuple[str, str]]) -> CommandOutput:
        raise Denied(self._why)

    def http(self, request: Any) -> Any:
        raise Denied(self._why)

    def note(self, text: str) -> None:
        pass

    def dry_run(self) -> bool:
        return False

    def escalate(self, reason: str) -> None:
        pass


__all__ = ["Host", "HostError", "Failed", "Timeout", "TooLarge", "current", "install"]

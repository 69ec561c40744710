"""Lines a runbook adds to the incident's timeline (cut to 4 KiB each by the host)."""

from __future__ import annotations

from . import _host


def note(text: str) -> None:
    """Adds ``text`` to the timeline."""
    _host.current().note(text)


def dry_run() -> bool:
    """Whether writes are recorded instead of executed (the policy's ``dry_run``, or
    ``quell run --dry-run``). Reads run either way. Since WIT 0.1.1."""
    return _host.current().dry_run()


def escalate(reason: str) -> None:
    """From ``diagnose``: on-call is needed and there is nothing to automate. The diagnosis
    goes to on-call at once with ``reason``; no plan waits for approval and ``remediate`` is
    not called, whatever the policy's mode. Elsewhere it does nothing. Since WIT 0.1.1."""
    _host.current().escalate(reason)

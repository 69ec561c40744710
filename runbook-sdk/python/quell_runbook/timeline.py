"""Lines a runbook adds to the incident's timeline (cut to 4 KiB each by the host)."""

from __future__ import annotations

from . import _host


def note(text: str) -> None:
    """Adds ``text`` to the timeline."""
    _host.current().note(text)

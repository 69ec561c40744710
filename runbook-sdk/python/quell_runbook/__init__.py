"""Quell runbooks in Python.

A runbook is a class with ``matches``, ``diagnose`` and ``remediate``, the shape of the
sketch Quell grew from. It reaches the world only through :mod:`quell_runbook.kubectl`,
:mod:`quell_runbook.ssh`, :mod:`quell_runbook.http` and :mod:`quell_runbook.timeline`; the host
checks every call against the runbook's ``policy.toml`` and records it. A refused call raises
:class:`Denied`, with the TOML that would allow it; it never crashes the run.

``componentize-py`` builds the class into a WebAssembly component for the same WIT world as
the Rust SDK (``runbook-sdk/wit``)::

    from quell_runbook import Diagnosis, Finding, Remediation, Runbook, export, kubectl

    class Example(Runbook):
        def matches(self, incident):
            return incident.label("alertname") == "Example"

        def diagnose(self, incident):
            pods = kubectl.get_pods("production", "app=example")
            return Diagnosis("example checked", findings=[Finding.passed("pods", f"{len(pods)} pods")])

    WitWorld = export(Example)

Under ``pytest`` nothing is built: :class:`quell_runbook.testing.MockHost` answers the calls.
"""

from ._types import (
    CommandOutput,
    Denied,
    Diagnosis,
    Failed,
    Finding,
    HostError,
    Incident,
    Remediation,
    Timeout,
    TooLarge,
)
from ._world import Runbook, export
from . import http, kubectl, ssh, timeline
from .timeline import dry_run, escalate

__all__ = [
    "CommandOutput",
    "Denied",
    "Diagnosis",
    "Failed",
    "Finding",
    "HostError",
    "Incident",
    "Remediation",
    "Runbook",
    "Timeout",
    "TooLarge",
    "dry_run",
    "escalate",
    "export",
    "http",
    "kubectl",
    "ssh",
    "timeline",
]

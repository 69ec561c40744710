"""The runbook class and its bridge to the WIT world's exports."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Callable

from ._types import Diagnosis, Finding, Incident, Remediation


class Runbook:
    """Subclass it and override the three methods. One instance serves one call."""

    def matches(self, incident: Incident) -> bool:
        """Cheap, side-effect free: does this runbook apply? Capability calls are refused
        here."""
        return False

    def diagnose(self, incident: Incident) -> Diagnosis:
        """Gathers facts. Only reads are allowed, whatever the policy grants. Raise to fail
        the diagnosis with the exception's message."""
        raise NotImplementedError(f"{type(self).__name__} does not diagnose")

    def remediate(self, incident: Incident, diagnosis: Diagnosis) -> Remediation:
        """Acts on the diagnosis, when the policy's mode allows it."""
        return Remediation.failed("No automatic remediation available",
                                  "Manual intervention required")


def export(runbook: type[Runbook]) -> type:
    """The class componentize-py instantiates for the world's exports: assign it to
    ``WitWorld`` in the runbook's module. It converts values at the sandbox boundary and
    turns an exception in ``diagnose`` or ``remediate`` into the export's error (with the
    traceback on stderr, which the host records), so a bug fails the run, never the host.

    Outside a build (under pytest) it returns ``runbook`` itself."""
    # Everything the component uses at run time must be imported while it is built.
    try:
        from componentize_py_types import Err
        from wit_world.imports import types as wit

        from . import _wasm  # noqa: F401  (the imports' bridge)
    except ImportError:
        # A native run (pytest): there is no world to export; tests call the class.
        return runbook

    def guarded(what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as e:  # noqa: BLE001: the run fails with what went wrong
            traceback.print_exc(file=sys.stderr)
            raise Err(f"{runbook.__name__}.{what} raised {type(e).__name__}: {e}") from None

    class WitWorld:
        def matches(self, incident: Any) -> bool:
            return bool(runbook().matches(_incident(incident)))

        def diagnose(self, incident: Any) -> Any:
            diagnosis = guarded("diagnose", lambda: runbook().diagnose(_incident(incident)))
            return wit.Diagnosis(
                summary=diagnosis.summary,
                findings=[_finding(wit, f) for f in diagnosis.findings],
                plan=[str(step) for step in diagnosis.plan],
                data_json=json.dumps(diagnosis.data),
            )

        def remediate(self, incident: Any, diagnosis: Any) -> Any:
            mine = Diagnosis(
                summary=diagnosis.summary,
                findings=[
                    Finding(f.name, f.ok, f.summary,
                            json.loads(f.detail_json) if f.detail_json else None)
                    for f in diagnosis.findings
                ],
                plan=list(diagnosis.plan),
                data=json.loads(diagnosis.data_json) if diagnosis.data_json else None,
            )
            done = guarded("remediate", lambda: runbook().remediate(_incident(incident), mine))
            return wit.Remediation(success=bool(done.success), action_taken=done.action,
                                   details=done.details)

    WitWorld.__name__ = WitWorld.__qualname__ = f"{runbook.__name__}World"
    return WitWorld


_SEVERITIES = ["critical", "high", "medium", "low", "info"]


def _incident(wit: Any) -> Incident:
    severity = getattr(wit.severity, "name", str(wit.severity)).lower()
    return Incident(
        id=wit.id,
        title=wit.title,
        severity=severity if severity in _SEVERITIES else "critical",
        source=wit.source,
        status=wit.status,
        labels=dict(wit.labels),
        annotations=dict(wit.annotations),
        fingerprint=wit.fingerprint,
        starts_at=wit.starts_at,
        alert_json=wit.alert_json,
    )


def _finding(wit: Any, finding: Finding) -> Any:
    detail = None if finding.detail is None else json.dumps(finding.detail)
    return wit.Finding(name=finding.name, ok=bool(finding.ok), summary=finding.summary,
                       detail_json=detail)

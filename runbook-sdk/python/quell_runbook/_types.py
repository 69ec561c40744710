"""The values a runbook reads and returns, and the errors a capability call raises."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional


class HostError(Exception):
    """A capability call that did not produce a result. ``reason`` is the host's text;
    ``str()`` reads as the Rust SDK's errors do (``denied: …``, ``failed: …``)."""

    kind = "failed"

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


class Denied(HostError):
    """The policy refused the call; ``reason`` names the rule that would allow it."""

    kind = "denied"


class Failed(HostError):
    """The call was allowed but could not be carried out (or, for the helpers, exited
    non-zero)."""


class Timeout(HostError):
    """The call ran past its deadline and was stopped."""

    def __str__(self) -> str:
        return "timed out"


class TooLarge(HostError):
    """A value crossing the sandbox was larger than the host's cap."""

    def __str__(self) -> str:
        return "result too large"


@dataclass
class CommandOutput:
    """What a command run by the host printed."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    #: True when stdout or stderr was cut at the host's cap.
    truncated: bool = False


@dataclass
class Incident:
    """The incident a runbook is asked about."""

    id: str = "INC-TEST"
    title: str = ""
    #: ``critical``, ``high``, ``medium``, ``low`` or ``info``.
    severity: str = "critical"
    #: ``alertmanager``, ``grafana``, ``generic`` or ``cli``.
    source: str = "alertmanager"
    #: ``firing`` or ``resolved``.
    status: str = "firing"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    #: RFC 3339, when the alert says when it started.
    starts_at: Optional[str] = None
    #: The alert exactly as received, as JSON.
    alert_json: str = "{}"

    def label(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The label ``name``, or ``default``."""
        return self.labels.get(name, default)

    def annotation(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The annotation ``name``, or ``default``."""
        return self.annotations.get(name, default)

    def alert(self) -> Any:
        """The alert as received, parsed."""
        return json.loads(self.alert_json)


@dataclass
class Finding:
    """One check made during diagnosis."""

    name: str
    ok: bool
    summary: str
    #: Anything JSON can carry, shown with the finding.
    detail: Any = None

    @classmethod
    def passed(cls, name: str, summary: str, detail: Any = None) -> "Finding":
        """A check that looked healthy (``Finding::ok`` in the Rust SDK)."""
        return cls(name, True, summary, detail)

    @classmethod
    def failed(cls, name: str, summary: str, detail: Any = None) -> "Finding":
        """A check that did not."""
        return cls(name, False, summary, detail)


@dataclass
class Diagnosis:
    """What ``diagnose`` found and what ``remediate`` would do."""

    summary: str
    findings: list[Finding] = field(default_factory=list)
    #: What ``remediate`` would do, one human-readable step per line.
    plan: list[str] = field(default_factory=list)
    #: Runbook-private state handed back to ``remediate`` unchanged (JSON-able).
    data: Any = None


@dataclass
class Remediation:
    """What ``remediate`` did."""

    success: bool
    action: str
    details: str = ""

    @classmethod
    def succeeded(cls, action: str, details: str = "") -> "Remediation":
        """It worked."""
        return cls(True, action, details)

    @classmethod
    def failed(cls, action: str, details: str = "") -> "Remediation":
        """It did not; on-call is paged."""
        return cls(False, action, details)

"""``disk-space-py``: the sketch's ``DiskSpaceRunbook`` in Python, making the same decisions as
its Rust twin ``runbooks/disk-space``.

Applies to alerts whose ``alertname`` contains ``DiskSpace``, or ``disk`` in any case.
``diagnose`` names the host (the ``instance`` label without its port) and the alert's value,
and reads ``df`` through the policy command ``disk-usage``. ``remediate`` runs the policy
commands ``clean-tmp``, ``vacuum-journal`` (``days=3``) and ``clean-old-logs`` on that host
over ssh, and succeeds if at least one of them exited 0.

The runbook never sends a command line: the commands are templates in ``policy.toml``, which
the platform team owns.
"""

from __future__ import annotations

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
    ssh,
    timeline,
)

#: The cleanup commands, in order, with their parameters.
CLEANUP: list[tuple[str, dict[str, str]]] = [
    ("clean-tmp", {}),
    ("vacuum-journal", {"days": "3"}),
    ("clean-old-logs", {}),
]
DISK_USAGE = "disk-usage"


def host_of(instance: str) -> str:
    """``host:port`` or ``[v6]:port`` → the host."""
    if instance.startswith("["):
        return instance[1:].split("]")[0]
    return instance.split(":")[0]


def describe(host: str, command: str, params: dict[str, str]) -> str:
    if not params:
        return f"run {command} on {host}"
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"run {command} ({shown}) on {host}"


def disk_usage(host: str) -> tuple[Optional[str], Finding]:
    try:
        output = ssh.run(host, DISK_USAGE)
    except Denied as denied:
        # Not granted is a choice of the platform team, not a symptom.
        return None, Finding.passed(
            "disk-usage", f"not collected: the policy does not allow it ({denied.reason})")
    except HostError as error:
        return None, Finding.failed("disk-usage", f"{DISK_USAGE} on {host}: {error}")
    if output.exit_code != 0:
        return None, Finding.failed(
            "disk-usage", f"{DISK_USAGE} exited with {output.exit_code}: {output.stderr.strip()}"
        )
    detail = {"stdout": output.stdout, "truncated": output.truncated}
    return output.stdout, Finding.passed("disk-usage", f"df on {host}", detail)


class DiskSpace(Runbook):
    def matches(self, incident: Incident) -> bool:
        alertname = incident.label("alertname", "")
        return "DiskSpace" in alertname or "disk" in alertname.lower()

    def diagnose(self, incident: Incident) -> Diagnosis:
        instance = incident.label("instance")
        host = host_of(instance) if instance else ""
        value = incident.annotation("value") or incident.label("value") or "unknown"
        if not host:
            return Diagnosis(
                "disk space alert without an instance label",
                findings=[Finding.failed("host",
                                         "the alert has no instance label: no host to clean")],
                plan=["no automatic remediation: the alert names no host"],
                data={"host": None, "alert_value": value, "disk_usage": None},
            )
        timeline.note(f"reading disk usage on {host}")
        usage, usage_finding = disk_usage(host)
        facts: dict[str, Any] = {"host": host, "alert_value": value, "disk_usage": usage}
        return Diagnosis(
            f"disk space on {host}: alert value {value}",
            findings=[Finding.passed("host", f"{host}, alert value {value}"), usage_finding],
            plan=[describe(host, command, params) for command, params in CLEANUP],
            data=facts,
        )

    def remediate(self, incident: Incident, diagnosis: Diagnosis) -> Remediation:
        host = diagnosis.data.get("host")
        if not host:
            return Remediation.failed("Cleanup commands failed",
                                      "Manual disk investigation required: the alert names no host")
        cleaned = []
        for command, params in CLEANUP:
            try:
                output = ssh.run(host, command, **params)
            except HostError as error:
                timeline.note(f"{command} on {host}: {error}")
                continue
            if output.exit_code == 0:
                cleaned.append(command)
            else:
                timeline.note(f"{command} on {host} exited with {output.exit_code}: "
                              f"{output.stderr.strip()}")
        if not cleaned:
            return Remediation.failed("Cleanup commands failed",
                                      "Manual disk investigation required")
        timeline.note(f"cleaned {host}: {', '.join(cleaned)}")
        return Remediation.succeeded(
            f"Cleaned disk on {host}",
            f"Ran {len(cleaned)} cleanup commands: {', '.join(cleaned)}",
        )


WitWorld = export(DiskSpace)

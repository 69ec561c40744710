"""``{{name}}``: a Quell runbook for ``{{alertname}}`` alerts.

``diagnose`` lists the pods of the alert's ``service`` (label) in its ``namespace`` (label,
default ``production``); ``remediate`` hands over to a human. Its ``policy.toml`` grants
nothing yet: the first ``quell run`` shows the kubectl call denied, with the TOML that would
allow it.
"""

from quell_runbook import (Diagnosis, Finding, HostError, Remediation, Runbook, export,
                           kubectl, timeline)


class {{class}}(Runbook):
    def matches(self, incident):
        return incident.label("alertname") == "{{alertname}}"

    def diagnose(self, incident):
        service = incident.label("service", "unknown")
        namespace = incident.label("namespace", "production")
        timeline.note(f"listing the pods of {service} in {namespace}")
        try:
            pods = kubectl.get_pods(namespace, f"app={service}")
        except HostError as error:
            finding = Finding.failed("pods", f"pods unavailable: {error}")
        else:
            ready = sum(1 for pod in pods if pod.ready)
            summary = f"{ready} of {len(pods)} pods ready"
            healthy = pods and ready == len(pods)
            finding = (Finding.passed if healthy else Finding.failed)("pods", summary)
        return Diagnosis(f"{service} in {namespace}: {finding.summary}", findings=[finding],
                         plan=["no automatic remediation: on-call decides"])

    def remediate(self, incident, diagnosis):
        return Remediation.failed("No automatic remediation available",
                                  "Manual intervention required")


WitWorld = export({{class}})

//! `{{name}}`: a Quell runbook for `{{alertname}}` alerts.
//!
//! `diagnose` lists the pods of the alert's `service` (label) in its `namespace` (label,
//! default `production`); `remediate` hands over to a human. Its `policy.toml` grants nothing
//! yet: the first `quell run` shows the kubectl call denied, with the TOML that would allow it.

use quell_runbook_sdk::prelude::*;

/// The runbook.
pub struct {{class}};

quell_runbook_sdk::export_runbook!({{class}});

impl Runbook for {{class}} {
    fn matches(incident: &Incident) -> bool {
        incident.label("alertname") == Some("{{alertname}}")
    }

    fn diagnose(incident: &Incident) -> Result<Diagnosis, String> {
        let service = incident.label("service").unwrap_or("unknown");
        let namespace = incident.label("namespace").unwrap_or("production");
        timeline::note(&format!("listing the pods of {service} in {namespace}"));
        let finding = match kubectl::get_pods(namespace, Some(&format!("app={service}"))) {
            Ok(pods) => {
                let ready = pods.iter().filter(|pod| pod.ready).count();
                let summary = format!("{ready} of {} pods ready", pods.len());
                if ready == pods.len() && !pods.is_empty() {
                    Finding::ok("pods", summary)
                } else {
                    Finding::failed("pods", summary)
                }
            }
            Err(error) => Finding::failed("pods", format!("pods unavailable: {error}")),
        };
        Ok(Diagnosis::new(format!("{service} in {namespace}: {}", finding.summary))
            .finding(finding)
            .step("no automatic remediation: on-call decides"))
    }

    fn remediate(_incident: &Incident, _diagnosis: &Diagnosis) -> Result<Remediation, String> {
        Ok(Remediation::failed(
            "No automatic remediation available",
            "Manual intervention required",
        ))
    }
}

#[cfg(test)]
mod tests {
    use quell_runbook_sdk::kubectl::Verb;
    use quell_runbook_sdk::testing::{self, MockHost};

    use super::*;

    fn incident() -> Incident {
        testing::incident()
            .label("alertname", "{{alertname}}")
            .label("service", "api")
            .build()
    }

    #[test]
    fn matches_its_alert_only() {
        assert!({{class}}::matches(&incident()));
        let other = testing::incident().label("alertname", "Other").build();
        assert!(!{{class}}::matches(&other));
    }

    #[test]
    fn a_pod_not_ready_is_a_failed_finding() {
        let pods = testing::pod_list_json(&[
            testing::pod("api-1", "Running", 0),
            testing::pod("api-2", "Pending", 0),
        ]);
        let host = MockHost::new().kubectl(move |_| Ok(testing::stdout(pods.clone())));
        let _guard = host.install();
        let diagnosis = {{class}}::diagnose(&incident()).unwrap();
        assert_eq!(host.kubectl_verbs(), [Verb::Get]);
        assert!(!diagnosis.findings[0].ok, "{diagnosis:?}");
        assert_eq!(diagnosis.findings[0].summary, "1 of 2 pods ready");
    }
}

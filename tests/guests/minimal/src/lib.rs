//! The smallest useful runbook: `matches` reads a label, `diagnose` makes one kubectl read and
//! reports whether it was allowed. The runtime benchmark uses it so that the figure measures
//! the host (fresh instance, two export calls, one policy-checked, recorded host call) rather
//! than guest-side JSON work.

use quell_runbook_sdk::kubectl::{self, Request, Verb};
use quell_runbook_sdk::prelude::*;

/// The runbook.
pub struct Minimal;

impl Runbook for Minimal {
    fn matches(incident: &Incident) -> bool {
        incident.label("alertname").is_some()
    }

    fn diagnose(incident: &Incident) -> Result<Diagnosis, String> {
        let namespace = incident.label("namespace").unwrap_or("production");
        let finding = match kubectl::run(&Request::new(Verb::Get, "pods").namespace(namespace)) {
            Ok(_) => Finding::ok("pods", "listed"),
            Err(error) => Finding::failed("pods", error.to_string()),
        };
        Ok(Diagnosis::new("minimal").finding(finding))
    }

    fn remediate(_: &Incident, _: &Diagnosis) -> Result<Remediation, String> {
        Ok(Remediation::failed(
            "nothing",
            "the minimal runbook does not remediate",
        ))
    }
}

quell_runbook_sdk::export_runbook!(Minimal);

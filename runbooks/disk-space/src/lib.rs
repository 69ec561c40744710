//! `disk-space`: the seed's `DiskSpaceRunbook`, as a Quell component.
//!
//! Applies to alerts whose `alertname` contains `DiskSpace`, or `disk` in any case.
//! `diagnose` names the host (the `instance` label without its port) and the alert's value,
//! and reads `df` through the policy command `disk-usage` when the policy grants it.
//! `remediate` runs the policy commands `clean-tmp`, `vacuum-journal` (`days=3`) and
//! `clean-old-logs` on that host over ssh, and succeeds if at least one of them exited 0.
//!
//! The runbook never sends a command line: the commands are templates in `policy.toml`,
//! which the platform team owns.

use quell_runbook_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// The cleanup commands, in order: policy command id and parameters.
const CLEANUP: [(&str, &[(&str, &str)]); 3] = [
    ("clean-tmp", &[]),
    ("vacuum-journal", &[("days", "3")]),
    ("clean-old-logs", &[]),
];
/// The read-only policy command that shows disk usage.
const DISK_USAGE: &str = "disk-usage";

/// The runbook.
pub struct DiskSpace;

quell_runbook_sdk::export_runbook!(DiskSpace);

/// What `diagnose` found, handed to `remediate` in [`Diagnosis::data_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The host to clean, from the `instance` label; `None` when the alert has none.
    pub host: Option<String>,
    /// The alert's value (annotation or label `value`), or `unknown`.
    pub alert_value: String,
    /// What `disk-usage` printed, when it ran.
    pub disk_usage: Option<String>,
}

impl Runbook for DiskSpace {
    fn matches(incident: &Incident) -> bool {
        let alertname = incident.label("alertname").unwrap_or_default();
        alertname.contains("DiskSpace") || alertname.to_lowercase().contains("disk")
    }

    fn diagnose(incident: &Incident) -> Result<Diagnosis, String> {
        let host = incident
            .label("instance")
            .map(host_of)
            .filter(|host| !host.is_empty());
        let alert_value = incident
            .annotation("value")
            .or_else(|| incident.label("value"))
            .unwrap_or("unknown")
            .to_owned();

        let Some(host) = host else {
            let facts = Facts {
                host: None,
                alert_value,
                disk_usage: None,
            };
            return Diagnosis::new("disk space alert without an instance label")
                .finding(Finding::failed(
                    "host",
                    "the alert has no instance label: no host to clean",
                ))
                .step("no automatic remediation: the alert names no host")
                .with_data(&facts)
                .map_err(|e| e.to_string());
        };

        timeline::note(&format!("reading disk usage on {host}"));
        let (disk_usage, usage_finding) = disk_usage(&host);
        let mut diagnosis =
            Diagnosis::new(format!("disk space on {host}: alert value {alert_value}"))
                .finding(Finding::ok(
                    "host",
                    format!("{host}, alert value {alert_value}"),
                ))
                .finding(usage_finding);
        for (command, params) in CLEANUP {
            diagnosis = diagnosis.step(describe(&host, command, params));
        }
        let facts = Facts {
            host: Some(host),
            alert_value,
            disk_usage,
        };
        diagnosis.with_data(&facts).map_err(|e| e.to_string())
    }

    fn remediate(_incident: &Incident, diagnosis: &Diagnosis) -> Result<Remediation, String> {
        let facts: Facts = diagnosis.data()?;
        let Some(host) = facts.host else {
            return Ok(Remediation::failed(
                "Cleanup commands failed",
                "Manual disk investigation required: the alert names no host",
            ));
        };

        let mut cleaned = Vec::new();
        for (command, params) in CLEANUP {
            match ssh::run(&host, command, params) {
                Ok(output) if output.succeeded() => cleaned.push(command),
                Ok(output) => timeline::note(&format!(
                    "{command} on {host} exited with {}: {}",
                    output.exit_code,
                    output.stderr.trim()
                )),
                Err(error) => timeline::note(&format!("{command} on {host}: {error}")),
            }
        }

        if cleaned.is_empty() {
            return Ok(Remediation::failed(
                "Cleanup commands failed",
                "Manual disk investigation required",
            ));
        }
        timeline::note(&format!("cleaned {host}: {}", cleaned.join(", ")));
        Ok(Remediation::succeeded(
            format!("Cleaned disk on {host}"),
            format!(
                "Ran {} cleanup commands: {}",
                cleaned.len(),
                cleaned.join(", ")
            ),
        ))
    }
}

/// `db-1.internal:9100` → `db-1.internal`, `[fd00::1]:9100` → `fd00::1`.
fn host_of(instance: &str) -> String {
    if let Some(bracketed) = instance.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default().to_owned();
    }
    instance.split(':').next().unwrap_or_default().to_owned()
}

/// Runs `disk-usage`; a policy that does not grant it is fine and only noted.
fn disk_usage(host: &str) -> (Option<String>, Finding) {
    match ssh::run(host, DISK_USAGE, &[]) {
        Ok(output) if output.succeeded() => {
            let finding = Finding::ok("disk-usage", format!("df on {host}")).with_detail(
                &serde_json::json!({ "stdout": output.stdout, "truncated": output.truncated }),
            );
            (Some(output.stdout), finding)
        }
        Ok(output) => (
            None,
            Finding::failed(
                "disk-usage",
                format!(
                    "{DISK_USAGE} exited with {}: {}",
                    output.exit_code,
                    output.stderr.trim()
                ),
            ),
        ),
        Err(HostError::Denied(reason)) => (
            None,
            Finding::ok(
                "disk-usage",
                format!("not collected: the policy does not allow it ({reason})"),
            ),
        ),
        Err(error) => (
            None,
            Finding::failed("disk-usage", format!("{DISK_USAGE} on {host}: {error}")),
        ),
    }
}

fn describe(host: &str, command: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if params.is_empty() {
        format!("run {command} on {host}")
    } else {
        format!("run {command} ({}) on {host}", params.join(", "))
    }
}

#[cfg(test)]
mod tests;

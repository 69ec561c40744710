//! `high-error-rate`: the seed's `HighErrorRateRunbook`, as a Quell component.
//!
//! Applies to alerts whose `alertname` contains `ErrorRate` or `5xx`. `diagnose` checks the
//! service's health endpoint, reads the deployment's recent rollout history and the pods'
//! restart counts. `remediate` makes the seed's decisions:
//!
//! 1. a pod restarted more than 3 times (crash-looping) → `rollout undo`; done if it worked;
//! 2. otherwise, or if the rollback failed, and the health check was unreachable →
//!    `rollout restart`;
//! 3. otherwise → no automatic remediation; a human takes over.
//!
//! A health check the policy refused is reported, but never counted as "unreachable": a
//! missing grant must not restart a deployment.
//!
//! Labels: `service` (default `unknown`), `namespace` (default `production`). Annotation
//! `health_url` overrides `http://{service}.internal/health`.

use quell_runbook_sdk::kubectl::PodStatus;
use quell_runbook_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// A pod restarted more than this many times is crash-looping.
const CRASH_LOOP_RESTARTS: u32 = 3;
/// The namespace when the alert has no `namespace` label, as in the seed.
const DEFAULT_NAMESPACE: &str = "production";
/// Rollout history lines kept, as in the seed.
const HISTORY_LINES: usize = 3;

/// The runbook.
pub struct HighErrorRate;

quell_runbook_sdk::export_runbook!(HighErrorRate);

/// What `diagnose` found, handed to `remediate` in [`Diagnosis::data_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The `service` label: the deployment's name and its pods' `app` label.
    pub service: String,
    /// Where the deployment runs.
    pub namespace: String,
    /// The health check's outcome.
    pub health: Health,
    /// The last lines of `rollout history`; empty when it could not be read.
    pub recent_deployments: Vec<String>,
    /// The service's pods; empty when they could not be listed.
    pub pods: Vec<PodStatus>,
}

/// The health check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    /// The endpoint answered with this HTTP status.
    Responded {
        /// The HTTP status.
        code: u16,
    },
    /// The request failed or timed out.
    Unreachable {
        /// Why.
        error: String,
    },
    /// The policy refused the request.
    Denied {
        /// The host's reason.
        reason: String,
    },
}

impl Facts {
    fn crash_looping(&self) -> Option<&PodStatus> {
        crash_looping(&self.pods)
    }

    fn unreachable(&self) -> bool {
        matches!(self.health, Health::Unreachable { .. })
    }

    fn deployment(&self) -> String {
        format!("deployment/{}", self.service)
    }

    /// What `remediate` will try, one line per step.
    fn plan(&self) -> Vec<String> {
        let target = format!("{} in {}", self.deployment(), self.namespace);
        let mut plan = Vec::new();
        if let Some(pod) = self.crash_looping() {
            plan.push(format!(
                "roll back {target} (pod {} restarted {} times)",
                pod.name, pod.restarts
            ));
        }
        if self.unreachable() {
            let when = if plan.is_empty() {
                ""
            } else {
                "if the rollback fails, "
            };
            plan.push(format!("{when}restart {target} (health check unreachable)"));
        }
        if plan.is_empty() {
            plan.push("no automatic remediation".to_owned());
        }
        plan
    }
}

impl Runbook for HighErrorRate {
    fn matches(incident: &Incident) -> bool {
        let alertname = incident.label("alertname").unwrap_or_default();
        alertname.contains("ErrorRate") || alertname.contains("5xx")
    }

    fn diagnose(incident: &Incident) -> Result<Diagnosis, String> {
        let service = incident.label("service").unwrap_or("unknown").to_owned();
        let namespace = incident
            .label("namespace")
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_owned();
        let url = incident.annotation("health_url").map_or_else(
            || format!("http://{service}.internal/health"),
            str::to_owned,
        );
        timeline::note(&format!(
            "checking {service} in {namespace}: health, rollouts, pods"
        ));

        let (health, health_finding) = check_health(&url);
        let (recent_deployments, history_finding) = recent_deployments(&namespace, &service);
        let (pods, pods_finding) = pods(&namespace, &service);
        let facts = Facts {
            service,
            namespace,
            health,
            recent_deployments,
            pods,
        };

        let summary = format!(
            "{} in {}: {}; {}",
            facts.service, facts.namespace, health_finding.summary, pods_finding.summary
        );
        let mut diagnosis = Diagnosis::new(summary)
            .finding(health_finding)
            .finding(history_finding)
            .finding(pods_finding);
        diagnosis.plan = facts.plan();
        diagnosis.with_data(&facts).map_err(|e| e.to_string())
    }

    fn remediate(_incident: &Incident, diagnosis: &Diagnosis) -> Result<Remediation, String> {
        let facts: Facts = diagnosis.data()?;
        let target = facts.deployment();
        let namespace = facts.namespace.as_str();

        if let Some(pod) = facts.crash_looping() {
            timeline::note(&format!(
                "rolling back {target} in {namespace}: pod {} restarted {} times",
                pod.name, pod.restarts
            ));
            match kubectl::rollout_undo(namespace, &facts.service, None) {
                Ok(output) => {
                    return Ok(Remediation::succeeded(
                        format!("Rolled back {target}"),
                        output.stdout,
                    ));
                }
                Err(error) => timeline::note(&format!("rollback of {target} failed: {error}")),
            }
        }
        if facts.unreachable() {
            timeline::note(&format!(
                "restarting {target} in {namespace}: health check unreachable"
            ));
            match kubectl::rollout_restart(namespace, &facts.service) {
                Ok(_) => {
                    return Ok(Remediation::succeeded(
                        format!("Restarted {target}"),
                        "Service was unreachable, initiated rolling restart",
                    ));
                }
                Err(error) => timeline::note(&format!("restart of {target} failed: {error}")),
            }
        }
        Ok(Remediation::failed(
            "No automatic remediation available",
            "Manual intervention required",
        ))
    }
}

fn check_health(url: &str) -> (Health, Finding) {
    match http::get(url) {
        Ok(response) => {
            let code = response.status;
            let summary = format!("GET {url} returned {code}");
            let finding = if code == 200 {
                Finding::ok("health", summary)
            } else {
                Finding::failed("health", summary)
            };
            (Health::Responded { code }, finding)
        }
        Err(HostError::Denied(reason)) => {
            let finding = Finding::failed("health", format!("health check denied: {reason}"));
            (Health::Denied { reason }, finding)
        }
        Err(error) => {
            let finding = Finding::failed("health", format!("GET {url} unreachable: {error}"));
            (
                Health::Unreachable {
                    error: error.to_string(),
                },
                finding,
            )
        }
    }
}

fn recent_deployments(namespace: &str, service: &str) -> (Vec<String>, Finding) {
    match kubectl::rollout_history(namespace, service) {
        Ok(lines) => {
            let recent = lines[lines.len().saturating_sub(HISTORY_LINES)..].to_vec();
            let finding = Finding::ok(
                "recent-deployments",
                format!("last rollout history: {}", recent.join(" | ")),
            )
            .with_detail(&serde_json::json!(recent));
            (recent, finding)
        }
        Err(error) => {
            let finding = Finding::failed(
                "recent-deployments",
                format!("rollout history unavailable: {error}"),
            );
            (Vec::new(), finding)
        }
    }
}

fn pods(namespace: &str, service: &str) -> (Vec<PodStatus>, Finding) {
    let selector = format!("app={service}");
    let pods = match kubectl::get_pods(namespace, Some(&selector)) {
        Ok(pods) => pods,
        Err(error) => {
            return (
                Vec::new(),
                Finding::failed("pods", format!("pods unavailable: {error}")),
            );
        }
    };
    let finding = match crash_looping(&pods) {
        _ if pods.is_empty() => Finding::failed("pods", format!("no pods match {selector}")),
        Some(pod) => Finding::failed(
            "pods",
            format!(
                "{} pods, crash-looping: {} restarted {} times",
                pods.len(),
                pod.name,
                pod.restarts
            ),
        ),
        None => Finding::ok("pods", format!("{} pods, none crash-looping", pods.len())),
    };
    let finding = finding.with_detail(&serde_json::json!(pods));
    (pods, finding)
}

/// The pod with the most restarts, if it restarted more than [`CRASH_LOOP_RESTARTS`] times.
fn crash_looping(pods: &[PodStatus]) -> Option<&PodStatus> {
    pods.iter()
        .filter(|pod| pod.restarts > CRASH_LOOP_RESTARTS)
        .max_by_key(|pod| pod.restarts)
}

#[cfg(test)]
mod tests;

//! `k8s-context`: the seed's "highest-value automation" — put the Kubernetes context of an
//! alert in front of the on-call engineer before they open a terminal.
//!
//! Applies to any alert with a `namespace` label and a `service` or `app` label. `diagnose`
//! reads, in that namespace:
//!
//! - the pods selected by `app=<service>`: phase, readiness, restarts;
//! - the newest 10 events about objects whose name starts with the service name;
//! - the rollout history of `deployment/<service>`;
//! - the last 20 log lines of every pod that restarted (from the previous, crashed container)
//!   or is not `Running`.
//!
//! It plans nothing and `remediate` changes nothing: the policy's mode is `diagnose`.

use quell_runbook_sdk::kubectl::PodStatus;
use quell_runbook_sdk::prelude::*;
use serde_json::{Value, json};

/// Events kept, newest first.
const EVENTS: usize = 10;
/// Log lines read per pod.
const LOG_LINES: u32 = 20;

/// The runbook.
pub struct K8sContext;

quell_runbook_sdk::export_runbook!(K8sContext);

impl Runbook for K8sContext {
    fn matches(incident: &Incident) -> bool {
        incident.label("namespace").is_some_and(|ns| !ns.is_empty()) && service(incident).is_some()
    }

    fn diagnose(incident: &Incident) -> Result<Diagnosis, String> {
        let namespace = incident
            .label("namespace")
            .ok_or("the alert has no namespace label")?;
        let service = service(incident).ok_or("the alert has no service or app label")?;
        timeline::note(&format!(
            "gathering kubernetes context for {service} in {namespace}"
        ));

        let pods = kubectl::get_pods(namespace, Some(&format!("app={service}")));
        let mut findings = vec![pods_finding(service, &pods)];
        findings.push(events_finding(namespace, service));
        findings.push(history_finding(namespace, service));
        let troubled: Vec<&PodStatus> = pods
            .iter()
            .flatten()
            .filter(|pod| needs_logs(pod))
            .collect();
        findings.extend(troubled.iter().map(|pod| logs_finding(namespace, pod)));

        let pod_count = pods.as_ref().map_or_else(
            |_| "pods unavailable".to_owned(),
            |p| format!("{} pods", p.len()),
        );
        let summary = format!(
            "{service} in {namespace}: {pod_count}, {} with restarts or not running",
            troubled.len()
        );
        Ok(findings
            .into_iter()
            .fold(Diagnosis::new(summary), Diagnosis::finding))
    }

    fn remediate(_incident: &Incident, _diagnosis: &Diagnosis) -> Result<Remediation, String> {
        Ok(Remediation::failed(
            "diagnose-only runbook",
            "k8s-context gathers context for the on-call engineer and changes nothing",
        ))
    }
}

/// The `service` label, else the `app` label.
fn service(incident: &Incident) -> Option<&str> {
    ["service", "app"]
        .into_iter()
        .find_map(|key| incident.label(key).filter(|v| !v.is_empty()))
}

/// A pod whose logs are worth reading: it restarted, or it is not running.
fn needs_logs(pod: &PodStatus) -> bool {
    pod.restarts > 0 || pod.phase != "Running"
}

fn pods_finding(service: &str, pods: &Result<Vec<PodStatus>, HostError>) -> Finding {
    let pods = match pods {
        Ok(pods) => pods,
        Err(error) => return Finding::failed("pods", format!("pods unavailable: {error}")),
    };
    if pods.is_empty() {
        return Finding::failed("pods", format!("no pods match app={service}"));
    }
    let lines: Vec<String> = pods
        .iter()
        .map(|pod| {
            let ready = if pod.ready { "ready" } else { "not ready" };
            format!(
                "{} {} {ready}, {} restarts",
                pod.name, pod.phase, pod.restarts
            )
        })
        .collect();
    let healthy = pods.iter().all(|pod| pod.ready && !needs_logs(pod));
    let finding = Finding {
        ok: healthy,
        ..Finding::ok("pods", lines.join("; "))
    };
    finding.with_detail(&json!(pods))
}

fn events_finding(namespace: &str, service: &str) -> Finding {
    let list = match kubectl::get_json("events", namespace, None) {
        Ok(list) => list,
        Err(error) => return Finding::failed("events", format!("events unavailable: {error}")),
    };
    let lines = recent_events(&list, service);
    let summary = if lines.is_empty() {
        format!("no events about {service}*")
    } else {
        format!("{} recent events, newest: {}", lines.len(), lines[0])
    };
    Finding::ok("events", summary).with_detail(&json!(lines))
}

/// The newest [`EVENTS`] events about objects named `service*`, as `reason: message`.
fn recent_events(list: &Value, service: &str) -> Vec<String> {
    let mut events: Vec<(&str, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| {
            event["involvedObject"]["name"]
                .as_str()
                .is_some_and(|name| name.starts_with(service))
        })
        .map(|event| {
            let when = ["lastTimestamp", "eventTime"]
                .iter()
                .find_map(|key| event[key].as_str())
                .or_else(|| event["metadata"]["creationTimestamp"].as_str())
                .unwrap_or_default();
            let reason = event["reason"].as_str().unwrap_or("Unknown");
            let message = event["message"].as_str().unwrap_or_default().trim();
            (when, format!("{reason}: {message}"))
        })
        .collect();
    events.sort_by(|a, b| b.0.cmp(a.0));
    events
        .into_iter()
        .take(EVENTS)
        .map(|(_, line)| line)
        .collect()
}

fn history_finding(namespace: &str, service: &str) -> Finding {
    match kubectl::rollout_history(namespace, service) {
        Ok(lines) => {
            let revisions = lines
                .iter()
                .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
                .count();
            Finding::ok(
                "rollout-history",
                format!("deployment/{service}: {revisions} revisions"),
            )
            .with_detail(&json!(lines))
        }
        Err(error) => Finding::failed(
            "rollout-history",
            format!("rollout history unavailable: {error}"),
        ),
    }
}

fn logs_finding(namespace: &str, pod: &PodStatus) -> Finding {
    let previous = pod.restarts > 0;
    let name = format!("logs/{}", pod.name);
    let which = if previous {
        "previous container"
    } else {
        "current container"
    };
    match kubectl::logs(namespace, &pod.name, Some(LOG_LINES), previous) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            Finding::ok(name, format!("last {} lines of the {which}", lines.len()))
                .with_detail(&json!({ "pod": pod.name, "previous": previous, "lines": lines }))
        }
        Err(error) => Finding::failed(name, format!("logs of the {which} unavailable: {error}")),
    }
}

#[cfg(test)]
mod tests;

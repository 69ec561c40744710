//! A [`MockHost`] answering from a recorded incident: a `quell export` file.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::MockHost;
use crate::kubectl::{OutputFormat, Verb};
use crate::{CommandOutput, HostError, Incident, Severity, http, kubectl};

type Answers = BTreeMap<(String, String), VecDeque<Value>>;

impl MockHost {
    /// A host answering from a recorded incident (the text of a `quell export` file): each
    /// call gets what the same request got when the incident happened, in the recorded order
    /// (the last answer repeating), and a call the recording lacks gets
    /// `Failed("not in the recording")`. With `runbook`, only that runbook's calls count.
    ///
    /// # Errors
    /// When the text is not an export.
    pub fn from_export(export: &str, runbook: Option<&str>) -> Result<Self, String> {
        let export: Value =
            serde_json::from_str(export).map_err(|e| format!("not a quell export: {e}"))?;
        let runs = export["incident"]["runs"]
            .as_array()
            .ok_or("not a quell export: no incident.runs")?;
        let mut answers = Answers::new();
        for call in runs
            .iter()
            .flat_map(|r| r["calls"].as_array().into_iter().flatten())
            .filter(|c| runbook.is_none_or(|name| c["runbook"] == name))
        {
            let key = (
                call["capability"].as_str().unwrap_or_default().to_owned(),
                call["request"].to_string(),
            );
            answers
                .entry(key)
                .or_default()
                .push_back(call["result"].clone());
        }
        let shared = std::rc::Rc::new(std::cell::RefCell::new(answers));
        let (for_kubectl, for_ssh, for_http) = (shared.clone(), shared.clone(), shared);
        Ok(Self::new()
            .kubectl(move |request| {
                let ok = answer(
                    &mut for_kubectl.borrow_mut(),
                    "kubectl",
                    &kubectl_json(request),
                )?;
                command_output(&ok)
            })
            .ssh(move |host, command, params| {
                let request = json!({ "host": host, "command": command, "params": params });
                let ok = answer(&mut for_ssh.borrow_mut(), "ssh", &request)?;
                command_output(&ok)
            })
            .http(move |request| {
                let names: Vec<&str> = request.headers.iter().map(|(k, _)| k.as_str()).collect();
                let request_json = json!({
                    "method": request.method.as_str(),
                    "url": request.url,
                    "headers": names,
                    "body_bytes": request.body.as_ref().map_or(0, Vec::len),
                });
                let ok = answer(&mut for_http.borrow_mut(), "http", &request_json)?;
                Ok(http::Response {
                    status: ok["status"]
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(0),
                    headers: serde_json::from_value(ok["headers"].clone()).unwrap_or_default(),
                    body: ok["body"].as_str().unwrap_or_default().as_bytes().to_vec(),
                })
            }))
    }
}

/// The incident of a recorded export: its labels, annotations and alert.
///
/// # Errors
/// When the text is not an export.
pub fn incident_of(export: &str) -> Result<Incident, String> {
    let export: Value =
        serde_json::from_str(export).map_err(|e| format!("not a quell export: {e}"))?;
    let recorded = &export["incident"];
    let pairs = |value: &Value| -> Vec<(String, String)> {
        value
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let text = |key: &str| recorded[key].as_str().unwrap_or_default().to_owned();
    let mut incident = super::incident().build();
    incident.id = text("id");
    incident.title = text("title");
    incident.source = text("source");
    incident.labels = pairs(&recorded["labels"]);
    incident.annotations = pairs(&recorded["annotations"]);
    incident.fingerprint = text("fingerprint");
    incident.alert_json = recorded["alert"].to_string();
    incident.severity = match recorded["severity"].as_str() {
        Some("critical") => Severity::Critical,
        Some("medium") => Severity::Medium,
        Some("low") => Severity::Low,
        Some("info") => Severity::Info,
        _ => Severity::High,
    };
    incident.status = if recorded["status"] == "resolved" {
        "resolved".to_owned()
    } else {
        "firing".to_owned()
    };
    incident.starts_at = recorded["starts_at"].as_str().map(str::to_owned);
    Ok(incident)
}

fn answer(answers: &mut Answers, capability: &str, request: &Value) -> Result<Value, HostError> {
    let queue = answers
        .get_mut(&(capability.to_owned(), request.to_string()))
        .filter(|queue| !queue.is_empty())
        .ok_or_else(|| HostError::Failed("not in the recording".to_owned()))?;
    let result = if queue.len() > 1 {
        queue.pop_front().unwrap_or_default()
    } else {
        queue.front().cloned().unwrap_or_default()
    };
    if let Some(ok) = result.get("ok") {
        return Ok(ok.clone());
    }
    let error = &result["error"];
    Err(match (error.as_str(), &error["denied"], &error["failed"]) {
        (Some("timeout"), _, _) => HostError::Timeout,
        (Some("too-large"), _, _) => HostError::TooLarge,
        (_, Value::String(reason), _) => HostError::Denied(reason.clone()),
        (_, _, Value::String(message)) => HostError::Failed(message.clone()),
        _ => HostError::Failed(format!("the recording holds no answer: {result}")),
    })
}

fn command_output(ok: &Value) -> Result<CommandOutput, HostError> {
    Ok(CommandOutput {
        exit_code: ok["exit_code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .unwrap_or(-1),
        stdout: ok["stdout"].as_str().unwrap_or_default().to_owned(),
        stderr: ok["stderr"].as_str().unwrap_or_default().to_owned(),
        truncated: ok["truncated"].as_bool().unwrap_or(false),
    })
}

/// A kubectl request as the host records it.
fn kubectl_json(request: &kubectl::Request) -> Value {
    let verb = match request.verb {
        Verb::Get => "Get",
        Verb::Describe => "Describe",
        Verb::Logs => "Logs",
        Verb::Top => "Top",
        Verb::RolloutHistory => "RolloutHistory",
        Verb::RolloutStatus => "RolloutStatus",
        Verb::RolloutUndo => "RolloutUndo",
        Verb::RolloutRestart => "RolloutRestart",
        Verb::Scale => "Scale",
        Verb::Delete => "Delete",
        Verb::Cordon => "Cordon",
        Verb::Uncordon => "Uncordon",
    };
    let output = request.options.output.map(|o| match o {
        OutputFormat::Json => "Json",
        OutputFormat::Yaml => "Yaml",
        OutputFormat::Wide => "Wide",
        OutputFormat::Name => "Name",
    });
    let o = &request.options;
    json!({
        "verb": verb,
        "resource": request.resource,
        "namespace": request.namespace,
        "name": request.name,
        "selector": request.selector,
        "options": {
            "output": output,
            "tail_lines": o.tail_lines,
            "container": o.container,
            "previous": o.previous,
            "to_revision": o.to_revision,
            "replicas": o.replicas,
        },
    })
}

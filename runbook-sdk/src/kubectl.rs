//! Structured kubectl requests (WIT `quell:runbook/kubectl`).
//!
//! There is no free-form command line: a [`Request`] names a verb, a resource, a namespace and
//! a name or selector, and the host renders the argv with its own kubeconfig and context. The
//! typed helpers below treat a non-zero exit as [`HostError::Failed`] carrying kubectl's
//! stderr; [`run`] hands back the raw [`CommandOutput`].
//!
//! ```
//! use quell_runbook_sdk::kubectl::{self, OutputFormat, Request, Verb};
//!
//! let request = Request::new(Verb::Get, "pods")
//!     .namespace("production")
//!     .selector("app=api")
//!     .output(OutputFormat::Json);
//! assert_eq!(request.verb.as_str(), "get");
//! # let _ = kubectl::run(&request);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::bindings::quell::runbook::kubectl::{Options, OutputFormat, Request, Verb};
use crate::{CommandOutput, HostError};

/// Sends one request to the host. A non-zero exit is still `Ok`: check
/// [`CommandOutput::exit_code`].
pub fn run(request: &Request) -> Result<CommandOutput, HostError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::quell::runbook::kubectl::run(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::dispatch_kubectl(request)
    }
}

/// `request` with a field selector (`involvedObject.name=api-1`): `get` only. A non-zero
/// exit is still `Ok`.
pub fn run_selected(request: &Request, field_selector: &str) -> Result<CommandOutput, HostError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::quell::runbook::kubectl::run_selected(request, field_selector)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::dispatch_kubectl_selected(request, field_selector)
    }
}

/// The events about one object (`kind` as Kubernetes spells it: `Pod`, `Deployment`), found
/// with a field selector instead of listing the namespace's events.
///
/// # Errors
/// The host's refusal, kubectl's verdict, or output that is not JSON.
pub fn events_for(namespace: &str, kind: &str, name: &str) -> Result<Value, HostError> {
    let request = Request::new(Verb::Get, "events")
        .namespace(namespace)
        .output(OutputFormat::Json);
    let fields = format!("involvedObject.kind={kind},involvedObject.name={name}");
    json_of(&verdict(&request, run_selected(&request, &fields)?)?)
}

/// `kubectl get <resource> -n <namespace> [-l <selector>] -o json`, parsed.
pub fn get_json(
    resource: &str,
    namespace: &str,
    selector: Option<&str>,
) -> Result<Value, HostError> {
    let mut request = Request::new(Verb::Get, resource)
        .namespace(namespace)
        .output(OutputFormat::Json);
    if let Some(selector) = selector {
        request = request.selector(selector);
    }
    json_of(&checked(&request)?)
}

/// What kubectl printed, parsed as JSON.
fn json_of(output: &CommandOutput) -> Result<Value, HostError> {
    serde_json::from_str(&output.stdout)
        .map_err(|e| HostError::Failed(format!("kubectl printed invalid JSON: {e}")))
}

/// What [`get_pods`] reports of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// `metadata.name`.
    pub name: String,
    /// `status.phase`: `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
    /// `restartCount` summed over the pod's containers.
    pub restarts: u32,
    /// Whether the pod's `Ready` condition is `True`.
    pub ready: bool,
    /// Why a container is waiting (`CrashLoopBackOff`, `ImagePullBackOff`, …), if one is.
    #[serde(default)]
    pub waiting_reason: Option<String>,
}

impl PodStatus {
    /// From one item of `kubectl get pods -o json`.
    pub fn from_json(pod: &Value) -> Self {
        let status = &pod["status"];
        let waiting_reason = status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|container| container["state"]["waiting"]["reason"].as_str())
            .map(str::to_owned);
        let restarts = status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|container| container["restartCount"].as_u64())
            .map(|count| u32::try_from(count).unwrap_or(u32::MAX))
            .fold(0u32, u32::saturating_add);
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
        Self {
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            phase: status["phase"].as_str().unwrap_or("Unknown").to_owned(),
            restarts,
            ready,
            waiting_reason,
        }
    }
}

/// The pods in `namespace` matching `selector` (e.g. `app=api`), with phase, restarts and
/// readiness.
pub fn get_pods(namespace: &str, selector: Option<&str>) -> Result<Vec<PodStatus>, HostError> {
    let list = get_json("pods", namespace, selector)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(PodStatus::from_json)
        .collect())
}

/// `kubectl get <resource>/<name> -n <namespace> -o json`: one object, parsed.
///
/// # Errors
/// The host's refusal, kubectl's verdict (e.g. `NotFound`), or output that is not JSON.
pub fn get(resource: &str, namespace: &str, name: &str) -> Result<Value, HostError> {
    let request = Request::new(Verb::Get, resource)
        .namespace(namespace)
        .name(name)
        .output(OutputFormat::Json);
    json_of(&checked(&request)?)
}

/// What [`get_deployment`] reports of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    /// `metadata.name`.
    pub name: String,
    /// `spec.replicas`: how many pods it wants.
    pub desired: u32,
    /// `status.readyReplicas`.
    pub ready: u32,
    /// `status.updatedReplicas`: pods of the current revision.
    pub updated: u32,
    /// `status.availableReplicas`.
    pub available: u32,
    /// `spec.selector` as a label selector for [`get_pods`]: `matchLabels` and
    /// `matchExpressions` (`In`, `NotIn`, `Exists`, `DoesNotExist`) joined with commas.
    pub selector: String,
}

impl DeploymentStatus {
    /// From `kubectl get deployment -o json`.
    pub fn from_json(deployment: &Value) -> Self {
        let count = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        let status = &deployment["status"];
        Self {
            name: deployment["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            desired: deployment["spec"]["replicas"]
                .as_u64()
                .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            ready: count(&status["readyReplicas"]),
            updated: count(&status["updatedReplicas"]),
            available: count(&status["availableReplicas"]),
            selector: selector(&deployment["spec"]["selector"]),
        }
    }
}

/// A `LabelSelector` object as the text `kubectl -l` takes.
fn selector(selector: &Value) -> String {
    let mut parts: Vec<String> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for expression in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match expression["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_owned(),
        });
    }
    parts.join(",")
}

/// One deployment's desired and ready replicas, and its pod selector.
///
/// # Errors
/// As [`get`].
pub fn get_deployment(namespace: &str, name: &str) -> Result<DeploymentStatus, HostError> {
    Ok(DeploymentStatus::from_json(&get(
        "deployments",
        namespace,
        name,
    )?))
}

/// `kubectl rollout history deployments/<deployment>`: the non-empty output lines.
pub fn rollout_history(namespace: &str, deployment: &str) -> Result<Vec<String>, HostError> {
    let request = Request::new(Verb::RolloutHistory, "deployments")
        .namespace(namespace)
        .name(deployment);
    let output = checked(&request)?;
    Ok(output
        .stdout
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `kubectl rollout undo deployments/<deployment> [--to-revision=N]`. A write: allowed only in
/// `remediate`.
pub fn rollout_undo(
    namespace: &str,
    deployment: &str,
    to_revision: Option<u32>,
) -> Result<CommandOutput, HostError> {
    let mut request = Request::new(Verb::RolloutUndo, "deployments")
        .namespace(namespace)
        .name(deployment);
    request.options.to_revision = to_revision;
    checked(&request)
}

/// `kubectl rollout restart deployments/<deployment>`. A write: allowed only in `remediate`.
pub fn rollout_restart(namespace: &str, deployment: &str) -> Result<CommandOutput, HostError> {
    let request = Request::new(Verb::RolloutRestart, "deployments")
        .namespace(namespace)
        .name(deployment);
    checked(&request)
}

/// `kubectl logs <pod> [--tail=N] [--previous]`: what the pod printed.
pub fn logs(
    namespace: &str,
    pod: &str,
    tail_lines: Option<u32>,
    previous: bool,
) -> Result<String, HostError> {
    let mut request = Request::new(Verb::Logs, "pods")
        .namespace(namespace)
        .name(pod)
        .previous(previous);
    request.options.tail_lines = tail_lines;
    Ok(checked(&request)?.stdout)
}

/// Runs the request and turns a non-zero exit into [`HostError::Failed`] with kubectl's verdict
/// (the last line it printed on stderr).
///
/// # Errors
/// The host's refusal or failure, or the non-zero exit.
pub fn checked(request: &Request) -> Result<CommandOutput, HostError> {
    verdict(request, run(request)?)
}

/// `output` when kubectl exited 0, else [`HostError::Failed`] with its last word.
fn verdict(request: &Request, output: CommandOutput) -> Result<CommandOutput, HostError> {
    if output.succeeded() {
        return Ok(output);
    }
    // kubectl repeats client-side retries on stderr; its last line is the verdict.
    let stderr = output
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .trim();
    Err(HostError::Failed(if stderr.is_empty() {
        format!(
            "kubectl {} exited with status {}",
            request.verb, output.exit_code
        )
    } else {
        stderr.to_owned()
    }))
}

impl Request {
    /// A request for `verb` on `resource` (`pods`, `deployments`, `events`, …) with no
    /// namespace, name, selector or options.
    pub fn new(verb: Verb, resource: impl Into<String>) -> Self {
        Self {
            verb,
            resource: resource.into(),
            namespace: None,
            name: None,
            selector: None,
            options: Options::default(),
        }
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the object name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets a label selector such as `app=api,tier=web`.
    pub fn selector(mut self, selector: impl Into<String>) -> Self {
        self.selector = Some(selector.into());
        self
    }

    /// Sets the output format (`-o`).
    pub fn output(mut self, format: OutputFormat) -> Self {
        self.options.output = Some(format);
        self
    }

    /// `logs`: reads the previous (crashed) container instance.
    pub fn previous(mut self, previous: bool) -> Self {
        self.options.previous = previous;
        self
    }
}

#[allow(clippy::derivable_impls)] // `Options` is generated; it cannot derive here.
impl Default for Options {
    fn default() -> Self {
        Self {
            output: None,
            tail_lines: None,
            container: None,
            previous: false,
            to_revision: None,
            replicas: None,
        }
    }
}

impl Verb {
    /// Every verb, in WIT order.
    pub const ALL: [Self; 12] = [
        Self::Get,
        Self::Describe,
        Self::Logs,
        Self::Top,
        Self::RolloutHistory,
        Self::RolloutStatus,
        Self::RolloutUndo,
        Self::RolloutRestart,
        Self::Scale,
        Self::Delete,
        Self::Cordon,
        Self::Uncordon,
    ];

    /// The verb as policies spell it: `get`, `rollout undo`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Describe => "describe",
            Self::Logs => "logs",
            Self::Top => "top",
            Self::RolloutHistory => "rollout history",
            Self::RolloutStatus => "rollout status",
            Self::RolloutUndo => "rollout undo",
            Self::RolloutRestart => "rollout restart",
            Self::Scale => "scale",
            Self::Delete => "delete",
            Self::Cordon => "cordon",
            Self::Uncordon => "uncordon",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verb {
    type Err = String;

    /// Parses the policy spelling (`"rollout undo"`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|verb| verb.as_str() == text)
            .ok_or_else(|| format!("unknown kubectl verb {text:?}"))
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    /// Parses `json`, `yaml`, `wide` or `name`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            "wide" => Ok(Self::Wide),
            "name" => Ok(Self::Name),
            _ => Err(format!("unknown kubectl output format {text:?}")),
        }
    }
}

#[cfg(test)]
mod tests;

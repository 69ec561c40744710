//! A scripted host for native unit tests of runbooks.
//!
//! Outside `wasm32`, [`kubectl`], [`ssh`], [`http`] and [`timeline`] do not
//! reach a host: they call the [`MockHost`] installed on the current thread. Each handler
//! answers one capability; every call is recorded, so a test can assert what a runbook asked
//! for as well as what it decided. With no double installed, or no handler for a capability,
//! calls return [`HostError::Denied`] (like a policy that grants nothing) and notes are
//! dropped. On `wasm32` this module is inert: calls go to the real host.
//!
//! ```
//! use quell_runbook_sdk::testing::{self, Call, MockHost};
//! use quell_runbook_sdk::{HostError, kubectl, ssh, timeline};
//!
//! let host = MockHost::new()
//!     .kubectl(|request| match request.verb {
//!         kubectl::Verb::RolloutUndo => Ok(testing::stdout("rolled back\n")),
//!         _ => Ok(testing::exit(1, "not found")),
//!     })
//!     .ssh(|_host, command, _params| Err(HostError::Denied(format!("no {command} in policy"))));
//! let guard = host.install();
//!
//! assert!(kubectl::rollout_undo("production", "api", None).is_ok());
//! assert!(ssh::run("db-1.internal", "clean-tmp", &[]).unwrap_err().is_denied());
//! timeline::note("rolled back deployment/api");
//! assert_eq!(host.kubectl_verbs(), [kubectl::Verb::RolloutUndo]);
//! assert_eq!(host.notes(), ["rolled back deployment/api"]);
//! assert!(matches!(&host.calls()[1], Call::Ssh { command, .. } if command == "clean-tmp"));
//!
//! drop(guard); // uninstalls: calls are refused again
//! assert!(kubectl::rollout_restart("production", "api").unwrap_err().is_denied());
//! ```
//!
//! [`kubectl`]: crate::kubectl
//! [`ssh`]: crate::ssh
//! [`http`]: crate::http
//! [`timeline`]: crate::timeline

use std::cell::RefCell;
use std::rc::Rc;

mod recorded;
pub use recorded::incident_of;

use crate::kubectl::{PodStatus, Verb};
use crate::{CommandOutput, HostError, Incident, Severity, http, kubectl};

type KubectlHandler = Box<dyn FnMut(&kubectl::Request) -> Result<CommandOutput, HostError>>;
type SshHandler =
    Box<dyn FnMut(&str, &str, &[(String, String)]) -> Result<CommandOutput, HostError>>;
type HttpHandler = Box<dyn FnMut(&http::Request) -> Result<http::Response, HostError>>;

/// One capability call a runbook made, in the order it made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `kubectl::run` and the helpers built on it.
    Kubectl(kubectl::Request),
    /// `ssh::run`.
    Ssh {
        /// The target host.
        host: String,
        /// The policy command id.
        command: String,
        /// The parameters, in the order given.
        params: Vec<(String, String)>,
    },
    /// `http::send` and `http::get`.
    Http(http::Request),
    /// `timeline::note`.
    Note(String),
    /// `kubectl::run_selected` (and `events_for`): the request and its field selector. The
    /// double's kubectl handler answers it.
    KubectlSelected(kubectl::Request, String),
    /// `run_context::escalate`.
    Escalate(String),
}

#[derive(Default)]
struct Handlers {
    kubectl: Option<KubectlHandler>,
    ssh: Option<SshHandler>,
    http: Option<HttpHandler>,
}

#[derive(Default)]
struct State {
    handlers: RefCell<Handlers>,
    calls: RefCell<Vec<Call>>,
    dry_run: RefCell<bool>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<State>>> = const { RefCell::new(None) };
}

/// A scripted host: one handler per capability, and the record of every call.
///
/// Clones share the script and the record. Handlers run on the test's thread; a handler that
/// itself calls the capability it answers sees no handler (and gets `Denied`).
#[derive(Clone, Default)]
pub struct MockHost {
    state: Rc<State>,
}

impl std::fmt::Debug for MockHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHost")
            .field("calls", &self.state.calls.borrow())
            .finish_non_exhaustive()
    }
}

impl MockHost {
    /// A host with no handlers: every capability call is denied until one is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers kubectl requests.
    pub fn kubectl(
        self,
        handler: impl FnMut(&kubectl::Request) -> Result<CommandOutput, HostError> + 'static,
    ) -> Self {
        self.state.handlers.borrow_mut().kubectl = Some(Box::new(handler));
        self
    }

    /// Answers ssh commands: `(host, command_id, params)`.
    pub fn ssh(
        self,
        handler: impl FnMut(&str, &str, &[(String, String)]) -> Result<CommandOutput, HostError>
        + 'static,
    ) -> Self {
        self.state.handlers.borrow_mut().ssh = Some(Box::new(handler));
        self
    }

    /// Answers HTTP requests.
    pub fn http(
        self,
        handler: impl FnMut(&http::Request) -> Result<http::Response, HostError> + 'static,
    ) -> Self {
        self.state.handlers.borrow_mut().http = Some(Box::new(handler));
        self
    }

    /// Makes this the current thread's host until the guard is dropped; the host installed
    /// before, if any, comes back then.
    #[must_use = "the double is uninstalled when the guard is dropped"]
    pub fn install(&self) -> Installed {
        let previous = CURRENT.with(|current| current.replace(Some(Rc::clone(&self.state))));
        Installed { previous }
    }

    /// Every call so far, timeline notes included, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.borrow().clone()
    }

    /// The kubectl requests so far.
    pub fn kubectl_requests(&self) -> Vec<kubectl::Request> {
        self.filter(|call| match call {
            Call::Kubectl(request) | Call::KubectlSelected(request, _) => Some(request.clone()),
            _ => None,
        })
    }

    /// Makes [`crate::run_context::dry_run`] answer `dry_run` (default `false`).
    pub fn dry_run(self, dry_run: bool) -> Self {
        *self.state.dry_run.borrow_mut() = dry_run;
        self
    }

    /// The reasons given to [`crate::run_context::escalate`], in order.
    pub fn escalations(&self) -> Vec<String> {
        self.filter(|call| match call {
            Call::Escalate(reason) => Some(reason.clone()),
            _ => None,
        })
    }

    /// The verbs of the kubectl requests so far: a quick way to assert "no write happened".
    pub fn kubectl_verbs(&self) -> Vec<Verb> {
        self.filter(|call| match call {
            Call::Kubectl(request) => Some(request.verb),
            _ => None,
        })
    }

    /// The HTTP requests so far.
    pub fn http_requests(&self) -> Vec<http::Request> {
        self.filter(|call| match call {
            Call::Http(request) => Some(request.clone()),
            _ => None,
        })
    }

    /// The ssh calls so far, as `(host, command_id)`.
    pub fn ssh_commands(&self) -> Vec<(String, String)> {
        self.filter(|call| match call {
            Call::Ssh { host, command, .. } => Some((host.clone(), command.clone())),
            _ => None,
        })
    }

    /// The timeline notes so far.
    pub fn notes(&self) -> Vec<String> {
        self.filter(|call| match call {
            Call::Note(text) => Some(text.clone()),
            _ => None,
        })
    }

    fn filter<T>(&self, pick: impl Fn(&Call) -> Option<T>) -> Vec<T> {
        self.state.calls.borrow().iter().filter_map(pick).collect()
    }
}

/// Keeps a [`MockHost`] installed; dropping it restores the previous one.
#[derive(Debug)]
pub struct Installed {
    previous: Option<Rc<State>>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn current() -> Option<Rc<State>> {
    CURRENT.with(|current| current.borrow().clone())
}

#[cfg(not(target_arch = "wasm32"))]
fn no_double(capability: &str) -> HostError {
    HostError::Denied(format!("no test double installed for {capability}"))
}

/// Records the call, then runs the handler picked by `slot` (taken out while it runs).
#[cfg(not(target_arch = "wasm32"))]
fn dispatch<H, T>(
    capability: &str,
    call: impl FnOnce() -> Call,
    slot: impl Fn(&mut Handlers) -> &mut Option<H>,
    invoke: impl FnOnce(&mut H) -> Result<T, HostError>,
) -> Result<T, HostError> {
    let Some(state) = current() else {
        return Err(no_double(capability));
    };
    state.calls.borrow_mut().push(call());
    let Some(mut handler) = slot(&mut state.handlers.borrow_mut()).take() else {
        return Err(HostError::Denied(format!(
            "the test double has no {capability} handler"
        )));
    };
    let result = invoke(&mut handler);
    *slot(&mut state.handlers.borrow_mut()) = Some(handler);
    result
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dispatch_kubectl(request: &kubectl::Request) -> Result<CommandOutput, HostError> {
    dispatch(
        "kubectl",
        || Call::Kubectl(request.clone()),
        |h| &mut h.kubectl,
        |h| h(request),
    )
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dispatch_ssh(
    host: &str,
    command: &str,
    params: &[(String, String)],
) -> Result<CommandOutput, HostError> {
    dispatch(
        "ssh",
        || Call::Ssh {
            host: host.to_owned(),
            command: command.to_owned(),
            params: params.to_vec(),
        },
        |h| &mut h.ssh,
        |h| h(host, command, params),
    )
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dispatch_http(request: &http::Request) -> Result<http::Response, HostError> {
    dispatch(
        "http",
        || Call::Http(request.clone()),
        |h| &mut h.http,
        |h| h(request),
    )
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dispatch_kubectl_selected(
    request: &kubectl::Request,
    field_selector: &str,
) -> Result<CommandOutput, HostError> {
    dispatch(
        "kubectl",
        || Call::KubectlSelected(request.clone(), field_selector.to_owned()),
        |h| &mut h.kubectl,
        |h| h(request),
    )
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dispatch_dry_run() -> bool {
    current().is_some_and(|state| *state.dry_run.borrow())
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dispatch_escalate(reason: &str) {
    if let Some(state) = current() {
        state
            .calls
            .borrow_mut()
            .push(Call::Escalate(reason.to_owned()));
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dispatch_note(text: &str) {
    if let Some(state) = current() {
        state.calls.borrow_mut().push(Call::Note(text.to_owned()));
    }
}

/// A command that exited 0 and printed `stdout`.
pub fn stdout(stdout: impl Into<String>) -> CommandOutput {
    CommandOutput {
        exit_code: 0,
        stdout: stdout.into(),
        stderr: String::new(),
        truncated: false,
    }
}

/// A command that exited with `code` and printed `stderr`.
pub fn exit(code: i32, stderr: impl Into<String>) -> CommandOutput {
    CommandOutput {
        exit_code: code,
        stdout: String::new(),
        stderr: stderr.into(),
        truncated: false,
    }
}

/// An HTTP response with no headers.
pub fn response(status: u16, body: impl Into<Vec<u8>>) -> http::Response {
    http::Response {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// A `kubectl get pods -o json` document listing these pods, as [`kubectl::get_pods`] reads
/// it back: each pod has one container carrying all its restarts.
pub fn pod_list_json(pods: &[PodStatus]) -> String {
    let items: Vec<serde_json::Value> = pods
        .iter()
        .map(|pod| {
            serde_json::json!({
                "metadata": { "name": pod.name },
                "status": {
                    "phase": pod.phase,
                    "conditions": [{ "type": "Ready", "status": if pod.ready { "True" } else { "False" } }],
                    "containerStatuses": [{
                        "name": "main", "restartCount": pod.restarts, "ready": pod.ready,
                        "state": match &pod.waiting_reason {
                            Some(reason) => serde_json::json!({ "waiting": { "reason": reason } }),
                            None => serde_json::json!({ "running": {} }),
                        },
                    }],
                },
            })
        })
        .collect();
    serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }).to_string()
}

/// A pod for [`pod_list_json`]: ready when `Running` with no restarts.
pub fn pod(name: &str, phase: &str, restarts: u32) -> PodStatus {
    PodStatus {
        name: name.to_owned(),
        phase: phase.to_owned(),
        restarts,
        ready: phase == "Running" && restarts == 0,
        waiting_reason: None,
    }
}

/// A pod for [`pod_list_json`] whose container waits for `reason` (`CrashLoopBackOff`,
/// `ImagePullBackOff`, …): not ready; `Pending` for a pull that fails, else `Running`.
pub fn pod_waiting(name: &str, reason: &str, restarts: u32) -> PodStatus {
    let phase = if reason.contains("Pull") || reason == "ContainerCreating" {
        "Pending"
    } else {
        "Running"
    };
    PodStatus {
        name: name.to_owned(),
        phase: phase.to_owned(),
        restarts,
        ready: false,
        waiting_reason: Some(reason.to_owned()),
    }
}

/// A `kubectl get deployment -o json` document, as [`kubectl::get_deployment`] reads it back:
/// `desired` replicas of which `ready` are ready (and updated, and available), selecting
/// pods by `labels`.
pub fn deployment_json(name: &str, desired: u32, ready: u32, labels: &[(&str, &str)]) -> String {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": { "replicas": desired, "selector": { "matchLabels": labels } },
        "status": { "replicas": desired, "readyReplicas": ready, "updatedReplicas": ready,
                    "availableReplicas": ready },
    })
    .to_string()
}

/// Starts an [`Incident`] for a test: a firing `high` alert from `cli`, no labels.
pub fn incident() -> IncidentBuilder {
    IncidentBuilder {
        incident: Incident {
            id: "INC-TEST0001".to_owned(),
            title: "test incident".to_owned(),
            severity: Severity::High,
            source: "cli".to_owned(),
            status: "firing".to_owned(),
            labels: Vec::new(),
            annotations: Vec::new(),
            fingerprint: "0000000000000000".to_owned(),
            starts_at: None,
            alert_json: String::new(),
        },
        alert_json: None,
    }
}

/// Builds a test [`Incident`]; start with [`incident`].
#[derive(Debug, Clone)]
pub struct IncidentBuilder {
    incident: Incident,
    alert_json: Option<String>,
}

impl IncidentBuilder {
    /// Sets the incident id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.incident.id = id.into();
        self
    }

    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.incident.title = title.into();
        self
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.incident.severity = severity;
        self
    }

    /// Sets the source (`alertmanager`, `grafana`, `generic`, `cli`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.incident.source = source.into();
        self
    }

    /// Sets the status (`firing` or `resolved`).
    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.incident.status = status.into();
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.incident.labels.push((key.into(), value.into()));
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.incident.annotations.push((key.into(), value.into()));
        self
    }

    /// Sets the fingerprint.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.incident.fingerprint = fingerprint.into();
        self
    }

    /// Sets when the alert started (RFC 3339).
    pub fn starts_at(mut self, starts_at: impl Into<String>) -> Self {
        self.incident.starts_at = Some(starts_at.into());
        self
    }

    /// Sets the raw alert JSON. By default it is built from the status, labels and
    /// annotations.
    pub fn alert_json(mut self, alert_json: impl Into<String>) -> Self {
        self.alert_json = Some(alert_json.into());
        self
    }

    /// The incident.
    pub fn build(self) -> Incident {
        let mut incident = self.incident;
        incident.alert_json = self.alert_json.unwrap_or_else(|| {
            let object = |pairs: &[(String, String)]| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                    .collect::<serde_json::Map<_, _>>()
            };
            serde_json::json!({
                "status": incident.status,
                "labels": object(&incident.labels),
                "annotations": object(&incident.annotations),
                "startsAt": incident.starts_at,
                "fingerprint": incident.fingerprint,
            })
            .to_string()
        });
        incident
    }
}

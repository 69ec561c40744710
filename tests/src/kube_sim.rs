//! A Kubernetes API server simulator that the real `kubectl` talks to.
//!
//! It speaks the real REST protocol over plain HTTP on `127.0.0.1` (no auth): legacy discovery,
//! pods (and `pods/log`), events, namespaces, nodes, services, deployments (and
//! `deployments/scale`) and replica sets; label and field selectors; JSON, merge and strategic
//! merge patches; server-side dry run; `Status` errors. A tiny deployment controller makes
//! `kubectl rollout history|undo|restart|status` and `kubectl scale` behave as on a real cluster
//! (see [`KubeSim::add_service`]). Every request is recorded.
//!
//! ```no_run
//! use quell_tests::kube_sim::{KubeSim, Scenario};
//!
//! let sim = KubeSim::start()?;
//! sim.add_service("production", "api", Scenario::crash_looping(5));
//! let dir = tempfile::tempdir()?;
//! sim.write_kubeconfig(&dir.path().join("kubeconfig"), "sim")?;
//! // kubectl --kubeconfig … --context sim rollout undo deployment/api -n production
//! let deployment = sim.deployment("production", "api").expect("deployment");
//! assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "api:v2");
//! assert!(sim.writes().is_empty());
//! # Ok::<(), anyhow::Error>(())
//! ```

mod api;
mod controller;
mod discovery;
mod fixtures;
mod objects;
mod patch;
mod selector;
mod status;
mod store;
mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use serde_json::{Value, json};

pub use fixtures::{Event, Pod, PodHealth, Scenario};

use crate::record::RecordedRequest;
use crate::serve::ServerThread;
use api::Shared;
use discovery::Resource;
use store::PodLogs;

/// A running simulator; stops when dropped.
pub struct KubeSim {
    shared: Arc<Shared>,
    server: ServerThread,
}

impl KubeSim {
    /// Starts an empty cluster (namespaces `default`, `kube-system`; one node) on
    /// `127.0.0.1` with a free port, served from its own thread.
    pub fn start() -> anyhow::Result<KubeSim> {
        let shared = Arc::new(Shared::default());
        {
            let mut store = shared.store();
            store.ensure_namespace("default");
            store.ensure_namespace("kube-system");
            store.create(Resource::Node, objects::node());
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = ServerThread::start(addr, api::router(Arc::clone(&shared)), "kube-sim")
            .context("starting the Kubernetes API simulator")?;
        Ok(KubeSim { shared, server })
    }

    /// The server URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Writes a kubeconfig whose cluster, user and context are all named `context` (also the
    /// current context), pointing at this simulator, with no credentials.
    pub fn write_kubeconfig(&self, path: &Path, context: &str) -> anyhow::Result<()> {
        // JSON strings are YAML strings, so any context name is quoted safely.
        let name = json!(context).to_string();
        let server = json!(self.url()).to_string();
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n\
             contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n\
             current-context: {name}\nusers:\n- name: {name}\n  user: {{}}\npreferences: {{}}\n"
        );
        std::fs::write(path, config).with_context(|| format!("writing {}", path.display()))
    }

    /// Adds deployment `service` in `namespace` (created if missing) with two revisions:
    /// image `{service}:v1` (replica set revision 1, scaled to 0) and `{service}:v2` (revision
    /// 2, current), selector and pod labels `app={service}`, one container named `service`.
    /// The current revision's pods (`{service}-<hash>-<suffix>`) behave as `scenario` says.
    ///
    /// Afterwards the controller keeps converging: a template change (`rollout undo`,
    /// `rollout restart`) activates the matching replica set under the next revision or
    /// creates one, scales the others to 0 and replaces their pods with healthy ones; `scale`
    /// adds or removes pods; a deleted pod is replaced by a healthy one.
    pub fn add_service(&self, namespace: &str, service: &str, scenario: Scenario) {
        fixtures::add_service(&mut self.shared.store(), namespace, service, &scenario);
    }

    /// Adds (or replaces) a standalone pod, creating the namespace if missing.
    pub fn add_pod(&self, namespace: &str, pod: Pod) {
        fixtures::add_pod(&mut self.shared.store(), namespace, &pod);
    }

    /// Adds an event.
    pub fn add_event(&self, namespace: &str, event: Event) {
        fixtures::add_event(&mut self.shared.store(), namespace, &event);
    }

    /// Sets a pod's logs: `current` for `kubectl logs`, `previous` for `kubectl logs
    /// --previous` (`None`: the request fails as when there is no terminated container).
    pub fn set_logs(&self, namespace: &str, pod: &str, current: &str, previous: Option<&str>) {
        let logs = PodLogs {
            current: current.to_owned(),
            previous: previous.map(str::to_owned),
        };
        self.shared.store().set_logs(namespace, pod, logs);
    }

    /// Sets how a pod's containers behave; false if there is no such pod.
    pub fn set_pod_health(&self, namespace: &str, pod: &str, health: PodHealth) -> bool {
        let mut store = self.shared.store();
        let Some(mut object) = store.get(Resource::Pod, namespace, pod).cloned() else {
            return false;
        };
        object["status"] = objects::pod_status(&object, health);
        store.update(Resource::Pod, object);
        controller::reconcile(&mut store, namespace);
        true
    }

    /// The deployment as `kubectl get deployment NAME -o json` would show it.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get("deployments", namespace, name)
    }

    /// An object by resource (`pods`, `po`, `Pod`, `rs`, …), namespace (ignored for
    /// cluster-scoped resources) and name.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = Resource::from_name(resource)?;
        self.shared.store().get(resource, namespace, name).cloned()
    }

    /// All objects of a resource in a namespace (every namespace when empty), by name.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        let Some(resource) = Resource::from_name(resource) else {
            return Vec::new();
        };
        let namespace = (!namespace.is_empty()).then_some(namespace);
        self.shared
            .store()
            .list(resource, namespace)
            .cloned()
            .collect()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log.all()
    }

    /// The requests that were not `GET` (writes, dry runs included).
    pub fn writes(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(RecordedRequest::is_write)
            .collect()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    /// In stall mode the server accepts connections and reads requests (they are recorded)
    /// but never answers them. Requests already stalled stay stalled after turning it off.
    pub fn set_stall(&self, on: bool) {
        self.shared.stall.store(on, Ordering::SeqCst);
    }
}

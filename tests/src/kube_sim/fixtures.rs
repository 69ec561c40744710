//! What a test puts into the simulated cluster: services with a scripted pod behaviour, single
//! pods, events and logs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::controller::{self, owned};
use super::discovery::Resource;
use super::objects;
use super::store::{PodLogs, Store};

/// How a pod's containers behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodHealth {
    /// Running and ready, no restarts.
    Running,
    /// Waiting in `CrashLoopBackOff` after `restarts` restarts (last exit: code 1, `Error`);
    /// not ready.
    CrashLooping {
        /// The containers' `restartCount`.
        restarts: u32,
    },
    /// `Pending`: the image cannot be pulled (`ImagePullBackOff`); never started, not ready.
    ImagePullBackOff,
}

/// The state of the pods of a service added with [`KubeSim::add_service`].
///
/// Text fields may use the placeholders `{service}`, `{namespace}`, `{pod}`, `{container}` and
/// `{image}`, filled in for each pod.
///
/// [`KubeSim::add_service`]: super::KubeSim::add_service
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The deployment's `spec.replicas`: how many pods the current revision has.
    pub replicas: u32,
    /// How those pods behave.
    pub health: PodHealth,
    /// Each pod's current container log.
    pub logs: String,
    /// Each pod's previous container log (`kubectl logs --previous`); `None`: there is none.
    pub previous_logs: Option<String>,
    /// Warning events `(reason, message)` recorded against each pod, with `count` set to the
    /// pod's restart count.
    pub warnings: Vec<(String, String)>,
}

impl Scenario {
    /// `replicas` running, ready pods.
    pub fn healthy(replicas: u32) -> Scenario {
        Scenario {
            replicas,
            health: PodHealth::Running,
            logs: "starting {image}\nlistening on :8080\n".to_owned(),
            previous_logs: None,
            warnings: Vec::new(),
        }
    }

    /// One pod in `CrashLoopBackOff` after `restarts` restarts, with a panic in its logs and
    /// a `BackOff` warning event.
    pub fn crash_looping(restarts: u32) -> Scenario {
        let crash = "starting {image}\nloading config from /etc/{service}/config.yaml\n\
                     panic: invalid config: missing key \"database.url\"\n\n\
                     goroutine 1 [running]:\nmain.main()\n\t/src/main.go:42 +0x1d\n";
        Scenario {
            replicas: 1,
            health: PodHealth::CrashLooping { restarts },
            logs: crash.to_owned(),
            previous_logs: Some(crash.to_owned()),
            warnings: vec![(
                "BackOff".to_owned(),
                "Back-off restarting failed container {container} in pod {pod}_{namespace}"
                    .to_owned(),
            )],
        }
    }
}

impl Scenario {
    /// `replicas` pods stuck `Pending` in `ImagePullBackOff`, with a `Failed` warning event.
    pub fn image_pull_failing(replicas: u32) -> Scenario {
        Scenario {
            replicas,
            health: PodHealth::ImagePullBackOff,
            logs: String::new(),
            previous_logs: None,
            warnings: vec![(
                "Failed".to_owned(),
                "Failed to pull image \"{image}\": manifest unknown".to_owned(),
            )],
        }
    }

    /// The scenarios by name, for `kube-sim --scenario`: `healthy`, `crash-looping`,
    /// `image-pull-failing`.
    ///
    /// # Errors
    /// An unknown name, with the names there are.
    pub fn named(name: &str) -> Result<Scenario, String> {
        match name {
            "healthy" => Ok(Scenario::healthy(2)),
            "crash-looping" => Ok(Scenario::crash_looping(5)),
            "image-pull-failing" => Ok(Scenario::image_pull_failing(1)),
            other => Err(format!(
                "no scenario {other:?}: healthy, crash-looping or image-pull-failing"
            )),
        }
    }
}

/// A standalone pod for [`KubeSim::add_pod`] (no owner; the controller leaves it alone).
///
/// [`KubeSim::add_pod`]: super::KubeSim::add_pod
#[derive(Clone, Debug)]
pub struct Pod {
    /// `metadata.name`.
    pub name: String,
    /// The one container's image; the container is named after the image's repository
    /// (`registry/nginx:1.27` → `nginx`).
    pub image: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// How the container behaves.
    pub health: PodHealth,
    /// The current container log.
    pub logs: String,
    /// The previous container log; `None`: there is none.
    pub previous_logs: Option<String>,
}

impl Pod {
    /// A running pod `name` with one container running `image`, no labels, no logs.
    pub fn new(name: &str, image: &str) -> Pod {
        Pod {
            name: name.to_owned(),
            image: image.to_owned(),
            labels: BTreeMap::new(),
            health: PodHealth::Running,
            logs: String::new(),
            previous_logs: None,
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Pod {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets how the container behaves.
    pub fn health(mut self, health: PodHealth) -> Pod {
        self.health = health;
        self
    }

    /// Sets the current and previous logs.
    pub fn logs(mut self, current: &str, previous: Option<&str>) -> Pod {
        self.logs = current.to_owned();
        self.previous_logs = previous.map(str::to_owned);
        self
    }
}

/// An event for [`KubeSim::add_event`].
///
/// [`KubeSim::add_event`]: super::KubeSim::add_event
#[derive(Clone, Debug)]
pub struct Event {
    /// The kind of the object it is about (`Pod`, `Deployment`, …).
    pub kind: String,
    /// The name of the object it is about (need not exist).
    pub name: String,
    /// `Warning` when true, else `Normal`.
    pub warning: bool,
    /// `reason` (`BackOff`, `Unhealthy`, …).
    pub reason: String,
    /// `message`.
    pub message: String,
    /// `count`.
    pub count: u32,
}

impl Event {
    /// A `Warning` event about `kind`/`name`, count 1.
    pub fn warning(kind: &str, name: &str, reason: &str, message: &str) -> Event {
        Event {
            kind: kind.to_owned(),
            name: name.to_owned(),
            warning: true,
            reason: reason.to_owned(),
            message: message.to_owned(),
            count: 1,
        }
    }

    /// A `Normal` event about `kind`/`name`, count 1.
    pub fn normal(kind: &str, name: &str, reason: &str, message: &str) -> Event {
        Event {
            warning: false,
            ..Event::warning(kind, name, reason, message)
        }
    }

    /// Sets `count`.
    pub fn count(mut self, count: u32) -> Event {
        self.count = count;
        self
    }
}

/// Adds deployment `service` at revision 2 (`{service}:v1` then `{service}:v2`) with pods
/// behaving as `scenario` says. An existing deployment of that name is replaced.
pub(crate) fn add_service(store: &mut Store, namespace: &str, service: &str, scenario: &Scenario) {
    store.ensure_namespace(namespace);
    store.remove(Resource::Deployment, namespace, service);
    let first = objects::deployment(
        namespace,
        service,
        &format!("{service}:v1"),
        scenario.replicas,
    );
    store.create(Resource::Deployment, first);
    controller::reconcile(store, namespace);
    if let Some(mut deployment) = store.get(Resource::Deployment, namespace, service).cloned() {
        deployment["spec"]["template"] = objects::pod_template(service, &format!("{service}:v2"));
        store.update(Resource::Deployment, deployment);
    }
    controller::reconcile(store, namespace);

    let Some(deployment) = store.get(Resource::Deployment, namespace, service).cloned() else {
        return;
    };
    let uid = &deployment["metadata"]["uid"];
    let pods = owned(store, Resource::ReplicaSet, namespace, uid)
        .iter()
        .filter(|rs| controller::revision(rs) == controller::revision(&deployment))
        .flat_map(|rs| owned(store, Resource::Pod, namespace, &rs["metadata"]["uid"]))
        .collect::<Vec<_>>();
    for mut pod in pods {
        pod["status"] = objects::pod_status(&pod, scenario.health);
        let fill = placeholders(service, &pod);
        store.set_logs(
            namespace,
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            PodLogs {
                current: fill(&scenario.logs),
                previous: scenario.previous_logs.as_deref().map(&fill),
            },
        );
        let count = match scenario.health {
            PodHealth::CrashLooping { restarts } => restarts,
            PodHealth::Running => 1,
            // kubelet retries the pull with back-off, reporting each failure.
            PodHealth::ImagePullBackOff => 4,
        };
        for (reason, message) in &scenario.warnings {
            let name = event_name(store, &pod);
            let event = objects::event(&name, &pod, true, reason, &fill(message), count);
            store.create(Resource::Event, event);
        }
        store.update(Resource::Pod, pod);
    }
    controller::reconcile(store, namespace);
}

/// Adds a standalone pod.
pub(crate) fn add_pod(store: &mut Store, namespace: &str, pod: &Pod) {
    store.ensure_namespace(namespace);
    let repository = pod.image.rsplit('/').next().unwrap_or_default();
    let container = repository.split([':', '@']).next().unwrap_or("main");
    let mut template = objects::pod_template(container, &pod.image);
    template["metadata"]["labels"] = json!(pod.labels);
    let object = objects::pod(namespace, &pod.name, &template, None, pod.health);
    store.remove(Resource::Pod, namespace, &pod.name);
    store.create(Resource::Pod, object);
    let logs = PodLogs {
        current: pod.logs.clone(),
        previous: pod.previous_logs.clone(),
    };
    store.set_logs(namespace, &pod.name, logs);
}

/// Adds an event, about the named object if it exists.
pub(crate) fn add_event(store: &mut Store, namespace: &str, event: &Event) {
    store.ensure_namespace(namespace);
    let resource = Resource::from_name(&event.kind);
    let object = resource
        .and_then(|r| store.get(r, namespace, &event.name).cloned())
        .unwrap_or_else(|| {
            json!({
                "apiVersion": resource.map_or("v1", |r| r.api_version()),
                "kind": event.kind,
                "metadata": {"name": event.name, "namespace": namespace},
            })
        });
    let name = event_name(store, &object);
    let object = objects::event(
        &name,
        &object,
        event.warning,
        &event.reason,
        &event.message,
        event.count,
    );
    store.create(Resource::Event, object);
}

fn event_name(store: &mut Store, object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    format!("{name}.{:016x}", store.next_id())
}

/// Fills a scenario text's placeholders for one pod.
fn placeholders(service: &str, pod: &Value) -> impl Fn(&str) -> String + use<> {
    let pairs = [
        ("{service}", service.to_owned()),
        ("{namespace}", str_at(pod, "/metadata/namespace")),
        ("{pod}", str_at(pod, "/metadata/name")),
        ("{container}", str_at(pod, "/spec/containers/0/name")),
        ("{image}", str_at(pod, "/spec/containers/0/image")),
    ];
    move |text: &str| {
        pairs
            .iter()
            .fold(text.to_owned(), |t, (k, v)| t.replace(k, v))
    }
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

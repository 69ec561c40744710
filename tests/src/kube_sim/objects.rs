//! JSON builders for the objects the simulator creates: deployments, replica sets, pods,
//! events and nodes, shaped like a real API server's so kubectl decodes them.

use serde_json::{Value, json};

use super::store::now;
use crate::kube_sim::PodHealth;

/// The label the deployment controller puts on replica sets and their pods.
pub(crate) const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation carrying a deployment's or replica set's revision.
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation listing the earlier revisions a replica set had.
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The node every pod runs on.
pub(crate) const NODE: &str = "sim-node-1";

/// A pod template for `app` with one container `app` running `image`.
pub(crate) fn pod_template(app: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{
                "name": app,
                "image": image,
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "imagePullPolicy": "IfNotPresent",
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
        },
    })
}

/// A deployment `name` selecting `app=name`, before the controller has seen it.
pub(crate) fn deployment(namespace: &str, name: &str, image: &str, replicas: u32) -> Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name},
            "annotations": {},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, image),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    })
}

/// An `ownerReferences` entry making `owner` the controller of another object.
pub(crate) fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A replica set of `deployment` running `template` (already carrying the hash label).
pub(crate) fn replica_set(
    deployment: &Value,
    template: &Value,
    hash: &str,
    revision: u64,
) -> Value {
    let meta = &deployment["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
    json!({
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": meta["namespace"],
            "labels": template["metadata"]["labels"],
            "annotations": {
                REVISION: revision.to_string(),
                "deployment.kubernetes.io/desired-replicas": deployment["spec"]["replicas"].to_string(),
                "deployment.kubernetes.io/max-replicas": deployment["spec"]["replicas"].to_string(),
            },
            "ownerReferences": [controller_ref(deployment)],
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
        "status": {"replicas": 0, "observedGeneration": 1},
    })
}

/// A pod named `name` from `template`, optionally owned by `owner`.
pub(crate) fn pod(
    namespace: &str,
    name: &str,
    template: &Value,
    owner: Option<&Value>,
    health: PodHealth,
) -> Value {
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(NODE);
    let mut pod = json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": spec,
    });
    if let Some(annotations) = template["metadata"].get("annotations") {
        pod["metadata"]["annotations"] = annotations.clone();
    }
    if let Some(owner) = owner {
        pod["metadata"]["ownerReferences"] = json!([controller_ref(owner)]);
    }
    pod["status"] = pod_status(&pod, health);
    pod
}

/// The `status` of a pod whose every container is in `health`.
pub(crate) fn pod_status(pod: &Value, health: PodHealth) -> Value {
    let started = now();
    let ready = health == PodHealth::Running;
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let statuses = containers
        .iter()
        .map(|c| {
            let (state, last_state, restarts) = match health {
                PodHealth::Running => (json!({"running": {"startedAt": started}}), json!({}), 0),
                PodHealth::CrashLooping { restarts } => (
                    json!({"waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": format!("back-off 5m0s restarting failed container={} pod={pod_name}", c["name"].as_str().unwrap_or_default()),
                    }}),
                    json!({"terminated": {
                        "exitCode": 1, "reason": "Error",
                        "startedAt": started, "finishedAt": started,
                    }}),
                    restarts,
                ),
                PodHealth::ImagePullBackOff => (
                    json!({"waiting": {
                        "reason": "ImagePullBackOff",
                        "message": format!("Back-off pulling image \"{}\"", c["image"].as_str().unwrap_or_default()),
                    }}),
                    json!({}),
                    0,
                ),
            };
            json!({
                "name": c["name"], "image": c["image"], "imageID": format!("docker.io/library/{}", c["image"].as_str().unwrap_or_default()),
                "ready": ready, "started": ready, "restartCount": restarts,
                "state": state, "lastState": last_state,
            })
        })
        .collect::<Vec<_>>();
    let condition = |kind: &str, ok: bool| {
        let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": started});
        if !ok {
            c["reason"] = json!("ContainersNotReady");
        }
        c
    };
    let phase = if health == PodHealth::ImagePullBackOff {
        "Pending"
    } else {
        "Running"
    };
    json!({
        "phase": phase,
        "conditions": [
            condition("Initialized", true),
            condition("Ready", ready),
            condition("ContainersReady", ready),
            condition("PodScheduled", true),
        ],
        "hostIP": "10.0.0.10",
        "podIP": "10.244.0.10",
        "startTime": started,
        "qosClass": "BestEffort",
        "containerStatuses": statuses,
    })
}

/// True when the pod's `Ready` condition is `True`.
pub(crate) fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// An event named `name` about `object`.
pub(crate) fn event(
    name: &str,
    object: &Value,
    warning: bool,
    reason: &str,
    message: &str,
    count: u32,
) -> Value {
    let meta = &object["metadata"];
    let time = now();
    let component = if object["kind"] == "Pod" {
        "kubelet"
    } else {
        "deployment-controller"
    };
    json!({
        "metadata": {"name": name, "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": object["apiVersion"], "kind": object["kind"],
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
        },
        "reason": reason,
        "message": message,
        "type": if warning { "Warning" } else { "Normal" },
        "count": count.max(1),
        "firstTimestamp": time,
        "lastTimestamp": time,
        "source": {"component": component},
        "reportingComponent": component,
    })
}

/// The one node.
pub(crate) fn node() -> Value {
    json!({
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now()}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.10"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Quell simulated node", "architecture": "amd64", "operatingSystem": "linux"},
        },
    })
}

//! A tiny deployment controller that converges at once after every write.
//!
//! For each deployment: the replica set whose pod template equals the deployment's (ignoring
//! `pod-template-hash`) becomes the active one — re-numbered to the next revision if it was an
//! older one (a rollback), or created as `NAME-<hash>` with the next revision. The active set
//! gets `spec.replicas` pods and every other set none; pods the controller creates are healthy.
//! Replica sets and pods whose controlling owner is gone are deleted (background cascade).

use serde_json::{Value, json};

use super::discovery::Resource;
use super::objects::{self, POD_TEMPLATE_HASH, REVISION, REVISION_HISTORY};
use super::store::{PodLogs, Store, now};
use crate::kube_sim::PodHealth;

/// Characters Kubernetes uses in generated names (`rand.SafeEncodeString`).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Brings every deployment in `namespace` (and what it owns) to its desired state.
pub(crate) fn reconcile(store: &mut Store, namespace: &str) {
    collect_garbage(store, namespace);
    let names = store
        .list(Resource::Deployment, Some(namespace))
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
        .collect::<Vec<_>>();
    for name in names {
        reconcile_deployment(store, namespace, &name);
    }
}

/// The revision annotation of a deployment or replica set (0 if absent).
pub(crate) fn revision(object: &Value) -> u64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Objects of `resource` in `namespace` whose controlling owner has `uid`.
pub(crate) fn owned(store: &Store, resource: Resource, namespace: &str, uid: &Value) -> Vec<Value> {
    store
        .list(resource, Some(namespace))
        .filter(|o| controller_of(o).is_some_and(|owner| owner["uid"] == *uid))
        .cloned()
        .collect()
}

fn controller_of(object: &Value) -> Option<&Value> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
}

fn collect_garbage(store: &mut Store, namespace: &str) {
    for resource in [Resource::ReplicaSet, Resource::Pod] {
        let orphans = store
            .list(resource, Some(namespace))
            .filter(|o| {
                controller_of(o).is_some_and(|owner| {
                    let owner_resource = match owner["kind"].as_str() {
                        Some("Deployment") => Resource::Deployment,
                        Some("ReplicaSet") => Resource::ReplicaSet,
                        _ => return false,
                    };
                    let name = owner["name"].as_str().unwrap_or_default();
                    store
                        .get(owner_resource, namespace, name)
                        .is_none_or(|o| o["metadata"]["uid"] != owner["uid"])
                })
            })
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
            .collect::<Vec<_>>();
        for name in orphans {
            store.remove(resource, namespace, &name);
        }
    }
}

fn reconcile_deployment(store: &mut Store, namespace: &str, name: &str) {
    let Some(deployment) = store.get(Resource::Deployment, namespace, name).cloned() else {
        return;
    };
    let uid = &deployment["metadata"]["uid"];
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let active = activate_replica_set(store, &deployment);
    for mut rs in owned(store, Resource::ReplicaSet, namespace, uid) {
        let rs_name = rs["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let desired = if rs_name == active { replicas } else { 0 };
        let current = rs["spec"]["replicas"].as_u64().unwrap_or(0);
        if current != desired {
            let verb = if desired > current { "up" } else { "down" };
            let message =
                format!("Scaled {verb} replica set {rs_name} from {current} to {desired}");
            record_event(store, &deployment, false, "ScalingReplicaSet", &message);
            rs["spec"]["replicas"] = json!(desired);
            if desired > 0 {
                rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(desired.to_string());
            }
        }
        let pods = sync_pods(store, &rs, desired);
        let ready = pods.iter().filter(|p| objects::pod_ready(p)).count();
        rs["status"] = json!({
            "replicas": pods.len(), "fullyLabeledReplicas": pods.len(),
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        store.update(Resource::ReplicaSet, rs);
    }
    update_deployment_status(store, deployment, &active);
}

/// Finds or creates the replica set for the deployment's template; returns its name.
fn activate_replica_set(store: &mut Store, deployment: &Value) -> String {
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let template = &deployment["spec"]["template"];
    let wanted = normalized(template);
    let sets = owned(
        store,
        Resource::ReplicaSet,
        namespace,
        &deployment["metadata"]["uid"],
    );
    let max = sets.iter().map(revision).max().unwrap_or(0);
    if let Some(rs) = sets
        .iter()
        .find(|rs| normalized(&rs["spec"]["template"]) == wanted)
    {
        let old = revision(rs);
        if old < max {
            let mut rs = rs.clone();
            let annotations = &mut rs["metadata"]["annotations"];
            let history = match annotations[REVISION_HISTORY].as_str() {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.to_string(),
            };
            annotations[REVISION] = json!((max + 1).to_string());
            annotations[REVISION_HISTORY] = json!(history);
            store.update(Resource::ReplicaSet, rs);
        }
        return rs["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let mut hash = template_hash(&wanted, 0);
    let base = deployment["metadata"]["name"].as_str().unwrap_or_default();
    for collisions in 1.. {
        if store
            .get(Resource::ReplicaSet, namespace, &format!("{base}-{hash}"))
            .is_none()
        {
            break;
        }
        hash = template_hash(&wanted, collisions);
    }
    let mut template = template.clone();
    template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
    let rs = objects::replica_set(deployment, &template, &hash, max + 1);
    let name = rs["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    store.create(Resource::ReplicaSet, rs);
    name
}

/// Deletes or creates pods of `rs` until it has `desired`; returns the remaining pods.
fn sync_pods(store: &mut Store, rs: &Value, desired: u64) -> Vec<Value> {
    let namespace = rs["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut pods = owned(store, Resource::Pod, &namespace, &rs["metadata"]["uid"]);
    // Like the real controller, delete unready pods first.
    pods.sort_by_key(objects::pod_ready);
    while pods.len() as u64 > desired {
        let pod = pods.remove(0);
        store.remove(
            Resource::Pod,
            &namespace,
            pod["metadata"]["name"].as_str().unwrap_or_default(),
        );
    }
    while (pods.len() as u64) < desired {
        let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
        let name = format!("{rs_name}-{}", pod_suffix(store.next_id()));
        let template = &rs["spec"]["template"];
        let pod = objects::pod(&namespace, &name, template, Some(rs), PodHealth::Running);
        let image = template["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        let current = format!("starting {image}\nlistening on :8080\n");
        store.set_logs(
            &namespace,
            &name,
            PodLogs {
                current,
                previous: None,
            },
        );
        if let Some(pod) = store.create(Resource::Pod, pod) {
            pods.push(pod);
        }
    }
    pods
}

fn update_deployment_status(store: &mut Store, mut deployment: Value, active: &str) {
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let uid = deployment["metadata"]["uid"].clone();
    let desired = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    let sets = owned(store, Resource::ReplicaSet, &namespace, &uid);
    let pods = sets
        .iter()
        .flat_map(|rs| owned(store, Resource::Pod, &namespace, &rs["metadata"]["uid"]))
        .collect::<Vec<_>>();
    let updated = pods
        .iter()
        .filter(|p| controller_of(p).is_some_and(|o| o["name"] == active))
        .count() as u64;
    let available = pods.iter().filter(|p| objects::pod_ready(p)).count() as u64;
    let active_revision = sets
        .iter()
        .find(|rs| rs["metadata"]["name"] == active)
        .map(revision)
        .unwrap_or(0);
    let previous = deployment["status"]["conditions"].clone();
    let done = updated == desired && available >= desired;
    let (reason, message) = if done {
        (
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{active}\" has successfully progressed."),
        )
    } else {
        (
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{active}\" is progressing."),
        )
    };
    let (avail_status, avail_reason, avail_message) = if available >= desired {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": pods.len(),
        "updatedReplicas": updated,
        "readyReplicas": available,
        "availableReplicas": available,
        "conditions": [
            condition(&previous, "Available", avail_status, avail_reason, avail_message),
            condition(&previous, "Progressing", "True", reason, &message),
        ],
    });
    if desired > available {
        status["unavailableReplicas"] = json!(desired - available);
    }
    deployment["status"] = status;
    deployment["metadata"]["annotations"][REVISION] = json!(active_revision.to_string());
    store.update(Resource::Deployment, deployment);
}

/// A status condition that keeps its timestamps while its status and reason are unchanged.
fn condition(previous: &Value, kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let old = previous
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let time = match old {
        Some(c) if c["status"] == status && c["reason"] == reason => {
            c["lastTransitionTime"].clone()
        }
        _ => json!(now()),
    };
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": time, "lastTransitionTime": time,
    })
}

/// Adds an event about `object`.
pub(crate) fn record_event(
    store: &mut Store,
    object: &Value,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let name = format!(
        "{}.{:08x}{:08x}",
        object["metadata"]["name"].as_str().unwrap_or_default(),
        fnv32a(message.as_bytes()),
        store.next_id()
    );
    store.create(
        Resource::Event,
        objects::event(&name, object, warning, reason, message, 1),
    );
}

/// A template with the hash label removed and every null, `{}` and `[]` dropped, so templates
/// that went through kubectl (which adds `creationTimestamp: null`, `resources: {}`) compare
/// equal to the originals.
fn normalized(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(POD_TEMPLATE_HASH);
    }
    prune(&mut t);
    t
}

fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The `pod-template-hash` of a normalized template, as Kubernetes spells it.
fn template_hash(template: &Value, collisions: u32) -> String {
    let mut bytes = template.to_string().into_bytes();
    if collisions > 0 {
        bytes.extend_from_slice(&collisions.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Five characters from the Kubernetes name alphabet, as in `api-5d8f7c9b4-x2k9q`.
fn pod_suffix(id: u64) -> String {
    let mut hash = fnv32a(&id.to_le_bytes()) as usize;
    (0..5)
        .map(|_| {
            let c = char::from(ALPHABET[hash % ALPHABET.len()]);
            hash /= ALPHABET.len();
            c
        })
        .collect()
}

fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

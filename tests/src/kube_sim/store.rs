//! The object store: JSON objects keyed by resource, namespace and name, with resource
//! versions, uids, generations and pod logs.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::discovery::Resource;

/// `(resource, namespace or "" for cluster-scoped, name)`.
type Key = (Resource, String, String);

/// Everything the simulated cluster holds. Cloned to serve dry-run requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    logs: BTreeMap<(String, String), PodLogs>,
    resource_version: u64,
    counter: u64,
}

/// A pod's scripted container logs.
#[derive(Clone, Debug, Default)]
pub(crate) struct PodLogs {
    pub(crate) current: String,
    /// `None`: there is no previous (terminated) container to read.
    pub(crate) previous: Option<String>,
}

/// The current time as RFC 3339 (`2025-01-01T00:00:00Z`).
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Store {
    /// The resource version of the latest write.
    pub(crate) fn resource_version(&self) -> String {
        self.resource_version.to_string()
    }

    /// A fresh number for uids and generated names.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    pub(crate) fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(resource, namespace, name))
    }

    /// Objects of `resource`, in one namespace or (with `None`) all of them, ordered by name.
    pub(crate) fn list<'a>(
        &'a self,
        resource: Resource,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |((r, ns, _), _)| {
                *r == resource && namespace.is_none_or(|want| !resource.namespaced() || ns == want)
            })
            .map(|(_, v)| v)
    }

    /// Stores a new object, filling `apiVersion`, `kind`, uid, creation time, generation and
    /// resource version. `None` if it already exists.
    pub(crate) fn create(&mut self, resource: Resource, mut object: Value) -> Option<Value> {
        let (namespace, name) = identity(resource, &object);
        if self.get(resource, &namespace, &name).is_some() {
            return None;
        }
        let uid = format!("5e1a0000-0000-4000-8000-{:012x}", self.next_id());
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind());
        let meta = &mut object["metadata"];
        if resource.namespaced() {
            meta["namespace"] = json!(namespace);
        }
        if meta["uid"].is_null() {
            meta["uid"] = json!(uid);
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!(now());
        }
        if has_generation(resource) {
            meta["generation"] = json!(1);
        }
        self.resource_version += 1;
        meta["resourceVersion"] = json!(self.resource_version());
        self.objects
            .insert(key(resource, &namespace, &name), object.clone());
        Some(object)
    }

    /// Replaces an existing object, keeping its identity (name, namespace, uid, creation time).
    /// Bumps the generation when `spec` changed and the resource version when anything did.
    /// `None` if there is no such object.
    pub(crate) fn update(&mut self, resource: Resource, mut object: Value) -> Option<Value> {
        let (namespace, name) = identity(resource, &object);
        let old = self.get(resource, &namespace, &name)?.clone();
        object["apiVersion"] = old["apiVersion"].clone();
        object["kind"] = old["kind"].clone();
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(value) => object["metadata"][field] = value.clone(),
                None => {
                    if let Some(meta) = object["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        if object == old {
            return Some(old);
        }
        if has_generation(resource) && object["spec"] != old["spec"] {
            let generation = old["metadata"]["generation"].as_u64().unwrap_or(0);
            object["metadata"]["generation"] = json!(generation + 1);
        }
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version());
        self.objects
            .insert(key(resource, &namespace, &name), object.clone());
        Some(object)
    }

    /// Removes an object, returning it.
    pub(crate) fn remove(
        &mut self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let removed = self.objects.remove(&key(resource, namespace, name))?;
        self.resource_version += 1;
        if resource == Resource::Pod {
            self.logs.remove(&(namespace.to_owned(), name.to_owned()));
        }
        Some(removed)
    }

    pub(crate) fn logs(&self, namespace: &str, pod: &str) -> Option<&PodLogs> {
        self.logs.get(&(namespace.to_owned(), pod.to_owned()))
    }

    pub(crate) fn set_logs(&mut self, namespace: &str, pod: &str, logs: PodLogs) {
        self.logs
            .insert((namespace.to_owned(), pod.to_owned()), logs);
    }

    /// Creates the namespace unless it exists.
    pub(crate) fn ensure_namespace(&mut self, name: &str) {
        if self.get(Resource::Namespace, "", name).is_none() {
            self.create(
                Resource::Namespace,
                json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }),
            );
        }
    }
}

fn key(resource: Resource, namespace: &str, name: &str) -> Key {
    let namespace = if resource.namespaced() { namespace } else { "" };
    (resource, namespace.to_owned(), name.to_owned())
}

/// `(namespace, name)` from an object's metadata.
fn identity(resource: Resource, object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    let namespace = if resource.namespaced() {
        meta["namespace"].as_str().unwrap_or("default")
    } else {
        ""
    };
    (
        namespace.to_owned(),
        meta["name"].as_str().unwrap_or_default().to_owned(),
    )
}

fn has_generation(resource: Resource) -> bool {
    matches!(resource, Resource::Deployment | Resource::ReplicaSet)
}

//! The resources the simulator serves and the legacy discovery documents that describe them.
//!
//! kubectl 1.32 first asks `/api` and `/apis` for aggregated discovery
//! (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,…`). These
//! documents are answered with `Content-Type: application/json`, which client-go takes as
//! "legacy discovery" and then fetches `/api/v1` and `/apis/apps/v1` once each, without retries.

use serde_json::{Value, json};

/// A served resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Resource {
    Pod,
    Event,
    Namespace,
    Node,
    Service,
    Deployment,
    ReplicaSet,
}

const ALL: [Resource; 7] = [
    Resource::Pod,
    Resource::Event,
    Resource::Namespace,
    Resource::Node,
    Resource::Service,
    Resource::Deployment,
    Resource::ReplicaSet,
];

const READ_WRITE: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Resource {
    /// The resource named `plural` (as in a URL) in group version `group_version`.
    pub(crate) fn from_plural(group_version: &str, plural: &str) -> Option<Resource> {
        ALL.into_iter()
            .find(|r| r.api_version() == group_version && r.plural() == plural)
    }

    /// Resolves a plural, singular, kind or short name as `kubectl get` would.
    pub(crate) fn from_name(name: &str) -> Option<Resource> {
        let name = name.to_ascii_lowercase();
        ALL.into_iter().find(|r| {
            r.plural() == name
                || r.singular() == name
                || r.kind().eq_ignore_ascii_case(&name)
                || r.short_names().contains(&name.as_str())
        })
    }

    pub(crate) fn plural(self) -> &'static str {
        match self {
            Resource::Pod => "pods",
            Resource::Event => "events",
            Resource::Namespace => "namespaces",
            Resource::Node => "nodes",
            Resource::Service => "services",
            Resource::Deployment => "deployments",
            Resource::ReplicaSet => "replicasets",
        }
    }

    fn singular(self) -> &'static str {
        self.plural().trim_end_matches('s')
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Resource::Pod => "Pod",
            Resource::Event => "Event",
            Resource::Namespace => "Namespace",
            Resource::Node => "Node",
            Resource::Service => "Service",
            Resource::Deployment => "Deployment",
            Resource::ReplicaSet => "ReplicaSet",
        }
    }

    /// `v1` for the core group, `apps/v1` for apps.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Resource::Deployment | Resource::ReplicaSet => "apps/v1",
            _ => "v1",
        }
    }

    pub(crate) fn namespaced(self) -> bool {
        !matches!(self, Resource::Namespace | Resource::Node)
    }

    fn short_names(self) -> &'static [&'static str] {
        match self {
            Resource::Pod => &["po"],
            Resource::Event => &["ev"],
            Resource::Namespace => &["ns"],
            Resource::Node => &["no"],
            Resource::Service => &["svc"],
            Resource::Deployment => &["deploy"],
            Resource::ReplicaSet => &["rs"],
        }
    }

    /// The `categories` kubectl uses to expand `kubectl get all`.
    fn categories(self) -> &'static [&'static str] {
        match self {
            Resource::Pod | Resource::Service | Resource::Deployment | Resource::ReplicaSet => {
                &["all"]
            }
            _ => &[],
        }
    }

    /// Subresources as `(name, discovery entry)`.
    fn subresources(self) -> Vec<Value> {
        let scale = |parent: &str| {
            json!({
                "name": format!("{parent}/scale"), "singularName": "", "namespaced": true,
                "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            })
        };
        let status = |parent: &str, kind: &str| {
            json!({
                "name": format!("{parent}/status"), "singularName": "", "namespaced": true,
                "kind": kind, "verbs": ["get", "patch", "update"],
            })
        };
        match self {
            Resource::Pod => vec![
                json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}),
                status("pods", "Pod"),
            ],
            Resource::Deployment => vec![scale("deployments"), status("deployments", "Deployment")],
            Resource::ReplicaSet => vec![scale("replicasets"), status("replicasets", "ReplicaSet")],
            _ => Vec::new(),
        }
    }

    fn discovery_entry(self) -> Value {
        let mut entry = json!({
            "name": self.plural(),
            "singularName": self.singular(),
            "namespaced": self.namespaced(),
            "kind": self.kind(),
            "verbs": READ_WRITE,
            "shortNames": self.short_names(),
        });
        if !self.categories().is_empty() {
            entry["categories"] = json!(self.categories());
        }
        entry
    }
}

/// `GET /version`. Minor 32 also makes the gcloud `kubectl` dispatcher pick its 1.32 client.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-quell-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn apps_group() -> Value {
    let version = json!({"groupVersion": "apps/v1", "version": "v1"});
    json!({"name": "apps", "versions": [version.clone()], "preferredVersion": version})
}

/// `GET /apis`.
pub(crate) fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [apps_group()]})
}

/// `GET /apis/apps`.
pub(crate) fn api_group(name: &str) -> Option<Value> {
    let mut group = apps_group();
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    (name == "apps").then_some(group)
}

/// `GET /api/v1` or `GET /apis/apps/v1`.
pub(crate) fn resource_list(group_version: &str) -> Option<Value> {
    let resources = ALL
        .into_iter()
        .filter(|r| r.api_version() == group_version)
        .flat_map(|r| std::iter::once(r.discovery_entry()).chain(r.subresources()))
        .collect::<Vec<_>>();
    (!resources.is_empty()).then(|| {
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        })
    })
}

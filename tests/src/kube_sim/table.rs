//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io,…`) when printing human output.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::discovery::Resource;

/// `(column name, type, priority)`; priority 1 columns show only with `-o wide`.
type Column = (&'static str, &'static str, u8);

/// The table for `objects`; `include_object` is the request's `includeObject` (`Object`,
/// `None`, default `PartialObjectMetadata`).
pub(crate) fn table(
    resource: Resource,
    objects: &[Value],
    resource_version: &str,
    include_object: Option<&str>,
) -> Value {
    let columns = columns(resource)
        .iter()
        .map(|(name, kind, priority)| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({"name": name, "type": kind, "format": format, "description": "", "priority": priority})
        })
        .collect::<Vec<_>>();
    let rows = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(resource, o)});
            match include_object {
                Some("None") => {}
                Some("Object") => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    });
                }
            }
            row
        })
        .collect::<Vec<_>>();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn columns(resource: Resource) -> &'static [Column] {
    match resource {
        Resource::Pod => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        Resource::Deployment => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        Resource::ReplicaSet => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        Resource::Event => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            ("Count", "integer", 1),
        ],
        Resource::Namespace => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Age", "string", 0),
        ],
        Resource::Node => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
        ],
        Resource::Service => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Age", "string", 0),
        ],
    }
}

fn cells(resource: Resource, o: &Value) -> Vec<Value> {
    let name = o["metadata"]["name"].clone();
    let created = json!(age(&o["metadata"]["creationTimestamp"]));
    let spec = &o["spec"];
    let status = &o["status"];
    let int = |v: &Value| json!(v.as_u64().unwrap_or(0));
    match resource {
        Resource::Pod => {
            let statuses = status["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let total = spec["containers"].as_array().map_or(0, Vec::len);
            let restarts: u64 = statuses
                .iter()
                .filter_map(|c| c["restartCount"].as_u64())
                .sum();
            let reason = statuses
                .iter()
                .find_map(|c| c["state"]["waiting"]["reason"].as_str())
                .or_else(|| status["phase"].as_str())
                .unwrap_or("Unknown");
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(reason),
                json!(restarts.to_string()),
                created,
                status["podIP"].clone(),
                spec["nodeName"].clone(),
            ]
        }
        Resource::Deployment => {
            let desired = spec["replicas"].as_u64().unwrap_or(1);
            let ready = status["readyReplicas"].as_u64().unwrap_or(0);
            let (containers, images) = containers(&spec["template"]);
            vec![
                name,
                json!(format!("{ready}/{desired}")),
                int(&status["updatedReplicas"]),
                int(&status["availableReplicas"]),
                created,
                json!(containers),
                json!(images),
                json!(selector(&spec["selector"])),
            ]
        }
        Resource::ReplicaSet => {
            let (containers, images) = containers(&spec["template"]);
            vec![
                name,
                int(&spec["replicas"]),
                int(&status["replicas"]),
                int(&status["readyReplicas"]),
                created,
                json!(containers),
                json!(images),
                json!(selector(&spec["selector"])),
            ]
        }
        Resource::Event => {
            let involved = &o["involvedObject"];
            let object = format!(
                "{}/{}",
                involved["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                involved["name"].as_str().unwrap_or_default()
            );
            vec![
                json!(age(&o["lastTimestamp"])),
                o["type"].clone(),
                o["reason"].clone(),
                json!(object),
                o["message"].clone(),
                int(&o["count"]),
            ]
        }
        Resource::Namespace => vec![name, status["phase"].clone(), created],
        Resource::Node => vec![
            name,
            json!("Ready"),
            json!("<none>"),
            created,
            status["nodeInfo"]["kubeletVersion"].clone(),
        ],
        Resource::Service => vec![name, spec["type"].clone(), created],
    }
}

fn containers(template: &Value) -> (String, String) {
    let containers = template["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let field = |key: &str| {
        containers
            .iter()
            .filter_map(|c| c[key].as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    (field("name"), field("image"))
}

/// A label selector's `matchLabels` as `k=v,k2=v2`.
pub(crate) fn selector(selector: &Value) -> String {
    selector["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Age like kubectl prints it: `45s`, `3m12s`, `2h5m`, `4d`.
fn age(timestamp: &Value) -> String {
    let Some(then) = timestamp
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
    else {
        return "<unknown>".to_owned();
    };
    let secs = SystemTime::now()
        .duration_since(then)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86400 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

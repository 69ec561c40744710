//! The REST surface: routes a request to discovery, reads, writes, logs, scale or watch, and
//! answers errors with a `Status` object as the real API server does.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::controller;
use super::discovery::{self, Resource};
use super::patch;
use super::selector::Selector;
use super::status::{ApiError, json_response};
use super::store::Store;
use super::table;
use crate::record::{RequestLog, query_param};

/// State shared by the request handler and the [`KubeSim`](super::KubeSim) handle.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) log: RequestLog,
    pub(crate) stall: AtomicBool,
}

impl Shared {
    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The simulator's router: one fallback handler that parses Kubernetes paths itself.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// One request, as the routing code needs it.
struct Req {
    method: String,
    path: String,
    query: String,
    content_type: String,
    accept: String,
    host: String,
    body: Bytes,
}

impl Req {
    fn param(&self, key: &str) -> Option<String> {
        query_param(&self.query, key)
    }

    fn flag(&self, key: &str) -> bool {
        self.param(key).is_some_and(|v| v == "true" || v == "1")
    }
}

enum Reply {
    Json(StatusCode, Value),
    Text(String),
    /// A watch that sends no events and ends after the given time.
    Watch(Duration),
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(body) => body,
        Err(e) => return ApiError::bad_request(format!("reading the body: {e}")).into_response(),
    };
    shared.log.record_parts(&parts, &body);
    tracing::debug!(method = %parts.method, uri = %parts.uri, "kube-sim request");
    if shared.stall.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let req = Req {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: header(header::CONTENT_TYPE),
        accept: header(header::ACCEPT),
        host: header(header::HOST),
        body,
    };
    match route(&shared, &req) {
        Ok(Reply::Json(status, value)) => json_response(status, &value),
        Ok(Reply::Text(text)) => ([(header::CONTENT_TYPE, "text/plain")], text).into_response(),
        Ok(Reply::Watch(timeout)) => watch_response(timeout),
        Err(e) => e.into_response(),
    }
}

fn watch_response(timeout: Duration) -> Response {
    let end = futures_util::stream::once(tokio::time::sleep(timeout));
    let events = end.filter_map(|()| async { None::<Result<Bytes, Infallible>> });
    let body = Body::from_stream(events);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn route(shared: &Shared, req: &Req) -> Result<Reply, ApiError> {
    let segments = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    let found = |doc: Option<Value>| {
        doc.map(|d| Reply::Json(StatusCode::OK, d))
            .ok_or_else(ApiError::no_route)
    };
    if req.method == "GET" {
        match segments.as_slice() {
            ["version"] => return found(Some(discovery::version())),
            ["api"] => return found(Some(discovery::api_versions(&req.host))),
            ["apis"] => return found(Some(discovery::api_group_list())),
            ["api", version] => return found(discovery::resource_list(version)),
            ["apis", group] => return found(discovery::api_group(group)),
            ["apis", group, version] => {
                return found(discovery::resource_list(&format!("{group}/{version}")));
            }
            _ => {}
        }
    }
    let (group_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return Err(ApiError::no_route()),
    };
    let target = Target::parse(&group_version, rest).ok_or_else(ApiError::no_route)?;
    if req.method == "GET" {
        if target.name.is_none() && req.flag("watch") {
            let seconds = req.param("timeoutSeconds").and_then(|s| s.parse().ok());
            return Ok(Reply::Watch(Duration::from_secs(seconds.unwrap_or(1800))));
        }
        return read(&shared.store(), &target, req);
    }
    let mut guard = shared.store();
    // A server-side dry run works on a copy that is then thrown away.
    let mut scratch;
    let store: &mut Store = if req.param("dryRun").is_some() {
        scratch = guard.clone();
        &mut scratch
    } else {
        &mut guard
    };
    write(store, &target, req)
}

/// `[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]]` under a group version.
struct Target {
    resource: Resource,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(group_version: &str, rest: &[&str]) -> Option<Target> {
        let owned = |s: Option<&&str>| s.map(|s| (*s).to_owned());
        match rest {
            ["namespaces", namespace, plural, tail @ ..] if tail.len() <= 2 => {
                let resource = Resource::from_plural(group_version, plural)?;
                resource.namespaced().then(|| Target {
                    resource,
                    namespace: (*namespace).to_owned(),
                    name: owned(tail.first()),
                    subresource: owned(tail.get(1)),
                })
            }
            [plural, tail @ ..] if tail.len() <= 2 => {
                let resource = Resource::from_plural(group_version, plural)?;
                (!resource.namespaced() || tail.is_empty()).then(|| Target {
                    resource,
                    namespace: String::new(),
                    name: owned(tail.first()),
                    subresource: owned(tail.get(1)),
                })
            }
            _ => None,
        }
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    fn get<'s>(&self, store: &'s Store) -> Result<&'s Value, ApiError> {
        store
            .get(self.resource, &self.namespace, self.name())
            .ok_or_else(|| ApiError::not_found(self.resource, self.name()))
    }
}

fn read(store: &Store, target: &Target, req: &Req) -> Result<Reply, ApiError> {
    let ok = |value| Ok(Reply::Json(StatusCode::OK, value));
    // kubectl's human output asks for server-side printing.
    let as_table = |objects: &[Value]| {
        let include = req.param("includeObject");
        let rv = store.resource_version();
        table::table(target.resource, objects, &rv, include.as_deref())
    };
    let table_wanted = req.accept.contains("as=Table");
    match (&target.name, target.subresource.as_deref()) {
        (None, None) => {
            let items = list(store, target, req)?;
            if table_wanted {
                return ok(as_table(&items));
            }
            ok(json!({
                "kind": format!("{}List", target.resource.kind()),
                "apiVersion": target.resource.api_version(),
                "metadata": {"resourceVersion": store.resource_version()},
                "items": items,
            }))
        }
        (Some(_), None) if table_wanted => ok(as_table(std::slice::from_ref(target.get(store)?))),
        (Some(_), None | Some("status")) => ok(target.get(store)?.clone()),
        (Some(_), Some("scale")) if has_scale(target.resource) => ok(scale_of(target.get(store)?)),
        (Some(_), Some("log")) if target.resource == Resource::Pod => logs(store, target, req),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The objects a list request selects.
fn list(store: &Store, target: &Target, req: &Req) -> Result<Vec<Value>, ApiError> {
    let parse = |key| Selector::parse(&req.param(key).unwrap_or_default());
    let labels = parse("labelSelector").map_err(ApiError::bad_request)?;
    let fields = parse("fieldSelector").map_err(ApiError::bad_request)?;
    let namespace = (!target.namespace.is_empty()).then_some(target.namespace.as_str());
    Ok(store
        .list(target.resource, namespace)
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
        .cloned()
        .collect())
}

/// `pods/NAME/log?container=&previous=&tailLines=&limitBytes=&timestamps=`.
fn logs(store: &Store, target: &Target, req: &Req) -> Result<Reply, ApiError> {
    let pod = target.get(store)?;
    let name = target.name();
    let containers = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect::<Vec<_>>();
    let container = match (req.param("container"), containers.as_slice()) {
        (Some(c), _) => c,
        (None, [only]) => (*only).to_owned(),
        (None, _) => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    if !containers.contains(&container.as_str()) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let scripted = store
        .logs(&target.namespace, name)
        .cloned()
        .unwrap_or_default();
    let mut text = if req.flag("previous") {
        scripted.previous.ok_or_else(|| {
            ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        })?
    } else {
        scripted.current
    };
    if let Some(n) = req.param("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let lines = text.lines().collect::<Vec<_>>();
        let tail = &lines[lines.len().saturating_sub(n)..];
        text = tail.iter().map(|l| format!("{l}\n")).collect();
    }
    if req.flag("timestamps") {
        let now = super::store::now();
        text = text.lines().map(|l| format!("{now} {l}\n")).collect();
    }
    if let Some(n) = req
        .param("limitBytes")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let mut end = n.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Ok(Reply::Text(text))
}

fn write(store: &mut Store, target: &Target, req: &Req) -> Result<Reply, ApiError> {
    let resource = target.resource;
    let (status, reply) = match (
        req.method.as_str(),
        &target.name,
        target.subresource.as_deref(),
    ) {
        ("POST", None, None) => (StatusCode::CREATED, create(store, target, req)?),
        ("PATCH", Some(_), None | Some("status")) => {
            let current = target.get(store)?;
            let patched =
                patch::apply(&req.content_type, current, &req.body).map_err(ApiError::invalid)?;
            (StatusCode::OK, replace(store, target, patched)?)
        }
        ("PUT", Some(_), None | Some("status")) => {
            let body = parse_body(req)?;
            check_resource_version(target.get(store)?, &body)?;
            (StatusCode::OK, replace(store, target, body)?)
        }
        ("PATCH", Some(_), Some("scale")) if has_scale(resource) => {
            let scale = scale_of(target.get(store)?);
            let patched =
                patch::apply(&req.content_type, &scale, &req.body).map_err(ApiError::invalid)?;
            (StatusCode::OK, set_replicas(store, target, &patched)?)
        }
        ("PUT", Some(_), Some("scale")) if has_scale(resource) => {
            let body = parse_body(req)?;
            check_resource_version(target.get(store)?, &body)?;
            (StatusCode::OK, set_replicas(store, target, &body)?)
        }
        ("DELETE", Some(name), None) => {
            let removed = store
                .remove(resource, &target.namespace, name)
                .ok_or_else(|| ApiError::not_found(resource, name))?;
            controller::reconcile(store, &target.namespace);
            (StatusCode::OK, removed)
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(Reply::Json(status, reply))
}

fn create(store: &mut Store, target: &Target, req: &Req) -> Result<Value, ApiError> {
    let mut object = parse_body(req)?;
    if target.resource.namespaced() {
        object["metadata"]["namespace"] = json!(target.namespace);
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid(
            "metadata.name: Required value".to_owned(),
        ));
    }
    store
        .create(target.resource, object)
        .ok_or_else(|| ApiError::already_exists(target.resource, &name))?;
    controller::reconcile(store, &target.namespace);
    target_after(store, target, &name)
}

/// Stores `object` as the new state of the target, runs the controller, returns the result.
fn replace(store: &mut Store, target: &Target, mut object: Value) -> Result<Value, ApiError> {
    if !object.is_object() || !(object["metadata"].is_object() || object["metadata"].is_null()) {
        return Err(ApiError::invalid(
            "the object must be a JSON object".to_owned(),
        ));
    }
    object["metadata"]["name"] = json!(target.name());
    if target.resource.namespaced() {
        object["metadata"]["namespace"] = json!(target.namespace);
    }
    store
        .update(target.resource, object)
        .ok_or_else(|| ApiError::not_found(target.resource, target.name()))?;
    controller::reconcile(store, &target.namespace);
    target_after(store, target, target.name())
}

fn target_after(store: &Store, target: &Target, name: &str) -> Result<Value, ApiError> {
    store
        .get(target.resource, &target.namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(target.resource, name))
}

fn set_replicas(store: &mut Store, target: &Target, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"].as_u64().ok_or_else(|| {
        ApiError::invalid("spec.replicas: must be a non-negative integer".to_owned())
    })?;
    let mut object = target.get(store)?.clone();
    object["spec"]["replicas"] = json!(replicas);
    let updated = replace(store, target, object)?;
    Ok(scale_of(&updated))
}

fn has_scale(resource: Resource) -> bool {
    matches!(resource, Resource::Deployment | Resource::ReplicaSet)
}

/// The `autoscaling/v1` `Scale` view of a deployment or replica set.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let selector = table::selector(&object["spec"]["selector"]);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"]},
        "status": {"replicas": object["status"]["replicas"].as_u64().unwrap_or(0), "selector": selector},
    })
}

fn parse_body(req: &Req) -> Result<Value, ApiError> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if body.is_object() && (body["metadata"].is_object() || body["metadata"].is_null()) {
        Ok(body)
    } else {
        Err(ApiError::bad_request(
            "the body must be a JSON object".to_owned(),
        ))
    }
}

/// Optimistic concurrency: a given `metadata.resourceVersion` must be the current one.
fn check_resource_version(current: &Value, body: &Value) -> Result<(), ApiError> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && current["metadata"]["resourceVersion"] != rv => {
            Err(ApiError::conflict())
        }
        _ => Ok(()),
    }
}

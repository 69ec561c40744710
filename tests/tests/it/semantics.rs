//! Incident semantics end to end, with the daemon, real kubectl and the API simulator:
//! evidence before action with the shipped runbooks, and target locks between incidents.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use quell_tests::http::{HttpServer, TestRoutes};
use quell_tests::kube_sim::{KubeSim, Scenario};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::daemon::{Running, daemon_config, payload};
use crate::harness::Env;

/// The position on the incident's timeline of the first `kind` event about `runbook`.
fn position(detail: &Value, kind: &str, runbook: &str) -> usize {
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["kind"] == kind && e["runbook"] == runbook)
        .unwrap_or_else(|| panic!("no {kind} event from {runbook}: {detail:#}"))
}

/// Whether no job of the incident is queued or running, and its timeline has a `kind` event.
fn settled_after(detail: &Value, kind: &str) -> bool {
    let jobs = detail["jobs"].as_array().unwrap();
    let timeline = detail["timeline"].as_array().unwrap();
    jobs.iter()
        .all(|j| !matches!(j["state"].as_str(), Some("queued" | "running")))
        && timeline.iter().any(|e| e["kind"] == kind)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_diagnosis_describes_the_world_before_the_first_remediation() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::crash_looping(5));
    let health =
        HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), TestRoutes::new().router()).unwrap();
    let mut env = Env::new().kube(&sim);
    daemon_config(&mut env);
    env.shipped_policy("k8s-context", |t| t);
    crate::runbooks::high_error_rate(&env);
    let app = Running::start_configured(env).await;
    let alert = json!({
        "receiver": "quell", "status": "firing", "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": "api",
                       "namespace": "production", "severity": "critical"},
            "annotations": {"summary": "api 5xx above 5%", "health_url": health.url("/health")},
            "startsAt": "2026-11-30T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": "e1",
        }],
    });
    let (status, answer) = app.post("/webhooks/alertmanager", alert.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
    let detail = app
        .wait_for(&id, "both runbooks to finish", |d| {
            settled_after(d, "remediated")
        })
        .await;

    // The context was gathered before anything changed: its diagnosis precedes the rollback,
    // and it read the crashing pods' logs, which the rollback replaces.
    assert!(
        position(&detail, "diagnosed", "k8s-context")
            < position(&detail, "remediating", "high-error-rate"),
        "{detail:#}"
    );
    let context = &detail["timeline"][position(&detail, "diagnosed", "k8s-context")];
    let findings = context["detail"].to_string();
    assert!(findings.contains("panic: invalid config"), "{findings}");
    assert!(!findings.contains("not found"), "{findings}");
    let rollback = sim.deployment("production", "api").unwrap();
    assert_eq!(
        rollback["spec"]["template"]["spec"]["containers"][0]["image"],
        "api:v1"
    );
    app.stop().await;
}

/// A loopback server whose `/hold` answers only once the test lets it; `arrived` is told when
/// a request is waiting there.
struct Gate {
    server: HttpServer,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl Gate {
    fn start() -> Gate {
        let arrived = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let router = Router::new().route(
            "/hold",
            get({
                let (arrived, release) = (arrived.clone(), release.clone());
                move || async move {
                    let released = release.notified();
                    arrived.notify_one();
                    released.await;
                    "released"
                }
            }),
        );
        let server = HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), router).unwrap();
        Gate {
            server,
            arrived,
            release,
        }
    }
}

fn restart_api() -> Value {
    json!({"kubectl": {"verb": "rollout restart", "resource": "deployments",
                       "namespace": "production", "name": "api"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn two_incidents_never_change_one_deployment_at_once() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::healthy(1));
    let gate = Gate::start();
    let mut env = Env::new().kube(&sim);
    daemon_config(&mut env);
    env.policy(
        "probe",
        "probe",
        "mode = \"auto\"\ntimeout = \"300s\"\n\
         [[kubectl.allow]]\nverbs = [\"rollout restart\"]\nresources = [\"deployments\"]\n\
         namespaces = [\"production\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
         [ssh.commands]\nid = { run = \"id\", effect = \"read\" }\n\
         [http]\nnetworks = [\"127.0.0.0/8\"]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/hold\"]\n",
    );
    let app = Running::start_configured(env).await;

    // The first incident restarts api, then holds its run open at the gate.
    let hold = json!({"http": {"method": "GET", "url": gate.server.url("/hold")}});
    let first = payload(
        "firing",
        "first",
        "2026-11-30T03:00:00Z",
        json!({"quell.test/remediate-calls": json!([restart_api(), hold]).to_string()}),
    );
    let arrived = gate.arrived.notified();
    let (status, answer) = app.post("/webhooks/alertmanager", first).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let first_id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
    if tokio::time::timeout(Duration::from_secs(60), arrived)
        .await
        .is_err()
    {
        panic!(
            "the first remediation never reached the gate: {:#}\nrunbooks: {:#}",
            app.incident(&first_id).await,
            app.get("/api/runbooks").await.1
        );
    }

    // The second incident's write to the same deployment is refused while the first runs.
    let second = payload(
        "firing",
        "second",
        "2026-11-30T03:00:01Z",
        json!({"quell.test/remediate-calls": json!([restart_api()]).to_string()}),
    );
    let (status, answer) = app.post("/webhooks/alertmanager", second).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let second_id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
    let refused = app
        .wait_for(&second_id, "the second remediation to end", |d| {
            settled_after(d, "remediation-failed")
        })
        .await;
    let call = refused["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["phase"] == "remediate")
        .flat_map(|r| r["calls"].as_array().unwrap().clone())
        .next()
        .expect("the refused write is recorded");
    assert_eq!(call["decision"], "denied", "{call:#}");
    assert_eq!(
        call["rule"],
        format!("deployment/api in production is being changed by {first_id} (probe)")
    );
    assert_eq!(refused["escalated"], true, "on-call hears of it");

    gate.release.notify_one();
    let done = app
        .wait_for(&first_id, "the first remediation to end", |d| {
            settled_after(d, "remediated")
        })
        .await;
    assert_eq!(done["remediated"], true, "{done:#}");
    let restarts: Vec<_> = sim
        .writes()
        .into_iter()
        .filter(|w| w.method == "PATCH")
        .collect();
    assert_eq!(restarts.len(), 1, "one write ran: {restarts:?}");
    app.stop().await;
}

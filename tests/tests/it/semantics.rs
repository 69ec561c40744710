//! Incident semantics end to end, with the daemon, real kubectl and the API simulator:
//! evidence before action with the shipped runbooks, and target locks between incidents.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use quell_tests::http::{HttpServer, TestRoutes};
use quell_tests::kube_sim::{KubeSim, Scenario};
use quell_tests::receivers::{PagerDuty, Slack};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::daemon::{Running, daemon_config, payload, phases};
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

/// The probe's policy in `mode`, allowing kubectl `verb` on `resource` in production (and the
/// little of ssh and HTTP the probe imports), with a deadline no busy machine reaches.
fn probe_policy(mode: &str, verb: &str, resource: &str) -> String {
    format!(
        "mode = \"{mode}\"\ntimeout = \"300s\"\n\
         [[kubectl.allow]]\nverbs = [\"{verb}\"]\nresources = [\"{resource}\"]\n\
         namespaces = [\"production\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
         [ssh.commands]\nid = {{ run = \"id\", effect = \"read\" }}\n\
         [http]\nnetworks = [\"127.0.0.0/8\"]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n"
    )
}

/// Alertmanager's delivery of HighErrorRate on `api` (fingerprint `fingerprint`), firing
/// with `annotations` or resolved.
fn high_error_rate_alert(status: &str, fingerprint: &str, annotations: Value) -> String {
    let ends_at = if status == "resolved" {
        "2026-11-30T03:20:00Z"
    } else {
        "0001-01-01T00:00:00Z"
    };
    json!({
        "receiver": "quell", "status": status, "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "HighErrorRate", "service": "api",
                       "namespace": "production", "severity": "critical"},
            "annotations": annotations,
            "startsAt": "2026-11-30T03:00:00Z", "endsAt": ends_at,
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
        }],
    })
    .to_string()
}

/// Whether no job of the incident is queued or running, and its timeline has a `kind` event.
fn settled_after(detail: &Value, kind: &str) -> bool {
    let jobs = detail["jobs"].as_array().unwrap();
    let timeline = detail["timeline"].as_array().unwrap();
    jobs.iter()
        .all(|j| !matches!(j["state"].as_str(), Some("queued" | "running")))
        && timeline.iter().any(|e| e["kind"] == kind)
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

/// The daemon with the shipped high-error-rate runbook verifying its remediations, Slack and
/// PagerDuty on loopback, and the simulator running a crash-looping `api`.
struct Verifying {
    app: Running,
    sim: KubeSim,
    health: TestRoutes,
    health_server: HttpServer,
    slack: Arc<Slack>,
    pagerduty: Arc<PagerDuty>,
}

impl Verifying {
    async fn start() -> Verifying {
        let sim = KubeSim::start().unwrap();
        sim.add_service("production", "api", Scenario::crash_looping(5));
        let health = TestRoutes::new();
        let health_server =
            HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), health.router()).unwrap();
        let slack = Arc::new(Slack::start().unwrap());
        let pagerduty = Arc::new(PagerDuty::start().unwrap());
        let mut env = Env::new().kube(&sim);
        crate::notify::configure(&mut env, &slack, &pagerduty);
        let policy = crate::runbooks::high_error_rate(&env);
        let text = std::fs::read_to_string(&policy).unwrap();
        std::fs::write(
            &policy,
            format!("{text}\n[verify]\nafter = \"1s\"\nattempts = 2\n"),
        )
        .unwrap();
        let app = Running::start_configured(env).await;
        Verifying {
            app,
            sim,
            health,
            health_server,
            slack,
            pagerduty,
        }
    }

    async fn fire(&self) -> String {
        let alert = high_error_rate_alert(
            "firing",
            "v1",
            json!({"summary": "api 5xx above 5%", "health_url": self.health_server.url("/health")}),
        );
        let (status, answer) = self.app.post("/webhooks/alertmanager", alert).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["alerts"][0]["incident"].as_str().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remediation_whose_checks_pass_again_mitigates_without_a_page() {
    let world = Verifying::start().await;
    let id = world.fire().await;
    let detail = world
        .app
        .wait_for(&id, "the incident to be mitigated", |d| {
            d["status"] == "mitigated"
        })
        .await;
    let kinds = crate::daemon::kinds(&detail);
    let remediated = kinds.iter().position(|k| k == "remediated").unwrap();
    let verified = kinds.iter().position(|k| k == "verified").unwrap();
    assert!(remediated < verified, "{kinds:?}");
    assert!(!kinds.contains(&"escalated".to_owned()), "{kinds:?}");
    let phases = phases(&detail);
    assert_eq!(phases, ["diagnose", "remediate", "verify"]);
    assert_eq!(
        world.sim.deployment("production", "api").unwrap()["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        "api:v1"
    );

    // Slack hears it, on the thread and on the root; PagerDuty never does.
    let slack = world.slack.clone();
    let messages = crate::notify::wait(move || {
        slack.wait_for(
            "the mitigated reply and root",
            Duration::from_secs(60),
            |r| {
                let text = |m: &quell_tests::receivers::Received| m.body.to_string();
                r.iter()
                    .any(|m| m.path == "/api/chat.postMessage" && text(m).contains("Mitigated"))
                    && r.iter()
                        .any(|m| m.path == "/api/chat.update" && text(m).contains("mitigated"))
            },
        )
    })
    .await;
    // The remediation's reply shows the command the host ran, not request JSON.
    let remediated = messages
        .iter()
        .map(|m| m.body.to_string())
        .find(|text| text.contains("Auto-remediated"))
        .expect("a remediation reply");
    assert!(
        remediated.contains("$ kubectl rollout undo deployment/api --namespace=production"),
        "{remediated}"
    );
    assert!(!remediated.contains("RolloutUndo"), "{remediated}");
    assert!(
        world
            .pagerduty
            .received()
            .iter()
            .all(|e| e.body["event_action"] != "trigger"),
        "{:#?}",
        world.pagerduty.received()
    );

    // The alert's own resolution still closes it.
    let resolved = high_error_rate_alert("resolved", "v1", json!({}));
    let (status, _) = world.app.post("/webhooks/alertmanager", resolved).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(world.app.incident(&id).await["status"], "resolved");
    world.app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remediation_that_does_not_hold_pages_with_both_diagnoses() {
    let world = Verifying::start().await;
    // The rollback replaces the crashing pods, but the service stays unhealthy.
    world.health.set_health(500);
    let id = world.fire().await;
    let detail = world
        .app
        .wait_for(&id, "the verification to give up", |d| {
            crate::daemon::kinds(d).contains(&"verification-failed".to_owned())
                && d["escalated"] == true
        })
        .await;
    let phases = phases(&detail);
    assert_eq!(phases, ["diagnose", "remediate", "verify", "verify"]);
    assert_eq!(detail["status"], "open");

    let pagerduty = world.pagerduty.clone();
    let events = crate::notify::wait(move || {
        pagerduty.wait_for("the page", Duration::from_secs(60), |r| {
            r.iter().any(|e| e.body["event_action"] == "trigger")
        })
    })
    .await;
    let page = events
        .iter()
        .find(|e| e.body["event_action"] == "trigger")
        .unwrap();
    let reason = page.body["payload"]["custom_details"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with(
            "high-error-rate remediated, but its checks still fail after 2 check(s).\nBefore: "
        ),
        "{reason}"
    );
    // Before: crash-looping pods; after: the pods are fine and the health check still fails.
    let (before, after) = reason.split_once("\nAfter: ").unwrap();
    assert!(before.contains("crash-looping"), "{before}");
    assert!(after.contains("✗ health"), "{after}");
    assert!(!after.contains("✗ pods"), "{after}");

    // The post-mortem shows the checks.
    let (status, draft) = world
        .app
        .get(&format!("/api/incidents/{id}/postmortem"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let draft = draft.as_str().unwrap_or_default().to_owned();
    assert!(draft.contains("## Verification"), "{draft}");
    assert!(draft.contains("still failing"), "{draft}");
    world.app.stop().await;
}

/// An Alertmanager notification of group `group` with one alert per `(fingerprint, status)`.
fn group_delivery(group: &str, alerts: &[(&str, &str)]) -> String {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(fingerprint, status)| {
            json!({
                "status": status,
                "labels": {"alertname": "DiskFull", "instance": fingerprint, "severity": "critical"},
                "annotations": {"summary": format!("disk full on {fingerprint}")},
                "startsAt": "2026-11-30T03:00:00Z",
                "endsAt": if *status == "resolved" { "2026-11-30T03:30:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
            })
        })
        .collect();
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    json!({
        "receiver": "quell", "status": status, "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"DiskFull\", cluster=\"{group}\"}}"),
        "truncatedAlerts": 0, "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
    .to_string()
}

/// Posts group `group`'s notification of `alerts`; what each alert did.
async fn group_actions(app: &Running, group: &str, alerts: &[(&str, &str)]) -> Vec<String> {
    let (status, answer) = app
        .post("/webhooks/alertmanager", group_delivery(group, alerts))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect()
}

// Shared behaviour: each runs on SQLite and on a real PostgreSQL server.
crate::harness::on_both_backends! {
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
        let alert = high_error_rate_alert(
            "firing",
            "e1",
            json!({"summary": "api 5xx above 5%", "health_url": health.url("/health")}),
        );
        let (status, answer) = app.post("/webhooks/alertmanager", alert).await;
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

    async fn two_incidents_never_change_one_deployment_at_once() {
        let sim = KubeSim::start().unwrap();
        sim.add_service("production", "api", Scenario::healthy(1));
        let gate = Gate::start();
        let mut env = Env::new().kube(&sim);
        daemon_config(&mut env);
        env.policy(
            "probe",
            "probe",
            &probe_policy("auto", "rollout restart", "deployments"),
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

    async fn an_alertmanager_group_is_one_incident_whose_runbooks_run_per_alert() {
        let slack = Arc::new(Slack::start().unwrap());
        let pagerduty = Arc::new(PagerDuty::start().unwrap());
        let mut env = Env::new();
        crate::notify::configure(&mut env, &slack, &pagerduty);
        env.config.incidents.group_by = quell::config::GroupBy::Alertmanager;
        // Joins wait for a batch that never comes due here: they must not hold anything up.
        env.config.notify.batch = quell::config::HumanDuration(Duration::from_secs(3600));
        env.policy("probe", "probe", &probe_policy("diagnose", "get", "pods"));
        let app = Running::start_configured(env).await;

        let (status, answer) = app
            .post(
                "/webhooks/alertmanager",
                group_delivery("eu", &[("a", "firing"), ("b", "firing")]),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
        assert_eq!(answer["alerts"][1]["incident"], id.as_str());
        assert_eq!(answer["alerts"][1]["action"], "joined");
        // The group's next notification repeats both and adds a third.
        let actions = group_actions(
            &app,
            "eu",
            &[("a", "firing"), ("b", "firing"), ("c", "firing")],
        )
        .await;
        assert_eq!(actions, ["re-fired", "re-fired", "joined"]);
        // Another group is another incident.
        let (_, other) = app
            .post(
                "/webhooks/alertmanager",
                group_delivery("us", &[("a", "firing")]),
            )
            .await;
        assert_ne!(other["alerts"][0]["incident"], id.as_str());

        let detail = app
            .wait_for(&id, "a diagnosis per alert", |d| {
                d["runs"].as_array().unwrap().len() == 3
                    && d["jobs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|j| j["state"] == "done")
            })
            .await;
        let members: Vec<(&str, &str)> = detail["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["fingerprint"].as_str().unwrap(),
                    a["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(members, [("a", "firing"), ("b", "firing"), ("c", "firing")]);
        let mut for_alerts: Vec<&str> = detail["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["alert"].as_str().unwrap())
            .collect();
        for_alerts.sort_unstable();
        assert_eq!(
            for_alerts,
            ["a", "b", "c"],
            "the runbook ran once per alert"
        );

        // Two resolve: the incident stays open. The last resolves it.
        let actions = group_actions(
            &app,
            "eu",
            &[("a", "resolved"), ("b", "resolved"), ("c", "firing")],
        )
        .await;
        assert_eq!(actions, ["alert-resolved", "alert-resolved", "re-fired"]);
        assert_ne!(app.incident(&id).await["status"], "resolved");
        // A late firing re-send of a resolved alert (same start) does not bring it back.
        let actions = group_actions(&app, "eu", &[("a", "firing"), ("c", "firing")]).await;
        assert_eq!(actions[0], "stale");
        let actions = group_actions(
            &app,
            "eu",
            &[("a", "resolved"), ("b", "resolved"), ("c", "resolved")],
        )
        .await;
        assert_eq!(actions[2], "resolved");
        assert_eq!(app.incident(&id).await["status"], "resolved");

        // Three diagnose-mode escalations, one page; then its resolve.
        let pd = pagerduty.clone();
        let events = crate::notify::wait(move || {
            pd.wait_for("the resolve", Duration::from_secs(60), |r| {
                r.iter()
                    .any(|e| e.body["event_action"] == "resolve" && e.body["dedup_key"] != "")
            })
        })
        .await;
        let for_group: Vec<&str> = events
            .iter()
            .filter(|e| e.body["dedup_key"] == id.as_str())
            .map(|e| e.body["event_action"].as_str().unwrap())
            .collect();
        assert_eq!(for_group, ["trigger", "resolve"]);
        // Slack: the diagnoses are told (three in the group, one in the other) although the
        // joins' batch is still waiting; no reply per joining alert.
        let slack_ = slack.clone();
        let messages = crate::notify::wait(move || {
            slack_.wait_for("every diagnosis", Duration::from_secs(60), |r| {
                r.iter()
                    .filter(|m| m.body.to_string().contains("Diagnosis complete"))
                    .count()
                    == 4
            })
        })
        .await;
        let texts: Vec<String> = messages.iter().map(|m| m.body.to_string()).collect();
        assert!(!texts.iter().any(|t| t.contains("➕")), "{texts:#?}");
        app.stop().await;
    }

    async fn alerts_joining_an_incident_are_told_in_one_reply_per_batch() {
        let slack = Arc::new(Slack::start().unwrap());
        let pagerduty = Arc::new(PagerDuty::start().unwrap());
        let mut env = Env::new();
        crate::notify::configure(&mut env, &slack, &pagerduty);
        env.config.incidents.group_by = quell::config::GroupBy::Alertmanager;
        let app = Running::start_configured(env).await;
        // One notification of six alerts: the first opens the incident, five join.
        let six: Vec<(String, &str)> = (0..6).map(|n| (format!("node-{n}"), "firing")).collect();
        let six: Vec<(&str, &str)> = six.iter().map(|(f, s)| (f.as_str(), *s)).collect();
        let (status, answer) = app
            .post("/webhooks/alertmanager", group_delivery("eu", &six))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
        let slack_ = slack.clone();
        let messages = crate::notify::wait(move || {
            slack_.wait_for("the batched reply", Duration::from_secs(60), |r| {
                r.iter().any(|m| m.body.to_string().contains("➕"))
            })
        })
        .await;
        let joined: Vec<String> = messages
            .iter()
            .map(|m| m.body.to_string())
            .filter(|t| t.contains("➕"))
            .collect();
        assert_eq!(joined.len(), 1, "{joined:#?}");
        assert!(joined[0].contains("6 alerts firing"), "{}", joined[0]);
        let detail = app.incident(&id).await;
        assert_eq!(detail["alerts"].as_array().unwrap().len(), 6);
        let roots = messages
            .iter()
            .filter(|m| m.path == "/api/chat.postMessage" && m.body["thread_ts"].is_null())
            .count();
        assert_eq!(roots, 1, "one thread for the group");
        app.stop().await;
    }

    async fn alerts_with_the_same_values_of_the_grouping_labels_are_one_incident() {
        let mut env = Env::new();
        daemon_config(&mut env);
        env.config.incidents.group_by = quell::config::GroupBy::Labels(vec!["cluster".to_owned()]);
        let app = Running::start_configured(env).await;
        // Two Alertmanager groups (different alertnames), one cluster: one incident.
        let alert = |name: &str, cluster: &str, fingerprint: &str| {
            json!({
                "receiver": "quell", "status": "firing", "version": "4",
                "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"), "truncatedAlerts": 0,
                "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": "http://alertmanager:9093",
                "alerts": [{
                    "status": "firing",
                    "labels": {"alertname": name, "cluster": cluster},
                    "annotations": {}, "startsAt": "2026-11-30T03:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://p/g",
                    "fingerprint": fingerprint,
                }],
            })
            .to_string()
        };
        let mut incidents = Vec::new();
        for (name, cluster, fingerprint) in [
            ("DiskFull", "eu-1", "f1"),
            ("HighLatency", "eu-1", "f2"),
            ("DiskFull", "us-1", "f3"),
        ] {
            let (status, answer) = app
                .post("/webhooks/alertmanager", alert(name, cluster, fingerprint))
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            incidents.push((
                answer["alerts"][0]["incident"].as_str().unwrap().to_owned(),
                answer["alerts"][0]["action"].as_str().unwrap().to_owned(),
            ));
        }
        assert_eq!(incidents[0].0, incidents[1].0, "one cluster, one incident");
        assert_eq!(incidents[1].1, "joined");
        assert_ne!(incidents[0].0, incidents[2].0, "another cluster, another");
        let detail = app.incident(&incidents[0].0).await;
        assert_eq!(detail["alerts"].as_array().unwrap().len(), 2);
        app.stop().await;
    }

    async fn the_global_write_budget_stops_writes_across_runbooks() {
        let sim = KubeSim::start().unwrap();
        sim.add_service("production", "api", Scenario::healthy(1));
        sim.add_service("production", "web", Scenario::healthy(1));
        let mut env = Env::new().kube(&sim);
        daemon_config(&mut env);
        env.config.pipeline.max_writes = Some(quell::config::Budget {
            count: 1,
            per: quell::config::HumanDuration(Duration::from_secs(3600)),
        });
        env.policy(
            "probe",
            "probe",
            &probe_policy("auto", "rollout restart", "deployments"),
        );
        let app = Running::start_configured(env).await;
        let restart = |name: &str| {
            json!([{"kubectl": {"verb": "rollout restart", "resource": "deployments",
                                "namespace": "production", "name": name}}])
            .to_string()
        };
        let mut ids = Vec::new();
        for (fingerprint, target) in [("one", "api"), ("two", "web")] {
            let (status, answer) = app
                .post(
                    "/webhooks/alertmanager",
                    payload(
                        "firing",
                        fingerprint,
                        "2026-11-30T03:00:00Z",
                        json!({"quell.test/remediate-calls": restart(target)}),
                    ),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
            // One after the other: which one gets the budget is then known.
            app.wait_for(&id, "the remediation to end", |d| {
                settled_after(d, "remediated") || settled_after(d, "remediation-failed")
            })
            .await;
            ids.push(id);
        }
        let decisions: Vec<(String, String)> = {
            let mut out = Vec::new();
            for id in &ids {
                let detail = app.incident(id).await;
                for run in detail["runs"].as_array().unwrap() {
                    for call in run["calls"].as_array().unwrap() {
                        out.push((
                            call["decision"].as_str().unwrap().to_owned(),
                            call["rule"].as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
            out
        };
        assert_eq!(decisions[0].0, "allowed", "{decisions:?}");
        assert_eq!(
            decisions[1],
            (
                "denied".to_owned(),
                "the global write budget is spent: at most 1 writes per 1h ([pipeline] max_writes)"
                    .to_owned()
            )
        );
        let patches = sim
            .writes()
            .into_iter()
            .filter(|w| w.method == "PATCH")
            .count();
        assert_eq!(patches, 1, "one write ran");
        app.stop().await;
    }
}

//! Real senders' bodies (tests/fixtures/payloads, provenance in its README) posted to the
//! daemon: each opens the incident it should, a re-send re-fires it, a resolution resolves
//! it, and the same body on the wrong route is refused naming the right one.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::daemon::{Running, daemon_config};
use crate::harness::{Env, workspace};

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace().join("tests/fixtures/payloads").join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Posts `body` to `/webhooks/<route>`; the status and each alert's action and incident.
async fn post(app: &Running, route: &str, body: &Value) -> (StatusCode, Value) {
    app.post(&format!("/webhooks/{route}"), body.to_string())
        .await
}

fn actions(answer: &Value) -> Vec<&str> {
    answer["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn real_alertmanager_and_grafana_bodies_open_refire_resolve_and_are_refused_elsewhere() {
    let app = Running::start(Env::new()).await;
    for (route, other, file, title, severity) in [
        (
            "alertmanager",
            "grafana",
            "alertmanager/firing-single.json",
            "Something is on fire",
            "critical",
        ),
        (
            "grafana",
            "alertmanager",
            "grafana/unified-firing-grafana-alerting-test.json",
            "alert1",
            "medium",
        ),
    ] {
        let body = fixture(file);
        let (status, answer) = post(&app, route, &body).await;
        assert_eq!(status, StatusCode::OK, "{file}: {answer}");
        assert_eq!(actions(&answer), ["created"], "{file}");
        let id = answer["alerts"][0]["incident"].as_str().unwrap();
        let detail = app.incident(id).await;
        assert_eq!(detail["title"], title, "{file}");
        assert_eq!(detail["severity"], severity, "{file}");
        assert_eq!(detail["source"], route, "{file}");
        let (_, again) = post(&app, route, &body).await;
        assert_eq!(actions(&again), ["re-fired"], "{file}");
        let (status, refused) = post(&app, other, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}");
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains(&format!("/webhooks/{route}")),
            "{file}: {refused}"
        );
        let (_, generic) = post(&app, "generic", &body).await;
        assert!(
            generic["error"]
                .as_str()
                .unwrap()
                .contains(&format!("/webhooks/{route}")),
            "{file}: {generic}"
        );
    }
    let (_, resolved) = post(
        &app,
        "alertmanager",
        &fixture("alertmanager/resolved-single.json"),
    )
    .await;
    assert_eq!(
        actions(&resolved),
        ["resolved"],
        "the real firing/resolved pair"
    );
    for file in [
        "alertmanager/firing-group-2-alerts.json",
        "alertmanager/firing-group-3-alerts.json",
        "alertmanager/firing-group-oncall-example.json",
    ] {
        let body = fixture(file);
        let (status, answer) = post(&app, "alertmanager", &body).await;
        assert_eq!(status, StatusCode::OK, "{file}: {answer}");
        assert_eq!(
            actions(&answer).len(),
            body["alerts"].as_array().unwrap().len(),
            "{file}"
        );
    }
    let (status, legacy) = post(
        &app,
        "grafana",
        &fixture("grafana/legacy-alerting-docs.json"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        legacy["error"]
            .as_str()
            .unwrap()
            .contains("legacy (pre-unified) Grafana alerting"),
        "{legacy}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kapacitor_fires_and_resolves_through_its_profile_and_a_bad_level_is_a_422() {
    let mut env = Env::new();
    daemon_config(&mut env);
    env.config.sources.generic.fields = quell::config::Config::parse(
        "[sources.generic.fields]\ndedup_key = \"/id\"\ntitle = \"/message\"\nseverity = \"/level\"\n\
         status = { pointer = \"/level\", firing = [\"CRITICAL\", \"WARNING\", \"INFO\"], resolved = [\"OK\"] }\n\
         starts_at = \"/time\"\n",
    )
    .unwrap()
    .sources
    .generic
    .fields;
    let app = Running::start_configured(env).await;
    let info = fixture("kapacitor/info-2016-sigma-test.json");
    let (status, answer) = post(&app, "generic", &info).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(actions(&answer), ["created"]);
    let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
    let detail = app.incident(&id).await;
    assert_eq!(detail["title"], "cpu:nil is INFO");
    assert_eq!(detail["severity"], "info");
    assert_eq!(detail["starts_at"], "1971-01-01T00:00:07.000Z");
    let (_, ok) = post(
        &app,
        "generic",
        &fixture("kapacitor/ok-2016-sigma-test.json"),
    )
    .await;
    assert_eq!(actions(&ok), ["resolved"], "{ok}");
    assert_eq!(ok["alerts"][0]["incident"], id.as_str());
    let mut odd = info.clone();
    odd["level"] = json!("PURPLE");
    let (status, refused) = post(&app, "generic", &odd).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("status (at /level): \"PURPLE\" is neither firing"),
        "{refused}"
    );
    app.stop().await;
}

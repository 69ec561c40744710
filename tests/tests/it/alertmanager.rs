//! The real Prometheus Alertmanager delivering webhooks to the daemon running in-process: one
//! alert fires and opens one incident (no runbooks: it escalates), then resolves it.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use quell::config::Config;
use quell::daemon::Daemon;
use quell_tests::alertmanager::Alertmanager;
use serde_json::{Value, json};

const TOKEN: &str = "am-token";
const DEADLINE: Duration = Duration::from_secs(30);

fn daemon_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.database.path = dir.join("quell.db");
    // Empty: every alert opens an incident that escalates "no runbook matches".
    config.runbooks.dir = dir.join("runbooks");
    std::fs::create_dir_all(&config.runbooks.dir).unwrap();
    config.postmortems.dir = dir.join("postmortems");
    config.sandbox.cache_dir = dir.join("cache");
    config.sources.alertmanager.tokens = vec![TOKEN.to_owned()];
    config
}

async fn get(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap();
    assert!(
        status.is_success(),
        "GET {url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

/// Polls `check` every 100 ms until it returns something; on timeout, panics with what it
/// last saw and the end of Alertmanager's log (its notification attempts).
async fn wait_for<T>(
    what: &str,
    am: &Alertmanager,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if Instant::now() > deadline {
            let log = am.log();
            let lines = log.lines().collect::<Vec<_>>();
            panic!(
                "{what}: not within {DEADLINE:?}; last seen: {last}\nalertmanager log:\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alert(starts_at: &str, ends_at: Option<&str>) -> Value {
    let mut alert = json!({
        "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1"},
        "annotations": {"summary": "Disk full on db1"},
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.invalid/graph?g0.expr=disk_free%3D%3D0",
    });
    if let Some(ends_at) = ends_at {
        alert["endsAt"] = json!(ends_at);
    }
    json!([alert])
}

#[tokio::test(flavor = "multi_thread")]
async fn real_alertmanager_fires_then_resolves_one_incident() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(daemon_config(dir.path())).await.unwrap();
    let base = format!("http://{}", daemon.addr());
    // Blocking (waits for /-/ready): fine here, the daemon runs on the runtime's workers.
    let am = Alertmanager::start(
        &dir.path().join("alertmanager"),
        &format!("{base}/webhooks/alertmanager"),
        Some(TOKEN),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let list_url = format!("{base}/api/incidents");

    let starts_at =
        humantime::format_rfc3339_millis(SystemTime::now() - Duration::from_secs(60)).to_string();
    am.push(&alert(&starts_at, None)).unwrap();

    let incident = wait_for("one incident from the firing alert", &am, async || {
        let page = get(&client, &list_url).await;
        match page["incidents"].as_array().map(Vec::as_slice) {
            Some([incident]) => Ok(incident.clone()),
            _ => Err(page.to_string()),
        }
    })
    .await;
    let fired_after = started.elapsed();
    assert_eq!(incident["title"], "Disk full on db1", "{incident}");
    assert_eq!(incident["severity"], "critical", "{incident}");
    assert_eq!(incident["source"], "alertmanager", "{incident}");
    assert_ne!(incident["status"], "resolved", "{incident}");
    assert!(
        incident["fingerprint"]
            .as_str()
            .is_some_and(|f| !f.is_empty()),
        "{incident}"
    );
    let id = incident["id"].as_str().unwrap().to_owned();
    let detail_url = format!("{base}/api/incidents/{id}");
    let detail = get(&client, &detail_url).await;
    assert_eq!(detail["labels"]["instance"], "db1", "{detail}");
    assert_eq!(detail["labels"]["alertname"], "DiskFull", "{detail}");

    let ends_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    am.push(&alert(&starts_at, Some(&ends_at))).unwrap();

    let detail = wait_for("the incident resolved", &am, async || {
        let detail = get(&client, &detail_url).await;
        let resolved_event = detail["timeline"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["kind"] == "resolved"));
        if detail["status"] == "resolved" && resolved_event {
            Ok(detail)
        } else {
            Err(detail.to_string())
        }
    })
    .await;
    let resolved_after = started.elapsed();
    assert!(detail["resolved_at"].is_string(), "{detail}");

    // Alertmanager's firing and resolved notifications (and any re-send) are one incident.
    let page = get(&client, &list_url).await;
    let incidents = page["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{page}");
    assert_eq!(incidents[0]["id"], id.as_str(), "{page}");
    assert_eq!(incidents[0]["status"], "resolved", "{page}");

    drop(am);
    daemon.shutdown().await.unwrap();
    println!(
        "alertmanager e2e: incident opened after {fired_after:?}, resolved after {resolved_after:?}, \
         total {:?}",
        started.elapsed()
    );
}

//! Three `quell serve` processes on one real PostgreSQL, alerts spread across them and the
//! same alert sent to all three at once (Alertmanager HA), one replica SIGKILLed while its
//! notices are pending: one incident per alert, each page sent once, Slack's pacing kept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests run the binary

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::net::{IpAddr, Ipv4Addr};

use quell_tests::http::{HttpServer, TestRoutes};
use quell_tests::postgres::Postgres;
use quell_tests::receivers::{PagerDuty, ROUTING_KEY, SLACK_TOKEN, Slack};
use serde_json::{Value, json};

/// A replica's process, killed if the test fails first.
struct Replica {
    child: Child,
    port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn notify(slack: &Slack, pd: &PagerDuty) -> String {
    format!(
        "[notify.slack]\nbot_token = {SLACK_TOKEN:?}\nchannel = \"C0QUELL\"\napi_url = {:?}\n\
         digest_after = 1000\n\
         [notify.pagerduty]\nrouting_key = {ROUTING_KEY:?}\nurl = {:?}\n",
        slack.api_url(),
        pd.enqueue_url(),
    )
}

/// Starts replica `n` on `database` with the runbook policies in `runbooks` and `extra`
/// configuration, and waits until it is ready.
fn start(dir: &std::path::Path, n: usize, database: &str, runbooks: &str, extra: &str) -> Replica {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = dir.join(format!("replica-{n}"));
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("quell.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [database]\nlease = \"3s\"\n[runbooks]\ndir = {runbooks:?}\n\
             [postmortems]\ndir = {:?}\n[http]\ntimeout = \"5m\"\n[sandbox]\ncache_dir = {:?}\n{extra}",
            home.join("postmortems").display().to_string(),
            common::workspace()
                .join("target/quell-test-cache")
                .display()
                .to_string(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(home.join("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_quell"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("QUELL_DATABASE_URL", database)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let replica = Replica { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::get(&replica.url("/readyz")).is_none() {
        assert!(
            Instant::now() < deadline,
            "replica {n} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    replica
}

fn alert(fingerprint: &str) -> String {
    json!({
        "version": "4", "status": "firing", "receiver": "quell",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "Replicated", "severity": "critical", "service": fingerprint},
            "annotations": {"summary": format!("{fingerprint} is down")},
            "startsAt": "2026-11-24T03:00:00Z",
            "fingerprint": fingerprint,
        }],
    })
    .to_string()
}

/// Posts `body` to each of `replicas` at once; the incidents of the 200s.
fn send_all(replicas: &[&Replica], body: &str) -> Vec<String> {
    common::block(async {
        let client = reqwest::Client::new();
        let sends: Vec<_> = replicas
            .iter()
            .map(|r| {
                tokio::spawn(
                    client
                        .post(r.url("/webhooks/alertmanager"))
                        .header("content-type", "application/json")
                        .body(body.to_owned())
                        .send(),
                )
            })
            .collect();
        let mut incidents = Vec::new();
        for send in sends {
            let answer = send.await.unwrap().unwrap();
            assert!(answer.status().is_success(), "{}", answer.status());
            let body: Value = answer.json().await.unwrap();
            incidents.push(body["alerts"][0]["incident"].as_str().unwrap().to_owned());
        }
        incidents
    })
}

#[test]
fn three_replicas_make_one_incident_per_alert_and_page_once_through_a_kill() {
    let server = Postgres::start().unwrap();
    let (slack, pd) = (Slack::start().unwrap(), PagerDuty::start().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let runbooks = dir.path().join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    let runbooks = runbooks.display().to_string();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|n| {
            start(
                dir.path(),
                n,
                &server.url(),
                &runbooks,
                &notify(&slack, &pd),
            )
        })
        .collect();

    // Each alert: alone to one replica, or the same delivery to all three at once.
    let mut acknowledged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..8 {
        let fingerprint = format!("replicated-{n}");
        let targets: Vec<&Replica> = if n % 2 == 0 {
            replicas.iter().collect()
        } else {
            vec![&replicas[n % 3]]
        };
        let incidents = send_all(&targets, &alert(&fingerprint));
        acknowledged.insert(fingerprint, incidents);
    }
    for (fingerprint, incidents) in &acknowledged {
        assert!(
            incidents.windows(2).all(|w| w[0] == w[1]),
            "{fingerprint}: one incident whichever replica answered: {incidents:?}"
        );
    }
    // Slack takes one message a second: notices are still pending when a replica dies.
    let mut killed = replicas.remove(0);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();

    // Every incident escalates (no runbook matches): one page each, sent by whoever leads.
    let expected: Vec<String> = acknowledged.values().map(|i| i[0].clone()).collect();
    let pages = pd.wait_for("a page per incident", Duration::from_secs(120), |got| {
        expected.iter().all(|id| {
            got.iter().any(|r| {
                r.body["dedup_key"]
                    .as_str()
                    .is_some_and(|k| k.contains(id.as_str()))
            })
        })
    });
    let incidents = common::get(&replicas[0].url("/api/incidents?limit=500")).unwrap();
    let listed: Vec<&str> = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "one incident per alert: {listed:?}"
    );
    for id in &expected {
        assert!(listed.contains(&id.as_str()), "{id} acknowledged and kept");
    }
    // Each page once. The one documented repeat: a replica killed after PagerDuty accepted
    // a page and before it recorded that; PagerDuty deduplicates it by its dedup_key.
    let triggers = pages
        .iter()
        .filter(|r| r.body["event_action"] == "trigger")
        .count();
    assert!(
        (expected.len()..=expected.len() + 1).contains(&triggers),
        "{triggers} triggers for {} incidents",
        expected.len()
    );
    assert_eq!(
        slack.rate_limited(),
        0,
        "Slack's pacing held across replicas"
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    assert!(pd.violations().is_empty(), "{:?}", pd.violations());
}

#[test]
fn a_remediation_on_a_killed_replica_is_interrupted_and_escalated_by_another_never_rerun() {
    let server = Postgres::start().unwrap();
    let routes = TestRoutes::new();
    let stall = HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), routes.router()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runbooks = dir.path().join("runbooks/probe");
    std::fs::create_dir_all(&runbooks).unwrap();
    std::fs::write(runbooks.join("policy.toml"), common::auto_probe_policy()).unwrap();
    let runbooks = dir.path().join("runbooks").display().to_string();
    let mut replicas: Vec<Replica> = (0..2)
        .map(|n| start(dir.path(), n, &server.url(), &runbooks, ""))
        .collect();
    let stalls = || {
        routes
            .requests()
            .iter()
            .filter(|r| r.path == "/stall")
            .count()
    };

    // A remediation that hangs in a host call, on whichever replica claims it.
    let body = json!({
        "version": "4", "status": "firing", "receiver": "quell",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "Probe", "service": "stuck"},
            "annotations": {"quell.test/remediate-calls":
                json!([{"http": {"method": "GET", "url": stall.url("/stall")}}]).to_string()},
            "startsAt": "2026-11-24T03:00:00Z",
            "fingerprint": "stuck",
        }],
    });
    let incident = send_all(&[&replicas[0]], &body.to_string()).remove(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while stalls() == 0 {
        assert!(Instant::now() < deadline, "the remediation to stall");
        std::thread::sleep(Duration::from_millis(50));
    }
    let owner = server
        .psql("SELECT owner FROM jobs WHERE phase = 'remediate' AND state = 'running'")
        .unwrap();
    let running = replicas
        .iter()
        .position(|r| owner.contains(&format!("-{}-", r.child.id())))
        .unwrap_or_else(|| panic!("the owner {owner:?} is one of the replicas"));
    let mut dead = replicas.remove(running);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();

    // The survivor takes it over once the lease (3 s) lapses: interrupted, escalated.
    let survivor = &replicas[0];
    let deadline = Instant::now() + Duration::from_secs(120);
    let detail = loop {
        let detail = common::get(&survivor.url(&format!("/api/incidents/{incident}"))).unwrap();
        let interrupted = detail["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["phase"] == "remediate" && j["state"] == "interrupted");
        if interrupted && detail["escalated"] == true {
            break detail;
        }
        assert!(Instant::now() < deadline, "taken over: {detail:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let runs: Vec<&str> = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["phase"] == "remediate")
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        runs,
        ["interrupted"],
        "one remediation run, ended by the takeover"
    );
    assert_eq!(stalls(), 1, "the remediation started once and never again");
}

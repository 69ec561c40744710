//! The daemon as a real child process, stopped the hard way (SIGKILL) and the polite way
//! (SIGTERM) while a remediation is in flight: nothing acknowledged is lost, queued work
//! resumes, and the interrupted remediation is escalated, never run twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests run the binary

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use quell_tests::http::{HttpServer, TestRoutes};
use serde_json::{Value, json};

mod common;

use quell_tests::workspace;

/// The daemon's process, killed if a test fails before it does.
struct Daemon(Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    stall: HttpServer,
    routes: TestRoutes,
}

impl World {
    fn new(grace: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let runbooks = dir.path().join("runbooks/probe");
        std::fs::create_dir_all(&runbooks).unwrap();
        std::fs::write(runbooks.join("policy.toml"), common::auto_probe_policy()).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("quell.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace = \"{grace}\"\n\
                 [database]\npath = {:?}\n[runbooks]\ndir = {:?}\n[postmortems]\ndir = {:?}\n\
                 [pipeline]\nworkers = 1\n[http]\ntimeout = \"5m\"\n\
                 [sandbox]\ncache_dir = {:?}\n",
                dir.path().join("quell.db").display().to_string(),
                dir.path().join("runbooks").display().to_string(),
                dir.path().join("postmortems").display().to_string(),
                workspace()
                    .join("target/quell-test-cache")
                    .display()
                    .to_string(),
            ),
        )
        .unwrap();
        let routes = TestRoutes::new();
        let stall = HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), routes.router()).unwrap();
        World {
            dir,
            config,
            port,
            stall,
            routes,
        }
    }

    fn start(&self, log: &str) -> Daemon {
        let log = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quell"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get("/readyz").is_none() {
            assert!(Instant::now() < deadline, "the daemon did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> Option<Value> {
        let response = ureq_get(&self.url(path))?;
        Some(serde_json::from_str(&response).unwrap_or(Value::String(response)))
    }

    fn alert(&self, fingerprint: &str, remediate_calls: Value) -> String {
        let body = json!({
            "version": "4", "status": "firing",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "Probe", "service": fingerprint},
                "annotations": {"quell.test/remediate-calls": remediate_calls.to_string()},
                "startsAt": "2026-11-24T03:00:00Z",
                "fingerprint": fingerprint,
            }],
        });
        let answer = post(&self.url("/webhooks/alertmanager"), &body.to_string()).unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        answer["alerts"][0]["incident"].as_str().unwrap().to_owned()
    }

    fn stalls_seen(&self) -> usize {
        self.routes
            .requests()
            .iter()
            .filter(|r| r.path == "/stall")
            .count()
    }

    fn wait(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn jobs(&self, id: &str) -> Vec<(String, String)> {
        let detail = self.get(&format!("/api/incidents/{id}")).unwrap();
        detail["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["phase"].as_str().unwrap().to_owned(),
                    j["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn timeline(&self, id: &str) -> Vec<String> {
        let detail = self.get(&format!("/api/incidents/{id}")).unwrap();
        detail["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

// A tiny blocking client over reqwest's async one: the test drives a child process.
fn block<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn ureq_get(url: &str) -> Option<String> {
    block(async {
        let response = reqwest::get(url).await.ok()?;
        response.status().is_success().then_some(())?;
        response.text().await.ok()
    })
}

fn post(url: &str, body: &str) -> Option<String> {
    block(async {
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .ok()?;
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.text().await.ok()
    })
}

/// Puts the daemon in the state the tests stop it in: one remediation stalled in a host
/// call, acknowledged incidents done, one queued behind the busy worker.
fn remediation_in_flight(world: &World) -> (String, Vec<String>, String) {
    let stall = json!([
        {"http": {"method": "GET", "url": world.stall.url("/echo")}},
        {"http": {"method": "GET", "url": world.stall.url("/stall")}},
    ]);
    let stuck = world.alert("stuck", stall);
    let quick: Vec<String> = (0..3)
        .map(|n| world.alert(&format!("quick-{n}"), json!([])))
        .collect();
    // Stalled, and the read before the stall is journaled (reads are journaled without the
    // call waiting for it, so the test waits for it instead).
    world.wait("the remediation to stall", || {
        world.stalls_seen() == 1
            && world.jobs(&stuck) == [("remediate".to_owned(), "running".to_owned())]
            && world
                .get(&format!("/api/incidents/{stuck}"))
                .is_some_and(|detail| {
                    detail["runs"].as_array().is_some_and(|runs| {
                        runs.iter().any(|r| {
                            r["phase"] == "remediate"
                                && r["calls"].as_array().is_some_and(|c| !c.is_empty())
                        })
                    })
                })
    });
    // The only worker is busy: this one stays queued.
    let queued = world.alert("queued", json!([]));
    assert_eq!(
        world.jobs(&queued),
        [("diagnose".to_owned(), "queued".to_owned())]
    );
    (stuck, quick, queued)
}

fn assert_recovered(world: &World, stuck: &str, quick: &[String], queued: &str) {
    world.wait("the queued incident to be remediated", || {
        world.jobs(queued) == [("remediate".to_owned(), "done".to_owned())]
    });
    let incidents = world.get("/api/incidents").unwrap();
    assert_eq!(
        incidents["incidents"].as_array().unwrap().len(),
        5,
        "every acknowledged alert is there: {incidents:#}"
    );
    for id in quick {
        assert_eq!(
            world.jobs(id),
            [("remediate".to_owned(), "done".to_owned())]
        );
    }
    assert_eq!(
        world.jobs(stuck),
        [("remediate".to_owned(), "interrupted".to_owned())]
    );
    let timeline = world.timeline(stuck);
    let interrupted = timeline.iter().position(|k| k == "interrupted").unwrap();
    assert_eq!(timeline[interrupted + 1], "escalated", "{timeline:?}");
    assert_eq!(
        world.stalls_seen(),
        1,
        "the interrupted remediation never runs again"
    );
    // What it did before the stop is on record: its run was journaled call by call.
    let detail = world.get(&format!("/api/incidents/{stuck}")).unwrap();
    let run = detail["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["phase"] == "remediate")
        .unwrap()
        .clone();
    assert_eq!(run["outcome"], "interrupted", "{run:#}");
    let calls = run["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{run:#}");
    assert_eq!(calls[0]["decision"], "allowed");
    assert!(
        calls[0]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/echo")
    );
}

#[test]
fn sigkill_mid_remediation_loses_nothing_and_runs_nothing_twice() {
    let world = World::new("20s");
    let mut daemon = world.start("first.log");
    let (stuck, quick, queued) = remediation_in_flight(&world);
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGKILL).unwrap();
    daemon.wait().unwrap();

    let _daemon = world.start("second.log");
    assert_recovered(&world, &stuck, &quick, &queued);

    // The operator's view through the CLI.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_quell"))
            .args(args)
            .args(["--url", &world.url("")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = cli(&["incidents"]);
    assert_eq!(
        list.lines().count(),
        6,
        "a header and five incidents:\n{list}"
    );
    assert!(list.contains(&stuck));
    let shown = cli(&["incident", &stuck]);
    assert!(
        shown.contains("interrupted [probe]: the daemon stopped during remediation"),
        "{shown}"
    );
    assert!(
        shown.contains("run probe remediate → interrupted"),
        "{shown}"
    );
    assert!(shown.contains("http allowed"), "{shown}");
    let draft = cli(&["postmortem", &stuck]);
    assert!(
        draft.starts_with(&format!("# Post-Mortem: {stuck}")),
        "{draft}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_quell"))
        .args(["incident", "INC-00000000", "--url", &world.url("")])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("404 Not Found: no incident INC-00000000")
    );
}

#[test]
fn sigterm_stops_within_the_grace_and_records_the_interruption() {
    let world = World::new("1s");
    let mut daemon = world.start("first.log");
    // SIGHUP reloads runbooks and policies without a restart.
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGHUP).unwrap();
    world.wait("the reload", || {
        std::fs::read_to_string(world.dir.path().join("first.log"))
            .unwrap()
            .contains("reloaded on SIGHUP")
    });
    let (stuck, quick, queued) = remediation_in_flight(&world);
    let asked = Instant::now();
    kill(Pid::from_raw(daemon.id() as i32), Signal::SIGTERM).unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status}");
    let stopped_in = asked.elapsed();
    let log = std::fs::read_to_string(world.dir.path().join("first.log")).unwrap();
    assert!(log.contains("interrupting it"), "{log}");
    assert!(
        stopped_in < Duration::from_secs(15),
        "graceful stop took {stopped_in:?}"
    );

    let _daemon = world.start("second.log");
    assert_recovered(&world, &stuck, &quick, &queued);
}

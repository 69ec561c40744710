//! The author's loop on a real incident: `quell serve` records one (high-error-rate rolls a
//! crash-looping deployment back on the API simulator), `quell export` writes it to a file
//! (from the API and, offline, from the database), and `quell replay` runs runbooks against
//! it with nothing executed: the same runbook decides the same, its Python twin under the
//! same name decides the same from the same recorded answers, and a changed runbook is
//! reported with a non-zero exit, with the call the recording lacks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests run the binary

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quell_tests::http::{HttpServer, TestRoutes};
use quell_tests::kube_sim::{KubeSim, Scenario};
use serde_json::{Value, json};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

mod common;
use common::{block, get, quell, text, workspace};

/// A runbook directory holding one policy for `component`, named `name`, in mode auto, with
/// high-error-rate's grants and loopback for the test's health server.
fn runbook_dir(root: &Path, name: &str, component: &Path) -> PathBuf {
    let shipped =
        std::fs::read_to_string(workspace().join("runbooks/high-error-rate-py/policy.toml"))
            .unwrap();
    let policy = shipped
        .replace(
            "name = \"high-error-rate-py\"",
            &format!("name = \"{name}\""),
        )
        .replace(
            "component = \"high_error_rate_py.wasm\"",
            &format!("component = {:?}", component.display().to_string()),
        )
        .replace("mode = \"diagnose\"", "mode = \"auto\"")
        .replace(
            "networks = [\"10.0.0.0/8\"]",
            "networks = [\"10.0.0.0/8\", \"127.0.0.1/32\"]",
        )
        .replace(
            "urls = [\"http://*.internal/health\"]",
            "urls = [\"http://*.internal/health\", \"http://127.0.0.1:*/health\"]",
        );
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    root.to_owned()
}

#[test]
fn a_recorded_incident_replays_offline_and_a_changed_runbook_is_caught() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::crash_looping(6));
    let routes = TestRoutes::new();
    let health = HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), routes.router()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
    let rust = workspace().join("runbooks/high-error-rate/high_error_rate.wasm");
    assert!(rust.is_file(), "run scripts/build-runbooks.sh first");
    let recorded_with = runbook_dir(&dir.path().join("rust"), "high-error-rate", &rust);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("quell.toml");
    let database = dir.path().join("quell.db");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\npath = {:?}\n\
             [runbooks]\ndir = {:?}\n[postmortems]\ndir = {:?}\n\
             [kubectl]\nkubeconfig = {:?}\ncontext = \"sim\"\n[sandbox]\ncache_dir = {:?}\n\
             [secrets]\nunused = \"s3cret-never-recorded\"\n",
            database.display().to_string(),
            recorded_with.display().to_string(),
            dir.path().join("postmortems").display().to_string(),
            kubeconfig.display().to_string(),
            workspace()
                .join("target/quell-test-cache")
                .display()
                .to_string(),
        ),
    )
    .unwrap();

    // Record: the daemon diagnoses and rolls back.
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_quell"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&format!("{base}/readyz")).is_none() {
        assert!(Instant::now() < deadline, "the daemon did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let alert = json!({
        "version": "4", "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": "api", "severity": "critical"},
            "annotations": {"summary": "api 5xx above 5%", "health_url": health.url("/health")},
            "startsAt": "2026-11-30T03:00:00Z", "fingerprint": "replay-1",
        }],
    });
    let answer: Value = block(async {
        reqwest::Client::new()
            .post(format!("{base}/webhooks/alertmanager"))
            .body(alert.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let detail = get(&format!("{base}/api/incidents/{id}")).unwrap_or_default();
        // Done: a remediation ran and no job is still in flight.
        let remediated = detail["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["phase"] == "remediate");
        let settled = detail["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|j| !matches!(j["state"].as_str(), Some("queued" | "running")));
        if remediated && settled {
            break;
        }
        assert!(Instant::now() < deadline, "no remediation: {detail:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let writes = sim.writes().len();
    let health_requests = routes.requests().len();
    assert_eq!(writes, 1, "the rollback: {:?}", sim.writes());

    // Export from the API, and offline from the database: the same incident.
    let exported = dir.path().join("incident.json");
    let out = quell(&[
        "export",
        &id,
        "--url",
        &base,
        "--output",
        exported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Kept as an artifact: a recorded incident, as a runbook's test fixture is made.
    let artifacts = workspace().join("target/test-artifacts/replay");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::copy(&exported, artifacts.join("crash-loop.json")).unwrap();
    drop(daemon);
    // Offline, from the file: read-only, so the database is exactly as it was.
    let before = std::fs::read(&database).unwrap();
    let offline = quell(&["export", &id, "--database", database.to_str().unwrap()]);
    assert!(offline.status.success(), "{}", text(&offline.stderr));
    assert!(
        std::fs::read(&database).unwrap() == before,
        "the export wrote to the database"
    );
    let from_api: Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    let from_file: Value = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(from_api["quell_export"], 1);
    assert_eq!(from_api["incident"]["runs"], from_file["incident"]["runs"]);
    let recorded = from_api.to_string();
    assert!(
        recorded.contains("rollout undo deployment/api"),
        "{recorded}"
    );
    assert!(!recorded.contains("s3cret-never-recorded"));

    let replay = |runbooks: &Path| {
        quell(&[
            "replay",
            exported.to_str().unwrap(),
            "--runbooks",
            runbooks.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
    };

    // The same runbook: the same decisions, and nothing reached the world.
    let same = replay(&recorded_with);
    let said = text(&same.stdout);
    assert!(same.status.success(), "{said}{}", text(&same.stderr));
    assert!(said.contains("high-error-rate: same decisions"), "{said}");
    assert!(!said.contains("not in the recording"), "{said}");
    assert_eq!(sim.writes().len(), writes, "a replay executed a write");
    assert_eq!(
        routes.requests().len(),
        health_requests,
        "a replay sent HTTP"
    );

    // The Python twin under the runbook's name: the same decisions from the same answers.
    let python = workspace().join("runbooks/high-error-rate-py/high_error_rate_py.wasm");
    let twin = runbook_dir(&dir.path().join("python"), "high-error-rate", &python);
    let out = replay(&twin);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("high-error-rate: same decisions"), "{said}");

    // A changed runbook: it no longer rolls back at 6 restarts, and reads logs first.
    let changed = dir.path().join("changed/high-error-rate");
    std::fs::create_dir_all(&changed).unwrap();
    let source = std::fs::read_to_string(workspace().join("runbooks/high-error-rate-py/app.py"))
        .unwrap()
        .replace("CRASH_LOOP_RESTARTS = 3", "CRASH_LOOP_RESTARTS = 10")
        .replace(
            "        timeline.note(f\"checking {service} in {namespace}: health, rollouts, pods\")",
            "        timeline.note(f\"checking {service} in {namespace}: health, rollouts, pods\")\n        \
             try:\n            kubectl.get_json(\"deployments\", namespace, name=service)\n        \
             except HostError:\n            pass",
        );
    assert!(source.contains("name=service"));
    std::fs::write(changed.join("app.py"), source).unwrap();
    let build = Command::new(workspace().join("scripts/build-python-runbook.sh"))
        .arg(&changed)
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build.stderr));
    let changed_root = runbook_dir(
        &dir.path().join("changed"),
        "high-error-rate",
        &changed.join("high_error_rate.wasm"),
    );
    let out = replay(&changed_root);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}{}", text(&out.stderr));
    assert!(said.contains("high-error-rate: differs"), "{said}");
    assert!(
        said.contains("plan: [\"roll back deployment/api in production"),
        "{said}"
    );
    assert!(
        said.contains("remediation: succeeded: Rolled back deployment/api → failed: No automatic remediation available"),
        "{said}"
    );
    assert!(
        said.contains("not in the recording (answered failed): high-error-rate diagnose kubectl"),
        "{said}"
    );
    assert_eq!(sim.writes().len(), writes, "a replay executed a write");
}

/// The command `docs/runbooks-rust.md` §4 shows, exactly, with the output it describes.
#[test]
fn the_documented_replay_of_the_example_incident_says_what_differs() {
    let cache = tempfile::tempdir().unwrap();
    let config = cache.path().join("quell.toml");
    std::fs::write(
        &config,
        format!(
            "[sandbox]\ncache_dir = {:?}\n",
            workspace()
                .join("target/quell-test-cache")
                .display()
                .to_string()
        ),
    )
    .unwrap();
    let out = quell(&[
        "replay",
        "examples/incidents/crash-loop.json",
        "--runbooks",
        "runbooks",
        "--config",
        config.to_str().unwrap(),
    ]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}{}", text(&out.stderr));
    let guide = std::fs::read_to_string(workspace().join("docs/runbooks-rust.md")).unwrap();
    assert!(guide.contains("quell replay examples/incidents/crash-loop.json --runbooks runbooks"));
    let rust = said.split("  high-error-rate: ").nth(1).unwrap_or_default();
    assert!(rust.starts_with("differs"), "{said}");
    assert!(rust.contains("findings: [health ok"), "{said}");
    assert!(
        rust.contains("diagnose http denied: GET http://127.0.0.1:"),
        "{said}"
    );
    assert!(
        !rust
            .split("  high-error-rate-py")
            .next()
            .unwrap()
            .contains("remediation:"),
        "the rollback is decided and answered as recorded: {said}"
    );
    assert!(
        said.contains(
            "  high-error-rate-py: differs\n    not in the recording: it did not run then"
        ),
        "{said}"
    );
}

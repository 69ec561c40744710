//! A crash loop: `quell serve` is SIGKILLed at seeded random moments while a load generator
//! sends alerts, some of which an `auto` runbook remediates through a witness kubectl that
//! writes down every command it really ran. After every restart:
//!
//! - every alert acknowledged with a 2xx is there;
//! - there is one open incident per alert identity;
//! - no remediation started twice;
//! - every write the witness saw has a journaled call.
//!
//! `QUELL_CRASH_SEED` replays a run (the seed is printed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests run the binary

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use serde_json::json;

const CYCLES: usize = 20;
/// Every third alert matches no runbook; the rest are remediated by the probe.
const UNMATCHED_EVERY: u64 = 3;

use quell_tests::{probe_component, workspace};

/// The daemon's process; killed and reaped whatever happens.
struct Daemon(Child);

impl Daemon {
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
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
    url: String,
    witness: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let witness = dir.path().join("witness.log");
        let kubectl = dir.path().join("kubectl");
        // Writes down what it runs, then takes a while, as a real rollout call does: a kill
        // often lands while a write is in flight.
        std::fs::write(
            &kubectl,
            format!(
                "#!/bin/sh\necho \"kubectl $*\" >> {}\nsleep 0.2\n",
                witness.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runbooks = dir.path().join("runbooks/probe");
        std::fs::create_dir_all(&runbooks).unwrap();
        std::fs::write(
            runbooks.join("policy.toml"),
            format!(
                "[runbook]\nname = \"probe\"\ncomponent = {:?}\nmode = \"auto\"\ntimeout = \"30s\"\n\
                 [match]\nalertname = \"Probe\"\n\
                 [[kubectl.allow]]\nverbs = [\"rollout restart\"]\nresources = [\"deployments\"]\n\
                 namespaces = [\"production\"]\nnames = [\"api-*\"]\n\
                 [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
                 [ssh.commands]\ntouch = {{ run = \"true\", effect = \"write\" }}\n\
                 [http]\nnetworks = [\"127.0.0.0/8\"]\n\
                 [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n",
                probe_component().display().to_string()
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("quell.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\
                 [database]\npath = {:?}\n[runbooks]\ndir = {:?}\n[postmortems]\ndir = {:?}\n\
                 [pipeline]\nworkers = 2\n[kubectl]\nbinary = {:?}\n\
                 [sandbox]\ncache_dir = {:?}\n",
                dir.path().join("quell.db").display().to_string(),
                dir.path().join("runbooks").display().to_string(),
                dir.path().join("postmortems").display().to_string(),
                kubectl.display().to_string(),
                workspace()
                    .join("target/quell-test-cache")
                    .display()
                    .to_string(),
            ),
        )
        .unwrap();
        World {
            dir,
            config,
            url: format!("http://127.0.0.1:{port}"),
            witness,
        }
    }

    /// Starts the daemon and waits until it answers `/readyz`.
    fn start(&self, client: &reqwest::blocking::Client, cycle: usize) -> Daemon {
        let log =
            std::fs::File::create(self.dir.path().join(format!("quell-{cycle}.log"))).unwrap();
        let daemon = Daemon(
            Command::new(env!("CARGO_BIN_EXE_quell"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("{}/readyz", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return daemon;
            }
            assert!(Instant::now() < deadline, "the daemon did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.path().join("quell.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }
}

fn alert(n: u64) -> String {
    let alertname = if n.is_multiple_of(UNMATCHED_EVERY) {
        "Other"
    } else {
        "Probe"
    };
    let restart = json!([{ "kubectl": {
        "verb": "rollout restart", "resource": "deployments",
        "namespace": "production", "name": format!("api-{n}"),
    } }]);
    json!({
        "version": "4", "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": { "alertname": alertname, "service": format!("svc-{n}") },
            "annotations": { "quell.test/remediate-calls": restart.to_string() },
            "startsAt": "2026-11-24T03:00:00Z",
            "fingerprint": format!("{n:016x}"),
        }],
    })
    .to_string()
}

/// Sends alerts from four threads until `stop`; returns the ones acknowledged with a 2xx.
fn load(url: &str, next: &Arc<AtomicU64>, stop: &Arc<AtomicBool>) -> Vec<u64> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (url, next, stop, acked) = (
                format!("{url}/webhooks/alertmanager"),
                next.clone(),
                stop.clone(),
                acked.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(alert(n))
                        .send();
                    match sent {
                        Ok(response) if response.status().is_success() => {
                            acked.lock().unwrap().push(n)
                        }
                        // The daemon died mid-request: not acknowledged, nothing promised.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    std::mem::take(&mut *acked.lock().unwrap())
}

/// Checks what must hold whatever moment the daemon died at.
fn check(world: &World, acked: &BTreeSet<u64>, cycle: usize) {
    let db = world.db();
    let stored: BTreeSet<String> = db
        .prepare("SELECT fingerprint FROM incidents")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let lost: Vec<&u64> = acked
        .iter()
        .filter(|n| !stored.contains(&format!("{n:016x}")))
        .collect();
    assert!(
        lost.is_empty(),
        "cycle {cycle}: acknowledged alerts lost: {lost:?}"
    );

    let doubled: i64 = db
        .query_row(
            "SELECT count(*) FROM (SELECT 1 FROM incidents WHERE status != 'resolved'
                 GROUP BY source, fingerprint HAVING count(*) > 1)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        doubled, 0,
        "cycle {cycle}: an identity has two open incidents"
    );

    let twice: Vec<String> = db
        .prepare(
            "SELECT incident_id FROM runs WHERE phase = 'remediate'
             GROUP BY incident_id, runbook HAVING count(*) > 1",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        twice.is_empty(),
        "cycle {cycle}: remediations started twice: {twice:?}"
    );

    let journaled: BTreeSet<String> = db
        .prepare("SELECT json_extract(record, '$.command') FROM calls WHERE run_id IN (SELECT id FROM runs WHERE phase = 'remediate')")
        .unwrap()
        .query_map([], |row| row.get::<_, Option<String>>(0))
        .unwrap()
        .filter_map(|c| c.unwrap())
        .collect();
    let witnessed = std::fs::read_to_string(&world.witness).unwrap_or_default();
    let mut seen = BTreeSet::new();
    for line in witnessed.lines() {
        assert!(
            seen.insert(line),
            "cycle {cycle}: a write ran twice: {line}"
        );
        // Records show the request's own argv, without the flags the host pins.
        let line: String = line
            .split(' ')
            .filter(|arg| !arg.starts_with("--request-timeout="))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            journaled.contains(&line),
            "cycle {cycle}: kubectl ran {line:?}, and no journaled call says so"
        );
    }
}

#[test]
fn killed_at_random_moments_quell_loses_nothing_and_never_acts_twice() {
    let seed = std::env::var("QUELL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash loop seed: {seed} (QUELL_CRASH_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let world = World::new();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(1));
    let mut acked = BTreeSet::new();
    let mut kills_in_remediation = 0;
    for cycle in 0..CYCLES {
        let mut daemon = world.start(&client, cycle);
        check(&world, &acked, cycle);
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (url, next, stop) = (world.url.clone(), next.clone(), stop.clone());
            std::thread::spawn(move || load(&url, &next, &stop))
        };
        std::thread::sleep(Duration::from_millis(rng.random_range(100..800)));
        daemon.kill();
        stop.store(true, Ordering::SeqCst);
        acked.extend(sender.join().unwrap());
        let running: i64 = world
            .db()
            .query_row(
                "SELECT count(*) FROM jobs WHERE state = 'running' AND phase = 'remediate'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        kills_in_remediation += usize::from(running > 0);
    }
    let mut daemon = world.start(&client, CYCLES);
    check(&world, &acked, CYCLES);
    daemon.kill();
    assert!(
        acked.len() > CYCLES,
        "the load generator got too few alerts in ({}) to mean anything",
        acked.len()
    );
    println!(
        "{} alerts acknowledged over {CYCLES} kills, {kills_in_remediation} of them during a remediation",
        acked.len()
    );
}

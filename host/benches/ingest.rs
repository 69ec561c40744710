//! Ingest load generator: single-alert Alertmanager payloads over loopback to a real
//! `quell serve` child process (release build, SQLite with `synchronous=FULL`).
//!
//! 1. Throughput: 64 connections sending as fast as the daemon acknowledges.
//! 2. Latency: an open-loop 1,000 alerts/s schedule; latency counts from the scheduled send
//!    time, so a stalled daemon cannot hide queueing (no coordinated omission).
//!
//! `cargo bench -p quell --bench ingest` (QUELL_BENCH_SECS sets each phase's length, 10 s;
//! QUELL_BENCH_BIN runs another `quell` binary, for an A/B against an earlier commit;
//! QUELL_BENCH_DATABASE_URL runs it on PostgreSQL: `scripts/bench-pg.sh` starts one;
//! QUELL_BENCH_REPLICAS=3 then starts three daemons on it and spreads the load across them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // a bench tool

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 64;
const RATE: u64 = 1_000;

fn payload(n: u64) -> String {
    format!(
        r#"{{"receiver":"quell","status":"firing","version":"4","groupKey":"{{}}:{{alertname=\"Load\"}}","truncatedAlerts":0,"groupLabels":{{"alertname":"Load"}},"commonLabels":{{"alertname":"Load"}},"commonAnnotations":{{}},"externalURL":"http://am:9093","alerts":[{{"status":"firing","labels":{{"alertname":"Load","severity":"warning","instance":"host-{n}"}},"annotations":{{"summary":"load test alert {n}"}},"startsAt":"2026-11-24T03:00:00.51Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"{n:016x}"}}]}}"#
    )
}

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
    let config = dir.path().join("quell.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\npath = {:?}\n[runbooks]\ndir = {:?}\n\
             [sandbox]\ncache_dir = {:?}\n",
            dir.path().join("quell.db").display().to_string(),
            dir.path().join("runbooks").display().to_string(),
            dir.path().join("cache").display().to_string(),
        ),
    )
    .unwrap();
    let binary =
        std::env::var_os("QUELL_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_quell").into());
    let mut command = Command::new(binary);
    // QUELL_BENCH_DATABASE_URL: the same load on PostgreSQL (scripts/bench-pg.sh).
    if let Some(url) = std::env::var_os("QUELL_BENCH_DATABASE_URL") {
        command.env("QUELL_DATABASE_URL", url);
    }
    let child = command
        .args(["serve", "--config"])
        .arg(&config)
        .env("QUELL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Daemon {
        child,
        _dir: dir,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn send(client: &reqwest::Client, url: &str, n: u64) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(payload(n))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    let _ = response.bytes().await;
}

/// Each daemon's webhook.
fn webhooks(daemons: &[Daemon]) -> Vec<String> {
    daemons
        .iter()
        .map(|d| format!("{}/webhooks/alertmanager", d.url))
        .collect()
}

async fn throughput(daemons: &[Daemon], seconds: u64, next: Arc<AtomicU64>) -> (u64, Duration) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let webhooks = webhooks(daemons);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let webhook = webhooks[connection % webhooks.len()].clone();
        let (client, next, done) = (client.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                send(&client, &webhook, n).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

async fn open_loop(daemons: &[Daemon], seconds: u64, next: Arc<AtomicU64>) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    let webhooks = webhooks(daemons);
    let interval = Duration::from_nanos(1_000_000_000 / RATE);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..(RATE * seconds) {
        let scheduled = started + interval * u32::try_from(i).unwrap();
        tokio::time::sleep_until(scheduled.into()).await;
        let n = next.fetch_add(1, Ordering::Relaxed);
        let (client, webhook) = (
            client.clone(),
            webhooks[n as usize % webhooks.len()].clone(),
        );
        tasks.push(tokio::spawn(async move {
            send(&client, &webhook, n).await;
            scheduled.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    latencies.sort();
    latencies
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: do a short run.
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds: u64 = std::env::var("QUELL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 10 } else { 1 });
    let replicas = std::env::var("QUELL_BENCH_REPLICAS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|_| std::env::var_os("QUELL_BENCH_DATABASE_URL").is_some())
        .unwrap_or(1usize);
    let daemons: Vec<Daemon> = (0..replicas.max(1)).map(|_| start_daemon()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ready = Instant::now() + Duration::from_secs(60);
        for daemon in &daemons {
            while reqwest::get(format!("{}/readyz", daemon.url)).await.is_err() {
                assert!(Instant::now() < ready, "the daemon did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let next = Arc::new(AtomicU64::new(0));
        // Warm-up: connections, page cache, prepared statements.
        throughput(&daemons, 1, next.clone()).await;
        let (alerts, elapsed) = throughput(&daemons, seconds, next.clone()).await;
        println!(
            "ingest/throughput: {alerts} alerts in {:.2} s over {CONNECTIONS} connections to {} daemon(s) = {:.0} alerts/s durably acknowledged",
            elapsed.as_secs_f64(),
            daemons.len(),
            alerts as f64 / elapsed.as_secs_f64()
        );
        let latencies = open_loop(&daemons, seconds, next).await;
        println!(
            "ingest/latency at {RATE} alerts/s for {seconds} s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            latencies.len()
        );
    });
}

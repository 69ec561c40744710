//! Job-claim throughput: how many jobs a day's worth of workers take off the queue per
//! second, each claim followed by the transition that ends the job, as a worker does.
//!
//! Fills the queue with `JOBS` diagnoses (one incident each, one runbook), then `WORKERS`
//! workers per replica claim and finish until the queue is empty; every job must be claimed
//! exactly once. On SQLite (a temp file) by default; `QUELL_BENCH_DATABASE_URL` runs it on
//! PostgreSQL (`scripts/bench-pg.sh claims` starts one with durable defaults), where
//! `QUELL_BENCH_REPLICAS` (default 1) stores share the database as replicas would.
//!
//! `cargo bench -p quell --bench claims` (QUELL_BENCH_JOBS sets the queue, 2,000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // a bench tool

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quell::config::{DatabaseConfig, GenericFields, HumanDuration};
use quell::lifecycle::Transition;
use quell::sources::{Source, parse};
use quell::store::{Arrival, Delivery, Selected, Store};

const WORKERS: usize = 8;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One Alertmanager alert, `n`th of the fill, matched by runbook `probe`.
fn delivery(n: usize) -> Delivery {
    let body = format!(
        r#"{{"receiver":"quell","status":"firing","version":"4","groupKey":"{{}}:{{}}","truncatedAlerts":0,"alerts":[{{"status":"firing","labels":{{"alertname":"Claim","instance":"host-{n}"}},"annotations":{{}},"startsAt":"2026-11-24T03:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"{n:016x}"}}]}}"#
    );
    let parsed = parse(
        Source::Alertmanager,
        body.as_bytes(),
        None,
        &GenericFields::default(),
    )
    .unwrap();
    let runbook = Selected {
        name: "probe".to_owned(),
        priority: 100,
    };
    Delivery {
        source: "alertmanager",
        body: body.into_bytes(),
        truncated: 0,
        arrivals: parsed
            .alerts
            .into_iter()
            .map(|alert| Arrival::new(alert, vec![runbook.clone()]))
            .collect(),
        reopen_window_ms: 0,
    }
}

async fn open(url: Option<&str>, dir: &std::path::Path) -> Store {
    let config = DatabaseConfig {
        url: url.map(str::to_owned),
        path: dir.join("quell.db"),
        pool_size: 16,
        lease: HumanDuration(Duration::from_secs(60)),
        ..Default::default()
    };
    Store::connect(&config).await.unwrap()
}

fn main() {
    let jobs = env("QUELL_BENCH_JOBS", 2_000);
    let url = std::env::var("QUELL_BENCH_DATABASE_URL").ok();
    let replicas = if url.is_some() {
        env("QUELL_BENCH_REPLICAS", 1).max(1)
    } else {
        1
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut stores = Vec::new();
        for _ in 0..replicas {
            stores.push(open(url.as_deref(), dir.path()).await);
        }
        // The fill: 16 writers, each its share of the alerts.
        let mut fill = tokio::task::JoinSet::new();
        for writer in 0..16 {
            let store = stores[writer % replicas].clone();
            fill.spawn(async move {
                for n in (writer..jobs).step_by(16) {
                    store.ingest(delivery(n)).await.unwrap();
                }
            });
        }
        fill.join_all().await;

        let claimed = Arc::new(Mutex::new(HashSet::new()));
        let started = Instant::now();
        let mut workers = Vec::new();
        for store in &stores {
            for _ in 0..WORKERS {
                let (store, claimed) = (store.clone(), claimed.clone());
                workers.push(tokio::spawn(async move {
                    while let Some(job) = store.claim_job().await.unwrap() {
                        assert!(
                            claimed.lock().unwrap().insert(job.id),
                            "job {} claimed twice",
                            job.id
                        );
                        store
                            .apply(Transition::SelectorDeclined(job.to_ref()))
                            .await
                            .unwrap();
                    }
                }));
            }
        }
        for worker in workers {
            worker.await.unwrap();
        }
        let elapsed = started.elapsed();
        let done = claimed.lock().unwrap().len();
        assert_eq!(done, jobs, "every job claimed once");
        let backend = if url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        println!(
            "claims/{backend}: {done} jobs claimed and finished in {:.2} s by {} workers on {replicas} replica(s) = {:.0} jobs/s",
            elapsed.as_secs_f64(),
            WORKERS * replicas,
            done as f64 / elapsed.as_secs_f64()
        );
    });
}

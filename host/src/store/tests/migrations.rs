//! The PostgreSQL schema's versions: a database an older Quell wrote is upgraded with its
//! data, one a newer Quell wrote is refused, and replicas starting together migrate once;
//! and the backend's own retry of a deadlock's victim.

use super::super::*;
use quell_tests::postgres::Postgres;

fn config(server: &Postgres) -> crate::config::DatabaseConfig {
    crate::config::DatabaseConfig {
        url: Some(server.url()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_3_database_is_upgraded_with_its_data_and_its_running_work_recovered() {
    let server = Postgres::start().unwrap();
    // What the first PostgreSQL-capable schema wrote: version 3, a job left running.
    server.psql(include_str!("../postgres/schema.sql")).unwrap();
    server
        .psql(
            "INSERT INTO quell_schema (version) VALUES (3);
             INSERT INTO incidents (id, source, fingerprint, status, severity, title, labels,
                 annotations, alert_json, created_at, created_ms, updated_at)
             VALUES ('INC-OLD', 'alertmanager', 'f', 'open', 'high', 'old', '{}', '{}', '{}',
                 '2026-11-01T00:00:00Z', 0, '2026-11-01T00:00:00Z');
             INSERT INTO jobs (incident_id, runbook, phase, state, run_at_ms, created_at,
                 updated_at)
             VALUES ('INC-OLD', 'probe', 'diagnose', 'running', 0, 'x', 'x');",
        )
        .unwrap();
    let store = Store::connect(&config(&server)).await.unwrap();
    assert_eq!(
        server
            .psql("SELECT version FROM quell_schema")
            .unwrap()
            .trim(),
        schema_version().to_string()
    );
    assert!(
        store
            .incident_detail("INC-OLD".to_owned())
            .await
            .unwrap()
            .is_some(),
        "the data is kept"
    );
    // A job claimed before leases existed has no owner: it is taken back at start.
    let recovery = store.recover().await.unwrap();
    assert_eq!(recovery.requeued, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_database_a_newer_quell_wrote_is_refused_and_left_alone() {
    let server = Postgres::start().unwrap();
    drop(Store::connect(&config(&server)).await.unwrap());
    server.psql("UPDATE quell_schema SET version = 99").unwrap();
    let error = Store::connect(&config(&server)).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!(
            "the database's schema is version 99, newer than this quell's ({})",
            schema_version()
        )),
        "{message}"
    );
    assert!(
        message.contains("127.0.0.1"),
        "names the database: {message}"
    );
    assert_eq!(
        server
            .psql("SELECT version FROM quell_schema")
            .unwrap()
            .trim(),
        "99"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_starting_together_on_an_empty_database_migrate_it_once() {
    let server = Postgres::start().unwrap();
    let config = config(&server);
    let starts = (0..3).map(|_| {
        let config = config.clone();
        tokio::spawn(async move { Store::connect(&config).await.map(drop) })
    });
    for start in starts {
        start.await.unwrap().unwrap();
    }
    assert_eq!(
        server
            .psql("SELECT count(*), max(version) FROM quell_schema")
            .unwrap()
            .trim(),
        format!("1|{}", schema_version())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadlocks_victim_is_run_again_and_both_writes_land() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Barrier};
    let server = Postgres::start().unwrap();
    let store = Store::connect(&config(&server)).await.unwrap();
    // Both take one lock, meet, then take the other's: PostgreSQL rolls one back.
    let met = Arc::new(Barrier::new(2));
    let runs = Arc::new(AtomicU32::new(0));
    let write = |first: &'static str, second: &'static str| {
        let (store, met, runs) = (store.clone(), met.clone(), runs.clone());
        tokio::spawn(async move {
            store
                .db
                .write(move |tx| {
                    let attempt = runs.fetch_add(1, Ordering::SeqCst);
                    tx.lock(first)?;
                    // A lock goes out with the next statement that waits: this one makes
                    // sure it is held before the two meet.
                    tx.execute("SELECT 1", &[])?;
                    if attempt < 2 {
                        met.wait();
                    }
                    tx.lock(second)?;
                    tx.execute(
                        "INSERT INTO settings (key, value) VALUES (?1, 'v')",
                        &[&first],
                    )?;
                    Ok(())
                })
                .await
        })
    };
    let (one, other) = (write("a", "b"), write("b", "a"));
    one.await.unwrap().unwrap();
    other.await.unwrap().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3, "the victim ran once more");
    assert_eq!(
        server
            .psql("SELECT string_agg(key, ',' ORDER BY key) FROM settings WHERE key IN ('a', 'b')")
            .unwrap()
            .trim(),
        "a,b"
    );
}

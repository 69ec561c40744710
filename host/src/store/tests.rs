//! The store's own tests: group commit, failures inside a batch, retention.

use super::*;

/// A store on a fresh SQLite file; the guard keeps its directory.
pub(super) fn on_sqlite() -> (Box<dyn std::any::Any + Send>, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    (Box::new(dir), store)
}

/// A store on a fresh PostgreSQL server of its own; the guard stops the server.
pub(super) async fn on_postgres() -> (Box<dyn std::any::Any + Send>, Store) {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    let config = crate::config::DatabaseConfig {
        url: Some(server.url()),
        ..Default::default()
    };
    let store = Store::connect(&config).await.unwrap();
    (Box::new(server), store)
}

/// Waits until `store`'s database listener is connected (a hang guard, not a timing).
pub(super) async fn listening(store: &Store) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !store.hub().listening() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener connects"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs each named `async fn(&Store)` as two tests, `sqlite::name` and `postgres::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let (_keep, store) = crate::store::tests::on_sqlite();
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let (_keep, store) = crate::store::tests::on_postgres().await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}
pub(super) use on_both_backends;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_share_commits_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    let writes = (0..200).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .db
                .sqlite()
                .write_raw(move |conn| {
                    conn.execute(
                        "INSERT INTO settings (key, value) VALUES (?1, 'v')",
                        [format!("k{n}")],
                    )?;
                    Ok(n)
                })
                .await
        })
    });
    for write in writes {
        write.await.unwrap().unwrap();
    }
    let count: i64 = store
        .db
        .sqlite()
        .read_raw(|conn| Ok(conn.query_row("SELECT count(*) FROM settings", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(count, 200);
    let (journal, synchronous): (String, i64) = store
        .db
        .sqlite()
        .read_raw(|conn| {
            Ok((
                conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(
        (journal.as_str(), synchronous),
        ("wal", 2),
        "WAL with synchronous=FULL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_sees_one_snapshot_even_when_a_write_commits_halfway() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    insert_setting(store.clone(), "before").await.unwrap();
    let writer = store.clone();
    let runtime = tokio::runtime::Handle::current();
    let (first, second) = store
        .db
        .sqlite()
        .read_raw(move |conn| {
            let count = |conn: &rusqlite::Connection| -> Result<i64, StoreError> {
                Ok(conn.query_row("SELECT count(*) FROM settings", [], |r| r.get(0))?)
            };
            let first = count(conn)?;
            // A write commits between the read's two queries (this is a blocking thread).
            runtime.block_on(insert_setting(writer, "between"))?;
            Ok((first, count(conn)?))
        })
        .await
        .unwrap();
    assert_eq!(
        first, second,
        "both queries of one read see the same commit"
    );
    let after: i64 = store
        .db
        .sqlite()
        .read_raw(|conn| Ok(conn.query_row("SELECT count(*) FROM settings", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(after, first + 1, "the next read sees the write");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_read_never_writes_and_refuses_another_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    drop(Store::open(&path, Duration::from_secs(5)).unwrap());
    assert!(
        Store::incident_detail_offline(&path, "INC-NONE")
            .unwrap()
            .is_none()
    );
    // A database another quell wrote (older or newer) is read by that quell, not migrated.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();
    let error = Store::incident_detail_offline(&path, "INC-NONE")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "the database's schema is version 2, this quell reads version {}",
            migrate::latest()
        )),
        "{error}"
    );
    assert!(
        std::fs::read(&path).unwrap() == before,
        "an offline read wrote"
    );
}

/// Inserts the setting `key` (a write that fails on a duplicate).
async fn insert_setting(store: Store, key: &'static str) -> Result<(), StoreError> {
    store
        .db
        .sqlite()
        .write_raw(move |conn| {
            conn.execute("INSERT INTO settings (key, value) VALUES (?1, 'v')", [key])?;
            Ok(())
        })
        .await
}

/// The settings' keys, sorted.
async fn setting_keys(store: &Store) -> Vec<String> {
    store
        .db
        .sqlite()
        .read_raw(|conn| {
            Ok(conn
                .prepare("SELECT key FROM settings ORDER BY key")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_write_does_not_undo_its_batch_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    let insert = |key| insert_setting(store.clone(), key);
    let (a, duplicate, b) = tokio::join!(insert("a"), insert("a"), insert("b"));
    assert!(a.is_ok() && b.is_ok());
    assert!(
        matches!(duplicate, Err(StoreError::Failed { .. })),
        "{duplicate:?}"
    );
    let keys = setting_keys(&store).await;
    assert_eq!(keys, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_rolled_back_by_sqlite_fails_exactly_the_writes_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    // Hold the writer so that the next three writes share one batch.
    let (open_gate, gate) = std::sync::mpsc::channel::<()>();
    let (holding, held_now) = std::sync::mpsc::channel::<()>();
    let held = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .db
                .sqlite()
                .write_raw(move |_| {
                    let _ = holding.send(());
                    let _ = gate.recv();
                    Ok(())
                })
                .await
        }
    });
    while held_now.try_recv().is_err() {
        tokio::task::yield_now().await;
    }
    let insert = |key| tokio::spawn(insert_setting(store.clone(), key));
    let before = insert("before");
    while store.queued_writes() < 1 {
        tokio::task::yield_now().await;
    }
    // What SQLite does on SQLITE_FULL or SQLITE_IOERR in some cases: the statement fails
    // and the whole transaction is rolled back.
    let failing = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .db
                .sqlite()
                .write_raw(|conn| -> Result<(), StoreError> {
                    conn.execute_batch("ROLLBACK")?;
                    Err(StoreError::unavailable("database or disk is full"))
                })
                .await
        }
    });
    while store.queued_writes() < 2 {
        tokio::task::yield_now().await;
    }
    let after = insert("after");
    while store.queued_writes() < 3 {
        tokio::task::yield_now().await;
    }
    open_gate.send(()).unwrap();
    held.await.unwrap().unwrap();
    let (before, failing, after) = (
        before.await.unwrap(),
        failing.await.unwrap(),
        after.await.unwrap(),
    );
    let keys = setting_keys(&store).await;
    assert_eq!(
        keys,
        ["after"],
        "only the write after the rollback is stored"
    );
    assert!(
        matches!(before, Err(StoreError::Unavailable { .. })),
        "the write the rollback undid is reported failed: {before:?}"
    );
    assert!(failing.is_err());
    assert!(after.is_ok(), "the write after it committed: {after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_write_fails_alone_and_the_writer_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    let panicked = store
        .db
        .sqlite()
        .write_raw(|conn| -> Result<(), StoreError> {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES ('half', 'done')",
                [],
            )?;
            panic!("a bug in a write")
        })
        .await;
    assert!(
        matches!(panicked, Err(StoreError::Unavailable { .. })),
        "{panicked:?}"
    );
    store
        .db
        .sqlite()
        .write_raw(|conn| {
            conn.execute("INSERT INTO settings (key, value) VALUES ('next', 'v')", [])?;
            Ok(())
        })
        .await
        .unwrap();
    let keys = setting_keys(&store).await;
    assert_eq!(keys, ["next"], "the panicking write was rolled back");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_old_deliveries_and_resolved_incidents_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    store
        .db
        .sqlite()
        .write_raw(|conn| {
            for (id, status, resolved_ms) in [
                ("INC-OLD", "resolved", 1_000),
                ("INC-OPEN", "open", 0),
                ("INC-NEW", "resolved", 9_000),
            ] {
                conn.execute(
                    "INSERT INTO incidents (id, source, fingerprint, status, severity, title,
                         labels, annotations, alert_json, created_at, created_ms, updated_at,
                         resolved_ms)
                     VALUES (?1, 's', ?1, ?2, 'low', 't', '{}', '{}', '{}', 'x', 0, 'x', ?3)",
                    rusqlite::params![id, status, resolved_ms],
                )?;
                apply::event(
                    &super::tx::SqliteTx(conn),
                    id,
                    "x",
                    crate::lifecycle::EventKind::Created,
                    None,
                    "m",
                    None,
                )?;
            }
            conn.execute(
                "INSERT INTO inbox (source, received_at, received_ms, body, status)
                 VALUES ('s', 'x', 1000, x'00', 'accepted'), ('s', 'x', 9000, x'00', 'accepted')",
                [],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let pruned = store.prune(5_000, 5_000).await.unwrap();
    assert_eq!((pruned.deliveries, pruned.incidents), (1, 1));
    let left: (Vec<String>, i64) = store
        .db
        .sqlite()
        .read_raw(|conn| {
            let ids = conn
                .prepare("SELECT id FROM incidents ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let events = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
            Ok((ids, events))
        })
        .await
        .unwrap();
    assert_eq!(left, (vec!["INC-NEW".to_owned(), "INC-OPEN".to_owned()], 2));
}

fn user_version(path: &std::path::Path) -> u32 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_from_before_schema_versions_is_adopted_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    // What every quell before schema versions wrote: the schema, no version.
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(include_str!("schema.sql")).unwrap();
    old.execute(
        "INSERT INTO settings (key, value) VALUES ('remediation_paused', 'true')",
        [],
    )
    .unwrap();
    drop(old);
    assert_eq!(user_version(&path), 0);
    let store = Store::open(&path, Duration::from_secs(5)).unwrap();
    assert!(store.paused().await.unwrap(), "the data is still there");
    assert_eq!(user_version(&path), schema_version());
    // What the later versions added is there: claiming orders by priority, and writes
    // take target leases.
    assert!(store.claim_job().await.unwrap().is_none());
}

#[test]
fn a_database_from_a_newer_quell_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = Store::open(&path, Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "schema is version 99, newer than this quell's ({})",
            schema_version()
        )),
        "{error}"
    );
    assert_eq!(user_version(&path), 99, "nothing was changed");
}

#[test]
fn a_failed_migration_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let steps: &[(u32, &str)] = &[
        (1, "CREATE TABLE a (x INTEGER);"),
        (
            2,
            "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);",
        ),
    ];
    let error = migrate::migrate(&conn, &path, steps)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot upgrade the schema to version 2 (it stays at 1"),
        "{error}"
    );
    assert_eq!(user_version(&path), 1, "version 1 was applied and kept");
    let b: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(b, 0, "version 2's table was rolled back with it");
}

fn grafana(status: &str, org: u32) -> crate::sources::Delivery {
    let body = serde_json::json!({
        "receiver": "quell", "status": status, "orgId": org, "state": "alerting",
        "version": "1", "groupKey": "{}:{}", "externalURL": "http://grafana:3000/",
        "alerts": [{
            "status": status, "labels": {"alertname": "HighCPU", "instance": "web-1"},
            "annotations": {}, "startsAt": "2026-11-24T03:00:00Z",
            "endsAt": "2026-11-24T04:00:00Z", "fingerprint": "57c6d9296de2ad39",
        }],
    });
    crate::sources::parse(
        crate::sources::Source::Grafana,
        body.to_string().as_bytes(),
        None,
        &crate::config::GenericFields::default(),
    )
    .unwrap()
}

async fn ingest(store: &Store, delivery: crate::sources::Delivery) -> Effect {
    ingest_selecting(store, delivery, &[]).await
}

/// Ingests `delivery` with `runbooks` selected for each alert; the first alert's effect.
async fn ingest_selecting(
    store: &Store,
    delivery: crate::sources::Delivery,
    runbooks: &[Selected],
) -> Effect {
    let arrivals = delivery
        .alerts
        .into_iter()
        .map(|alert| Arrival::new(alert, runbooks.to_vec()))
        .collect();
    store
        .ingest(Delivery {
            source: "grafana",
            body: b"{}".to_vec(),
            truncated: 0,
            arrivals,
            reopen_window_ms: 0,
        })
        .await
        .unwrap()
        .effects
        .remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn grafana_orgs_keep_their_incidents_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    let one = ingest(&store, grafana("firing", 1)).await;
    let two = ingest(&store, grafana("firing", 2)).await;
    assert!(
        matches!((&one, &two), (Effect::Created(a), Effect::Created(b)) if a != b),
        "{one:?} {two:?}"
    );
    assert!(matches!(
        ingest(&store, grafana("firing", 1)).await,
        Effect::Refired(_)
    ));
    let resolved = ingest(&store, grafana("resolved", 2)).await;
    assert_eq!(Some(resolved.incident().unwrap()), two.incident());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incident_opened_under_the_bare_grafana_fingerprint_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    // What an earlier Quell stored: the fingerprint as Grafana sent it.
    let mut before = grafana("firing", 1);
    for alert in &mut before.alerts {
        alert.fingerprint = alert.previous_fingerprint.take().unwrap();
        alert.id = crate::incident::episode_id("grafana", &alert.fingerprint, None);
    }
    let Effect::Created(old) = ingest(&store, before).await else {
        panic!("expected a new incident");
    };
    assert_eq!(
        ingest(&store, grafana("firing", 1)).await,
        Effect::Refired(old.clone()),
        "the open incident is found under its old identity"
    );
    assert_eq!(
        ingest(&store, grafana("resolved", 1)).await,
        Effect::Resolved(old)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_grafana_resend_of_an_episode_resolved_before_the_upgrade_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
    let bare = |mut delivery: crate::sources::Delivery| {
        for alert in &mut delivery.alerts {
            alert.fingerprint = alert.previous_fingerprint.take().unwrap();
            alert.id = crate::incident::episode_id(
                "grafana",
                &alert.fingerprint,
                alert.starts_at.as_deref(),
            );
        }
        delivery
    };
    let Effect::Created(old) = ingest(&store, bare(grafana("firing", 1))).await else {
        panic!("expected a new incident");
    };
    assert_eq!(
        ingest(&store, bare(grafana("resolved", 1))).await,
        Effect::Resolved(old.clone())
    );
    // After the upgrade: the same episode, late, is recognised as over.
    assert_eq!(
        ingest(&store, grafana("firing", 1)).await,
        Effect::Stale(old.clone())
    );
    assert_eq!(
        ingest(&store, grafana("resolved", 1)).await,
        Effect::Stale(old)
    );
}

mod batches;
mod ingest;
mod migrations;
mod pipelining;
mod postmortems;
mod semantics;
mod tls;

//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, one writer thread that
//! commits in groups, and a few reader connections.
//!
//! Every write is a closure run by the writer thread inside a savepoint of the current
//! batch; the batch commits (one fsync) and only then is each caller told its write is
//! durable. Under load many requests share one commit, which is what makes "committed
//! before the 2xx" affordable: one fsync costs about 4 ms on this class of machine.

pub mod incidents;
pub mod jobs;
pub mod queries;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

/// How many writes one transaction takes at most.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer thread; beyond it callers wait for room (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Reader connections kept open.
const READERS: usize = 4;

/// Why the store could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not commit (locked by another process past the busy timeout, disk
    /// full, I/O error) or the writer has stopped. Callers answer 503.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The write itself failed (a constraint, a bug); the rest of the batch is unaffected.
    #[error("{0}")]
    Failed(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly,
            ) => Self::Unavailable(error.to_string()),
            _ => Self::Failed(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        Self::Failed(error.to_string())
    }
}

/// A write: run inside the batch's transaction (or not at all, given `None`, when the batch
/// could not begin), then told whether the batch committed.
type Write = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The database handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::Sender<Write>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<PathBuf>,
    busy_timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// WAL pages (4 KiB) written before the writer copies them back into the database.
/// SQLite's default is 1,000; checkpointing a third as often lets the pages every new
/// incident touches (index leaves, the events table's tail) be written back once per
/// checkpoint instead of three times. Measured with `cargo bench -p quell --bench ingest`:
/// 1,000 → 4,245 / 4,783 alerts/s, p99 at 1,000/s 14.8 ms; 3,000 → 5,421 / 5,767 alerts/s,
/// p99 25 ms (a longer checkpoint holds the writer longer); 8,000 → 5,566 / 5,719, p99 44 ms.
const WAL_CHECKPOINT_PAGES: i64 = 3_000;

fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub fn open(path: &Path, busy_timeout: Duration) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
        }
        let writer = open(path, busy_timeout)
            .map_err(|e| anyhow::anyhow!("{}: cannot open the database: {e}", path.display()))?;
        writer
            .execute_batch(include_str!("store/schema.sql"))
            .map_err(|e| anyhow::anyhow!("{}: cannot create the schema: {e}", path.display()))?;
        let (writes, queue) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("quell-store-writer".to_owned())
            .spawn(move || write_loop(writer, queue))?;

        Ok(Self {
            writes,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: Arc::new(path.to_owned()),
            busy_timeout,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `write` in the next batch and returns once that batch has committed.
    pub async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Write = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => write(conn),
                None => Err(StoreError::Unavailable("not run".to_owned())),
            };
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            });
            (ok, completion)
        });
        self.writes
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".to_owned()))?
    }

    /// Runs `read` on a reader connection (WAL: it sees the last commit, never blocks writes).
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = store.take_reader()?;
            let result = read(&conn);
            store.give_back(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Failed(format!("reader task failed: {e}")))?
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StoreError::Failed("reader pool poisoned".to_owned()))?
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => Ok(open(&self.path, self.busy_timeout)?),
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < READERS
        {
            pool.push(conn);
        }
    }

    /// Writes waiting for the writer (the ingest backlog).
    pub fn queued_writes(&self) -> usize {
        QUEUE_DEPTH - self.writes.capacity()
    }
}

fn write_loop(conn: Connection, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        commit_batch(&conn, &mut batch);
    }
}

fn commit_batch(conn: &Connection, batch: &mut Vec<Write>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = StoreError::from(e);
        for write in batch.drain(..) {
            let (_, done) = write(None);
            done(Err(error.clone()));
        }
        return;
    }
    let mut completions = Vec::with_capacity(batch.len());
    let mut writes = batch.drain(..);
    while let Some(write) = writes.next() {
        let savepoint = conn.execute_batch("SAVEPOINT w");
        // A panicking write must not take the writer (and so every later request) with it:
        // its savepoint is rolled back and its caller, whose reply went with the panic, is
        // told the store failed.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(Some(conn))));
        let closed = match &outcome {
            Err(_) => {
                tracing::error!("a database write panicked; it was rolled back");
                if savepoint.is_ok() {
                    let _ = conn.execute_batch("ROLLBACK TO w; RELEASE w");
                }
                Ok(())
            }
            Ok(_) if savepoint.is_err() => savepoint,
            Ok((true, _)) => conn.execute_batch("RELEASE w"),
            Ok((false, _)) => conn.execute_batch("ROLLBACK TO w; RELEASE w"),
        };
        if let Ok((_, done)) = outcome {
            completions.push((closed.map_err(StoreError::from), done));
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back on its own (disk full, I/O error):
            // every write of this batch so far is gone, and a later SAVEPOINT would commit
            // by itself. Those callers are told so; the writes not yet run get a fresh
            // transaction.
            let lost = StoreError::Unavailable(
                "the database rolled the transaction back (disk full or I/O error)".to_owned(),
            );
            for (_, done) in completions {
                done(Err(lost.clone()));
            }
            let mut rest: Vec<Write> = writes.collect();
            if !rest.is_empty() {
                commit_batch(conn, &mut rest);
            }
            return;
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(StoreError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for (closed, done) in completions {
        done(committed.clone().and(closed));
    }
}

/// Now, as stored: RFC 3339 UTC with milliseconds, and Unix milliseconds.
pub fn now() -> (String, i64) {
    let now = chrono::Utc::now();
    (
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        now.timestamp_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_writes_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.db"), Duration::from_secs(5)).unwrap();
        let writes = (0..200).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |conn| {
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
            .read(|conn| Ok(conn.query_row("SELECT count(*) FROM settings", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(count, 200);
        let (journal, synchronous): (String, i64) = store
            .read(|conn| {
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

    /// Inserts the setting `key` (a write that fails on a duplicate).
    async fn insert_setting(store: Store, key: &'static str) -> Result<(), StoreError> {
        store
            .write(move |conn| {
                conn.execute("INSERT INTO settings (key, value) VALUES (?1, 'v')", [key])?;
                Ok(())
            })
            .await
    }

    /// The settings' keys, sorted.
    async fn setting_keys(store: &Store) -> Vec<String> {
        store
            .read(|conn| {
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
            matches!(duplicate, Err(StoreError::Failed(_))),
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
                    .write(move |_| {
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
                    .write(|conn| -> Result<(), StoreError> {
                        conn.execute_batch("ROLLBACK")?;
                        Err(StoreError::Unavailable(
                            "database or disk is full".to_owned(),
                        ))
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
            matches!(before, Err(StoreError::Unavailable(_))),
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
            .write(|conn| -> Result<(), StoreError> {
                conn.execute(
                    "INSERT INTO settings (key, value) VALUES ('half', 'done')",
                    [],
                )?;
                panic!("a bug in a write")
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Unavailable(_))),
            "{panicked:?}"
        );
        store
            .write(|conn| {
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
            .write(|conn| {
                for (id, status, resolved_ms) in
                    [("INC-OLD", "resolved", 1_000), ("INC-OPEN", "open", 0), ("INC-NEW", "resolved", 9_000)]
                {
                    conn.execute(
                        "INSERT INTO incidents (id, source, fingerprint, status, severity, title,
                             labels, annotations, alert_json, created_at, created_ms, updated_at,
                             resolved_ms)
                         VALUES (?1, 's', ?1, ?2, 'low', 't', '{}', '{}', '{}', 'x', 0, 'x', ?3)",
                        rusqlite::params![id, status, resolved_ms],
                    )?;
                    incidents::event(conn, id, "x", "created", None, "m", None)?;
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
        let pruned = store
            .write(|conn| jobs::prune(conn, 5_000, 5_000))
            .await
            .unwrap();
        assert_eq!((pruned.deliveries, pruned.incidents), (1, 1));
        let left: (Vec<String>, i64) = store
            .read(|conn| {
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
}

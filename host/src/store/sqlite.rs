//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`, one writer thread that
//! commits in groups, and a few reader connections.
//!
//! Every write is a closure run by the writer thread inside a savepoint of the current
//! batch; the batch commits (one fsync) and only then is each caller told its write is
//! durable. Under load many requests share one commit, which is what makes "committed
//! before the 2xx" affordable: one fsync costs about 4 ms on this class of machine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::tx::{SqliteTx, Tx};
use super::{Source, StoreError};

/// How many writes one transaction takes at most.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer thread; beyond it callers wait for room (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Reader connections kept open.
const READERS: usize = 4;

/// A write: run inside the batch's transaction (or not at all, given `None`, when the batch
/// could not begin), then told whether the batch committed.
type Write = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The SQLite database: one writer thread committing in groups, and a pool of readers.
#[derive(Clone)]
pub struct Sqlite {
    writes: mpsc::Sender<Write>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<PathBuf>,
    busy_timeout: Duration,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
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

/// An incident's detail read from the database file at `path` without writing to it: opened
/// read-only, never migrated (`quell export --database`, beside a running daemon or on a
/// copy). A schema other than this build's is refused, naming both versions.
pub(super) fn incident_detail_read_only(
    path: &Path,
    id: &str,
) -> anyhow::Result<Option<super::IncidentDetail>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| anyhow::anyhow!("{}: cannot open the database: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let found: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let newest = super::migrate::latest();
    if found != newest {
        anyhow::bail!(
            "{}: the database's schema is version {found}, this quell reads version {newest}:              export with the quell that wrote it (or from its API)",
            path.display()
        );
    }
    snapshot(&conn, |conn| {
        super::queries::incident_detail(&super::tx::SqliteTx(conn), id)
    })
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Runs `read` in one deferred transaction, rolled back after: the snapshot is taken at its
/// first query and kept to its last.
fn snapshot<T>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let result = read(&tx);
    tx.rollback()?;
    result
}

impl Sqlite {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub(super) fn open(path: &Path, busy_timeout: Duration) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
        }
        let writer = open(path, busy_timeout)
            .map_err(|e| anyhow::anyhow!("{}: cannot open the database: {e}", path.display()))?;
        super::migrate::migrate(&writer, path, super::migrate::MIGRATIONS)?;
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
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `write` in the next batch and returns once that batch has committed.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_raw(move |conn| write(&SqliteTx(conn))).await
    }

    /// Runs `read` in one snapshot on a reader connection (see [`Self::read_raw`]).
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read_raw(move |conn| read(&SqliteTx(conn))).await
    }

    /// [`Self::write`] on the connection itself: migrations and SQLite-specific tests.
    pub(super) async fn write_raw<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Write = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => write(conn),
                None => Err(StoreError::unavailable("not run")),
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
            .map_err(|_| StoreError::unavailable("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::unavailable("the writer has stopped"))?
    }

    /// Runs `read` on a reader connection (WAL: it sees the last commit, never blocks writes).
    ///
    /// The whole read is one transaction, so one snapshot: a read of several queries (an
    /// incident with its jobs, runs and timeline) never sees half of a commit that landed
    /// between two of them.
    pub(super) async fn read_raw<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = store.take_reader()?;
            let result = snapshot(&conn, read);
            // A connection left inside a transaction (its rollback failed) is not reused.
            if conn.is_autocommit() {
                store.give_back(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::failed(format!("reader task failed: {e}")))?
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StoreError::failed("reader pool poisoned"))?
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
    pub(super) fn queued_writes(&self) -> usize {
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
            let lost = StoreError::unavailable(
                "the database rolled the transaction back (disk full or I/O error)",
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

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        let message = error.to_string();
        let unavailable = matches!(
            error.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::ReadOnly,
            )
        );
        let source: Option<Source> = Some(Arc::new(error));
        if unavailable {
            Self::Unavailable { message, source }
        } else {
            Self::Failed { message, source }
        }
    }
}

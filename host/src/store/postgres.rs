//! The shared backend: PostgreSQL, for several replicas on one database.
//!
//! Operations are the same functions of a [`Tx`] the SQLite store runs. A write takes a
//! pooled connection, and a blocking thread runs the operation between `BEGIN` and `COMMIT`
//! (read committed), each statement awaited on the runtime; a read does the same in a
//! read-only repeatable-read transaction, so it sees one snapshot from its first query to its
//! last, as the SQLite store's reads do. Ingest is the one operation written its own way
//! here: deliveries are stored in batches, by statements over the whole batch
//! (`postgres/batch.rs`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;

use super::tx::Tx;
use super::{Source, StoreError};
use crate::config::DatabaseConfig;

mod batch;
mod tls;
mod transaction;

use super::incidents::{Delivery, Ingested};
use transaction::PgTx;

/// A connection's stream: TLS or plain, as its URL's `sslmode` and the server decide.
type Stream = <tls::Tls as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// How long a caller waits for a pooled connection before the database counts as
/// unavailable.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// The PostgreSQL database: a pool of connections.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// For the listener's own connection, outside the pool.
    config: Arc<tokio_postgres::Config>,
    tls: tls::Tls,
    /// The URL without its password, for messages.
    shown: Arc<str>,
    /// Where deliveries wait to be stored together (`None` in the workers' own copy).
    batches: Option<batch::Batches>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("database", &self.shown)
            .finish()
    }
}

/// `url` with its password replaced, fit for logs and errors.
pub(super) fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "the configured database URL".to_owned(),
    }
}

impl Postgres {
    /// Connects to the database at `url` (a `postgres://` URL or a key=value string) with
    /// `database`'s pool size and TLS files, checks it answers, and brings its schema up to
    /// date.
    pub(super) async fn connect(url: &str, database: &DatabaseConfig) -> anyhow::Result<Self> {
        let shown: Arc<str> = redacted(url).into();
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("[database] url ({shown}): {e}"))?;
        let tls = tls::connector(database)?;
        let pool_size = database.pool_size;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        let mut db = Self {
            pool,
            config: Arc::new(config),
            tls,
            shown,
            batches: None,
        };
        db.migrate().await?;
        db.batches = Some(batch::Batches::start(&db));
        Ok(db)
    }

    /// The database, for messages (no password).
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Unavailable {
            message: format!("{}: {}", self.shown, causes(&e)),
            source: Some(Arc::new(e)),
        })
    }

    /// A connection of its own, outside the pool, for `LISTEN`; the caller polls its
    /// messages.
    pub(super) async fn listener(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, Stream>,
        ),
        StoreError,
    > {
        self.config.connect(self.tls.clone()).await.map_err(from_pg)
    }

    /// Sends `payload` on `channel` to every listening replica (outside any transaction).
    pub(super) async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .map_err(from_pg)?;
        Ok(())
    }

    /// Checks the database answers: a pooled connection and `SELECT 1`.
    pub(super) async fn check(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(from_pg)?;
        Ok(())
    }

    /// Runs `write` in a read-committed transaction and returns once it has committed.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        write: impl Fn(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.transaction("BEGIN", true, move |tx| write(tx)).await
    }

    /// Runs `read` in one read-only snapshot.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl Fn(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.transaction(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            false,
            move |tx| read(tx),
        )
        .await
    }

    /// Stores a delivery and applies its alerts, together with the deliveries that arrive
    /// meanwhile (`postgres/batch.rs`); returns once it has committed.
    pub(super) async fn ingest(&self, delivery: Delivery) -> Result<Ingested, StoreError> {
        match &self.batches {
            Some(batches) => batches.ingest(delivery).await,
            None => {
                self.write(move |tx| super::incidents::ingest(tx, &delivery))
                    .await
            }
        }
    }

    /// Deliveries waiting for a batch (the ingest backlog).
    pub(super) fn queued_writes(&self) -> usize {
        self.batches.as_ref().map_or(0, batch::Batches::queued)
    }

    async fn transaction<T: Send + 'static>(
        &self,
        begin: &'static str,
        commit: bool,
        work: impl Fn(&PgTx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let client = self.client().await?;
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut attempt = 1;
            loop {
                let result = once(&client, &handle, begin, commit, &work);
                match result {
                    // PostgreSQL chose this transaction as a deadlock's victim (two
                    // transactions took the same locks in different orders) and rolled it
                    // back: the operation runs again from the start.
                    Err(e) if retryable(&e) && attempt < RETRIES => {
                        tracing::debug!(attempt, error = %e, "retrying a database operation");
                        attempt += 1;
                    }
                    Err(e) if panicked(&e) => {
                        // The connection's state is unknown: it is closed, not pooled.
                        drop(deadpool_postgres::Object::take(client));
                        return Err(e);
                    }
                    other => return other,
                }
            }
        })
        .await
        .map_err(|e| StoreError::failed(format!("database task failed: {e}")))?
    }

    /// Brings the schema up to date, or refuses a database a newer Quell wrote.
    async fn migrate(&self) -> anyhow::Result<()> {
        let shown = self.shown.clone();
        self.write(move |tx| super::migrate::postgres(tx, &shown))
            .await
            .map_err(|e| {
                // The one refusal an operator meets first on a server with TLS on.
                let hint = if e.to_string().contains("invalid peer certificate") {
                    " (Quell verifies the server's certificate whenever it uses TLS: give \
                     the authority that signed it in [database] ca_file, or on a trusted \
                     network add sslmode=disable to the URL)"
                } else {
                    ""
                };
                anyhow::anyhow!(
                    "{}: cannot bring the schema up to date: {e}{hint}",
                    self.shown
                )
            })?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// How many times an operation runs at most when PostgreSQL rolls it back as a deadlock's
/// victim or for a serialization failure.
const RETRIES: u32 = 5;

/// One attempt: `work` between `begin` and `COMMIT` (or `ROLLBACK`), on `client`.
fn once<T>(
    client: &deadpool_postgres::Object,
    handle: &Handle,
    begin: &'static str,
    commit: bool,
    work: &impl Fn(&PgTx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = PgTx::begin(client, handle, begin);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&tx))) {
        Ok(Ok(value)) if commit => {
            tx.commit()?;
            Ok(value)
        }
        Ok(result) => {
            tx.rollback()?;
            result
        }
        Err(_) => {
            tracing::error!("a database operation panicked; it was rolled back");
            Err(StoreError::Failed {
                message: PANICKED.to_owned(),
                source: None,
            })
        }
    }
}

const PANICKED: &str = "a database operation panicked";

/// Whether `error` is the one [`once`] returns for a panic.
fn panicked(error: &StoreError) -> bool {
    matches!(error, StoreError::Failed { message, source: None } if message == PANICKED)
}

/// Whether PostgreSQL rolled the transaction back for a deadlock (40P01) or a serialization
/// failure (40001): running it again is the remedy.
fn retryable(error: &StoreError) -> bool {
    let (StoreError::Failed { source, .. } | StoreError::Unavailable { source, .. }) = error else {
        return false;
    };
    source
        .as_ref()
        .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| {
            *code == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || *code == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
        })
}

/// SQLSTATE classes that mean the database (not the statement) is the problem: connection
/// exceptions, insufficient resources, operator intervention (shutdown), system errors.
fn unavailable_state(code: &str) -> bool {
    ["08", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// `error` and its causes, one after the other: a failed TLS handshake says why it failed
/// (an unknown issuer, a wrong name) rather than only that it did.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        cause = next.source();
    }
    text
}

fn from_pg(error: tokio_postgres::Error) -> StoreError {
    let unavailable = error.is_closed()
        || match error.code() {
            Some(state) => unavailable_state(state.code()),
            // No SQLSTATE: the connection failed (I/O), not the statement.
            None => error.as_db_error().is_none(),
        };
    let message = match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => causes(&error),
    };
    let source: Option<Source> = Some(Arc::new(error));
    if unavailable {
        StoreError::Unavailable { message, source }
    } else {
        StoreError::Failed { message, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        let shown = redacted("postgres://quell:s3cret@db.internal:5432/quell?sslmode=require");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
        assert_eq!(
            redacted("host=/tmp password=s3cret"),
            "the configured database URL"
        );
    }

    #[test]
    fn connection_trouble_is_unavailable_and_a_bad_statement_is_not() {
        for state in ["08006", "57P01", "53300", "58030"] {
            assert!(unavailable_state(state), "{state}");
        }
        for state in ["23505", "42601", "40001"] {
            assert!(!unavailable_state(state), "{state}");
        }
    }
}

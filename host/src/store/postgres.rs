//! The shared backend: PostgreSQL, for several replicas on one database.
//!
//! Operations are the same functions of a [`Tx`] the SQLite store runs. A write takes a
//! pooled connection, and a blocking thread runs the operation between `BEGIN` and `COMMIT`
//! (read committed), each statement awaited on the runtime; a read does the same in a
//! read-only repeatable-read transaction, so it sees one snapshot from its first query to its
//! last, as the SQLite store's reads do.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::tx::{Column, Dialect, More, Param, Row, Tx, Value};
use super::{Source, StoreError};
use crate::config::DatabaseConfig;

mod tls;

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
        let db = Self {
            pool,
            config: Arc::new(config),
            tls,
            shown,
        };
        db.migrate().await?;
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
        self.transaction("BEGIN", true, write).await
    }

    /// Runs `read` in one read-only snapshot.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl Fn(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.transaction(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            false,
            read,
        )
        .await
    }

    async fn transaction<T: Send + 'static>(
        &self,
        begin: &'static str,
        commit: bool,
        work: impl Fn(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
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
                anyhow::anyhow!("{}: cannot bring the schema up to date: {e}", self.shown)
            })?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// A transaction on one pooled connection, driven from a blocking thread.
struct PgTx<'a> {
    client: &'a deadpool_postgres::ClientWrapper,
    handle: &'a Handle,
}

impl PgTx<'_> {
    /// The statement, prepared once per connection and then taken from its cache.
    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
        self.handle
            .block_on(self.client.prepare_cached(&dollars(sql)))
            .map_err(|e| with_statement(from_pg(e), sql))
    }
}

impl Tx for PgTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn lock(&self, key: &str) -> Result<(), StoreError> {
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
            &[&key],
        )
        .map(drop)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.handle
            .block_on(self.client.batch_execute(sql))
            .map_err(from_pg)
    }

    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let values = bind(&statement, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        self.handle
            .block_on(self.client.execute(&statement, &refs))
            .map_err(|e| with_statement(from_pg(e), sql))
    }

    fn each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        row: &mut dyn FnMut(&dyn Row) -> Result<More, StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        let values = bind(&statement, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let rows = self
            .handle
            .block_on(self.client.query(&statement, &refs))
            .map_err(|e| with_statement(from_pg(e), sql))?;
        for next in &rows {
            if !row(&PgRow(next))? {
                break;
            }
        }
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
    begin: &str,
    commit: bool,
    work: &impl Fn(&dyn Tx) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    handle
        .block_on(client.batch_execute(begin))
        .map_err(from_pg)?;
    let tx = PgTx { client, handle };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&tx))) {
        Ok(Ok(value)) if commit => {
            // A connection lost during COMMIT leaves its outcome unknown: the caller is told
            // the database is unavailable, never that it committed.
            handle
                .block_on(client.batch_execute("COMMIT"))
                .map_err(from_pg)?;
            Ok(value)
        }
        Ok(result) => {
            handle
                .block_on(client.batch_execute("ROLLBACK"))
                .map_err(from_pg)?;
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

/// `?N` placeholders (the SQL both backends share) as PostgreSQL's `$N`.
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn with_statement(error: StoreError, sql: &str) -> StoreError {
    let first = super::tx::first_line(sql);
    match error {
        StoreError::Failed { message, source } => StoreError::Failed {
            message: format!("{message} (in: {first})"),
            source,
        },
        unavailable => unavailable,
    }
}

/// A parameter as PostgreSQL takes it: the value converted to the type the server inferred
/// for its placeholder.
#[derive(Debug)]
enum Bound<'a> {
    Null,
    I16(i16),
    I32(i32),
    I64(i64),
    F64(f64),
    Bool(bool),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl ToSql for Bound<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Bound::Null => Ok(IsNull::Yes),
            Bound::I16(v) => v.to_sql(ty, out),
            Bound::I32(v) => v.to_sql(ty, out),
            Bound::I64(v) => v.to_sql(ty, out),
            Bound::F64(v) => v.to_sql(ty, out),
            Bound::Bool(v) => v.to_sql(ty, out),
            Bound::Text(v) => v.to_sql(ty, out),
            Bound::Bytes(v) => v.to_sql(ty, out),
        }
    }

    // `bind` chose the variant from the type, so every type it meets is accepted.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn bind<'a>(
    statement: &tokio_postgres::Statement,
    params: &'a [&'a dyn Param],
) -> Result<Vec<Bound<'a>>, StoreError> {
    let types = statement.params();
    if types.len() != params.len() {
        return Err(StoreError::failed(format!(
            "the statement takes {} parameters, {} given",
            types.len(),
            params.len()
        )));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (param, ty))| {
            let value = param.value();
            bound(value, ty).ok_or_else(|| {
                StoreError::failed(format!(
                    "parameter ${}: cannot bind {value:?} as {ty}",
                    i + 1
                ))
            })
        })
        .collect()
}

fn bound<'a>(value: Value<'a>, ty: &Type) -> Option<Bound<'a>> {
    Some(match (value, ty) {
        (Value::Null, _) => Bound::Null,
        (Value::Int(v), &Type::INT8) => Bound::I64(v),
        (Value::Int(v), &Type::INT4) => Bound::I32(i32::try_from(v).ok()?),
        (Value::Int(v), &Type::INT2) => Bound::I16(i16::try_from(v).ok()?),
        (Value::Int(v), &Type::BOOL) => Bound::Bool(v != 0),
        #[allow(clippy::cast_precision_loss)] // counts and milliseconds, far below 2^53
        (Value::Int(v), &Type::FLOAT8 | &Type::NUMERIC) => Bound::F64(v as f64),
        (Value::Bool(v), &Type::BOOL) => Bound::Bool(v),
        (Value::Bool(v), &Type::INT8) => Bound::I64(i64::from(v)),
        (Value::Bool(v), &Type::INT4) => Bound::I32(i32::from(v)),
        (Value::Text(v), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
            Bound::Text(v)
        }
        (Value::Bytes(v), &Type::BYTEA) => Bound::Bytes(v),
        _ => return None,
    })
}

struct PgRow<'r>(&'r tokio_postgres::Row);

impl Row for PgRow<'_> {
    fn column(&self, index: usize) -> Result<Column<'_>, StoreError> {
        let row = self.0;
        let ty = row
            .columns()
            .get(index)
            .map(|c| c.type_().clone())
            .ok_or_else(|| StoreError::failed(format!("no column {index}")))?;
        let got =
            |e: tokio_postgres::Error| StoreError::failed(format!("column {index} ({ty}): {e}"));
        Ok(match ty {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(index)
                .map_err(got)?
                .map_or(Column::Null, Column::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(index)
                .map_err(got)?
                .map_or(Column::Null, |v| Column::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(index)
                .map_err(got)?
                .map_or(Column::Null, |v| Column::Int(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(index)
                .map_err(got)?
                .map_or(Column::Null, |v| Column::Int(v.into())),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(index)
                .map_err(got)?
                .map_or(Column::Null, Column::Real),
            Type::BYTEA => row
                .try_get::<_, Option<&[u8]>>(index)
                .map_err(got)?
                .map_or(Column::Null, Column::Bytes),
            _ => row
                .try_get::<_, Option<&str>>(index)
                .map_err(got)?
                .map_or(Column::Null, Column::Text),
        })
    }
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
    fn placeholders_become_dollars_and_nothing_else_changes() {
        assert_eq!(
            dollars("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?12) AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $12) AND d = '?'"
        );
    }

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

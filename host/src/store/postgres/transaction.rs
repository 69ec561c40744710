//! One transaction on one pooled connection, driven from a blocking thread: statements
//! prepared once per connection, parameters bound as the server typed them, and rows read
//! as the shared [`Tx`] interface reads them.
//!
//! Round trips are what an operation costs here, so statements whose answer nobody waits for
//! (`BEGIN`, locks, [`Tx::send`]) are not sent alone: they go out with the next statement
//! that waits (or with `COMMIT`), in order, in one write, and PostgreSQL answers them in
//! order (its protocol's pipelining). The first error among them is the one returned.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::from_pg;
use crate::store::StoreError;
use crate::store::tx::{Column, Dialect, More, Param, Row, Tx, Value, in_statement};

/// A transaction on one pooled connection, driven from a blocking thread.
pub(super) struct PgTx<'a> {
    client: &'a deadpool_postgres::ClientWrapper,
    handle: &'a Handle,
    /// Statements not sent yet, in order: they go with the next one that waits.
    unsent: RefCell<Vec<Unsent>>,
}

/// A statement whose answer nobody waits for.
enum Unsent {
    /// Plain SQL without parameters: `BEGIN`.
    Simple(&'static str),
    /// A prepared statement, its parameters and its first line (for errors).
    Prepared {
        statement: tokio_postgres::Statement,
        values: Vec<Owned>,
        shown: String,
    },
}

/// A parameter a statement sent later owns.
pub(super) type Owned = Box<dyn ToSql + Sync + Send>;

/// What a future sending a statement returns.
type Sending<'f> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + 'f>>;

impl<'a> PgTx<'a> {
    /// A transaction that `begin` opens (sent with its first statement).
    pub(super) fn begin(
        client: &'a deadpool_postgres::ClientWrapper,
        handle: &'a Handle,
        begin: &'static str,
    ) -> Self {
        Self {
            client,
            handle,
            unsent: RefCell::new(vec![Unsent::Simple(begin)]),
        }
    }

    /// Commits, with whatever is still unsent. A connection lost meanwhile leaves the
    /// outcome unknown: the caller is told the database is unavailable, never that it
    /// committed.
    pub(super) fn commit(&self) -> Result<(), StoreError> {
        self.wait(async { self.client.batch_execute("COMMIT").await.map_err(from_pg) })
    }

    /// Rolls back; nothing at all when nothing was sent yet.
    pub(super) fn rollback(&self) -> Result<(), StoreError> {
        let unsent = self.unsent.take();
        if matches!(unsent.first(), Some(Unsent::Simple(_))) {
            return Ok(());
        }
        self.handle
            .block_on(self.client.batch_execute("ROLLBACK"))
            .map_err(from_pg)
    }

    /// The statement, prepared once per connection and then taken from its cache.
    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
        self.handle
            .block_on(self.client.prepare_cached(&dollars(sql)))
            .map_err(|e| in_statement(from_pg(e), sql))
    }

    /// Sends what is unsent, then `last`'s request, in order and in one go, and waits for
    /// all their answers: the first error in that order, else `last`'s result.
    fn wait<T>(&self, last: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let unsent = self.unsent.take();
        if unsent.is_empty() {
            return self.handle.block_on(last);
        }
        let mut earlier: Vec<Sending<'_>> = unsent.iter().map(|u| self.send_one(u)).collect();
        let mut answers: Vec<Option<Result<(), StoreError>>> =
            earlier.iter().map(|_| None).collect();
        let mut last = std::pin::pin!(last);
        let mut answer = None;
        // Each future sends its request when first polled: polling them in order sends them
        // in order. Then every answer is awaited.
        self.handle.block_on(std::future::poll_fn(|cx| {
            for (future, done) in earlier.iter_mut().zip(answers.iter_mut()) {
                if done.is_none()
                    && let Poll::Ready(result) = future.as_mut().poll(cx)
                {
                    *done = Some(result);
                }
            }
            if answer.is_none()
                && let Poll::Ready(result) = last.as_mut().poll(cx)
            {
                answer = Some(result);
            }
            if answer.is_some() && answers.iter().all(Option::is_some) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        for result in answers.into_iter().flatten() {
            result?;
        }
        answer.unwrap_or_else(|| Err(StoreError::failed("a statement was never answered")))
    }

    /// Runs `sql` (with `$N` placeholders) after whatever is unsent, with parameters of any
    /// type PostgreSQL takes (arrays, for statements over a whole batch), and returns its
    /// rows.
    pub(super) fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.wait(async {
            self.client
                .query(&statement, params)
                .await
                .map_err(|e| in_statement(from_pg(e), sql))
        })
    }

    /// Queues `sql` (with `$N` placeholders) to go out with the next statement that waits,
    /// like [`Tx::send`], with parameters of any type PostgreSQL takes.
    pub(super) fn push(&self, sql: &str, values: Vec<Owned>) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        self.queue(statement, values, sql);
        Ok(())
    }

    fn queue(&self, statement: tokio_postgres::Statement, values: Vec<Owned>, sql: &str) {
        self.unsent.borrow_mut().push(Unsent::Prepared {
            statement,
            values,
            shown: crate::store::tx::first_line(sql).to_owned(),
        });
    }

    fn send_one<'f>(&'f self, unsent: &'f Unsent) -> Sending<'f> {
        match unsent {
            Unsent::Simple(sql) => {
                Box::pin(async move { self.client.batch_execute(sql).await.map_err(from_pg) })
            }
            Unsent::Prepared {
                statement,
                values,
                shown,
            } => Box::pin(async move {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    values.iter().map(|v| v.as_ref() as _).collect();
                self.client
                    .execute(statement, &refs)
                    .await
                    .map(drop)
                    .map_err(|e| in_statement(from_pg(e), shown))
            }),
        }
    }
}

impl Tx for PgTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn lock(&self, key: &str) -> Result<(), StoreError> {
        self.send(
            "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
            &[&key],
        )
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.wait(async { self.client.batch_execute(sql).await.map_err(from_pg) })
    }

    fn send(&self, sql: &str, params: &[&dyn Param]) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        let values = bind(&statement, params)?
            .into_iter()
            .map(|value| Box::new(value.owned()) as Owned)
            .collect();
        self.queue(statement, values, sql);
        Ok(())
    }

    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let values = bind(&statement, params)?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        self.wait(async {
            self.client
                .execute(&statement, &refs)
                .await
                .map_err(|e| in_statement(from_pg(e), sql))
        })
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
        let rows = self.wait(async {
            self.client
                .query(&statement, &refs)
                .await
                .map_err(|e| in_statement(from_pg(e), sql))
        })?;
        for next in &rows {
            if !row(&PgRow(next))? {
                break;
            }
        }
        Ok(())
    }
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
    Text(std::borrow::Cow<'a, str>),
    Bytes(std::borrow::Cow<'a, [u8]>),
}

impl Bound<'_> {
    /// The same value, owning its text or bytes (for a statement sent later).
    fn owned(self) -> Bound<'static> {
        match self {
            Bound::Null => Bound::Null,
            Bound::I16(v) => Bound::I16(v),
            Bound::I32(v) => Bound::I32(v),
            Bound::I64(v) => Bound::I64(v),
            Bound::F64(v) => Bound::F64(v),
            Bound::Bool(v) => Bound::Bool(v),
            Bound::Text(v) => Bound::Text(v.into_owned().into()),
            Bound::Bytes(v) => Bound::Bytes(v.into_owned().into()),
        }
    }
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
            Bound::Text(v) => v.as_ref().to_sql(ty, out),
            Bound::Bytes(v) => v.as_ref().to_sql(ty, out),
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
            Bound::Text(v.into())
        }
        (Value::Bytes(v), &Type::BYTEA) => Bound::Bytes(v.into()),
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
}

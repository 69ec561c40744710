//! The statements an operation runs, written once for every backend.
//!
//! Each store operation is a function of a [`Tx`]: it runs SQL with `?1`-style placeholders
//! and reads rows through [`Row`], never through a driver's types, so the same code serves
//! the embedded SQLite store and a PostgreSQL one.

use super::StoreError;

/// Which SQL dialect a transaction speaks, for the few fragments that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The column that orders an incident's alerts by arrival: SQLite's implicit `rowid`,
    /// PostgreSQL's `seq` identity.
    pub(crate) fn arrival(self) -> &'static str {
        match self {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        }
    }

    /// Appended to a claim's subquery: PostgreSQL locks the row it picks and passes over rows
    /// another claimer holds; SQLite has one writer and needs nothing.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE OF j SKIP LOCKED",
        }
    }

    /// Appended to a read whose row the transaction goes on to change or relies on: on
    /// PostgreSQL it locks the row to the end of the transaction; SQLite has one writer.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// A parameter's value, as every backend binds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
}

/// Something that binds as a statement parameter.
pub(crate) trait Param {
    fn value(&self) -> Value<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Value<'_> {
                // Every integer Quell stores fits in i64 (counts, ids, Unix milliseconds).
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u64, usize);

impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Bool(*self)
    }
}

impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Param for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Bytes(self)
    }
}

impl Param for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Bytes(self)
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}

/// A column's value in a result row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Column<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl Column<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Column::Null => "NULL",
            Column::Int(_) => "an integer",
            Column::Real(_) => "a real",
            Column::Text(_) => "text",
            Column::Bytes(_) => "bytes",
        }
    }
}

/// A Rust value read from a column.
pub(crate) trait FromColumn: Sized {
    /// What the column must hold, for the error.
    const EXPECTED: &'static str;
    fn from_column(column: Column<'_>) -> Option<Self>;
}

impl FromColumn for i64 {
    const EXPECTED: &'static str = "an integer";
    fn from_column(column: Column<'_>) -> Option<Self> {
        match column {
            Column::Int(v) => Some(v),
            _ => None,
        }
    }
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            const EXPECTED: &'static str = concat!("an integer in range of ", stringify!($t));
            fn from_column(column: Column<'_>) -> Option<Self> {
                i64::from_column(column).and_then(|v| <$t>::try_from(v).ok())
            }
        }
    )*};
}
int_column!(i32, u32, u64, usize);

impl FromColumn for bool {
    const EXPECTED: &'static str = "a boolean (or 0/1)";
    fn from_column(column: Column<'_>) -> Option<Self> {
        match column {
            Column::Int(v) => Some(v != 0),
            _ => None,
        }
    }
}

impl FromColumn for String {
    const EXPECTED: &'static str = "text";
    fn from_column(column: Column<'_>) -> Option<Self> {
        match column {
            Column::Text(v) => Some(v.to_owned()),
            _ => None,
        }
    }
}

impl FromColumn for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    fn from_column(column: Column<'_>) -> Option<Self> {
        match column {
            Column::Bytes(v) => Some(v.to_owned()),
            Column::Text(v) => Some(v.as_bytes().to_owned()),
            _ => None,
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_column(column: Column<'_>) -> Option<Self> {
        match column {
            Column::Null => Some(None),
            other => T::from_column(other).map(Some),
        }
    }
}

/// One result row.
pub(crate) trait Row {
    /// The value of column `index` (from 0).
    fn column(&self, index: usize) -> Result<Column<'_>, StoreError>;
}

impl dyn Row + '_ {
    /// Column `index` as a `T`; a NULL or a value of another type is an error naming both,
    /// unless `T` is an `Option`.
    pub(crate) fn get<T: FromColumn>(&self, index: usize) -> Result<T, StoreError> {
        let column = self.column(index)?;
        T::from_column(column).ok_or_else(|| {
            StoreError::failed(format!(
                "column {index}: expected {}, found {}",
                T::EXPECTED,
                column.kind()
            ))
        })
    }
}

/// What a row callback tells the query: read on, or stop here.
pub(crate) type More = bool;

/// A transaction: the only way an operation reaches the database.
pub(crate) trait Tx {
    /// The SQL dialect, for the fragments written per backend.
    fn dialect(&self) -> Dialect;

    /// Runs a statement, returning the rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError>;

    /// Runs a statement whose answer the caller does not need. A backend may send it with
    /// the next statement instead of waiting for it alone (PostgreSQL pipelines them); an
    /// error it meets is then returned by that statement, or by the commit, which fails.
    fn send(&self, sql: &str, params: &[&dyn Param]) -> Result<(), StoreError>;

    /// Holds the lock named `key` until the transaction ends, waiting for another transaction
    /// that holds it: PostgreSQL's advisory lock. SQLite's single writer already serialises
    /// every write, so there it does nothing.
    fn lock(&self, key: &str) -> Result<(), StoreError>;

    /// Runs a script of statements without parameters (a schema migration).
    fn batch(&self, sql: &str) -> Result<(), StoreError>;

    /// Runs a query, handing each row to `row` until it returns `false` or the rows end.
    fn each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        row: &mut dyn FnMut(&dyn Row) -> Result<More, StoreError>,
    ) -> Result<(), StoreError>;
}

impl dyn Tx + '_ {
    /// The first row, mapped; `None` when there is none.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        map: impl FnOnce(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut map = Some(map);
        let mut found = None;
        self.each(sql, params, &mut |row| {
            if let Some(map) = map.take() {
                found = Some(map(row)?);
            }
            Ok(false)
        })?;
        Ok(found)
    }

    /// The first row, mapped; an error when there is none.
    pub(crate) fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        map: impl FnOnce(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, map)?
            .ok_or_else(|| StoreError::failed(format!("no row from: {}", first_line(sql))))
    }

    /// Every row, mapped.
    pub(crate) fn query_vec<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut map: impl FnMut(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut all = Vec::new();
        self.each(sql, params, &mut |row| {
            all.push(map(row)?);
            Ok(true)
        })?;
        Ok(all)
    }
}

/// A statement's first line, to name it in an error.
pub(crate) fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

/// `error`, a statement's failure, naming the statement (its first line); an unavailable
/// database is the database's trouble, not the statement's, and is left as it is.
pub(crate) fn in_statement(error: StoreError, sql: &str) -> StoreError {
    match error {
        StoreError::Failed { message, source } => StoreError::Failed {
            message: format!("{message} (in: {})", first_line(sql)),
            source,
        },
        other => other,
    }
}

/// A transaction on a SQLite connection (the writer's batch savepoint, or a reader's
/// snapshot).
pub(super) struct SqliteTx<'c>(pub &'c rusqlite::Connection);

struct Bind<'a>(Value<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Bytes(v) => ValueRef::Blob(v),
            Value::Bool(v) => ValueRef::Integer(i64::from(v)),
        }))
    }
}

fn binds<'p>(params: &'p [&'p dyn Param]) -> impl Iterator<Item = Bind<'p>> {
    params.iter().map(|p| Bind(p.value()))
}

struct SqliteRow<'r, 's>(&'r rusqlite::Row<'s>);

impl Row for SqliteRow<'_, '_> {
    fn column(&self, index: usize) -> Result<Column<'_>, StoreError> {
        use rusqlite::types::ValueRef;
        Ok(match self.0.get_ref(index)? {
            ValueRef::Null => Column::Null,
            ValueRef::Integer(v) => Column::Int(v),
            ValueRef::Real(v) => Column::Real(v),
            ValueRef::Text(v) => Column::Text(
                std::str::from_utf8(v)
                    .map_err(|e| StoreError::failed(format!("column {index}: {e}")))?,
            ),
            ValueRef::Blob(v) => Column::Bytes(v),
        })
    }
}

impl Tx for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        let changed = self
            .0
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(binds(params))))
            .map_err(|e| in_statement(e.into(), sql))?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    fn lock(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn send(&self, sql: &str, params: &[&dyn Param]) -> Result<(), StoreError> {
        self.execute(sql, params).map(drop)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        row: &mut dyn FnMut(&dyn Row) -> Result<More, StoreError>,
    ) -> Result<(), StoreError> {
        let named = |e: rusqlite::Error| in_statement(e.into(), sql);
        let mut statement = self.0.prepare_cached(sql).map_err(named)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(binds(params)))
            .map_err(named)?;
        while let Some(next) = rows.next().map_err(named)? {
            if !row(&SqliteRow(next))? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, body BLOB, flag INTEGER)",
        )
        .unwrap();
        conn
    }

    #[test]
    fn values_round_trip_through_parameters_and_rows() {
        let conn = db();
        let tx: &dyn Tx = &SqliteTx(&conn);
        let none: Option<String> = None;
        let changed = tx
            .execute(
                "INSERT INTO t (id, name, body, flag) VALUES (?1, ?2, ?3, ?4), (?5, ?6, NULL, ?7)",
                &[&1i64, &"one", &vec![0u8, 1, 2], &true, &2u32, &none, &false],
            )
            .unwrap();
        assert_eq!(changed, 2);
        let rows = tx
            .query_vec("SELECT id, name, body, flag FROM t ORDER BY id", &[], |r| {
                Ok((
                    r.get::<u32>(0)?,
                    r.get::<Option<String>>(1)?,
                    r.get::<Option<Vec<u8>>>(2)?,
                    r.get::<bool>(3)?,
                ))
            })
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (1, Some("one".to_owned()), Some(vec![0, 1, 2]), true),
                (2, None, None, false),
            ]
        );
    }

    #[test]
    fn a_missing_row_and_a_wrong_type_are_errors_that_say_so() {
        let conn = db();
        let tx: &dyn Tx = &SqliteTx(&conn);
        tx.execute("INSERT INTO t (id, name) VALUES (1, NULL)", &[])
            .unwrap();
        let found = tx
            .query_opt("SELECT id FROM t WHERE id = ?1", &[&7i64], |r| {
                r.get::<i64>(0)
            })
            .unwrap();
        assert_eq!(found, None);
        let missing = tx
            .query_one("SELECT id FROM t WHERE id = ?1", &[&7i64], |r| {
                r.get::<i64>(0)
            })
            .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("no row from: SELECT id FROM t"),
            "{missing}"
        );
        let null = tx
            .query_one("SELECT name FROM t", &[], |r| r.get::<String>(0))
            .unwrap_err();
        assert_eq!(null.to_string(), "column 0: expected text, found NULL");
    }

    #[test]
    fn query_opt_reads_only_the_first_row() {
        let conn = db();
        let tx: &dyn Tx = &SqliteTx(&conn);
        tx.execute("INSERT INTO t (id) VALUES (1), (2), (3)", &[])
            .unwrap();
        let mut seen = 0;
        tx.each("SELECT id FROM t ORDER BY id", &[], &mut |_| {
            seen += 1;
            Ok(seen < 2)
        })
        .unwrap();
        assert_eq!(seen, 2, "stopped when the callback said so");
        let first = tx
            .query_opt("SELECT id FROM t ORDER BY id DESC", &[], |r| {
                r.get::<i64>(0)
            })
            .unwrap();
        assert_eq!(first, Some(3));
    }
}

//! Schema versions. The database records the version of its schema (SQLite's
//! `user_version`); at start each migration the database lacks runs once, in order, each in
//! its own transaction, so a failed upgrade leaves the database as it was. A database
//! written by a newer Quell is refused rather than guessed at.

use std::path::Path;

use anyhow::bail;
use rusqlite::Connection;

use super::StoreError;
use super::tx::Tx;

/// Every schema version and the SQL that takes the previous one to it. Version 1 is the
/// schema as of the first versioned release; it is written with `IF NOT EXISTS`, so a
/// database from before versions (`user_version` 0) is adopted as it is.
pub(super) const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("schema.sql")),
    // When the sender says a resolved alert ended (Alertmanager's `endsAt`), beside
    // `resolved_at`, when Quell learned it.
    (2, "ALTER TABLE incidents ADD COLUMN ended_at TEXT;"),
    // Incident semantics: the order of an incident's remediations, verification checks, the
    // targets a running remediation holds, and the global write budget.
    (3, include_str!("v3.sql")),
    // Several replicas: the owner of a running job and its lease.
    (4, include_str!("v4.sql")),
    // Post-mortem drafts kept in the database.
    (5, include_str!("v5.sql")),
];

/// PostgreSQL's schema starts at version 3, the SQLite schema it matches; later versions
/// move in step with [`MIGRATIONS`].
pub(super) const POSTGRES: &[(u32, &str)] = &[
    (3, include_str!("postgres/schema.sql")),
    (4, include_str!("postgres/v4.sql")),
    (5, include_str!("postgres/v5.sql")),
];

/// A key for `pg_advisory_xact_lock`: replicas starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x7175_656c_6c00_0001;

/// Brings a PostgreSQL database to the newest schema inside the caller's transaction (its
/// DDL commits or rolls back with it). The inner error refuses a database a newer Quell
/// wrote, naming `shown`.
pub(super) fn postgres(tx: &dyn Tx, shown: &str) -> Result<Result<u32, String>, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock(?1)", &[&MIGRATION_LOCK])?;
    let versioned: bool = tx.query_one(
        "SELECT to_regclass('quell_schema') IS NOT NULL",
        &[],
        |row| row.get(0),
    )?;
    let found: u32 = if versioned {
        tx.query_opt("SELECT version FROM quell_schema", &[], |row| row.get(0))?
            .unwrap_or(0)
    } else {
        0
    };
    let newest = latest();
    if found > newest {
        return Ok(Err(newer(shown, found, newest)));
    }
    for (version, sql) in POSTGRES.iter().filter(|(version, _)| *version > found) {
        tx.batch(sql)?;
        tx.execute("DELETE FROM quell_schema", &[])?;
        tx.execute("INSERT INTO quell_schema (version) VALUES (?1)", &[version])?;
        tracing::info!(database = %shown, from = found, to = version, "database schema written");
    }
    Ok(Ok(found))
}

fn newer(database: impl std::fmt::Display, found: u32, newest: u32) -> String {
    format!(
        "{database}: the database's schema is version {found}, newer than this quell's \
         ({newest}): a newer quell wrote it. Run that version (or newer), or restore a \
         backup taken before the upgrade"
    )
}

/// The schema version this build writes.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Brings the database at `path` (open as `conn`) to the newest of `migrations`; returns
/// the version it was at.
pub(super) fn migrate(
    conn: &Connection,
    path: &Path,
    migrations: &[(u32, &str)],
) -> anyhow::Result<u32> {
    let path = path.display();
    let found: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let newest = migrations.last().map_or(0, |(version, _)| *version);
    if found > newest {
        bail!("{}", newer(path, found, newest));
    }
    for (version, sql) in migrations.iter().filter(|(version, _)| *version > found) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Another process may have upgraded it meanwhile: read again under the lock.
        let now: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if now >= *version {
            conn.execute_batch("COMMIT")?;
            continue;
        }
        let applied = conn
            .execute_batch(sql)
            .and_then(|()| conn.pragma_update(None, "user_version", version));
        match applied.and_then(|()| conn.execute_batch("COMMIT")) {
            Ok(()) if found > 0 => {
                tracing::info!(%path, from = found, to = version, "database schema upgraded");
            }
            Ok(()) => {}
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                bail!(
                    "{path}: cannot upgrade the schema to version {version} (it stays at \
                     {now}; this step changed nothing): {e}"
                );
            }
        }
    }
    Ok(found)
}

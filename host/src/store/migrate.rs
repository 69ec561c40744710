//! Schema versions. The database records the version of its schema (SQLite's
//! `user_version`); at start each migration the database lacks runs once, in order, each in
//! its own transaction, so a failed upgrade leaves the database as it was. A database
//! written by a newer Quell is refused rather than guessed at.

use std::path::Path;

use anyhow::bail;
use rusqlite::Connection;

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
];

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
        bail!(
            "{path}: the database's schema is version {found}, newer than this quell's \
             ({newest}): a newer quell wrote it. Run that version (or newer), or restore a \
             backup taken before the upgrade"
        );
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

//! Slack's threads and plan messages, remembered so replies and decisions find them.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// The channel and ts of the incident's thread root.
pub(super) fn thread(
    conn: &Connection,
    incident: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT channel, ts FROM slack_threads WHERE incident_id = ?1")?
        .query_row([incident], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// Keeps the thread root; the first one stays.
pub(super) fn set_thread(
    conn: &Connection,
    incident: &str,
    channel: &str,
    ts: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO slack_threads (incident_id, channel, ts) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![incident, channel, ts])?;
    Ok(())
}

/// A plan message's channel, ts and text.
pub(super) fn plan(
    conn: &Connection,
    incident: &str,
    runbook: &str,
) -> Result<Option<(String, String, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT channel, ts, text FROM slack_plans WHERE incident_id = ?1 AND runbook = ?2",
        )?
        .query_row([incident, runbook], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?)
}

/// Keeps a plan message: incident, runbook, channel, ts, text.
pub(super) fn set_plan(conn: &Connection, row: [String; 5]) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO slack_plans (incident_id, runbook, channel, ts, text)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(row)?;
    Ok(())
}

/// The digest message Slack updates in place while its backlog is long.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlackDigest {
    /// Its channel.
    pub channel: String,
    /// Its ts.
    pub ts: String,
    /// Incidents it has told.
    pub total: i64,
    /// When it was posted (RFC 3339).
    pub since: String,
    /// When it last changed (Unix ms): a storm long over starts a new message.
    pub updated_ms: i64,
}

/// The digest message, if one was posted.
pub(super) fn digest(conn: &Connection) -> Result<Option<SlackDigest>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT value FROM settings WHERE key = 'slack_digest'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// Keeps the digest message's state.
pub(super) fn set_digest(conn: &Connection, digest: &SlackDigest) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES ('slack_digest', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([serde_json::to_string(digest)?])?;
    Ok(())
}

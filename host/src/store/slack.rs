//! Slack's threads and plan messages, remembered so replies and decisions find them.

use super::StoreError;
use super::tx::Tx;

/// The channel and ts of the incident's thread root.
pub(super) fn thread(tx: &dyn Tx, incident: &str) -> Result<Option<(String, String)>, StoreError> {
    tx.query_opt(
        "SELECT channel, ts FROM slack_threads WHERE incident_id = ?1",
        &[&incident],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// Keeps the thread root; the first one stays.
pub(super) fn set_thread(
    tx: &dyn Tx,
    incident: &str,
    channel: &str,
    ts: &str,
) -> Result<(), StoreError> {
    tx.send(
        "INSERT INTO slack_threads (incident_id, channel, ts) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        &[&incident, &channel, &ts],
    )?;
    Ok(())
}

/// A plan message's channel, ts and text.
pub(super) fn plan(
    tx: &dyn Tx,
    incident: &str,
    runbook: &str,
) -> Result<Option<(String, String, String)>, StoreError> {
    tx.query_opt(
        "SELECT channel, ts, text FROM slack_plans WHERE incident_id = ?1 AND runbook = ?2",
        &[&incident, &runbook],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
}

/// Keeps a plan message: incident, runbook, channel, ts, text.
pub(super) fn set_plan(tx: &dyn Tx, row: &[&String; 5]) -> Result<(), StoreError> {
    let [incident, runbook, channel, ts, text] = row;
    tx.send(
        "INSERT INTO slack_plans (incident_id, runbook, channel, ts, text)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (incident_id, runbook)
         DO UPDATE SET channel = excluded.channel, ts = excluded.ts, text = excluded.text",
        &[incident, runbook, channel, ts, text],
    )?;
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
pub(super) fn digest(tx: &dyn Tx) -> Result<Option<SlackDigest>, StoreError> {
    let text: Option<String> = tx.query_opt(
        "SELECT value FROM settings WHERE key = 'slack_digest'",
        &[],
        |row| row.get(0),
    )?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

/// Keeps the digest message's state.
pub(super) fn set_digest(tx: &dyn Tx, digest: &SlackDigest) -> Result<(), StoreError> {
    tx.send(
        "INSERT INTO settings (key, value) VALUES ('slack_digest', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&serde_json::to_string(digest)?],
    )?;
    Ok(())
}

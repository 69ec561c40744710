//! Post-mortem drafts kept in the database, so any replica serves the one written when an
//! incident resolved (files under `[postmortems] dir` stay an option).

use super::tx::Tx;
use super::{Store, StoreError, now};

/// A draft as stored when its incident resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDraft {
    /// The resolution it describes (the incident's `resolved_at` then).
    pub resolved_at: String,
    /// When it was written.
    pub written_at: String,
    /// The Markdown.
    pub body: String,
}

impl Store {
    /// Keeps `body` as the draft of `incident`'s resolution at `resolved_at`, replacing the
    /// draft of an earlier resolution (an incident that reopened and resolved again).
    pub async fn save_postmortem(
        &self,
        incident: String,
        resolved_at: String,
        body: String,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO postmortems (incident_id, resolved_at, written_at, body)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (incident_id) DO UPDATE SET resolved_at = excluded.resolved_at,
                         written_at = excluded.written_at, body = excluded.body",
                    &[&incident, &resolved_at, &now().0, &body],
                )
                .map(drop)
            })
            .await
    }

    /// The stored draft of `incident`, if one was written.
    pub async fn postmortem(&self, incident: String) -> Result<Option<StoredDraft>, StoreError> {
        self.db
            .read(move |tx| {
                tx.query_opt(
                    "SELECT resolved_at, written_at, body FROM postmortems WHERE incident_id = ?1",
                    &[&incident],
                    |row| {
                        Ok(StoredDraft {
                            resolved_at: row.get(0)?,
                            written_at: row.get(1)?,
                            body: row.get(2)?,
                        })
                    },
                )
            })
            .await
    }

    /// Resolved incidents whose draft of their last resolution is missing (the replica that
    /// resolved them stopped before writing it), oldest first, at most `limit`.
    pub async fn missing_postmortems(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        self.db.read(move |tx| missing(tx, limit)).await
    }
}

fn missing(tx: &dyn Tx, limit: u32) -> Result<Vec<String>, StoreError> {
    tx.query_vec(
        "SELECT i.id FROM incidents i
         WHERE i.status = 'resolved' AND NOT EXISTS (
             SELECT 1 FROM postmortems p
             WHERE p.incident_id = i.id AND p.resolved_at = i.resolved_at)
         ORDER BY i.resolved_ms, i.id LIMIT ?1",
        &[&i64::from(limit)],
        |row| row.get(0),
    )
}

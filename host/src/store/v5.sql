-- Post-mortem drafts in the database, so any replica serves the draft written when an
-- incident resolved: one per incident, replaced when it resolves again.
CREATE TABLE postmortems (
    incident_id TEXT PRIMARY KEY REFERENCES incidents(id) ON DELETE CASCADE,
    resolved_at TEXT NOT NULL,
    written_at  TEXT NOT NULL,
    body        TEXT NOT NULL
);

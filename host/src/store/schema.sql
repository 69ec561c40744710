-- Quell's embedded database. Timestamps are RFC 3339 UTC text (`*_at`) or Unix
-- milliseconds (`*_ms`) where the daemon compares them.

-- Every delivery as received, before anything else is done with it.
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    received_at TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    body        BLOB NOT NULL,
    -- 'accepted' or 'dead' (authentic but unusable; `error` says why)
    status      TEXT NOT NULL,
    error       TEXT,
    alerts      INTEGER NOT NULL DEFAULT 0,
    truncated   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbox_dead ON inbox(status) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS inbox_age ON inbox(received_ms);

CREATE TABLE IF NOT EXISTS incidents (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    starts_at    TEXT,
    -- 'open', 'acknowledged', 'resolved'
    status       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    title        TEXT NOT NULL,
    labels       TEXT NOT NULL,
    annotations  TEXT NOT NULL,
    alert_json   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    resolved_at  TEXT,
    resolved_ms  INTEGER,
    fired        INTEGER NOT NULL DEFAULT 1,
    escalated    INTEGER NOT NULL DEFAULT 0,
    remediated   INTEGER NOT NULL DEFAULT 0
);
-- One open incident per alert identity: the dedup key.
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open
    ON incidents(source, fingerprint) WHERE status != 'resolved';
-- Recently resolved incidents of an identity (reopening); written only at resolution, so
-- opening incidents does not pay for it.
CREATE INDEX IF NOT EXISTS incidents_resolved ON incidents(source, fingerprint, resolved_ms)
    WHERE status = 'resolved';
CREATE INDEX IF NOT EXISTS incidents_created ON incidents(created_ms);

-- The timeline.
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    runbook     TEXT,
    message     TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS events_incident ON events(incident_id, id);

-- One row per (incident, runbook) in flight: the durable job queue.
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    runbook     TEXT NOT NULL,
    -- 'diagnose' or 'remediate': what runs when the job is claimed
    phase       TEXT NOT NULL,
    -- 'queued', 'running', 'awaiting_approval', 'done', 'failed', 'escalated',
    -- 'interrupted', 'cancelled', 'expired', 'rejected', 'skipped'
    state       TEXT NOT NULL,
    run_at_ms   INTEGER NOT NULL,
    expires_ms  INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    diagnosis   TEXT,
    dry_run     INTEGER NOT NULL DEFAULT 0,
    decided_by  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- Single flight: at most one live job per incident and runbook.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_single_flight ON jobs(incident_id, runbook)
    WHERE state IN ('queued', 'running', 'awaiting_approval');
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(run_at_ms, id) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_incident ON jobs(incident_id);

-- Each export call of a runbook, with its outcome.
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL,
    incident_id TEXT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    runbook     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    phase       TEXT NOT NULL,
    mode        TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    -- 'not-matched', 'diagnosed', 'remediated', 'failed', 'error'
    outcome     TEXT NOT NULL,
    result      TEXT,
    error       TEXT,
    output      TEXT
);
CREATE INDEX IF NOT EXISTS runs_incident ON runs(incident_id, id);

-- Every capability call, as recorded by the host.
CREATE TABLE IF NOT EXISTS calls (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    incident_id TEXT NOT NULL,
    decision    TEXT NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_run ON calls(run_id, id);
CREATE INDEX IF NOT EXISTS calls_incident ON calls(incident_id, id);

-- Runs started, counted against each runbook's `max_runs` budget.
CREATE TABLE IF NOT EXISTS budget (
    runbook TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_runbook ON budget(runbook, at_ms);

CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Something to tell people about, committed with the change that caused it (the outbox).
CREATE TABLE IF NOT EXISTS notifications (
    id          INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    notice      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_incident ON notifications(incident_id);

-- One row per notification and destination, created in notification order by the
-- destination's dispatcher: 'pending', 'sent', 'skipped' (not routed there) or 'dead'.
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    incident_id     TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at_ms      INTEGER NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    UNIQUE (destination, notification_id)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(destination, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries(state) WHERE state = 'dead';

-- The Slack root message of each incident's thread.
CREATE TABLE IF NOT EXISTS slack_threads (
    incident_id TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL
);

-- Plan messages with Approve / Reject buttons, updated once the plan is decided.
CREATE TABLE IF NOT EXISTS slack_plans (
    incident_id TEXT NOT NULL,
    runbook     TEXT NOT NULL,
    channel     TEXT NOT NULL,
    ts          TEXT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (incident_id, runbook)
);

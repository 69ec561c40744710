-- Within an incident, remediations run one at a time: lowest priority first, then by name.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 100;
-- Verification checks queued so far for a remediation that said it worked ([verify]).
ALTER TABLE jobs ADD COLUMN verifications INTEGER NOT NULL DEFAULT 0;

-- What a running remediation is changing. A write takes the lease on its target (a
-- Kubernetes object, an ssh host and command, an HTTP resource) for the rest of its run;
-- another run's write to the same target is refused while it is held.
CREATE TABLE target_leases (
    target      TEXT PRIMARY KEY,
    -- How the target reads in a refusal: "deployment/api in production"
    shown       TEXT NOT NULL,
    run_id      INTEGER NOT NULL,
    incident_id TEXT NOT NULL,
    runbook     TEXT NOT NULL,
    taken_at    TEXT NOT NULL
);
CREATE INDEX target_leases_run ON target_leases(run_id);

-- Every write executed, for the global write budget ([pipeline] max_writes).
CREATE TABLE writes (
    at_ms INTEGER NOT NULL
);
CREATE INDEX writes_at ON writes(at_ms);

-- Grouped incidents ([incidents] group_by): the alerts of each, with their own state. An
-- incident whose alerts are not grouped has no rows here: it is its one alert.
CREATE TABLE incident_alerts (
    incident_id TEXT NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    -- 'firing' or 'resolved'
    status      TEXT NOT NULL,
    title       TEXT NOT NULL,
    severity    TEXT NOT NULL,
    labels      TEXT NOT NULL,
    annotations TEXT NOT NULL,
    alert_json  TEXT NOT NULL,
    starts_at   TEXT,
    ends_at     TEXT,
    fired       INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint)
);

-- A grouped incident's runbooks run per alert: the job names the alert ('' for an incident
-- that is its one alert), and single flight is per incident, alert and runbook.
ALTER TABLE jobs ADD COLUMN alert TEXT NOT NULL DEFAULT '';
DROP INDEX jobs_single_flight;
CREATE UNIQUE INDEX jobs_single_flight ON jobs(incident_id, alert, runbook)
    WHERE state IN ('queued', 'running', 'awaiting_approval');

-- The outbox under load: what each destination still has to send, each incident's deliveries,
-- and the new incidents waiting to be told in a digest (Slack, when its backlog is long).
CREATE INDEX deliveries_waiting ON deliveries(destination, id)
    WHERE state IN ('pending', 'batched');
CREATE INDEX deliveries_incident ON deliveries(destination, incident_id, state);
CREATE INDEX deliveries_digest ON deliveries(destination, id) WHERE state = 'digest';

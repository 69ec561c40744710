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

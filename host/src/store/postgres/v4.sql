-- Several replicas on one database: a running job belongs to the replica that claimed it
-- while that replica keeps renewing its lease. Another replica takes over work whose lease
-- has lapsed (its owner died): diagnoses are queued again, remediations interrupted and
-- escalated, never re-run.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until_ms BIGINT;
CREATE INDEX jobs_owner ON jobs(owner) WHERE state = 'running';

-- Work one replica does at a time (a notification destination's sender): held while its
-- owner renews it, taken over once it lapses.
CREATE TABLE leases (
    name     TEXT COLLATE "C" PRIMARY KEY,
    owner    TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);

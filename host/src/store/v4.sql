-- Several replicas on one database: a running job belongs to the replica that claimed it
-- while that replica keeps renewing its lease. Another replica takes over work whose lease
-- has lapsed (its owner died): diagnoses are queued again, remediations interrupted and
-- escalated, never re-run.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until_ms INTEGER;
CREATE INDEX jobs_owner ON jobs(owner) WHERE state = 'running';

//! The durable job queue: one row per (incident, runbook) moving through diagnose, approval
//! and remediate; run records; budgets; the remediation pause switch.

use serde::Serialize;

use super::Selected;
use super::apply::run;
use super::tx::{Row, Tx};
use super::{StoreError, now};
use crate::lifecycle::{
    Halt, JobRef, JobState, Phase, decided, expired as expired_steps, interrupted, rediagnosed,
    rejected, requeued,
};

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// The incident.
    pub incident: String,
    /// The runbook's name.
    pub runbook: String,
    /// What runs now.
    pub phase: Phase,
    /// The diagnosis a remediate job acts on (JSON).
    pub diagnosis: Option<String>,
    /// How many times it has been claimed.
    pub attempts: i64,
    /// Who approved its plan, when somebody did.
    pub decided_by: Option<String>,
    /// Verification checks queued so far: in phase `verify`, which check this is.
    pub verifications: u32,
    /// The alert of a grouped incident it runs for; `""` when the incident is its one alert.
    pub alert: String,
}

impl Job {
    /// The job as transitions name it.
    pub fn to_ref(&self) -> JobRef {
        JobRef {
            id: self.id,
            incident: self.incident.clone(),
            runbook: self.runbook.clone(),
        }
    }
}

/// Queues a runbook for an incident (for one `alert` of a grouped incident; `""` for an
/// incident that is its one alert) unless one is already live (single flight).
pub(super) fn enqueue(
    tx: &dyn Tx,
    incident: &str,
    alert: &str,
    runbook: &Selected,
    (at, ms): (&str, i64),
) -> Result<bool, StoreError> {
    let added = tx.execute(
        "INSERT INTO jobs (incident_id, alert, runbook, priority, phase, state,
             run_at_ms, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'diagnose', 'queued', ?5, ?6, ?6)
         ON CONFLICT DO NOTHING",
        &[
            &incident,
            &alert,
            &runbook.name,
            &runbook.priority,
            &ms,
            &at,
        ],
    )?;
    Ok(added == 1)
}

/// Claims the oldest ready job that may run now. Within an incident, evidence comes before
/// action and one hand is on the wheel: a remediation waits while any diagnosis or
/// verification of its incident is queued or running, while another remediation of it runs,
/// and while a plan ahead of it (lower priority, then runbook name, then alert) is queued or
/// waiting for approval.
pub(super) fn claim(tx: &dyn Tx, owner: &str, lease_ms: i64) -> Result<Option<Job>, StoreError> {
    let (at, ms) = now();
    // The state is checked again on the row itself: on PostgreSQL a second claimer that
    // waited for this row's lock sees it running and claims nothing, and `SKIP LOCKED` sends
    // it on to the next ready job instead of waiting at all.
    tx.query_opt(
        &format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2,
             owner = ?3, lease_until_ms = ?4
         WHERE state = 'queued' AND id = (
             SELECT j.id FROM jobs j
             WHERE j.state = 'queued' AND j.run_at_ms <= ?1
               AND (j.phase != 'remediate' OR NOT EXISTS (
                   SELECT 1 FROM jobs o
                   WHERE o.incident_id = j.incident_id AND o.id != j.id AND (
                       (o.phase != 'remediate' AND o.state IN ('queued', 'running'))
                       OR (o.phase = 'remediate' AND o.state = 'running')
                       OR (o.phase = 'remediate'
                           AND o.state IN ('queued', 'awaiting_approval')
                           AND (o.priority, o.runbook, o.alert)
                               < (j.priority, j.runbook, j.alert)))))
             ORDER BY j.run_at_ms, j.id LIMIT 1{})
         RETURNING id, incident_id, runbook, phase, diagnosis, attempts, decided_by,
             verifications, alert",
            tx.dialect().skip_locked()
        ),
        &[&ms, &at, &owner, &(ms + lease_ms)],
        |row| {
            let phase: String = row.get(3)?;
            Ok(Job {
                id: row.get(0)?,
                incident: row.get(1)?,
                runbook: row.get(2)?,
                phase: Phase::parse(&phase).unwrap_or(Phase::Diagnose),
                diagnosis: row.get(4)?,
                attempts: row.get(5)?,
                decided_by: row.get(6)?,
                verifications: row.get(7)?,
                alert: row.get(8)?,
            })
        },
    )
}

/// Sets a job's final or next state.
pub(super) fn set_state(tx: &dyn Tx, job: i64, state: JobState) -> Result<(), StoreError> {
    let (at, _) = now();
    tx.send(
        "UPDATE jobs SET state = ?2, updated_at = ?3 WHERE id = ?1",
        &[&job, &state.as_str(), &at],
    )?;
    Ok(())
}

/// Parks a diagnosed job until someone approves its plan or it expires.
pub(super) fn await_approval(
    tx: &dyn Tx,
    job: i64,
    diagnosis: &str,
    expires_ms: i64,
) -> Result<(), StoreError> {
    let (at, _) = now();
    tx.send(
        "UPDATE jobs SET state = 'awaiting_approval', phase = 'remediate', diagnosis = ?2,
             expires_ms = ?3, updated_at = ?4
         WHERE id = ?1",
        &[&job, &diagnosis, &expires_ms, &at],
    )?;
    Ok(())
}

/// Puts a claimed remediation back to wait for approval (remediation is paused).
pub(super) fn hold(tx: &dyn Tx, job: i64, expires_ms: i64) -> Result<(), StoreError> {
    let (at, _) = now();
    tx.send(
        "UPDATE jobs SET state = 'awaiting_approval', expires_ms = ?2, updated_at = ?3
         WHERE id = ?1",
        &[&job, &expires_ms, &at],
    )?;
    Ok(())
}

/// Queues the job's next verification check `after_ms` from now.
pub(super) fn queue_verify(tx: &dyn Tx, job: i64, after_ms: i64) -> Result<(), StoreError> {
    let (at, ms) = now();
    tx.send(
        "UPDATE jobs SET state = 'queued', phase = 'verify', run_at_ms = ?2,
             verifications = verifications + 1, updated_at = ?3
         WHERE id = ?1",
        &[&job, &ms.saturating_add(after_ms), &at],
    )?;
    Ok(())
}

/// Queues the remediate phase of a diagnosed job at once (mode `auto`).
pub(super) fn queue_remediation(tx: &dyn Tx, job: i64, diagnosis: &str) -> Result<(), StoreError> {
    let (at, ms) = now();
    tx.send(
        "UPDATE jobs SET state = 'queued', phase = 'remediate', diagnosis = ?2, run_at_ms = ?3,
             updated_at = ?4
         WHERE id = ?1",
        &[&job, &diagnosis, &ms, &at],
    )?;
    Ok(())
}

/// Sends the incident's waiting plans for the same alert (all but `job`'s) back to
/// diagnosis, because `by`'s remediation ran first; each gets a timeline entry, and an
/// approval it had lapses. Plans for the other alerts of a grouped incident are about other
/// objects; a write they share is still held by its target lock.
pub(super) fn rediagnose(
    tx: &dyn Tx,
    incident: &str,
    job: i64,
    by: &str,
    (at, ms): (&str, i64),
) -> Result<(), StoreError> {
    let waiting: Vec<(i64, String)> = tx.query_vec(
        "UPDATE jobs SET phase = 'diagnose', state = 'queued', diagnosis = NULL,
             decided_by = NULL, expires_ms = NULL, run_at_ms = ?3, updated_at = ?4
         WHERE incident_id = ?1 AND id != ?2 AND phase = 'remediate'
           AND state IN ('queued', 'awaiting_approval')
           AND alert = (SELECT alert FROM jobs WHERE id = ?2)
         RETURNING id, runbook",
        &[&incident, &job, &ms, &at],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    for (id, runbook) in waiting {
        run(
            tx,
            (at, ms),
            incident,
            Some((id, &runbook)),
            &rediagnosed(by),
        )?;
    }
    Ok(())
}

/// What an approve or reject did.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The runbooks whose plans were decided.
    pub runbooks: Vec<String>,
}

/// Approves or rejects every plan of `incident` awaiting approval (or only `runbook`'s).
/// A plan is decided once: a second decision finds nothing waiting.
pub(super) fn decide(
    tx: &dyn Tx,
    incident: &str,
    runbook: Option<&str>,
    plan: Option<&str>,
    approve: bool,
    who: &str,
) -> Result<Decision, StoreError> {
    let (at, ms) = now();
    // Only the plans the decision was shown: a plan diagnosed again since (its steps have
    // another digest) waits for a decision on its own message.
    let waiting: Vec<(i64, Option<String>)> = tx.query_vec(
        "SELECT id, diagnosis FROM jobs
         WHERE incident_id = ?1 AND state = 'awaiting_approval'
           AND (CAST(?2 AS TEXT) IS NULL OR runbook = ?2)",
        &[&incident, &runbook],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let shown: Vec<i64> = waiting
        .into_iter()
        .filter(|(_, diagnosis)| {
            plan.is_none_or(|plan| {
                diagnosis.as_deref().and_then(plan_digest_of) == Some(plan.to_owned())
            })
        })
        .map(|(id, _)| id)
        .collect();
    // One statement per plan, in the order they were found (the order a single statement
    // over them all returned its rows in was unspecified).
    let mut runbooks: Vec<(i64, String)> = Vec::with_capacity(shown.len());
    for id in shown {
        let found = if approve {
            tx.query_opt(
                "UPDATE jobs SET state = 'queued', run_at_ms = ?2, decided_by = ?3, updated_at = ?4
                 WHERE id = ?1 AND state = 'awaiting_approval'
                 RETURNING id, runbook",
                &[&id, &ms, &who, &at],
                job_and_runbook,
            )?
        } else {
            tx.query_opt(
                "UPDATE jobs SET state = 'rejected', decided_by = ?2, updated_at = ?3
                 WHERE id = ?1 AND state = 'awaiting_approval'
                 RETURNING id, runbook",
                &[&id, &who, &at],
                job_and_runbook,
            )?
        };
        runbooks.extend(found);
    }
    let live: Vec<(i64, String)> = runbooks;
    for (id, name) in &live {
        run(
            tx,
            (&at, ms),
            incident,
            Some((*id, name)),
            &decided(approve, who),
        )?;
    }
    if !approve && !live.is_empty() {
        run(tx, (&at, ms), incident, None, &rejected(who))?;
    }
    let runbooks = live.into_iter().map(|(_, name)| name).collect();
    Ok(Decision { runbooks })
}

/// A decided job's id and runbook, as `decide`'s statements return them.
fn job_and_runbook(row: &dyn Row) -> Result<(i64, String), StoreError> {
    Ok((row.get(0)?, row.get(1)?))
}

/// The digest of the plan in a stored diagnosis (its `plan` steps).
fn plan_digest_of(diagnosis: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(diagnosis).ok()?;
    let steps: Vec<String> = serde_json::from_value(value.get("plan")?.clone()).ok()?;
    Some(crate::lifecycle::plan_digest(&steps))
}

/// Expires plans whose approval window has passed and escalates their incidents.
pub(super) fn expire_approvals(tx: &dyn Tx) -> Result<usize, StoreError> {
    let (at, ms) = now();
    let expired: Vec<(i64, String, String)> = tx.query_vec(
        "UPDATE jobs SET state = 'expired', updated_at = ?2
         WHERE state = 'awaiting_approval' AND expires_ms <= ?1
         RETURNING id, incident_id, runbook",
        &[&ms, &at],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    for (id, incident, runbook) in &expired {
        run(
            tx,
            (&at, ms),
            incident,
            Some((*id, runbook)),
            &expired_steps(runbook),
        )?;
    }
    Ok(expired.len())
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovery {
    /// Diagnoses that were running: read-only, so queued again.
    pub requeued: usize,
    /// Remediations that were running: marked interrupted and escalated, never re-run.
    pub interrupted: usize,
}

/// After a crash (or a shutdown that ran out of time): what was running is requeued when
/// it is safe to run again, and escalated otherwise. With `only`, that one job (whose end
/// could not be recorded), if it is still running.
pub(super) fn recover(tx: &dyn Tx, scope: &Scope) -> Result<Recovery, StoreError> {
    let (at, ms) = now();
    let halt = match scope {
        Scope::Job(..) => Halt::Unrecorded,
        Scope::All | Scope::Owner(_) | Scope::Lapsed => Halt::Stopped,
    };
    let (job, owner, lapsed) = match scope {
        Scope::Job(id, owner) => (Some(*id), Some(owner.as_str()), None),
        Scope::All => (None, None, None),
        Scope::Owner(owner) => (None, Some(owner.as_str()), None),
        Scope::Lapsed => (None, None, Some(ms)),
    };
    // ?3 one job, ?4 one owner's, ?5 those whose lease ended by then (or that never had one:
    // claimed before leases existed); all NULL: every running job.
    let scoped = "(CAST(?3 AS BIGINT) IS NULL OR id = ?3)
           AND (CAST(?4 AS TEXT) IS NULL OR owner = ?4)
           AND (CAST(?5 AS BIGINT) IS NULL OR lease_until_ms IS NULL OR lease_until_ms <= ?5)";
    let requeued_jobs: Vec<(i64, String, String)> = tx.query_vec(
        &format!(
            "UPDATE jobs SET state = 'queued', run_at_ms = ?1, updated_at = ?2, owner = NULL,
                 lease_until_ms = NULL
             WHERE state = 'running' AND phase IN ('diagnose', 'verify') AND {scoped}
             RETURNING id, incident_id, runbook"
        ),
        &[&ms, &at, &job, &owner, &lapsed],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    for (id, incident, runbook) in &requeued_jobs {
        run(
            tx,
            (&at, ms),
            incident,
            Some((*id, runbook)),
            &requeued(halt),
        )?;
    }
    let interrupted_jobs: Vec<(i64, String, String)> = tx.query_vec(
        &format!(
            "UPDATE jobs SET state = 'interrupted', updated_at = ?2, owner = NULL,
                 lease_until_ms = NULL
             WHERE state = 'running' AND phase = 'remediate' AND CAST(?1 AS BIGINT) IS NOT NULL
               AND {scoped}
             RETURNING id, incident_id, runbook"
        ),
        &[&ms, &at, &job, &owner, &lapsed],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    for (id, incident, runbook) in &interrupted_jobs {
        run(
            tx,
            (&at, ms),
            incident,
            Some((*id, runbook)),
            &interrupted(runbook, halt),
        )?;
    }
    let why = match halt {
        Halt::Stopped => "the daemon stopped while this ran; the calls below are what it did",
        Halt::Unrecorded => {
            "the end of this run could not be recorded; the calls below are what it did"
        }
    };
    // Only the runs of the jobs recovered here: another replica's runs go on.
    for (id, _, _) in requeued_jobs.iter().chain(&interrupted_jobs) {
        tx.send(
            "UPDATE runs SET outcome = 'interrupted', error = ?2
             WHERE outcome = 'running' AND job_id = ?1",
            &[id, &why],
        )?;
    }
    // Targets held by runs that are over.
    tx.send(
        "DELETE FROM target_leases
         WHERE run_id NOT IN (SELECT id FROM runs WHERE outcome = 'running')",
        &[],
    )?;
    Ok(Recovery {
        requeued: requeued_jobs.len(),
        interrupted: interrupted_jobs.len(),
    })
}

/// Which running jobs a recovery takes back (`Store::recover` and its kin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One job whose end could not be recorded, if it is still this owner's.
    Job(i64, String),
    /// Every running job: the one process of an embedded database starting or stopping.
    All,
    /// This replica's own, as it stops.
    Owner(String),
    /// Those whose owner stopped renewing its lease: a replica that died.
    Lapsed,
}

/// Renews the lease on every job `owner` is running, to `until_ms`; returns how many.
pub(super) fn renew(tx: &dyn Tx, owner: &str, until_ms: i64) -> Result<u64, StoreError> {
    tx.execute(
        "UPDATE jobs SET lease_until_ms = ?2 WHERE owner = ?1 AND state = 'running'",
        &[&owner, &until_ms],
    )
}

/// Takes or renews the lease named `name` for `owner` until `until_ms`, unless another
/// owner holds it past `now_ms`; true when `owner` holds it now.
pub(super) fn lead(
    tx: &dyn Tx,
    name: &str,
    owner: &str,
    (now_ms, until_ms): (i64, i64),
) -> Result<bool, StoreError> {
    let holder: Option<String> = tx.query_opt(
        "INSERT INTO leases (name, owner, until_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms
         WHERE leases.owner = excluded.owner OR leases.until_ms <= ?4
         RETURNING owner",
        &[&name, &owner, &until_ms, &now_ms],
        |row| row.get(0),
    )?;
    Ok(holder.is_some())
}

/// Takes one run from a runbook's budget (`count` per `per_ms`); false when exhausted.
pub(super) fn take_budget(
    tx: &dyn Tx,
    runbook: &str,
    count: u32,
    per_ms: i64,
) -> Result<bool, StoreError> {
    let (_, ms) = now();
    let used: i64 = tx.query_one(
        "SELECT count(*) FROM budget WHERE runbook = ?1 AND at_ms > ?2",
        &[&runbook, &(ms - per_ms)],
        |row| row.get(0),
    )?;
    if used >= i64::from(count) {
        return Ok(false);
    }
    tx.send(
        "INSERT INTO budget (runbook, at_ms) VALUES (?1, ?2)",
        &[&runbook, &ms],
    )?;
    Ok(true)
}

/// Runs counted against a runbook's budget inside the window.
pub(super) fn budget_used(tx: &dyn Tx, runbook: &str, per_ms: i64) -> Result<i64, StoreError> {
    let (_, ms) = now();
    tx.query_one(
        "SELECT count(*) FROM budget WHERE runbook = ?1 AND at_ms > ?2",
        &[&runbook, &(ms - per_ms)],
        |row| row.get(0),
    )
}

/// Whether remediation is paused for every runbook.
pub(super) fn paused(tx: &dyn Tx) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT value FROM settings WHERE key = 'remediation_paused'",
            &[],
            |row| row.get::<String>(0),
        )?
        .is_some_and(|v| v == "true"))
}

/// Pauses or resumes remediation.
pub(super) fn set_paused(tx: &dyn Tx, paused: bool) -> Result<(), StoreError> {
    tx.send(
        "INSERT INTO settings (key, value) VALUES ('remediation_paused', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&if paused { "true" } else { "false" }],
    )?;
    Ok(())
}

/// What a prune removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pruned {
    /// Raw deliveries.
    pub deliveries: usize,
    /// Resolved incidents (their timeline, jobs, runs and calls go with them).
    pub incidents: usize,
}

/// Deletes deliveries received before `inbox_before_ms`, incidents resolved before
/// `incidents_before_ms`, and budget entries older than a week past any window in use.
pub(super) fn prune(
    tx: &dyn Tx,
    inbox_before_ms: i64,
    incidents_before_ms: i64,
) -> Result<Pruned, StoreError> {
    let deliveries = tx.execute(
        "DELETE FROM inbox WHERE received_ms < ?1",
        &[&inbox_before_ms],
    )?;
    let incidents = tx.execute(
        "DELETE FROM incidents WHERE status = 'resolved' AND resolved_ms < ?1",
        &[&incidents_before_ms],
    )?;
    tx.send(
        "DELETE FROM calls WHERE run_id NOT IN (SELECT id FROM runs)",
        &[],
    )?;
    // Notices: settled ones past the inbox retention, and any whose incident is gone.
    tx.send(
        "DELETE FROM notifications WHERE incident_id NOT IN (SELECT id FROM incidents)
            OR (created_ms < ?1 AND NOT EXISTS (SELECT 1 FROM deliveries d
                    WHERE d.notification_id = notifications.id
                      AND d.state IN ('pending', 'batched', 'digest')))",
        &[&inbox_before_ms],
    )?;
    tx.send(
        "DELETE FROM deliveries WHERE notification_id NOT IN (SELECT id FROM notifications)",
        &[],
    )?;
    for table in ["slack_threads", "slack_plans"] {
        tx.send(
            &format!("DELETE FROM {table} WHERE incident_id NOT IN (SELECT id FROM incidents)"),
            &[],
        )?;
    }
    let (_, ms) = now();
    tx.send(
        "DELETE FROM budget WHERE at_ms < ?1",
        &[&(ms - 400 * 86_400_000)],
    )?;
    tx.send(
        "DELETE FROM writes WHERE at_ms < ?1",
        &[&(ms - 400 * 86_400_000)],
    )?;
    Ok(Pruned {
        deliveries: usize::try_from(deliveries).unwrap_or(usize::MAX),
        incidents: usize::try_from(incidents).unwrap_or(usize::MAX),
    })
}

//! The durable job queue: one row per (incident, runbook) moving through diagnose, approval
//! and remediate; run records; budgets; the remediation pause switch.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Selected;
use super::apply::run;
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
    conn: &Connection,
    incident: &str,
    alert: &str,
    runbook: &Selected,
    (at, ms): (&str, i64),
) -> Result<bool, StoreError> {
    let added = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO jobs (incident_id, alert, runbook, priority, phase, state,
                 run_at_ms, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'diagnose', 'queued', ?5, ?6, ?6)",
        )?
        .execute(params![
            incident,
            alert,
            runbook.name,
            runbook.priority,
            ms,
            at
        ])?;
    Ok(added == 1)
}

/// Claims the oldest ready job that may run now. Within an incident, evidence comes before
/// action and one hand is on the wheel: a remediation waits while any diagnosis or
/// verification of its incident is queued or running, while another remediation of it runs,
/// and while a plan ahead of it (lower priority, then runbook name, then alert) is queued or
/// waiting for approval.
pub(super) fn claim(conn: &Connection) -> Result<Option<Job>, StoreError> {
    let (at, ms) = now();
    Ok(conn
        .prepare_cached(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2
             WHERE id = (
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
                 ORDER BY j.run_at_ms, j.id LIMIT 1)
             RETURNING id, incident_id, runbook, phase, diagnosis, attempts, decided_by,
                 verifications, alert",
        )?
        .query_row(params![ms, at], |row| {
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
        })
        .optional()?)
}

/// Sets a job's final or next state.
pub(super) fn set_state(conn: &Connection, job: i64, state: JobState) -> Result<(), StoreError> {
    let (at, _) = now();
    conn.prepare_cached("UPDATE jobs SET state = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![job, state.as_str(), at])?;
    Ok(())
}

/// Parks a diagnosed job until someone approves its plan or it expires.
pub(super) fn await_approval(
    conn: &Connection,
    job: i64,
    diagnosis: &str,
    expires_ms: i64,
) -> Result<(), StoreError> {
    let (at, _) = now();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'awaiting_approval', phase = 'remediate', diagnosis = ?2,
             expires_ms = ?3, updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![job, diagnosis, expires_ms, at])?;
    Ok(())
}

/// Puts a claimed remediation back to wait for approval (remediation is paused).
pub(super) fn hold(conn: &Connection, job: i64, expires_ms: i64) -> Result<(), StoreError> {
    let (at, _) = now();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'awaiting_approval', expires_ms = ?2, updated_at = ?3
         WHERE id = ?1",
    )?
    .execute(params![job, expires_ms, at])?;
    Ok(())
}

/// Queues the job's next verification check `after_ms` from now.
pub(super) fn queue_verify(conn: &Connection, job: i64, after_ms: i64) -> Result<(), StoreError> {
    let (at, ms) = now();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'queued', phase = 'verify', run_at_ms = ?2,
             verifications = verifications + 1, updated_at = ?3
         WHERE id = ?1",
    )?
    .execute(params![job, ms.saturating_add(after_ms), at])?;
    Ok(())
}

/// Queues the remediate phase of a diagnosed job at once (mode `auto`).
pub(super) fn queue_remediation(
    conn: &Connection,
    job: i64,
    diagnosis: &str,
) -> Result<(), StoreError> {
    let (at, ms) = now();
    conn.prepare_cached(
        "UPDATE jobs SET state = 'queued', phase = 'remediate', diagnosis = ?2, run_at_ms = ?3,
             updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![job, diagnosis, ms, at])?;
    Ok(())
}

/// Sends the incident's waiting plans for the same alert (all but `job`'s) back to
/// diagnosis, because `by`'s remediation ran first; each gets a timeline entry, and an
/// approval it had lapses. Plans for the other alerts of a grouped incident are about other
/// objects; a write they share is still held by its target lock.
pub(super) fn rediagnose(
    conn: &Connection,
    incident: &str,
    job: i64,
    by: &str,
    (at, ms): (&str, i64),
) -> Result<(), StoreError> {
    let waiting: Vec<(i64, String)> = conn
        .prepare_cached(
            "UPDATE jobs SET phase = 'diagnose', state = 'queued', diagnosis = NULL,
                 decided_by = NULL, expires_ms = NULL, run_at_ms = ?3, updated_at = ?4
             WHERE incident_id = ?1 AND id != ?2 AND phase = 'remediate'
               AND state IN ('queued', 'awaiting_approval')
               AND alert = (SELECT alert FROM jobs WHERE id = ?2)
             RETURNING id, runbook",
        )?
        .query_map(params![incident, job, ms, at], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, runbook) in waiting {
        run(
            conn,
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
    conn: &Connection,
    incident: &str,
    runbook: Option<&str>,
    plan: Option<&str>,
    approve: bool,
    who: &str,
) -> Result<Decision, StoreError> {
    let (at, ms) = now();
    // Only the plans the decision was shown: a plan diagnosed again since (its steps have
    // another digest) waits for a decision on its own message.
    let waiting: Vec<(i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, diagnosis FROM jobs
             WHERE incident_id = ?1 AND state = 'awaiting_approval'
               AND (?2 IS NULL OR runbook = ?2)",
        )?
        .query_map(params![incident, runbook], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let shown: Vec<i64> = waiting
        .into_iter()
        .filter(|(_, diagnosis)| {
            plan.is_none_or(|plan| {
                diagnosis.as_deref().and_then(plan_digest_of) == Some(plan.to_owned())
            })
        })
        .map(|(id, _)| id)
        .collect();
    let shown = serde_json::to_string(&shown)?;
    let runbooks: Vec<(i64, String)> = if approve {
        conn.prepare_cached(
            "UPDATE jobs SET state = 'queued', run_at_ms = ?2, decided_by = ?3, updated_at = ?4
             WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'awaiting_approval'
             RETURNING id, runbook",
        )?
        .query_map(params![shown, ms, who, at], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?
    } else {
        conn.prepare_cached(
            "UPDATE jobs SET state = 'rejected', decided_by = ?2, updated_at = ?3
             WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'awaiting_approval'
             RETURNING id, runbook",
        )?
        .query_map(params![shown, who, at], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?
    };
    let live: Vec<(i64, String)> = runbooks;
    for (id, name) in &live {
        run(
            conn,
            (&at, ms),
            incident,
            Some((*id, name)),
            &decided(approve, who),
        )?;
    }
    if !approve && !live.is_empty() {
        run(conn, (&at, ms), incident, None, &rejected(who))?;
    }
    let runbooks = live.into_iter().map(|(_, name)| name).collect();
    Ok(Decision { runbooks })
}

/// The digest of the plan in a stored diagnosis (its `plan` steps).
fn plan_digest_of(diagnosis: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(diagnosis).ok()?;
    let steps: Vec<String> = serde_json::from_value(value.get("plan")?.clone()).ok()?;
    Some(crate::lifecycle::plan_digest(&steps))
}

/// Expires plans whose approval window has passed and escalates their incidents.
pub(super) fn expire_approvals(conn: &Connection) -> Result<usize, StoreError> {
    let (at, ms) = now();
    let expired: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'expired', updated_at = ?2
             WHERE state = 'awaiting_approval' AND expires_ms <= ?1
             RETURNING id, incident_id, runbook",
        )?
        .query_map(params![ms, at], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, incident, runbook) in &expired {
        run(
            conn,
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
pub(super) fn recover(conn: &Connection, only: Option<i64>) -> Result<Recovery, StoreError> {
    let (at, ms) = now();
    let halt = if only.is_some() {
        Halt::Unrecorded
    } else {
        Halt::Stopped
    };
    let requeued_jobs: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'queued', run_at_ms = ?1, updated_at = ?2
             WHERE state = 'running' AND phase IN ('diagnose', 'verify')
               AND (?3 IS NULL OR id = ?3)
             RETURNING id, incident_id, runbook",
        )?
        .query_map(params![ms, at, only], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, incident, runbook) in &requeued_jobs {
        run(
            conn,
            (&at, ms),
            incident,
            Some((*id, runbook)),
            &requeued(halt),
        )?;
    }
    let interrupted_jobs: Vec<(i64, String, String)> = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'interrupted', updated_at = ?1
             WHERE state = 'running' AND phase = 'remediate' AND (?2 IS NULL OR id = ?2)
             RETURNING id, incident_id, runbook",
        )?
        .query_map(params![at, only], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, incident, runbook) in &interrupted_jobs {
        run(
            conn,
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
    conn.prepare_cached(
        "UPDATE runs SET outcome = 'interrupted', error = ?2
         WHERE outcome = 'running' AND (?1 IS NULL OR job_id = ?1)",
    )?
    .execute(params![only, why])?;
    // Targets held by runs that are over (a crash ends every run of this process).
    conn.prepare_cached(
        "DELETE FROM target_leases
         WHERE run_id NOT IN (SELECT id FROM runs WHERE outcome = 'running')",
    )?
    .execute([])?;
    Ok(Recovery {
        requeued: requeued_jobs.len(),
        interrupted: interrupted_jobs.len(),
    })
}

/// Takes one run from a runbook's budget (`count` per `per_ms`); false when exhausted.
pub(super) fn take_budget(
    conn: &Connection,
    runbook: &str,
    count: u32,
    per_ms: i64,
) -> Result<bool, StoreError> {
    let (_, ms) = now();
    let used: i64 = conn
        .prepare_cached("SELECT count(*) FROM budget WHERE runbook = ?1 AND at_ms > ?2")?
        .query_row(params![runbook, ms - per_ms], |row| row.get(0))?;
    if used >= i64::from(count) {
        return Ok(false);
    }
    conn.prepare_cached("INSERT INTO budget (runbook, at_ms) VALUES (?1, ?2)")?
        .execute(params![runbook, ms])?;
    Ok(true)
}

/// Runs counted against a runbook's budget inside the window.
pub(super) fn budget_used(
    conn: &Connection,
    runbook: &str,
    per_ms: i64,
) -> Result<i64, StoreError> {
    let (_, ms) = now();
    Ok(conn
        .prepare_cached("SELECT count(*) FROM budget WHERE runbook = ?1 AND at_ms > ?2")?
        .query_row(params![runbook, ms - per_ms], |row| row.get(0))?)
}

/// Whether remediation is paused for every runbook.
pub(super) fn paused(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = 'remediation_paused'")?
        .query_row([], |row| row.get::<_, String>(0))
        .optional()?
        .is_some_and(|v| v == "true"))
}

/// Pauses or resumes remediation.
pub(super) fn set_paused(conn: &Connection, paused: bool) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES ('remediation_paused', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([if paused { "true" } else { "false" }])?;
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
    conn: &Connection,
    inbox_before_ms: i64,
    incidents_before_ms: i64,
) -> Result<Pruned, StoreError> {
    let deliveries = conn
        .prepare_cached("DELETE FROM inbox WHERE received_ms < ?1")?
        .execute([inbox_before_ms])?;
    let incidents = conn
        .prepare_cached("DELETE FROM incidents WHERE status = 'resolved' AND resolved_ms < ?1")?
        .execute([incidents_before_ms])?;
    conn.prepare_cached("DELETE FROM calls WHERE run_id NOT IN (SELECT id FROM runs)")?
        .execute([])?;
    // Notices: settled ones past the inbox retention, and any whose incident is gone.
    conn.prepare_cached(
        "DELETE FROM notifications WHERE incident_id NOT IN (SELECT id FROM incidents)
            OR (created_ms < ?1 AND NOT EXISTS (SELECT 1 FROM deliveries d
                    WHERE d.notification_id = notifications.id
                      AND d.state IN ('pending', 'batched', 'digest')))",
    )?
    .execute([inbox_before_ms])?;
    conn.prepare_cached(
        "DELETE FROM deliveries WHERE notification_id NOT IN (SELECT id FROM notifications)",
    )?
    .execute([])?;
    for table in ["slack_threads", "slack_plans"] {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE incident_id NOT IN (SELECT id FROM incidents)"
        ))?
        .execute([])?;
    }
    let (_, ms) = now();
    conn.prepare_cached("DELETE FROM budget WHERE at_ms < ?1")?
        .execute([ms - 400 * 86_400_000])?;
    conn.prepare_cached("DELETE FROM writes WHERE at_ms < ?1")?
        .execute([ms - 400 * 86_400_000])?;
    Ok(Pruned {
        deliveries,
        incidents,
    })
}

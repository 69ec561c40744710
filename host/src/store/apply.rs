//! Applying the lifecycle's transitions: the facts they ask for, and their steps, in the
//! caller's transaction.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::tx::SqliteTx;
use super::{StoreError, jobs, now, outbox, runs};
use crate::lifecycle::{
    Applied, EventKind, Facts, IncidentStatus, NoticeKind, Step, Transition,
    cancelled_by_resolution,
};

/// The facts a transition asks for, read in the transaction that applies it.
struct Sql<'a> {
    conn: &'a Connection,
    incident: &'a str,
}

impl Facts for Sql<'_> {
    type Error = StoreError;

    fn status(&mut self) -> Result<IncidentStatus, StoreError> {
        let status: Option<String> = self
            .conn
            .prepare_cached("SELECT status FROM incidents WHERE id = ?1")?
            .query_row([self.incident], |row| row.get(0))
            .optional()?;
        // An incident deleted by retention meanwhile is over, as a resolved one is.
        let Some(status) = status else {
            return Ok(IncidentStatus::Resolved);
        };
        IncidentStatus::parse(&status)
            .ok_or_else(|| StoreError::failed(format!("unknown incident status {status:?}")))
    }

    fn paused(&mut self) -> Result<bool, StoreError> {
        jobs::paused(self.conn)
    }

    fn take_budget(&mut self, runbook: &str, count: u32, per_ms: i64) -> Result<bool, StoreError> {
        jobs::take_budget(self.conn, runbook, count, per_ms)
    }

    fn another_applies(&mut self, job: i64) -> Result<bool, StoreError> {
        let (live, matched): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT
                     (SELECT count(*) FROM jobs WHERE incident_id = ?1 AND id != ?2
                        AND state IN ('queued', 'running', 'awaiting_approval')),
                     (SELECT count(*) FROM runs WHERE incident_id = ?1
                        AND outcome != 'not-matched')",
            )?
            .query_row(params![self.incident, job], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        Ok(live > 0 || matched > 0)
    }
}

/// Applies `transition`; the second value says whether it queued work.
pub(super) fn apply(
    conn: &Connection,
    transition: &Transition,
) -> Result<(Applied, bool), StoreError> {
    let incident = transition.incident();
    let (steps, proceed) = transition.steps(&mut Sql { conn, incident })?;
    let job = transition.job().map(|j| (j.id, j.runbook.as_str()));
    let (at, ms) = now();
    let (mut applied, queued) = run(conn, (&at, ms), incident, job, &steps)?;
    applied.proceed = proceed;
    Ok((applied, queued))
}

/// Takes `steps` for `incident` (and `job`: its id and runbook) at time `(at, ms)`, the one
/// time of the whole change. The second value says whether work was queued.
pub(super) fn run(
    conn: &Connection,
    (at, ms): (&str, i64),
    incident: &str,
    job: Option<(i64, &str)>,
    steps: &[Step],
) -> Result<(Applied, bool), StoreError> {
    let mut applied = Applied {
        changed: !steps.is_empty(),
        ..Applied::default()
    };
    let mut queued = false;
    let runbook = job.map(|(_, name)| name);
    let job_id = || {
        job.map(|(id, _)| id)
            .ok_or_else(|| StoreError::failed("a job step outside a job's transition"))
    };
    for step in steps {
        match step {
            Step::Job(state) => {
                jobs::set_state(conn, job_id()?, *state)?;
                // A job that ends may be what another of its incident's jobs waits for.
                queued = true;
            }
            Step::AwaitApproval {
                diagnosis,
                expires_ms,
            } => jobs::await_approval(conn, job_id()?, diagnosis, *expires_ms)?,
            Step::HoldPlan { expires_ms } => jobs::hold(conn, job_id()?, *expires_ms)?,
            Step::QueueVerify { after_ms } => {
                jobs::queue_verify(conn, job_id()?, *after_ms)?;
                queued = true;
            }
            Step::QueueRemediation { diagnosis } => {
                jobs::queue_remediation(conn, job_id()?, diagnosis)?;
                queued = true;
            }
            Step::Status(status) => set_status(conn, incident, *status, at, ms)?,
            Step::CancelPendingJobs => cancel_pending(conn, incident, (at, ms))?,
            Step::Rediagnose(by) => {
                jobs::rediagnose(conn, incident, job_id()?, by, (at, ms))?;
                queued = true;
            }
            Step::MarkRemediated => {
                conn.prepare_cached("UPDATE incidents SET remediated = 1 WHERE id = ?1")?
                    .execute([incident])?;
            }
            Step::Event {
                kind,
                runbook: about_runbook,
                message,
                detail,
            } => {
                let runbook = runbook.filter(|_| *about_runbook);
                event(conn, incident, at, *kind, runbook, message, detail.as_ref())?;
            }
            Step::Notice {
                kind,
                runbook: about_runbook,
                message,
                findings,
                plan,
                commands,
            } => {
                let said = outbox::Said {
                    message,
                    findings,
                    plan,
                    commands,
                };
                let runbook = runbook.filter(|_| *about_runbook);
                outbox::record(conn, incident, *kind, runbook, &said)?;
            }
            Step::Escalate(reason) => {
                escalate(conn, incident, at, reason)?;
                applied.escalations += 1;
            }
            Step::RecordRun(run) => {
                runs::record_run(&SqliteTx(conn), run)?;
            }
            Step::StartRun(run) => applied.run = Some(runs::start_run(&SqliteTx(conn), run)?),
            Step::FinishRun(id, run) => {
                runs::finish_run(&SqliteTx(conn), *id, run)?;
                runs::release_targets(&SqliteTx(conn), *id)?;
            }
        }
    }
    Ok((applied, queued))
}

fn set_status(
    conn: &Connection,
    incident: &str,
    status: IncidentStatus,
    at: &str,
    ms: i64,
) -> Result<(), StoreError> {
    if status == IncidentStatus::Resolved {
        conn.prepare_cached(
            "UPDATE incidents SET status = 'resolved', resolved_at = ?2, resolved_ms = ?3,
                 updated_at = ?2
             WHERE id = ?1",
        )?
        .execute(params![incident, at, ms])?;
    } else {
        conn.prepare_cached("UPDATE incidents SET status = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![incident, status.as_str(), at])?;
    }
    Ok(())
}

/// Cancels the incident's queued and waiting jobs, each with its timeline entry.
fn cancel_pending(
    conn: &Connection,
    incident: &str,
    (at, ms): (&str, i64),
) -> Result<(), StoreError> {
    let cancelled: Vec<(i64, String)> = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'cancelled', updated_at = ?2
             WHERE incident_id = ?1 AND state IN ('queued', 'awaiting_approval')
             RETURNING id, runbook",
        )?
        .query_map(params![incident, at], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, runbook) in cancelled {
        run(
            conn,
            (at, ms),
            incident,
            Some((id, &runbook)),
            &cancelled_by_resolution(),
        )?;
    }
    Ok(())
}

/// Marks an incident escalated to a human, with the reason on its timeline and a notice.
pub(super) fn escalate(
    conn: &Connection,
    id: &str,
    at: &str,
    reason: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE incidents SET escalated = 1, updated_at = ?2 WHERE id = ?1")?
        .execute(params![id, at])?;
    event(conn, id, at, EventKind::Escalated, None, reason, None)?;
    outbox::record(
        conn,
        id,
        NoticeKind::Escalated,
        None,
        &outbox::Said::message(reason),
    )
}

/// Appends a timeline event.
pub(super) fn event(
    conn: &Connection,
    incident: &str,
    at: &str,
    kind: EventKind,
    runbook: Option<&str>,
    message: &str,
    detail: Option<&Value>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (incident_id, at, kind, runbook, message, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        incident,
        at,
        kind.as_str(),
        runbook,
        message,
        detail.map(Value::to_string)
    ])?;
    Ok(())
}

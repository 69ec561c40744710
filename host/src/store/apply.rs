//! Applying the lifecycle's transitions: the facts they ask for, and their steps, in the
//! caller's transaction.

use serde_json::Value;

use super::tx::Tx;
use super::{StoreError, jobs, now, outbox, replicas, runs};
use crate::lifecycle::{
    Applied, EventKind, Facts, IncidentStatus, NoticeKind, Step, Transition,
    cancelled_by_resolution,
};

/// The facts a transition asks for, read in the transaction that applies it.
struct Sql<'a> {
    tx: &'a dyn Tx,
    incident: &'a str,
}

impl Facts for Sql<'_> {
    type Error = StoreError;

    fn status(&mut self) -> Result<IncidentStatus, StoreError> {
        let status: Option<String> = self.tx.query_opt(
            "SELECT status FROM incidents WHERE id = ?1",
            &[&self.incident],
            |row| row.get(0),
        )?;
        // An incident deleted by retention meanwhile is over, as a resolved one is.
        let Some(status) = status else {
            return Ok(IncidentStatus::Resolved);
        };
        IncidentStatus::parse(&status)
            .ok_or_else(|| StoreError::failed(format!("unknown incident status {status:?}")))
    }

    fn paused(&mut self) -> Result<bool, StoreError> {
        jobs::paused(self.tx)
    }

    fn take_budget(&mut self, runbook: &str, count: u32, per_ms: i64) -> Result<bool, StoreError> {
        jobs::take_budget(self.tx, runbook, count, per_ms)
    }

    fn another_applies(&mut self, job: i64) -> Result<bool, StoreError> {
        let (live, matched): (i64, i64) = self.tx.query_one(
            "SELECT
                 (SELECT count(*) FROM jobs WHERE incident_id = ?1 AND id != ?2
                    AND state IN ('queued', 'running', 'awaiting_approval')),
                 (SELECT count(*) FROM runs WHERE incident_id = ?1
                    AND outcome != 'not-matched')",
            &[&self.incident, &job],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(live > 0 || matched > 0)
    }
}

/// Applies `transition`; the second value says whether it queued work.
/// A transition of a job applies only while `me` holds the job (see [`replicas::holds`]).
pub(super) fn apply(
    tx: &dyn Tx,
    transition: &Transition,
    me: &str,
) -> Result<(Applied, bool), StoreError> {
    if let Some(job) = transition.job()
        && !replicas::holds(tx, job.id, me)?
    {
        return Err(StoreError::Lost {
            job: job.id,
            replica: me.to_owned(),
        });
    }
    let incident = transition.incident();
    let (steps, proceed) = transition.steps(&mut Sql { tx, incident })?;
    let job = transition.job().map(|j| (j.id, j.runbook.as_str()));
    let (at, ms) = now();
    let (mut applied, queued) = run(tx, (&at, ms), incident, job, &steps)?;
    applied.proceed = proceed;
    Ok((applied, queued))
}

/// Takes `steps` for `incident` (and `job`: its id and runbook) at time `(at, ms)`, the one
/// time of the whole change. The second value says whether work was queued.
pub(super) fn run(
    tx: &dyn Tx,
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
                jobs::set_state(tx, job_id()?, *state)?;
                // A job that ends may be what another of its incident's jobs waits for.
                queued = true;
            }
            Step::AwaitApproval {
                diagnosis,
                expires_ms,
            } => jobs::await_approval(tx, job_id()?, diagnosis, *expires_ms)?,
            Step::HoldPlan { expires_ms } => jobs::hold(tx, job_id()?, *expires_ms)?,
            Step::QueueVerify { after_ms } => {
                jobs::queue_verify(tx, job_id()?, *after_ms)?;
                queued = true;
            }
            Step::QueueRemediation { diagnosis } => {
                jobs::queue_remediation(tx, job_id()?, diagnosis)?;
                queued = true;
            }
            Step::Status(status) => set_status(tx, incident, *status, at, ms)?,
            Step::CancelPendingJobs => cancel_pending(tx, incident, (at, ms))?,
            Step::Rediagnose(by) => {
                jobs::rediagnose(tx, incident, job_id()?, by, (at, ms))?;
                queued = true;
            }
            Step::MarkRemediated => {
                tx.send(
                    "UPDATE incidents SET remediated = 1 WHERE id = ?1",
                    &[&incident],
                )?;
            }
            Step::Event {
                kind,
                runbook: about_runbook,
                message,
                detail,
            } => {
                let runbook = runbook.filter(|_| *about_runbook);
                event(tx, incident, at, *kind, runbook, message, detail.as_ref())?;
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
                outbox::record(tx, incident, *kind, runbook, &said)?;
            }
            Step::Escalate(reason) => {
                escalate(tx, incident, at, reason)?;
                applied.escalations += 1;
            }
            Step::RecordRun(run) => {
                runs::record_run(tx, run)?;
            }
            Step::StartRun(run) => applied.run = Some(runs::start_run(tx, run)?),
            Step::FinishRun(id, run) => {
                runs::finish_run(tx, *id, run)?;
                runs::release_targets(tx, *id)?;
            }
        }
    }
    Ok((applied, queued))
}

fn set_status(
    tx: &dyn Tx,
    incident: &str,
    status: IncidentStatus,
    at: &str,
    ms: i64,
) -> Result<(), StoreError> {
    if status == IncidentStatus::Resolved {
        tx.send(
            "UPDATE incidents SET status = 'resolved', resolved_at = ?2, resolved_ms = ?3,
                 updated_at = ?2
             WHERE id = ?1",
            &[&incident, &at, &ms],
        )?;
    } else {
        tx.send(
            "UPDATE incidents SET status = ?2, updated_at = ?3 WHERE id = ?1",
            &[&incident, &status.as_str(), &at],
        )?;
    }
    Ok(())
}

/// Cancels the incident's queued and waiting jobs, each with its timeline entry.
fn cancel_pending(tx: &dyn Tx, incident: &str, (at, ms): (&str, i64)) -> Result<(), StoreError> {
    let cancelled: Vec<(i64, String)> = tx.query_vec(
        "UPDATE jobs SET state = 'cancelled', updated_at = ?2
         WHERE incident_id = ?1 AND state IN ('queued', 'awaiting_approval')
         RETURNING id, runbook",
        &[&incident, &at],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    for (id, runbook) in cancelled {
        run(
            tx,
            (at, ms),
            incident,
            Some((id, &runbook)),
            &cancelled_by_resolution(),
        )?;
    }
    Ok(())
}

/// Marks an incident escalated to a human, with the reason on its timeline and a notice.
pub(super) fn escalate(tx: &dyn Tx, id: &str, at: &str, reason: &str) -> Result<(), StoreError> {
    tx.send(
        "UPDATE incidents SET escalated = 1, updated_at = ?2 WHERE id = ?1",
        &[&id, &at],
    )?;
    event(tx, id, at, EventKind::Escalated, None, reason, None)?;
    outbox::record(
        tx,
        id,
        NoticeKind::Escalated,
        None,
        &outbox::Said::message(reason),
    )
}

/// Appends a timeline event.
pub(super) fn event(
    tx: &dyn Tx,
    incident: &str,
    at: &str,
    kind: EventKind,
    runbook: Option<&str>,
    message: &str,
    detail: Option<&Value>,
) -> Result<(), StoreError> {
    tx.send(
        "INSERT INTO events (incident_id, at, kind, runbook, message, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            &incident,
            &at,
            &kind.as_str(),
            &runbook,
            &message,
            &detail.map(Value::to_string),
        ],
    )?;
    Ok(())
}

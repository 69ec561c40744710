//! Run records and the call journal: a run recorded as started before it runs, each
//! capability call journaled as it is made (a write with its target's lease and its place in
//! the global write budget), the run completed when it ends.

use super::tx::Tx;
use super::{StoreError, now};
use crate::capabilities::{CallRecord, Target};
use crate::lifecycle::{RunOutcome, RunRecord};

/// Records that a run started (outcome `running`) and returns its id: calls can then be
/// journaled against it as they happen, and a crash leaves a run that says so.
pub(super) fn start_run(tx: &dyn Tx, run: &RunRecord) -> Result<i64, StoreError> {
    insert_run(tx, run, RunOutcome::Running)
}

/// Adds one capability call to a run; returns its id.
pub(super) fn journal_call(
    tx: &dyn Tx,
    run: i64,
    incident: &str,
    call: &CallRecord,
) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO calls (run_id, incident_id, decision, record) VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
        &[
            &run,
            &incident,
            &call.decision.to_string(),
            &serde_json::to_string(call)?,
        ],
        |row| row.get(0),
    )
}

/// A write about to run, as the journal records it before it runs.
#[derive(Debug, Clone)]
pub struct WriteClaim {
    /// The run making it.
    pub run: i64,
    /// Its incident.
    pub incident: String,
    /// Its runbook.
    pub runbook: String,
    /// The call, as started.
    pub call: CallRecord,
    /// What it changes.
    pub target: Target,
    /// The daemon's `[pipeline] max_writes`: count per window (ms), and the window as
    /// written.
    pub budget: Option<(u32, i64, String)>,
}

/// Takes the write's target for its run and a place in the global budget, and journals it;
/// the inner error says why it may not run.
pub(super) fn journal_write(
    tx: &dyn Tx,
    write: &WriteClaim,
    me: &str,
) -> Result<Result<i64, String>, StoreError> {
    // Every write is journaled before it runs, so fencing the journal fences the writes.
    if !super::replicas::holds_run(tx, write.run, me)? {
        return Ok(Err(format!(
            "this replica ({me}) no longer holds the run's job: its lease lapsed and another \
             replica took the job over"
        )));
    }
    let held: Option<(i64, String, String)> = tx.query_opt(
        "SELECT run_id, incident_id, runbook FROM target_leases WHERE target = ?1",
        &[&write.target.key],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    if let Some((run, incident, runbook)) = &held
        && *run != write.run
    {
        return Ok(Err(format!(
            "{} is being changed by {incident} ({runbook})",
            write.target.shown
        )));
    }
    let (at, ms) = now();
    if let Some((count, per_ms, per)) = &write.budget {
        let used: i64 = tx.query_one(
            "SELECT count(*) FROM writes WHERE at_ms > ?1",
            &[&(ms - per_ms)],
            |row| row.get(0),
        )?;
        if used >= i64::from(*count) {
            return Ok(Err(format!(
                "the global write budget is spent: at most {count} writes per {per} \
                 ([pipeline] max_writes)"
            )));
        }
        tx.send("INSERT INTO writes (at_ms) VALUES (?1)", &[&ms])?;
    }
    if held.is_none() {
        tx.send(
            "INSERT INTO target_leases (target, shown, run_id, incident_id, runbook, taken_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                &write.target.key,
                &write.target.shown,
                &write.run,
                &write.incident,
                &write.runbook,
                &at,
            ],
        )?;
    }
    journal_call(tx, write.run, &write.incident, &write.call).map(Ok)
}

/// Replaces call `id`'s record (journaled as started) with the finished call.
pub(super) fn complete_call(tx: &dyn Tx, id: i64, call: &CallRecord) -> Result<(), StoreError> {
    tx.send(
        "UPDATE calls SET decision = ?2, record = ?3 WHERE id = ?1",
        &[
            &id,
            &call.decision.to_string(),
            &serde_json::to_string(call)?,
        ],
    )?;
    Ok(())
}

/// Completes a started run (its calls were journaled).
pub(super) fn finish_run(tx: &dyn Tx, id: i64, run: &RunRecord) -> Result<(), StoreError> {
    tx.send(
        "UPDATE runs SET duration_ms = ?2, outcome = ?3, result = ?4, error = ?5, output = ?6
         WHERE id = ?1",
        &[
            &id,
            &run.duration_ms,
            &run.outcome.as_str(),
            &run.result,
            &run.error,
            &run.output,
        ],
    )?;
    Ok(())
}

/// Stores a run and its capability calls; returns the run id.
pub(super) fn record_run(tx: &dyn Tx, run: &RunRecord) -> Result<i64, StoreError> {
    let id = insert_run(tx, run, run.outcome)?;
    for call in &run.calls {
        journal_call(tx, id, &run.incident, call)?;
    }
    Ok(id)
}

fn insert_run(tx: &dyn Tx, run: &RunRecord, outcome: RunOutcome) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO runs (job_id, incident_id, runbook, digest, phase, mode, dry_run,
             started_at, duration_ms, outcome, result, error, output)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         RETURNING id",
        &[
            &run.job,
            &run.incident,
            &run.runbook,
            &run.digest,
            &run.phase.as_str(),
            &run.mode.to_string(),
            &run.dry_run,
            &run.started_at,
            &run.duration_ms,
            &outcome.as_str(),
            &run.result,
            &run.error,
            &run.output,
        ],
        |row| row.get(0),
    )
}

/// Lets go of every target run `run` held.
pub(super) fn release_targets(tx: &dyn Tx, run: i64) -> Result<(), StoreError> {
    tx.send("DELETE FROM target_leases WHERE run_id = ?1", &[&run])?;
    Ok(())
}

/// One run, as the console's runbook page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentRun {
    /// The runbook.
    pub runbook: String,
    /// The incident.
    pub incident: String,
    /// `diagnose`, `remediate` or `verify`.
    pub phase: String,
    /// How it ended.
    pub outcome: String,
    /// When it started.
    pub started_at: String,
}

/// The newest `limit` runs of every runbook, newest first.
pub(super) fn recent(tx: &dyn Tx, limit: u32) -> Result<Vec<RecentRun>, StoreError> {
    tx.query_vec(
        "SELECT runbook, incident_id, phase, outcome, started_at FROM runs
         ORDER BY id DESC LIMIT ?1",
        &[&limit],
        |row| {
            Ok(RecentRun {
                runbook: row.get(0)?,
                incident: row.get(1)?,
                phase: row.get(2)?,
                outcome: row.get(3)?,
                started_at: row.get(4)?,
            })
        },
    )
}

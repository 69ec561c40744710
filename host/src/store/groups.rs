//! Grouped incidents (`[incidents] group_by`): one incident per group of alerts, each alert
//! with its own state and its own runbook jobs. A joining alert is a timeline entry and a
//! notice on the incident, not a new incident; the incident resolves with its last firing
//! alert.

use super::StoreError;
use super::apply::{escalate, run};
use super::incidents::{
    Arrival, Effect, NO_RUNBOOK, announce, fire as fire_incident, incident_event, is_at_or_after,
    is_earlier, open_incident,
};
use super::jobs::enqueue;
use super::tx::Tx;
use crate::incident::severity_name;
use crate::lifecycle::{EventKind, NoticeKind, cancelled_by_resolution, resolution};

/// The alert as the identity of its group's incident: the group's key in place of the
/// fingerprint, and the incident id derived from it.
fn as_group(arrival: &Arrival, key: &str) -> Arrival {
    let mut grouped = arrival.clone();
    let alert = &mut grouped.incident;
    alert.fingerprint = key.to_owned();
    alert.previous_fingerprint = None;
    alert.id = crate::incident::episode_id(&alert.source, key, alert.starts_at.as_deref());
    grouped
}

/// Records `arrival` as one of `incident`'s alerts, now `status`.
fn upsert(
    tx: &dyn Tx,
    incident: &str,
    arrival: &Arrival,
    status: &str,
    at: &str,
) -> Result<(), StoreError> {
    let alert = &arrival.incident;
    tx.send(
        "INSERT INTO incident_alerts (incident_id, fingerprint, status, title, severity, labels,
             annotations, alert_json, starts_at, ends_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
         ON CONFLICT (incident_id, fingerprint) DO UPDATE SET
             status = excluded.status, title = excluded.title, severity = excluded.severity,
             labels = excluded.labels, annotations = excluded.annotations,
             alert_json = excluded.alert_json, starts_at = excluded.starts_at,
             ends_at = excluded.ends_at, fired = incident_alerts.fired + 1,
             updated_at = excluded.updated_at",
        &[
            &incident,
            &alert.fingerprint,
            &status,
            &alert.title,
            &severity_name(alert.severity),
            &arrival.labels_json,
            &arrival.annotations_json,
            &alert.alert_json,
            &alert.starts_at,
            &alert.ends_at,
            &at,
        ],
    )?;
    Ok(())
}

/// The alert's state in the incident, and when it started: `None` when it is not one of
/// its alerts.
fn member(
    tx: &dyn Tx,
    incident: &str,
    fingerprint: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    tx.query_opt(
        "SELECT status, starts_at FROM incident_alerts
         WHERE incident_id = ?1 AND fingerprint = ?2",
        &[&incident, &fingerprint],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// A delivery about an episode of an alert that is over: a timeline entry, nothing else.
fn stale(
    tx: &dyn Tx,
    (at, ms): (&str, i64),
    id: String,
    why: String,
) -> Result<Effect, StoreError> {
    run(
        tx,
        (at, ms),
        &id,
        None,
        &[incident_event(EventKind::Stale, why)],
    )?;
    Ok(Effect::Stale(id))
}

fn firing(tx: &dyn Tx, incident: &str) -> Result<i64, StoreError> {
    tx.query_one(
        "SELECT count(*) FROM incident_alerts WHERE incident_id = ?1 AND status = 'firing'",
        &[&incident],
        |row| row.get(0),
    )
}

/// A firing alert of group `key`: a re-send, another alert joining the group's open
/// incident, or the first alert of a new (or reopened) one.
pub(super) fn fire(
    tx: &dyn Tx,
    arrival: &Arrival,
    key: &str,
    (at, ms): (&str, i64),
    reopen_window_ms: i64,
) -> Result<Effect, StoreError> {
    let alert = &arrival.incident;
    let Some(open) = open_incident(tx, &alert.source, key)? else {
        let effect = fire_incident(
            tx,
            &as_group(arrival, key),
            (at, ms),
            reopen_window_ms,
            &alert.fingerprint,
        )?;
        if let Effect::Created(id) | Effect::Reopened(id) = &effect {
            upsert(tx, id, arrival, "firing", at)?;
        }
        return Ok(effect);
    };
    let id = open.id;
    let known = member(tx, &id, &alert.fingerprint)?;
    // A late re-send of an alert that already resolved (a retry, an HA peer): the same
    // episode of it, so it stays resolved. Only a later start fires it again.
    if let Some((status, started)) = &known
        && status == "resolved"
        && is_at_or_after(started.as_deref(), alert.starts_at.as_deref())
    {
        let why = format!(
            "a firing delivery for {} arrived after it resolved; ignored",
            alert.title
        );
        return stale(tx, (at, ms), id, why);
    }
    upsert(tx, &id, arrival, "firing", at)?;
    tx.send(
        "UPDATE incidents SET fired = fired + 1, updated_at = ?2 WHERE id = ?1",
        &[&id, &at],
    )?;
    // The group's notifications repeat every alert still firing: nothing new.
    if known.is_some_and(|(status, _)| status == "firing") {
        return Ok(Effect::Refired(id));
    }
    let count = firing(tx, &id)?;
    let message = format!("{} joined ({count} alerts firing)", alert.title);
    announce(
        tx,
        (at, ms),
        &id,
        (EventKind::AlertJoined, NoticeKind::AlertJoined),
        message,
    )?;
    for runbook in &arrival.runbooks {
        enqueue(tx, &id, &alert.fingerprint, runbook, (at, ms))?;
    }
    if arrival.runbooks.is_empty() {
        let escalated: bool = tx.query_one(
            "SELECT escalated FROM incidents WHERE id = ?1",
            &[&id],
            |row| row.get(0),
        )?;
        if !escalated {
            escalate(tx, &id, at, NO_RUNBOOK)?;
        }
    }
    Ok(Effect::Joined(id))
}

/// A resolved alert of group `key`: its incident resolves with its last firing alert.
pub(super) fn resolve(
    tx: &dyn Tx,
    arrival: &Arrival,
    key: &str,
    (at, ms): (&str, i64),
) -> Result<Effect, StoreError> {
    let alert = &arrival.incident;
    let Some(open) = open_incident(tx, &alert.source, key)? else {
        return Ok(Effect::Unknown);
    };
    let id = open.id;
    if let Some((_, started)) = member(tx, &id, &alert.fingerprint)?
        && is_earlier(alert.starts_at.as_deref(), started.as_deref())
    {
        let why = format!(
            "a resolved delivery for an earlier episode of {} arrived; it stays firing",
            alert.title
        );
        return stale(tx, (at, ms), id, why);
    }
    upsert(tx, &id, arrival, "resolved", at)?;
    // Its work not yet started is moot; the group's other alerts keep theirs.
    let cancelled: Vec<(i64, String)> = tx.query_vec(
        "UPDATE jobs SET state = 'cancelled', updated_at = ?3
         WHERE incident_id = ?1 AND alert = ?2 AND state IN ('queued', 'awaiting_approval')
         RETURNING id, runbook",
        &[&id, &alert.fingerprint, &at],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    for (job, runbook) in cancelled {
        run(
            tx,
            (at, ms),
            &id,
            Some((job, &runbook)),
            &cancelled_by_resolution(),
        )?;
    }
    let count = firing(tx, &id)?;
    if count > 0 {
        run(
            tx,
            (at, ms),
            &id,
            None,
            &[incident_event(
                EventKind::AlertResolved,
                format!("{} resolved ({count} alerts still firing)", alert.title),
            )],
        )?;
        return Ok(Effect::AlertResolved(id));
    }
    run(
        tx,
        (at, ms),
        &id,
        None,
        &resolution("the group's last firing alert resolved"),
    )?;
    tx.send(
        "UPDATE incidents SET ended_at = ?2 WHERE id = ?1",
        &[&id, &alert.ends_at],
    )?;
    Ok(Effect::Resolved(id))
}

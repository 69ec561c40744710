//! Ingestion: a delivery's alerts become incident changes, in the same transaction as the
//! delivery itself.
//!
//! The identity of an alert is `(source, fingerprint)`; an episode adds `startsAt`. At most
//! one incident per identity is open (a partial unique index says so), which is what makes
//! re-sends, retries and HA duplicates collapse into one incident.

use serde::Serialize;
use sha2::Digest as _;

use super::apply::{escalate, event, run};
use super::tx::Tx;
use super::{StoreError, now};
use crate::incident::Incident;
use crate::incident::severity_name;
use crate::lifecycle::{EventKind, NoticeKind, Step, resolution};

/// One alert of a delivery, ready to store.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The alert as an incident (id derived from source, fingerprint and startsAt).
    pub incident: Incident,
    /// Runbooks whose policy `[match]` selector accepts the alert's labels.
    pub runbooks: Vec<Selected>,
    /// The incident it belongs to when alerts are grouped (`[incidents] group_by`): the
    /// group's identity, in place of the alert's fingerprint. `None`: the alert is its own
    /// incident.
    pub group: Option<String>,
    /// The labels and annotations as stored (JSON objects), serialised before the write so
    /// the single writer thread does not have to.
    pub labels_json: String,
    /// See `labels_json`.
    pub annotations_json: String,
}

impl Arrival {
    /// An alert and the runbooks selected for it. A NUL character in its text (a `\u0000`
    /// in the JSON it came in) is kept as U+FFFD: PostgreSQL's text cannot hold one, and
    /// both backends store the same.
    pub fn new(mut incident: Incident, runbooks: Vec<Selected>) -> Self {
        incident.replace_nul();
        let json = |list: &[(String, String)]| serde_json::Value::Object(pairs(list)).to_string();
        Self {
            labels_json: json(&incident.labels),
            annotations_json: json(&incident.annotations),
            incident,
            runbooks,
            group: None,
        }
    }

    /// The same alert, grouped into the incident of identity `group`.
    pub fn grouped(mut self, mut group: Option<String>) -> Self {
        group.iter_mut().for_each(crate::incident::replace_nul);
        self.group = group;
        self
    }
}

/// A runbook selected for an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its name.
    pub name: String,
    /// Its policy's `priority`: within an incident, remediations run lowest first.
    pub priority: i32,
}

/// A delivery to store: the raw body and the alerts parsed from it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The route it arrived on.
    pub source: &'static str,
    /// The body as received.
    pub body: Vec<u8>,
    /// Alerts the sender said it dropped (`truncatedAlerts`).
    pub truncated: u64,
    /// Its alerts, in order.
    pub arrivals: Vec<Arrival>,
    /// How long after resolution a firing alert reopens its incident (ms).
    pub reopen_window_ms: i64,
}

/// What one alert did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "incident", rename_all = "kebab-case")]
pub enum Effect {
    /// A new incident.
    Created(String),
    /// A firing re-send for an open incident.
    #[serde(rename = "re-fired")]
    Refired(String),
    /// Another alert joined the open incident of its group.
    Joined(String),
    /// One alert of a grouped incident resolved; others still fire.
    #[serde(rename = "alert-resolved")]
    AlertResolved(String),
    /// A recently resolved incident fired again and was reopened.
    Reopened(String),
    /// The alert resolved its incident.
    Resolved(String),
    /// A delivery about an episode that is already over; recorded, nothing changed.
    Stale(String),
    /// A resolved alert for which no incident is open.
    Unknown,
}

impl Effect {
    /// The incident affected, if any.
    pub fn incident(&self) -> Option<&str> {
        match self {
            Self::Created(id)
            | Self::Refired(id)
            | Self::Joined(id)
            | Self::AlertResolved(id)
            | Self::Reopened(id)
            | Self::Resolved(id)
            | Self::Stale(id) => Some(id),
            Self::Unknown => None,
        }
    }
}

/// A delivery that was stored.
#[derive(Debug, Clone, Serialize)]
pub struct Ingested {
    /// The inbox row.
    pub delivery: i64,
    /// One effect per alert, in order.
    pub effects: Vec<Effect>,
    /// Incidents handed to on-call at once (no runbook applies).
    #[serde(skip)]
    pub escalations: u32,
}

/// Stores a delivery as a dead letter: kept verbatim with the reason, nothing else done.
pub(super) fn dead_letter(
    tx: &dyn Tx,
    source: &str,
    body: &[u8],
    error: &str,
) -> Result<i64, StoreError> {
    let (at, ms) = now();
    tx.query_one(
        "INSERT INTO inbox (source, received_at, received_ms, body, status, error)
         VALUES (?1, ?2, ?3, ?4, 'dead', ?5)
         RETURNING id",
        &[&source, &at, &ms, &body, &error],
        |row| row.get(0),
    )
}

/// Stores a delivery and applies its alerts.
pub(super) fn ingest(tx: &dyn Tx, delivery: &Delivery) -> Result<Ingested, StoreError> {
    let Delivery {
        source,
        body,
        truncated,
        arrivals,
        reopen_window_ms,
    } = delivery;
    let (truncated, reopen_window_ms) = (*truncated, *reopen_window_ms);
    let (at, ms) = now();
    let delivery: i64 = tx.query_one(
        "INSERT INTO inbox (source, received_at, received_ms, body, status, alerts, truncated)
         VALUES (?1, ?2, ?3, ?4, 'accepted', ?5, ?6)
         RETURNING id",
        &[
            &source,
            &at,
            &ms,
            &body,
            &(arrivals.len() as i64),
            &(truncated as i64),
        ],
        |row| row.get(0),
    )?;
    // Each identity's open incident is read, then written: concurrent deliveries of one alert
    // (Alertmanager HA sends it to every replica at once) take its lock first, so the second
    // sees the first's incident. Sorted, so two deliveries never wait on each other in turn.
    let mut identities: Vec<String> = arrivals.iter().map(identity).collect();
    identities.sort_unstable();
    identities.dedup();
    for identity in &identities {
        tx.lock(identity)?;
    }
    let effects = arrivals
        .iter()
        .map(|arrival| arrive(tx, arrival, (&at, ms), reopen_window_ms))
        .collect::<Result<Vec<_>, _>>()?;
    note_truncated(tx, &effects, truncated, &at)?;
    Ok(Ingested {
        delivery,
        escalations: escalations(arrivals, &effects),
        effects,
    })
}

/// The lock key of an arrival's identity: its group, or its own fingerprint.
pub(super) fn identity(arrival: &Arrival) -> String {
    let key = arrival
        .group
        .as_deref()
        .unwrap_or(&arrival.incident.fingerprint);
    format!("incident:{}:{key}", arrival.incident.source)
}

/// Applies one alert of a delivery whose identities are locked.
pub(super) fn arrive(
    tx: &dyn Tx,
    arrival: &Arrival,
    (at, ms): (&str, i64),
    reopen_window_ms: i64,
) -> Result<Effect, StoreError> {
    let resolved = arrival.incident.status == "resolved";
    match &arrival.group {
        None if resolved => resolve_alert(tx, &arrival.incident, (at, ms)),
        None => fire(tx, arrival, (at, ms), reopen_window_ms, ""),
        Some(key) if resolved => super::groups::resolve(tx, arrival, key, (at, ms)),
        Some(key) => super::groups::fire(tx, arrival, key, (at, ms), reopen_window_ms),
    }
}

/// Incidents handed to on-call at once: created or reopened with no runbook to run.
pub(super) fn escalations(arrivals: &[Arrival], effects: &[Effect]) -> u32 {
    let escalated = arrivals.iter().zip(effects).filter(|(arrival, effect)| {
        matches!(effect, Effect::Created(_) | Effect::Reopened(_)) && arrival.runbooks.is_empty()
    });
    u32::try_from(escalated.count()).unwrap_or(u32::MAX)
}

/// Notes on the first incident a delivery touched that its sender dropped alerts.
pub(super) fn note_truncated(
    tx: &dyn Tx,
    effects: &[Effect],
    truncated: u64,
    at: &str,
) -> Result<(), StoreError> {
    if truncated > 0
        && let Some(id) = effects.iter().find_map(Effect::incident)
    {
        event(
            tx,
            id,
            at,
            EventKind::Truncated,
            None,
            &format!("the sender dropped {truncated} alerts of this group (max_alerts)"),
            None,
        )?;
    }
    Ok(())
}

/// The timeline entry of an alert sent again while its incident (which started at
/// `open_starts_at`) is open.
pub(super) fn refired_message(open_starts_at: Option<&str>, alert: &Incident) -> String {
    if open_starts_at == alert.starts_at.as_deref() {
        "the alert was sent again while the incident is open".to_owned()
    } else {
        format!(
            "the alert fired again (startsAt {}) while the incident is open",
            alert.starts_at.as_deref().unwrap_or("unknown")
        )
    }
}

/// The timeline entry and notice of a new incident.
pub(super) fn created_message(alert: &Incident) -> String {
    format!("Alert: {}", alert.title)
}

pub(super) struct OpenIncident {
    pub(super) id: String,
    starts_at: Option<String>,
}

pub(super) fn open_incident(
    tx: &dyn Tx,
    source: &str,
    fingerprint: &str,
) -> Result<Option<OpenIncident>, StoreError> {
    tx.query_opt(
        "SELECT id, starts_at FROM incidents
         WHERE source = ?1 AND fingerprint = ?2 AND status != 'resolved'",
        &[&source, &fingerprint],
        |row| {
            Ok(OpenIncident {
                id: row.get(0)?,
                starts_at: row.get(1)?,
            })
        },
    )
}

/// The open incident of `alert`'s identity; one still open under the identity an earlier
/// Quell gave it is moved to the current one.
fn open_incident_of(tx: &dyn Tx, alert: &Incident) -> Result<Option<OpenIncident>, StoreError> {
    if let Some(open) = open_incident(tx, &alert.source, &alert.fingerprint)? {
        return Ok(Some(open));
    }
    let Some(previous) = &alert.previous_fingerprint else {
        return Ok(None);
    };
    let open = open_incident(tx, &alert.source, previous)?;
    if let Some(open) = &open {
        tx.send(
            "UPDATE incidents SET fingerprint = ?2 WHERE id = ?1",
            &[&open.id, &alert.fingerprint],
        )?;
    }
    Ok(open)
}

/// A firing alert: a re-send for its open incident, or a new (or reopened) incident whose
/// runbook jobs run for `member` (the alert of a grouped incident; `""` when the incident is
/// its one alert).
pub(super) fn fire(
    tx: &dyn Tx,
    arrival: &Arrival,
    (at, ms): (&str, i64),
    reopen_window_ms: i64,
    member: &str,
) -> Result<Effect, StoreError> {
    let alert = &arrival.incident;
    if let Some(open) = open_incident_of(tx, alert)? {
        tx.send(
            "UPDATE incidents SET fired = fired + 1, updated_at = ?2 WHERE id = ?1",
            &[&open.id, &at],
        )?;
        let message = refired_message(open.starts_at.as_deref(), alert);
        event(tx, &open.id, at, EventKind::Refired, None, &message, None)?;
        return Ok(Effect::Refired(open.id));
    }
    // The identity's recently resolved incidents (under the identity an earlier Quell gave
    // it too), newest first: one lookup serves both the staleness check and reopening.
    let previous = alert
        .previous_fingerprint
        .as_ref()
        .unwrap_or(&alert.fingerprint);
    let resolved: Vec<(String, Option<String>, i64)> = tx.query_vec(
        "SELECT id, starts_at, resolved_ms FROM incidents
         WHERE source = ?1 AND fingerprint IN (?2, ?3) AND status = 'resolved'
         ORDER BY resolved_ms DESC LIMIT 20",
        &[&alert.source, &alert.fingerprint, &previous],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    // A firing delivery for an episode that already ended (a late retry, an HA peer, the
    // episode a reopen already covered): a resolved incident of this identity started at or
    // after it. Alerts without a startsAt cannot be placed, so they are never stale.
    if let Some((id, _, _)) = resolved
        .iter()
        .find(|(_, started, _)| is_at_or_after(started.as_deref(), alert.starts_at.as_deref()))
    {
        event(
            tx,
            id,
            at,
            EventKind::Stale,
            None,
            "a firing delivery for this episode arrived after it resolved; ignored",
            None,
        )?;
        return Ok(Effect::Stale(id.clone()));
    }
    let recent = resolved
        .first()
        .filter(|(_, _, resolved_ms)| *resolved_ms >= ms - reopen_window_ms)
        .map(|(id, _, _)| id.clone());
    let effect = if let Some(id) = recent.filter(|_| reopen_window_ms > 0) {
        tx.send(
            "UPDATE incidents SET status = 'open', resolved_at = NULL, resolved_ms = NULL,
                 ended_at = NULL, fingerprint = ?5,
                 fired = fired + 1, starts_at = ?2, alert_json = ?3, updated_at = ?4
             WHERE id = ?1",
            &[
                &id,
                &alert.starts_at,
                &alert.alert_json,
                &at,
                &alert.fingerprint,
            ],
        )?;
        let message = format!(
            "the alert fired again (startsAt {}) within the reopen window",
            alert.starts_at.as_deref().unwrap_or("unknown")
        );
        run(
            tx,
            (at, ms),
            &id,
            None,
            &[
                incident_event(EventKind::Reopened, message),
                incident_notice(
                    NoticeKind::Reopened,
                    "the alert fired again; incident reopened",
                ),
            ],
        )?;
        Effect::Reopened(id)
    } else {
        let id = insert(tx, arrival, at, ms)?;
        let message = created_message(alert);
        announce(
            tx,
            (at, ms),
            &id,
            (EventKind::Created, NoticeKind::Created),
            message,
        )?;
        Effect::Created(id)
    };
    let id = effect.incident().unwrap_or_default().to_owned();
    if arrival.runbooks.is_empty() {
        escalate(tx, &id, at, NO_RUNBOOK)?;
    }
    for runbook in &arrival.runbooks {
        super::jobs::enqueue(tx, &id, member, runbook, (at, ms))?;
    }
    Ok(effect)
}

/// Another id for a new incident whose own (from source, fingerprint and startsAt) is
/// taken: an alert without startsAt firing again, or a hash collision with another identity.
fn salted_id(alert: &Incident, ms: i64, salt: u32) -> String {
    let digest = sha2::Sha256::digest(format!(
        "{}\0{}\0{}\0{ms}\0{salt}",
        alert.source,
        alert.fingerprint,
        alert.starts_at.as_deref().unwrap_or("")
    ));
    format!("INC-{}", hex::encode_upper(&digest[..4]))
}

fn insert(tx: &dyn Tx, arrival: &Arrival, at: &str, ms: i64) -> Result<String, StoreError> {
    let alert = &arrival.incident;
    let mut id = alert.id.clone();
    for salt in 1..=16 {
        let inserted: Option<String> = tx.query_opt(
            "INSERT INTO incidents (id, source, fingerprint, starts_at, status, severity, title,
                 labels, annotations, alert_json, created_at, created_ms, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10)
             ON CONFLICT DO NOTHING
             RETURNING id",
            &[
                &id,
                &alert.source,
                &alert.fingerprint,
                &alert.starts_at,
                &severity_name(alert.severity),
                &alert.title,
                &arrival.labels_json,
                &arrival.annotations_json,
                &alert.alert_json,
                &at,
                &ms,
            ],
            |row| row.get(0),
        )?;
        match inserted {
            Some(_) => return Ok(id),
            // A conflict returns no row, not an error: a PostgreSQL transaction is never aborted.
            None => id = salted_id(alert, ms, salt),
        }
    }
    Err(StoreError::failed(format!(
        "no free incident id for {}",
        alert.fingerprint
    )))
}

fn resolve_alert(
    tx: &dyn Tx,
    alert: &Incident,
    (at, ms): (&str, i64),
) -> Result<Effect, StoreError> {
    let Some(open) = open_incident_of(tx, alert)? else {
        let earlier_id = alert.previous_fingerprint.as_deref().map(|previous| {
            crate::incident::episode_id(&alert.source, previous, alert.starts_at.as_deref())
        });
        let known: Option<String> = tx.query_opt(
            "SELECT id FROM incidents WHERE id IN (?1, ?2)",
            &[&alert.id, &earlier_id.as_deref().unwrap_or(&alert.id)],
            |row| row.get(0),
        )?;
        return Ok(known.map_or(Effect::Unknown, Effect::Stale));
    };
    if is_earlier(alert.starts_at.as_deref(), open.starts_at.as_deref()) {
        event(
            tx,
            &open.id,
            at,
            EventKind::Stale,
            None,
            "a resolved delivery for an earlier episode arrived; the incident stays open",
            None,
        )?;
        return Ok(Effect::Stale(open.id));
    }
    run(
        tx,
        (at, ms),
        &open.id,
        None,
        &resolution("the alert resolved"),
    )?;
    tx.send(
        "UPDATE incidents SET ended_at = ?2 WHERE id = ?1",
        &[&open.id, &alert.ends_at],
    )?;
    Ok(Effect::Resolved(open.id))
}

/// Why an alert no runbook matches goes to on-call.
pub(super) const NO_RUNBOOK: &str = "no runbook matches this alert: manual response needed";

/// An incident-level timeline entry and the notice telling the same `message`.
pub(super) fn announce(
    tx: &dyn Tx,
    (at, ms): (&str, i64),
    id: &str,
    (event, notice): (EventKind, NoticeKind),
    message: String,
) -> Result<(), StoreError> {
    run(
        tx,
        (at, ms),
        id,
        None,
        &[
            incident_event(event, message.clone()),
            incident_notice(notice, message),
        ],
    )
    .map(|_| ())
}

pub(super) fn incident_event(kind: EventKind, message: impl Into<String>) -> Step {
    Step::Event {
        kind,
        runbook: false,
        message: message.into(),
        detail: None,
    }
}

pub(super) fn incident_notice(kind: NoticeKind, message: impl Into<String>) -> Step {
    Step::Notice {
        kind,
        runbook: false,
        message: message.into(),
        findings: Vec::new(),
        plan: Vec::new(),
        commands: Vec::new(),
    }
}

fn pairs(list: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    list.iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

/// Whether RFC 3339 `a` is at or after `b` (false when either is unknown or unreadable).
pub(super) fn is_at_or_after(a: Option<&str>, b: Option<&str>) -> bool {
    let parse = |t: Option<&str>| t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    matches!((parse(a), parse(b)), (Some(a), Some(b)) if a >= b)
}

/// Whether RFC 3339 `a` is strictly before `b` (unknown times are never earlier).
pub(super) fn is_earlier(a: Option<&str>, b: Option<&str>) -> bool {
    let parse = |t: Option<&str>| t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    matches!((parse(a), parse(b)), (Some(a), Some(b)) if a < b)
}

//! Notifications through a durable outbox.
//!
//! A lifecycle change writes a [`Notice`] into the store's outbox in the same transaction as
//! the change ([`crate::store::Store::apply`]). One dispatcher per destination (Slack, PagerDuty, the outgoing
//! webhook) walks the notices in order, decides from its route whether each is for it,
//! and delivers: one incident's notices in order (a trigger before its resolve, a thread's
//! root before its replies), retries with exponential backoff and jitter, `Retry-After` on
//! 429, and after the retry budget the delivery is dead: visible in `GET
//! /api/notifications/dead` and `quell_notifications_dead`. A crash between sending and
//! marking sent sends again; receivers deduplicate (PagerDuty by `dedup_key`).

pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{NotifyConfig, Route};
use crate::lifecycle::NoticeKind;
pub use crate::lifecycle::{FindingView, IncidentView, Notice};
use crate::metrics::Metrics;
use crate::store::{DigestBatch, Due, Hub, Routing, Settlement, Store, StoreError};

/// Every notice kind, in lifecycle order.
pub const KINDS: &[NoticeKind] = NoticeKind::ALL;

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(SEVERITIES.len())
}

/// Whether `route` (with `kinds` as the destination's default events) takes `notice`.
pub fn routed(route: &Route, kinds: &[NoticeKind], notice: &Notice) -> bool {
    let kind_ok = if route.events.is_empty() {
        kinds.contains(&notice.kind)
    } else {
        route.events.iter().any(|e| notice.kind == e.as_str())
    };
    let severity_ok = rank(&notice.incident.severity) <= rank(&route.min_severity);
    let runbook_ok = route.runbooks.is_empty()
        || notice
            .runbook
            .as_ref()
            .is_none_or(|r| route.runbooks.contains(r));
    kind_ok && severity_ok && runbook_ok
}

/// How a delivery attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Not routed to this destination after all (e.g. a resolve for a never-paged incident).
    Skipped,
    /// Try again: after `Retry-After` when the receiver said so, else after the backoff.
    Retry {
        /// Why.
        error: String,
        /// The receiver's `Retry-After`.
        after: Option<Duration>,
    },
    /// The receiver said to slow down (429): nothing is wrong with the notice, so the
    /// attempt does not count against the retry budget, and the whole destination pauses
    /// for `Retry-After` (or [`THROTTLE`] when the receiver gives none) before it sends
    /// anything else.
    Throttled {
        /// What the receiver said.
        error: String,
        /// The receiver's `Retry-After`.
        after: Option<Duration>,
    },
    /// Never going to work (PagerDuty 400, Slack 4xx other than 429): dead at once.
    Permanent(String),
}

/// How long a destination pauses after a 429 that names no `Retry-After`.
pub const THROTTLE: Duration = Duration::from_secs(5);

/// The longest a destination waits for the one it [`Destination::waits_for`].
pub const HOLD: Duration = Duration::from_secs(10);

/// A destination.
pub trait Destination: Send + Sync + 'static {
    /// `slack`, `pagerduty`, `webhook`.
    fn name(&self) -> &'static str;
    /// Whether this notice is for it.
    fn accepts(&self, notice: &Notice) -> bool;
    /// Whether it takes only the first notice of this kind in an incident's episode (a
    /// pager pages once per incident, however many of its alerts escalate).
    fn once_per_episode(&self, _notice: &Notice) -> bool {
        false
    }
    /// Whether notices like this one are told together, one per `[notify] batch` interval
    /// per incident (alerts joining an incident).
    fn batches(&self, _notice: &Notice) -> bool {
        false
    }
    /// Another destination whose earlier notices of the same incident this one waits for,
    /// at most [`HOLD`] (PagerDuty waits for Slack, so the page arrives with the diagnosis
    /// already in the incident's thread).
    fn waits_for(&self) -> Option<&'static str> {
        None
    }
    /// At least this long between two sends (Slack: one message per second per channel).
    fn spacing(&self) -> Duration {
        Duration::ZERO
    }
    /// Delivers one notice.
    fn send(
        &self,
        store: &Store,
        delivery: i64,
        notice: &Notice,
    ) -> impl Future<Output = Outcome> + Send;
    /// For a new incident: how many waiting deliveries make it go to the digest instead.
    fn digest_after(&self, _notice: &Notice) -> Option<i64> {
        None
    }
    /// Tells the new incidents waiting for the digest.
    fn send_digest(
        &self,
        _store: &Store,
        _batch: &DigestBatch,
    ) -> impl Future<Output = Outcome> + Send {
        async { Outcome::Skipped }
    }
}

/// How often a destination's digest is updated at most.
pub const DIGEST_EVERY: Duration = Duration::from_secs(5);

/// How long a replica stays a destination's only sender without renewing (it renews on every
/// pass): a sender that dies is replaced this long after.
pub const LEAD: Duration = Duration::from_secs(15);

/// Starts a dispatcher per configured destination; the store's [`Hub`] tells them a notice
/// was committed (they also look every half second).
pub async fn start(
    config: &crate::config::Config,
    store: &Store,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
    set: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    let notify = &config.notify;
    let destinations: Vec<&str> = [
        notify.slack.as_ref().map(|_| "slack"),
        notify.pagerduty.as_ref().map(|_| "pagerduty"),
        notify.webhook.as_ref().map(|_| "webhook"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let client = crate::capabilities::http::operator_client(notify.timeout.0)?;
    let public_url = config.server.public_url.clone();
    store.configure_destinations(destinations).await?;
    if let Some(slack) = &notify.slack {
        let destination = slack::Slack::new(slack, client.clone())?;
        spawn(set, destination, store, notify, metrics, stop);
    }
    if let Some(pagerduty) = &notify.pagerduty {
        let destination = pagerduty::PagerDuty::new(
            pagerduty,
            client.clone(),
            public_url.clone(),
            notify.slack.is_some(),
        )?;
        spawn(set, destination, store, notify, metrics, stop);
    }
    if let Some(webhook) = &notify.webhook {
        let destination = webhook::Webhook::new(webhook, client)?;
        spawn(set, destination, store, notify, metrics, stop);
    }
    Ok(())
}

fn spawn<D: Destination>(
    set: &mut tokio::task::JoinSet<()>,
    destination: D,
    store: &Store,
    config: &NotifyConfig,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) {
    let dispatcher = Dispatcher {
        destination,
        store: store.clone(),
        max_attempts: config.max_attempts.max(1),
        backoff: config.backoff.0,
        max_backoff: config.max_backoff.0,
        batch_ms: i64::try_from(config.batch.0.as_millis()).unwrap_or(i64::MAX),
        metrics: metrics.clone(),
        hub: store.hub().clone(),
    };
    let stop = stop.clone();
    set.spawn(async move { dispatcher.run(stop).await });
}

struct Dispatcher<D> {
    destination: D,
    store: Store,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    /// `[notify] batch`, in ms.
    batch_ms: i64,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
}

impl<D: Destination> Dispatcher<D> {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.destination.name();
        info!(destination = name, "notification dispatcher started");
        let mut last_digest: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let notified = self.hub.notices().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // With several replicas one sends to each destination, so each notice goes
            // once and the destination's pacing holds; the others wait to take over.
            match self.store.lead(&format!("dispatch:{name}"), LEAD).await {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            }
            if let Err(e) = self.route().await {
                warn!(destination = name, error = %e, "cannot route notifications");
            }
            if last_digest.is_none_or(|at| at.elapsed() >= DIGEST_EVERY) {
                last_digest = Some(std::time::Instant::now());
                match self.digest().await {
                    Ok(None) => {}
                    Ok(Some(pause)) => {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                    Err(e) => warn!(destination = name, error = %e, "cannot update the digest"),
                }
            }
            match self.next().await {
                Ok(Some(due)) => {
                    let outcome = self
                        .destination
                        .send(&self.store, due.id, &due.notice)
                        .await;
                    // A 429 holds the whole destination, not only this notice: the next
                    // one would be refused too.
                    let pause = match &outcome {
                        Outcome::Throttled { after, .. } => Some(after.unwrap_or(THROTTLE)),
                        _ => None,
                    };
                    if let Err(e) = self.settle(&due, outcome).await {
                        warn!(destination = name, error = %e, "cannot record a delivery");
                    }
                    let spacing = pause.unwrap_or_else(|| self.destination.spacing());
                    if !spacing.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(spacing) => {}
                            _ = stop.changed() => {}
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => warn!(destination = name, error = %e, "cannot read the outbox"),
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Tells the new incidents waiting for the digest, if any; when it tried, how long the
    /// destination now waits (its spacing, or a 429's `Retry-After`).
    async fn digest(&self) -> Result<Option<Duration>, StoreError> {
        let name = self.destination.name();
        let Some(batch) = self.store.digest_waiting(name).await? else {
            return Ok(None);
        };
        match self.destination.send_digest(&self.store, &batch).await {
            Outcome::Sent => {
                self.store.settle_digest(name, batch.through).await?;
                self.metrics
                    .notifications
                    .get_or_create(&vec![
                        ("destination", name.to_owned()),
                        ("outcome", "digest".to_owned()),
                    ])
                    .inc_by(u64::try_from(batch.count).unwrap_or(0));
                Ok(Some(self.destination.spacing()))
            }
            Outcome::Skipped => Ok(None),
            // Tried again at the next interval; the incidents stay waiting.
            Outcome::Throttled { after, .. } => Ok(Some(after.unwrap_or(THROTTLE))),
            other => {
                warn!(destination = name, outcome = ?other, "could not update the digest");
                Ok(Some(self.destination.spacing()))
            }
        }
    }

    /// Creates this destination's delivery rows for new notices, in order.
    /// Routes every notice waiting (a burst is routed at once, so its new incidents reach
    /// the digest without waiting for the sends before them).
    async fn route(&self) -> Result<(), StoreError> {
        while self.route_some().await? {}
        Ok(())
    }

    /// Routes the next notices waiting (at most the store's page of them); whether there
    /// may be more.
    async fn route_some(&self) -> Result<bool, StoreError> {
        let name = self.destination.name();
        let pending = self.store.unrouted_notices(name).await?;
        if pending.is_empty() {
            return Ok(false);
        }
        let full = pending.len() >= crate::store::UNROUTED_PAGE;
        let routes = pending
            .into_iter()
            .map(|(id, incident, notice)| {
                let routing = match notice {
                    Some(notice) if self.destination.accepts(&notice) => {
                        if self.destination.once_per_episode(&notice) {
                            Routing::Once
                        } else if let Some(after) = self.destination.digest_after(&notice) {
                            Routing::Digest(after)
                        } else if self.destination.batches(&notice) {
                            Routing::Batch(self.batch_ms)
                        } else {
                            Routing::Deliver
                        }
                    }
                    _ => Routing::Skip,
                };
                (id, incident, routing)
            })
            .collect();
        self.store.route_notices(name, routes).await?;
        Ok(full)
    }

    /// The oldest due delivery whose incident has nothing earlier still pending here (nor,
    /// for up to [`HOLD`], at the destination this one waits for).
    async fn next(&self) -> Result<Option<Due>, StoreError> {
        self.store
            .next_delivery(self.destination.name(), self.destination.waits_for(), HOLD)
            .await
    }

    async fn settle(&self, due: &Due, outcome: Outcome) -> Result<(), StoreError> {
        let name = self.destination.name();
        // (stored state, metric outcome, attempts counted, error, retry in)
        let counted = due.attempts + 1;
        let (state, outcome, attempts, error, delay) = match outcome {
            Outcome::Sent => ("sent", "sent", counted, None, Duration::ZERO),
            Outcome::Skipped => ("skipped", "skipped", counted, None, Duration::ZERO),
            Outcome::Permanent(error) => ("dead", "dead", counted, Some(error), Duration::ZERO),
            // Throttling is the receiver pacing us, not the notice failing: not counted.
            Outcome::Throttled { error, after } => (
                "pending",
                "throttled",
                due.attempts,
                Some(error),
                after.unwrap_or(THROTTLE),
            ),
            Outcome::Retry { error, .. } if counted >= self.max_attempts => (
                "dead",
                "dead",
                counted,
                Some(format!("{error} (gave up after {counted} attempts)")),
                Duration::ZERO,
            ),
            Outcome::Retry { error, after } => (
                "pending",
                "retry",
                counted,
                Some(error),
                after.unwrap_or_else(|| self.backoff_for(counted)),
            ),
        };
        self.metrics
            .notifications
            .get_or_create(&vec![
                ("destination", name.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        match (&error, state) {
            (Some(error), "dead") => {
                warn!(destination = name, incident = %due.notice.incident.id, kind = %due.notice.kind, %error, "notification dead-lettered")
            }
            (Some(error), _) => {
                info!(destination = name, incident = %due.notice.incident.id, kind = %due.notice.kind, %error, retry_in = ?delay, "notification will be retried")
            }
            _ => {}
        }
        self.store
            .settle_delivery(Settlement {
                id: due.id,
                state,
                attempts,
                error,
                retry_in: delay,
            })
            .await
    }

    /// Exponential backoff with ±50% jitter, capped.
    fn backoff_for(&self, attempts: u32) -> Duration {
        let exponential = self
            .backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
            .min(self.max_backoff);
        let jitter = rand::random_range(0.5..1.5);
        exponential.mul_f64(jitter).min(self.max_backoff)
    }
}

/// Classifies an HTTP answer the common way: 2xx sent, 429 throttled, 5xx retried (with
/// `Retry-After`), other 4xx permanent.
pub fn classify(status: reqwest::StatusCode, retry_after: Option<Duration>, body: &str) -> Outcome {
    let snippet: String = body.chars().take(300).collect();
    if status.is_success() {
        Outcome::Sent
    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Outcome::Throttled {
            error: format!("HTTP {status}: {snippet}"),
            after: retry_after,
        }
    } else if status.is_server_error() {
        Outcome::Retry {
            error: format!("HTTP {status}: {snippet}"),
            after: retry_after,
        }
    } else {
        Outcome::Permanent(format!("HTTP {status}: {snippet}"))
    }
}

/// The `Retry-After` of a response, in seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// Why a request did not get an answer, as a retry. The URL is left out: a Slack incoming
/// webhook's URL is its credential, and this text is logged and stored.
pub fn transport(error: reqwest::Error) -> Outcome {
    Outcome::Retry {
        error: format!("no answer: {}", error.without_url()),
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn notice(kind: &str, severity: &str, runbook: Option<&str>) -> Notice {
        Notice {
            kind: NoticeKind::parse(kind).unwrap(),
            at: String::new(),
            incident: IncidentView {
                id: "INC-1".to_owned(),
                title: String::new(),
                severity: severity.to_owned(),
                status: "open".to_owned(),
                source: "alertmanager".to_owned(),
                created_at: String::new(),
                escalated: false,
                labels: Value::Null,
            },
            runbook: runbook.map(str::to_owned),
            message: String::new(),
            findings: Vec::new(),
            plan: Vec::new(),
            commands: Vec::new(),
        }
    }

    #[test]
    fn routes_filter_by_kind_severity_and_runbook() {
        let route = Route {
            events: vec!["escalated".to_owned(), "diagnosed".to_owned()],
            min_severity: "high".to_owned(),
            runbooks: vec!["disk-space".to_owned()],
        };
        let kinds = [
            NoticeKind::Created,
            NoticeKind::Escalated,
            NoticeKind::Diagnosed,
        ];
        assert!(routed(
            &route,
            &kinds,
            &notice("escalated", "critical", None)
        ));
        assert!(routed(
            &route,
            &kinds,
            &notice("diagnosed", "high", Some("disk-space"))
        ));
        assert!(!routed(
            &route,
            &kinds,
            &notice("diagnosed", "high", Some("k8s-context"))
        ));
        assert!(!routed(
            &route,
            &kinds,
            &notice("escalated", "medium", None)
        ));
        assert!(!routed(
            &route,
            &kinds,
            &notice("created", "critical", None)
        ));
        // No events listed: the destination's own kinds.
        let default = Route::default();
        assert!(routed(&default, &kinds, &notice("created", "info", None)));
        assert!(!routed(&default, &kinds, &notice("plan", "info", None)));
    }
}

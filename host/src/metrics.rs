//! `/metrics`: Prometheus text exposition through the official client library.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::lifecycle::IncidentStatus;
use crate::store::Gauges;

type Labels = Vec<(&'static str, String)>;

fn latency() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn run_latency() -> Histogram {
    // 1 ms … ~9 min
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Deliveries by source and outcome (`accepted`, `dead_letter`, `malformed`,
    /// `unauthorized`, `too_large`, `unavailable`).
    pub deliveries: Family<Labels, Counter>,
    /// Alerts by source and effect (`created`, `re-fired` = deduplicated, `reopened`,
    /// `resolved`, `stale`, `unknown`).
    pub alerts: Family<Labels, Counter>,
    /// Runbook export calls by runbook, phase and outcome.
    pub runs: Family<Labels, Counter>,
    /// Capability calls by runbook, capability and decision.
    pub calls: Family<Labels, Counter>,
    /// Escalations to a human.
    pub escalations: Counter,
    /// Requests answered 503 because `max_concurrent_requests` were in flight.
    pub shed: Counter,
    /// Notification delivery attempts by destination and outcome (`sent`, `retry`, `dead`,
    /// `skipped`).
    pub notifications: Family<Labels, Counter>,
    /// Time from request to durable acknowledgement, by source.
    pub ack_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Runbook export call duration, by phase.
    pub run_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    incidents: Family<Labels, Gauge>,
    jobs: Family<Labels, Gauge>,
    dead_letters: Gauge,
    dead_notifications: Gauge,
    pending_notifications: Gauge,
    write_queue: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("quell");
        let metrics = Self {
            deliveries: Family::default(),
            alerts: Family::default(),
            runs: Family::default(),
            calls: Family::default(),
            escalations: Counter::default(),
            shed: Counter::default(),
            notifications: Family::default(),
            ack_seconds: Family::new_with_constructor(latency as fn() -> Histogram),
            run_seconds: Family::new_with_constructor(run_latency as fn() -> Histogram),
            incidents: Family::default(),
            jobs: Family::default(),
            dead_letters: Gauge::default(),
            dead_notifications: Gauge::default(),
            pending_notifications: Gauge::default(),
            write_queue: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "deliveries",
            "Webhook deliveries by source and outcome",
            metrics.deliveries.clone(),
        );
        registry.register(
            "alerts",
            "Alerts by source and effect (re-fired = deduplicated into an open incident)",
            metrics.alerts.clone(),
        );
        registry.register(
            "runs",
            "Runbook export calls by runbook, phase and outcome",
            metrics.runs.clone(),
        );
        registry.register(
            "capability_calls",
            "Capability calls by runbook, capability and decision",
            metrics.calls.clone(),
        );
        registry.register(
            "escalations",
            "Incidents escalated to a human",
            metrics.escalations.clone(),
        );
        registry.register(
            "requests_shed",
            "Requests answered 503 because [server] max_concurrent_requests were in flight",
            metrics.shed.clone(),
        );
        registry.register(
            "ack_seconds",
            "Time from request to durable acknowledgement",
            metrics.ack_seconds.clone(),
        );
        registry.register(
            "run_seconds",
            "Runbook export call duration",
            metrics.run_seconds.clone(),
        );
        registry.register(
            "incidents",
            "Incidents by status",
            metrics.incidents.clone(),
        );
        registry.register(
            "jobs",
            "Live pipeline jobs by state (queued = queue depth)",
            metrics.jobs.clone(),
        );
        registry.register(
            "dead_letters",
            "Deliveries kept as dead letters",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "notifications",
            "Notification delivery attempts by destination and outcome",
            metrics.notifications.clone(),
        );
        registry.register(
            "notifications_dead",
            "Notifications that exhausted their retries (GET /api/notifications/dead)",
            metrics.dead_notifications.clone(),
        );
        registry.register(
            "notifications_pending",
            "Notifications waiting to be delivered",
            metrics.pending_notifications.clone(),
        );
        registry.register(
            "store_write_queue",
            "Writes waiting for the database writer",
            metrics.write_queue.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The exposition text, with the database gauges as of now.
    pub fn render(&self, gauges: &Gauges, write_queue: usize) -> String {
        for status in IncidentStatus::ALL.iter().map(|s| s.as_str()) {
            let count = gauges
                .incidents
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            self.incidents
                .get_or_create(&vec![("status", status.to_owned())])
                .set(count);
        }
        for state in ["queued", "running", "awaiting_approval"] {
            let count = gauges
                .jobs
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            self.jobs
                .get_or_create(&vec![("state", state.to_owned())])
                .set(count);
        }
        self.dead_letters.set(gauges.dead_letters);
        self.dead_notifications.set(gauges.dead_notifications);
        self.pending_notifications.set(gauges.pending_notifications);
        self.write_queue
            .set(i64::try_from(write_queue).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

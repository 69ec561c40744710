//! PagerDuty Events API v2: `trigger` when an incident escalates (a runbook gave up, no
//! runbook applies, an approval expired), `resolve` with the same `dedup_key` (the incident
//! id) when it resolves. 202 is success; 400 is permanent and surfaced; 429 and 5xx retry.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Destination, Notice, Outcome, classify, retry_after, routed, transport};
use crate::config::{PagerDutyConfig, Route};
use crate::lifecycle::NoticeKind;
use crate::store::Store;

/// PagerDuty's summary limit.
pub const SUMMARY: usize = 1024;
/// PagerDuty's payload limit (bytes).
pub const MAX_BYTES: usize = 512_000;

/// PagerDuty's severities from Quell's.
pub fn severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    }
}

/// The event for a notice: a trigger for `escalated`, a resolve for `resolved`.
pub fn event(routing_key: &str, notice: &Notice, public_url: Option<&str>) -> Option<Value> {
    let incident = &notice.incident;
    match notice.kind.as_str() {
        "resolved" => Some(json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": incident.id,
        })),
        "escalated" => {
            let summary = super::slack::truncate(
                &format!("{}: {} — {}", incident.id, incident.title, notice.message),
                SUMMARY,
            );
            let link = public_url.map(|url| {
                format!(
                    "{}/api/incidents/{}",
                    url.trim_end_matches('/'),
                    incident.id
                )
            });
            let source = incident.labels["instance"]
                .as_str()
                .or_else(|| incident.labels["service"].as_str())
                .unwrap_or("quell")
                .to_owned();
            let mut event = json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": incident.id,
                "payload": {
                    "summary": summary,
                    "source": source,
                    "severity": severity(&incident.severity),
                    "timestamp": incident.created_at,
                    "component": notice.runbook,
                    "class": incident.labels["alertname"],
                    "custom_details": {
                        "incident": incident.id,
                        "reason": notice.message,
                        "findings": notice.findings,
                        "labels": incident.labels,
                        "incident_api": link,
                    },
                },
                "client": "Quell",
            });
            if let Some(link) = &link {
                event["client_url"] = json!(link);
                event["links"] =
                    json!([{"href": link, "text": format!("{} in Quell", incident.id)}]);
            }
            if event.to_string().len() > MAX_BYTES {
                event["payload"]["custom_details"] = json!({
                    "incident": incident.id,
                    "note": "details too large for PagerDuty; see the incident in Quell",
                    "incident_api": link,
                });
            }
            Some(event)
        }
        _ => None,
    }
}

/// The PagerDuty destination.
pub struct PagerDuty {
    routing_key: String,
    url: String,
    route: Route,
    public_url: Option<String>,
    after_slack: bool,
    client: reqwest::Client,
}

impl PagerDuty {
    /// From `[notify.pagerduty]`.
    pub fn new(
        config: &PagerDutyConfig,
        client: reqwest::Client,
        public_url: Option<String>,
        after_slack: bool,
    ) -> anyhow::Result<Self> {
        if config.routing_key.len() != 32 {
            anyhow::bail!(
                "[notify.pagerduty] routing_key must be the 32-character integration key (it has {} characters)",
                config.routing_key.len()
            );
        }
        Ok(Self {
            routing_key: config.routing_key.clone(),
            url: config.url.clone(),
            route: config.route.clone(),
            public_url,
            after_slack,
            client,
        })
    }
}

impl Destination for PagerDuty {
    fn name(&self) -> &'static str {
        "pagerduty"
    }

    fn waits_for(&self) -> Option<&'static str> {
        self.after_slack.then_some("slack")
    }

    fn once_per_episode(&self, notice: &Notice) -> bool {
        // One page per incident: later escalations of the same episode (another alert of a
        // grouped incident, a second runbook giving up) are already on that page.
        notice.kind == NoticeKind::Escalated
    }

    fn spacing(&self) -> Duration {
        // Events API v2 takes 120 events per minute per routing key: one every 500 ms stays
        // under it, however many incidents open at once.
        Duration::from_millis(500)
    }

    fn accepts(&self, notice: &Notice) -> bool {
        // A resolve only matters for an incident that paged.
        if notice.kind == "resolved" && !notice.incident.escalated {
            return false;
        }
        routed(
            &self.route,
            &[NoticeKind::Escalated, NoticeKind::Resolved],
            notice,
        )
    }

    async fn send(&self, _store: &Store, _delivery: i64, notice: &Notice) -> Outcome {
        let Some(event) = event(&self.routing_key, notice, self.public_url.as_deref()) else {
            return Outcome::Skipped;
        };
        let response = match self.client.post(&self.url).json(&event).send().await {
            Ok(response) => response,
            Err(e) => return transport(e),
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        classify(status, after, &body)
    }
}

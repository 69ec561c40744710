//! `[notify.*]`: where notifications go, which ones, and how hard to try.

use std::time::Duration;

use serde::Deserialize;

use super::HumanDuration;

/// `[notify]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Attempts per notification before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with ±50% jitter.
    pub backoff: HumanDuration,
    /// Longest delay between attempts.
    pub max_backoff: HumanDuration,
    /// Timeout of one delivery attempt.
    pub timeout: HumanDuration,
    /// Alerts joining an incident are told in one thread reply per this interval (per
    /// incident), not one reply each.
    pub batch: HumanDuration,
    /// Slack (incoming webhook or bot token).
    pub slack: Option<SlackConfig>,
    /// PagerDuty Events API v2.
    pub pagerduty: Option<PagerDutyConfig>,
    /// A generic outgoing webhook (Standard Webhooks signing).
    pub webhook: Option<WebhookConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            backoff: HumanDuration(Duration::from_secs(1)),
            max_backoff: HumanDuration(Duration::from_secs(300)),
            timeout: HumanDuration(Duration::from_secs(10)),
            batch: HumanDuration(Duration::from_secs(30)),
            slack: None,
            pagerduty: None,
            webhook: None,
        }
    }
}

/// Which notifications a destination takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// Event kinds (`created`, `diagnosed`, `plan`, `remediated`, `remediation-failed`,
    /// `escalated`, `acknowledged`, `resolved`); empty: every kind the destination handles.
    pub events: Vec<String>,
    /// Only incidents at least this severe (`critical`, `high`, `medium`, `low`, `info`).
    pub min_severity: String,
    /// Only events about these runbooks (events without a runbook always pass); empty: all.
    pub runbooks: Vec<String>,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            min_severity: "info".to_owned(),
            runbooks: Vec::new(),
        }
    }
}

/// `[notify.slack]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// An incoming-webhook URL (no threads, no updates, no buttons). `QUELL_SLACK_WEBHOOK_URL`.
    pub webhook_url: Option<String>,
    /// A bot token (`xoxb-…`, scope `chat:write`): one thread per incident, root message
    /// updated on status changes, approval buttons. `QUELL_SLACK_BOT_TOKEN`.
    pub bot_token: Option<String>,
    /// The channel id the bot posts to.
    pub channel: Option<String>,
    /// The Web API base URL.
    pub api_url: Option<String>,
    /// The app's signing secret for `POST /slack/interactions`. `QUELL_SLACK_SIGNING_SECRET`.
    pub signing_secret: Option<String>,
    /// Slack user ids allowed to approve or reject plans.
    pub approvers: Vec<String>,
    /// Bot mode: when this many messages already wait for Slack (it takes about one a
    /// second), new incidents are told in one digest message updated in place instead of
    /// a thread each; `0` never digests. Default 10.
    pub digest_after: Option<u32>,
    /// Which notifications go to Slack.
    #[serde(flatten)]
    pub route: Route,
}

/// `[notify.pagerduty]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutyConfig {
    /// The Events API v2 integration key (32 characters). `QUELL_PAGERDUTY_ROUTING_KEY`.
    pub routing_key: String,
    /// The enqueue endpoint.
    pub url: String,
    /// Which incidents page.
    #[serde(flatten)]
    pub route: Route,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            routing_key: String::new(),
            url: "https://events.pagerduty.com/v2/enqueue".to_owned(),
            route: Route::default(),
        }
    }
}

/// `[notify.webhook]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST events.
    pub url: String,
    /// Standard Webhooks secret (`whsec_<base64>`, or any other string used as is); each
    /// delivery is signed with it. `QUELL_WEBHOOK_SECRET`.
    pub secret: Option<String>,
    /// Which events go out.
    #[serde(flatten)]
    pub route: Route,
}

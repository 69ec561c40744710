//! Slack: the seed's Block Kit message, through an incoming webhook or a bot token.
//!
//! With a bot token every incident gets one thread: the root message (`chat.postMessage`)
//! carries the header and the status fields and is updated (`chat.update`) when the status
//! changes; every later notice is a reply (`thread_ts`). Plans awaiting approval carry
//! Approve / Reject buttons answered at `POST /slack/interactions`.
//!
//! Block Kit limits are enforced by truncation ([`Limits`]): header 150 characters, section
//! text 3,000, at most 10 fields of 2,000, at most 50 blocks, and the whole message well
//! under Slack's undocumented aggregate limit (~13.2k characters).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Destination, KINDS, Notice, Outcome, classify, retry_after, routed, transport};
use crate::config::SlackConfig;
use crate::lifecycle::NoticeKind;
use crate::store::Store;

/// Block Kit's limits, as Slack documents them (and the aggregate it does not).
#[derive(Debug, Clone, Copy)]
pub struct Limits;

impl Limits {
    /// `header` plain text.
    pub const HEADER: usize = 150;
    /// `section` text.
    pub const SECTION: usize = 3000;
    /// `section` fields, count.
    pub const FIELDS: usize = 10;
    /// One field's text.
    pub const FIELD: usize = 2000;
    /// Blocks per message.
    pub const BLOCKS: usize = 50;
    /// Characters across all blocks (Slack rejects ~13.2k with `msg_blocks_too_long`).
    pub const TOTAL: usize = 12_000;
    /// The notification fallback `text`.
    pub const TEXT: usize = 3000;
}

/// Cuts `text` to `max` characters, ending with `…` when it had to cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The seed's severity emoji.
pub fn emoji(severity: &str) -> &'static str {
    match severity {
        "critical" => "🔴",
        "high" => "🟠",
        "medium" => "🟡",
        "low" => "🔵",
        _ => "⚪",
    }
}

/// The message line for a notice, in the seed's words where it had them.
pub fn message(notice: &Notice) -> String {
    let runbook = notice.runbook.as_deref().unwrap_or("runbook");
    match notice.kind.as_str() {
        "created" => "🚨 New incident created".to_owned(),
        "reopened" => format!("🔁 {}", notice.message),
        "diagnosed" => {
            let lines: Vec<String> = notice
                .findings
                .iter()
                .map(|f| format!("{} {}: {}", if f.ok { "✓" } else { "✗" }, f.name, f.summary))
                .collect();
            let body = if lines.is_empty() {
                "No diagnostic data".to_owned()
            } else {
                lines.join("\n")
            };
            format!(
                "📋 Diagnosis complete ({runbook}): {}\n```{}```",
                notice.message,
                body.replace("```", "'''")
            )
        }
        "plan" => {
            let steps: Vec<String> = notice
                .plan
                .iter()
                .enumerate()
                .map(|(n, step)| format!("{}. {step}", n + 1))
                .collect();
            format!(
                "🛠️ {runbook} proposes a remediation ({}):\n{}",
                notice.message,
                if steps.is_empty() {
                    "(no steps)".to_owned()
                } else {
                    steps.join("\n")
                }
            )
        }
        "remediated" => format!("✅ Auto-remediated: {}{}", notice.message, commands(notice)),
        "remediation-failed" => format!(
            "⚠️ Auto-remediation failed: {}{}",
            notice.message,
            commands(notice)
        ),
        "escalated" => format!("⚠️ {}\nPaging on-call engineer.", notice.message),
        "acknowledged" => format!("👀 {}", notice.message),
        "alert-joined" => format!("➕ {}", notice.message),
        "mitigated" => format!("🩹 Mitigated: {}", notice.message),
        "approved" => format!("👍 {}", notice.message),
        "rejected" => format!("✋ {}", notice.message),
        "resolved" => format!("✅ Resolved: {}", notice.message),
        _ => notice.message.clone(),
    }
}

/// Commands a notice lists at most; the incident page has them all.
const COMMANDS_SHOWN: usize = 10;
/// Characters of one listed command, at most.
const COMMAND_LINE: usize = 200;

/// A remediation's calls as the host ran them, one per line in a code block, each with its
/// decision (and, when refused, why); empty when the notice has none.
fn commands(notice: &Notice) -> String {
    if notice.commands.is_empty() {
        return String::new();
    }
    let mut lines: Vec<String> = notice
        .commands
        .iter()
        .take(COMMANDS_SHOWN)
        .map(|c| {
            // Short enough that ten of them never split the code block's fences.
            let line = match c.decision.as_str() {
                "denied" => format!("✗ {} (denied: {})", c.command, c.rule),
                "dry-run" => format!("$ {} (dry run: not executed)", c.command),
                _ => format!("$ {}", c.command),
            };
            truncate(&line, COMMAND_LINE)
        })
        .collect();
    if notice.commands.len() > COMMANDS_SHOWN {
        lines.push(format!(
            "… and {} more on the incident page",
            notice.commands.len() - COMMANDS_SHOWN
        ));
    }
    format!("\n```{}```", lines.join("\n").replace("```", "'''"))
}

fn time_of(created_at: &str) -> String {
    created_at
        .get(11..16)
        .map_or_else(|| "unknown".to_owned(), |hm| format!("{hm} UTC"))
}

fn text_len(block: &Value) -> usize {
    match block {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(text_len).sum(),
        Value::Object(map) => map.values().map(text_len).sum(),
        _ => 0,
    }
}

/// The seed's message: header, the four fields, the message section; plus buttons for a
/// plan when `buttons` (bot token mode). Every limit holds whatever the input.
pub fn blocks(notice: &Notice, text: &str, buttons: bool) -> Vec<Value> {
    let incident = &notice.incident;
    let header = truncate(
        &format!(
            "{} {}: {}",
            emoji(&incident.severity),
            incident.id,
            incident.title.replace(['\n', '\r'], " ")
        ),
        Limits::HEADER,
    );
    let fields: Vec<Value> = [
        format!("*Severity:* {}", incident.severity),
        format!("*Status:* {}", incident.status),
        format!("*Source:* {}", incident.source),
        format!("*Time:* {}", time_of(&incident.created_at)),
    ]
    .iter()
    .take(Limits::FIELDS)
    .map(|f| json!({"type": "mrkdwn", "text": truncate(f, Limits::FIELD)}))
    .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "fields": fields}),
    ];
    // The buttons of a plan, built first: the message gets the room they leave.
    let actions = (buttons && notice.kind == "plan").then(|| {
        // The plan's digest: a decision on this message decides this plan, not one made
        // after it.
        let value = format!(
            "{}|{}|{}",
            incident.id,
            notice.runbook.as_deref().unwrap_or_default(),
            crate::lifecycle::plan_digest(&notice.plan)
        );
        let value = truncate(&value, 2000);
        json!({
            "type": "actions",
            "block_id": "quell-approval",
            "elements": [
                {"type": "button", "action_id": "approve", "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve"}, "value": value},
                {"type": "button", "action_id": "reject", "style": "danger",
                 "text": {"type": "plain_text", "text": "Reject"}, "value": value},
            ],
        })
    });
    let used = text_len(&Value::Array(blocks.clone())) + actions.as_ref().map_or(0, text_len);
    let room = Limits::TOTAL.saturating_sub(used + 100);
    let mut remaining = truncate(text, room);
    // Long messages span several sections, each within the section limit.
    while !remaining.is_empty() && blocks.len() < Limits::BLOCKS - 1 {
        let chunk: String = remaining.chars().take(Limits::SECTION).collect();
        remaining = remaining.chars().skip(Limits::SECTION).collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": chunk}}));
    }
    blocks.extend(actions);
    blocks
}

/// The message body (`text` fallback and blocks).
pub fn payload(notice: &Notice, buttons: bool) -> Value {
    let text = message(notice);
    let fallback = truncate(
        &format!(
            "{}: {} — {}",
            notice.incident.id, notice.incident.title, text
        ),
        Limits::TEXT,
    );
    json!({"text": fallback, "blocks": blocks(notice, &text, buttons)})
}

enum Mode {
    Webhook(String),
    Bot {
        token: String,
        channel: String,
        api: String,
    },
}

/// The Slack destination.
pub struct Slack {
    mode: Mode,
    route: crate::config::Route,
    client: reqwest::Client,
    /// Bot mode: waiting messages that send new incidents to the digest.
    digest_after: Option<i64>,
}

mod digest;

/// Kinds that change the root message's status field.
const STATUS_CHANGES: &[&str] = &["escalated", "acknowledged", "mitigated", "resolved"];

impl Slack {
    /// From `[notify.slack]`: a bot token with a channel, or an incoming webhook URL.
    pub fn new(config: &SlackConfig, client: reqwest::Client) -> anyhow::Result<Self> {
        let mode = match (&config.bot_token, &config.webhook_url) {
            (Some(token), _) => Mode::Bot {
                token: token.clone(),
                channel: config.channel.clone().ok_or_else(|| {
                    anyhow::anyhow!("[notify.slack] bot_token needs channel (a channel id)")
                })?,
                api: config
                    .api_url
                    .clone()
                    .unwrap_or_else(|| "https://slack.com/api".to_owned())
                    .trim_end_matches('/')
                    .to_owned(),
            },
            (None, Some(url)) => Mode::Webhook(url.clone()),
            (None, None) => anyhow::bail!("[notify.slack] needs webhook_url or bot_token"),
        };
        let digest_after = match (&mode, config.digest_after.unwrap_or(10)) {
            (Mode::Bot { .. }, n) if n > 0 => Some(i64::from(n)),
            _ => None,
        };
        Ok(Self {
            mode,
            route: config.route.clone(),
            client,
            digest_after,
        })
    }

    async fn post(&self, url: &str, token: Option<&str>, body: &Value) -> Result<Value, Outcome> {
        let mut request = self.client.post(url).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        match classify(status, after, &text) {
            Outcome::Sent => {}
            other => return Err(other),
        }
        if token.is_none() {
            // Incoming webhooks answer plain `ok`.
            return Ok(Value::Null);
        }
        let answer: Value = serde_json::from_str(&text).map_err(|_| Outcome::Retry {
            error: format!("Slack answered HTTP 200 with a body that is not JSON: {text:.200}"),
            after: None,
        })?;
        if answer["ok"] != Value::Bool(true) {
            let error = answer["error"].as_str().unwrap_or("unknown error");
            return Err(Outcome::Retry {
                error: format!("Slack answered ok:false: {error}"),
                after: None,
            });
        }
        Ok(answer)
    }

    async fn thread(store: &Store, incident: &str) -> Option<(String, String)> {
        store.slack_thread(incident.to_owned()).await.ok().flatten()
    }
}

/// Keeps a plan message's ts and text, to take its buttons away once it is decided.
async fn remember_plan(store: &Store, notice: &Notice, channel: &str, ts: &str) {
    let saved = store
        .set_slack_plan(
            notice.incident.id.clone(),
            notice.runbook.clone().unwrap_or_default(),
            channel.to_owned(),
            ts.to_owned(),
            message(notice),
        )
        .await;
    if let Err(e) = saved {
        tracing::warn!(error = %e, "could not store the Slack plan message");
    }
}

impl Slack {
    /// Replaces a decided plan's buttons with the decision.
    async fn close_plan(&self, store: &Store, notice: &Notice, token: &str, api: &str) {
        let plan = store
            .slack_plan(
                notice.incident.id.clone(),
                notice.runbook.clone().unwrap_or_default(),
            )
            .await
            .ok()
            .flatten();
        let Some((channel, ts, text)) = plan else {
            return;
        };
        let decided = format!("{text}\n\n{}", message(notice));
        let mut update = json!({
            "text": truncate(&decided, Limits::TEXT),
            "blocks": blocks(notice, &decided, false),
        });
        update["channel"] = json!(channel);
        update["ts"] = json!(ts);
        if let Err(outcome) = self
            .post(&format!("{api}/chat.update"), Some(token), &update)
            .await
        {
            tracing::warn!(?outcome, "could not take the buttons off the decided plan");
        }
    }
}

impl Destination for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn accepts(&self, notice: &Notice) -> bool {
        routed(&self.route, KINDS, notice)
    }

    fn spacing(&self) -> Duration {
        // chat.postMessage and webhooks: about one message per second per channel.
        Duration::from_secs(1)
    }

    fn batches(&self, notice: &Notice) -> bool {
        notice.kind == NoticeKind::AlertJoined
    }

    fn digest_after(&self, notice: &Notice) -> Option<i64> {
        self.digest_after
            .filter(|_| notice.kind == NoticeKind::Created)
    }

    async fn send_digest(&self, store: &Store, batch: &crate::store::DigestBatch) -> Outcome {
        match &self.mode {
            Mode::Bot {
                token,
                channel,
                api,
            } => self.digest(store, batch, (token, channel, api)).await,
            Mode::Webhook(_) => Outcome::Skipped,
        }
    }

    async fn send(&self, store: &Store, _delivery: i64, notice: &Notice) -> Outcome {
        // A batch of joining alerts tells the group as it is now, not the first to join.
        let current;
        let notice = if notice.kind == NoticeKind::AlertJoined
            && let Ok(alerts) = store.alert_counts(notice.incident.id.clone()).await
        {
            current = Notice {
                message: alerts.to_string(),
                ..notice.clone()
            };
            &current
        } else {
            notice
        };
        match &self.mode {
            Mode::Webhook(url) => match self.post(url, None, &payload(notice, false)).await {
                Ok(_) => Outcome::Sent,
                Err(outcome) => outcome,
            },
            Mode::Bot {
                token,
                channel,
                api,
            } => {
                let thread = Self::thread(store, &notice.incident.id).await;
                let mut body = payload(notice, true);
                body["channel"] = json!(channel);
                let Some((root_channel, root_ts)) = thread else {
                    // The first notice of an incident is its thread's root.
                    let answer = match self
                        .post(&format!("{api}/chat.postMessage"), Some(token), &body)
                        .await
                    {
                        Ok(answer) => answer,
                        Err(outcome) => return outcome,
                    };
                    let (Some(ts), Some(channel)) =
                        (answer["ts"].as_str(), answer["channel"].as_str())
                    else {
                        return Outcome::Permanent(
                            "chat.postMessage answered without ts or channel".to_owned(),
                        );
                    };
                    let saved = store
                        .set_slack_thread(
                            notice.incident.id.clone(),
                            channel.to_owned(),
                            ts.to_owned(),
                        )
                        .await;
                    if let Err(e) = saved {
                        tracing::warn!(error = %e, "posted the Slack root message but could not store its ts");
                    }
                    return Outcome::Sent;
                };
                body["channel"] = json!(root_channel);
                body["thread_ts"] = json!(root_ts);
                let answer = match self
                    .post(&format!("{api}/chat.postMessage"), Some(token), &body)
                    .await
                {
                    Ok(answer) => answer,
                    Err(outcome) => return outcome,
                };
                // The reply is the notification; the updates below are cosmetic, so a failure
                // there is logged rather than retried (a retry would post the reply twice).
                if notice.kind == "plan"
                    && let Some(ts) = answer["ts"].as_str()
                {
                    remember_plan(store, notice, &root_channel, ts).await;
                }
                if matches!(notice.kind.as_str(), "approved" | "rejected") {
                    self.close_plan(store, notice, token, api).await;
                }
                if STATUS_CHANGES.contains(&notice.kind.as_str()) {
                    // The root shows the status as of now; its message stays the first one.
                    let root = Notice {
                        kind: NoticeKind::Created,
                        ..notice.clone()
                    };
                    let mut update = payload(&root, false);
                    update["channel"] = json!(root_channel);
                    update["ts"] = json!(root_ts);
                    if let Err(outcome) = self
                        .post(&format!("{api}/chat.update"), Some(token), &update)
                        .await
                    {
                        tracing::warn!(?outcome, "could not update the Slack root message");
                    }
                }
                Outcome::Sent
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The storm digest: while Slack's backlog is long, new incidents are told in one message
//! updated in place, not in a thread each. Every incident stays in Quell's API.

use serde_json::{Value, json};

use super::{Limits, Slack, truncate};
use crate::notify::Outcome;
use crate::store::{DigestBatch, SlackDigest, Store, now};

/// A digest not updated for this long is over: the next storm gets a new message.
const STORM_OVER_MS: i64 = 10 * 60 * 1000;

/// The digest message for `total` incidents since `since`, the newest of `batch` listed.
pub fn blocks(total: i64, since: &str, batch: &DigestBatch) -> (String, Value) {
    let since = since.get(11..16).unwrap_or(since);
    let header = format!("🌩️ Incident storm: {total} new incidents since {since} UTC");
    let latest: Vec<String> = batch
        .latest
        .iter()
        .map(|i| format!("• {} ({}): {}", i.id, i.severity, i.title))
        .collect();
    let body = format!(
        "Slack is behind, so new incidents are listed here instead of getting a thread each. \
         Every one is in Quell: `GET /api/incidents` (or `quell incidents`).\n*Latest:*\n{}",
        latest.join("\n")
    );
    let blocks = json!([
        {"type": "header", "text": {"type": "plain_text", "text": truncate(&header, Limits::HEADER), "emoji": true}},
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&body, Limits::SECTION)}},
    ]);
    (truncate(&header, Limits::TEXT), blocks)
}

impl Slack {
    /// Posts the digest, or updates the storm's message with `batch` added.
    pub(super) async fn digest(
        &self,
        store: &Store,
        batch: &DigestBatch,
        (token, channel, api): (&str, &str, &str),
    ) -> Outcome {
        let (at, ms) = now();
        let current = store
            .slack_digest()
            .await
            .ok()
            .flatten()
            .filter(|d| ms - d.updated_ms < STORM_OVER_MS);
        let (total, since) = match &current {
            Some(d) => (d.total + batch.count, d.since.clone()),
            None => (batch.count, at),
        };
        let (text, blocks) = blocks(total, &since, batch);
        let mut body = json!({"text": text, "blocks": blocks});
        let (method, channel) = match &current {
            Some(d) => {
                body["ts"] = json!(d.ts);
                ("chat.update", d.channel.clone())
            }
            None => ("chat.postMessage", channel.to_owned()),
        };
        body["channel"] = json!(channel);
        let answer = match self
            .post(&format!("{api}/{method}"), Some(token), &body)
            .await
        {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let (Some(ts), Some(channel)) = (answer["ts"].as_str(), answer["channel"].as_str()) else {
            return Outcome::Permanent(format!("{method} answered without ts or channel"));
        };
        let saved = store
            .set_slack_digest(SlackDigest {
                channel: channel.to_owned(),
                ts: ts.to_owned(),
                total,
                since,
                updated_ms: ms,
            })
            .await;
        if let Err(e) = saved {
            tracing::warn!(error = %e, "posted the Slack digest but could not store its ts");
        }
        Outcome::Sent
    }
}

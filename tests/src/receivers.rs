//! Loopback Slack and PagerDuty that check every request against the real API contracts and
//! can be scripted to fail.
//!
//! - [`Slack`]: `POST /api/chat.postMessage`, `POST /api/chat.update` (bot token required,
//!   `{"ok": true, "channel", "ts"}` answers, `ts` per message) and `POST /webhook` (an
//!   incoming webhook answering `ok`). Checks: Block Kit limits (header 150, section 3,000,
//!   ≤ 10 fields of ≤ 2,000, ≤ 50 blocks, ~13.2k characters in all), `channel`, `text`,
//!   `thread_ts` / `ts` naming an existing message.
//! - [`PagerDuty`]: `POST /v2/enqueue` (Events API v2). Checks: 32-character `routing_key`,
//!   `event_action`, `dedup_key` ≤ 255, and for a trigger `payload.summary` (≤ 1,024),
//!   `payload.source`, `payload.severity` ∈ critical/error/warning/info; ≤ 512 KB. An invalid
//!   event gets PagerDuty's 400; a valid one 202 with the `dedup_key`.
//!
//! Both enforce the real rate limits: Slack about one `chat.postMessage` (or incoming webhook
//! message) per second per channel, with short bursts (a bucket of [`SLACK_BURST`]), answered
//! `429` with `Retry-After`; PagerDuty [`PAGERDUTY_PER_MINUTE`] events per minute per routing
//! key, answered `429`. A request that ignores a 429 (Slack: before its `Retry-After`;
//! PagerDuty: within a second) is a violation. `rate_limited()` counts the 429s.
//!
//! A contract violation is answered the way the real service would and recorded in
//! `violations()`, so a test can assert there were none. Faults are scripted per request:
//! [`Fault::Status`], [`Fault::RateLimited`] (429 + `Retry-After`), [`Fault::SlackNotOk`]
//! (HTTP 200 `{"ok": false}`), [`Fault::Stall`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::serve::ServerThread;

/// One way to fail a request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status with an empty JSON body.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// Slack's HTTP 200 `{"ok": false, "error": …}`.
    SlackNotOk(&'static str),
    /// Never answer in time.
    Stall(Duration),
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `/api/chat.postMessage`, `/v2/enqueue`, …
    pub path: String,
    /// The JSON body.
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// Whether it was answered with success (not a scripted fault or a contract error).
    pub accepted: bool,
}

#[derive(Default)]
struct Script {
    faults: VecDeque<Fault>,
    down: Option<Fault>,
    received: Vec<Received>,
    violations: Vec<String>,
    next_ts: u64,
    messages: Vec<String>,
    /// Per channel or routing key: the rate limiter's state.
    limits: HashMap<String, Limiter>,
    /// Per channel or routing key: until when a request is early after a 429.
    early: HashMap<String, Instant>,
    rate_limited: usize,
}

/// Slack's short bursts: this many messages at once, then one per second.
pub const SLACK_BURST: f64 = 3.0;
/// PagerDuty Events API v2: events per minute per routing key.
pub const PAGERDUTY_PER_MINUTE: usize = 120;

/// One channel's (or routing key's) rate limit, and the 429 it last answered.
#[derive(Debug)]
enum Limiter {
    /// Slack: a token bucket refilled at one per second.
    Bucket { tokens: f64, at: Instant },
    /// PagerDuty: the accepted events of the last minute.
    Window(VecDeque<Instant>),
}

/// What a rate-limited request is told, and until when a retry is early.
struct Refusal {
    retry_after: Option<u64>,
    until: Instant,
}

impl Script {
    /// Whether the request for `key` is within its rate; a 429 answer when not. A request
    /// that comes back before a 429 it was given allowed is a violation.
    fn pace(&mut self, key: &str, fresh: impl FnOnce() -> Limiter) -> Option<Response> {
        let now = Instant::now();
        let early = self.early.get(key).is_some_and(|until| now < *until);
        if early {
            self.violations
                .push(format!("a request for {key} ignored the 429 it was given"));
        }
        let limiter = self.limits.entry(key.to_owned()).or_insert_with(fresh);
        let body = match limiter {
            Limiter::Bucket { .. } => json!({"ok": false, "error": "ratelimited"}),
            Limiter::Window(_) => json!({
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. Please retry later.",
            }),
        };
        let refusal = match limiter {
            Limiter::Bucket { tokens, at } => {
                *tokens = (*tokens + now.duration_since(*at).as_secs_f64()).min(SLACK_BURST);
                *at = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    None
                } else {
                    Some(Refusal {
                        retry_after: Some(1),
                        until: now + Duration::from_secs(1),
                    })
                }
            }
            Limiter::Window(events) => {
                while events
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
                {
                    events.pop_front();
                }
                if events.len() < PAGERDUTY_PER_MINUTE {
                    events.push_back(now);
                    None
                } else {
                    Some(Refusal {
                        retry_after: None,
                        until: now + Duration::from_secs(1),
                    })
                }
            }
        };
        let refusal = refusal?;
        self.rate_limited += 1;
        self.early.insert(key.to_owned(), refusal.until);
        if let Some(last) = self.received.last_mut() {
            last.accepted = false;
        }
        let mut answer = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        if let Some(seconds) = refusal.retry_after {
            answer
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(seconds));
        }
        Some(answer)
    }
}

fn slack_bucket() -> Limiter {
    Limiter::Bucket {
        tokens: SLACK_BURST,
        at: Instant::now(),
    }
}

type Shared = Arc<Mutex<Script>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Script> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The scriptable part both receivers share.
pub struct Receiver {
    server: ServerThread,
    state: Shared,
}

impl Receiver {
    fn start(router: Router<Shared>, name: &str) -> anyhow::Result<Receiver> {
        let state = Shared::default();
        let server = ServerThread::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            router.with_state(state.clone()),
            name,
        )?;
        Ok(Receiver { server, state })
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    /// Fails the next requests with these faults, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state).faults.extend(faults);
    }

    /// Fails every request with `fault` until called with `None`.
    pub fn set_down(&self, fault: Option<Fault>) {
        lock(&self.state).down = fault;
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// Requests that were answered with success.
    pub fn accepted(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.accepted).collect()
    }

    /// Contract violations seen (ignoring a 429 is one).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// Requests answered 429 because they went past the real rate limit.
    pub fn rate_limited(&self) -> usize {
        lock(&self.state).rate_limited
    }

    /// Waits until `done` holds for the accepted requests (`timeout` at most).
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted();
            if done(&accepted) {
                return accepted;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {:#?}",
                self.received()
                    .iter()
                    .map(|r| (&r.path, &r.body, r.accepted))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Takes the next scripted fault; records the request either way.
async fn arrive(state: &Shared, path: &str, body: &Value) -> Option<Response> {
    let fault = {
        let mut script = lock(state);
        let fault = script.faults.pop_front().or_else(|| script.down.clone());
        script.received.push(Received {
            path: path.to_owned(),
            body: body.clone(),
            at: Instant::now(),
            accepted: fault.is_none(),
        });
        fault
    };
    Some(match fault? {
        Fault::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "{}",
        )
            .into_response(),
        Fault::RateLimited(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
            "{}",
        )
            .into_response(),
        Fault::SlackNotOk(error) => {
            axum::Json(json!({"ok": false, "error": error})).into_response()
        }
        Fault::Stall(duration) => {
            tokio::time::sleep(duration).await;
            (StatusCode::GATEWAY_TIMEOUT, "{}").into_response()
        }
    })
}

fn violation(state: &Shared, message: String) {
    let mut script = lock(state);
    script.violations.push(message);
    if let Some(last) = script.received.last_mut() {
        last.accepted = false;
    }
}

/// A loopback Slack.
pub struct Slack {
    receiver: Receiver,
}

/// The bot token the loopback Slack accepts.
pub const SLACK_TOKEN: &str = "xoxb-test-token";

impl std::ops::Deref for Slack {
    type Target = Receiver;
    fn deref(&self) -> &Receiver {
        &self.receiver
    }
}

impl Slack {
    /// Starts it.
    pub fn start() -> anyhow::Result<Slack> {
        let router = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/chat.update", post(update))
            .route("/webhook", post(incoming_webhook));
        Ok(Slack {
            receiver: Receiver::start(router, "slack-receiver")?,
        })
    }

    /// The Web API base URL (`[notify.slack] api_url`).
    pub fn api_url(&self) -> String {
        self.url("/api")
    }
}

fn chars(value: &Value) -> usize {
    match value {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(chars).sum(),
        Value::Object(map) => map.values().map(chars).sum(),
        _ => 0,
    }
}

/// What is wrong with a message's blocks and text, by Slack's documented limits.
pub fn block_kit_violations(body: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let text_len = body["text"].as_str().map(|s| s.chars().count());
    let Some(blocks) = body["blocks"].as_array() else {
        if text_len.is_none() {
            wrong.push("neither text nor blocks".to_owned());
        }
        return wrong;
    };
    if text_len.is_none() {
        wrong.push("blocks without the top-level text fallback".to_owned());
    }
    if blocks.len() > 50 {
        wrong.push(format!("{} blocks (max 50)", blocks.len()));
    }
    let total = chars(&Value::Array(blocks.clone()));
    if total > 13_000 {
        wrong.push(format!(
            "{total} characters in blocks (msg_blocks_too_long)"
        ));
    }
    for (n, block) in blocks.iter().enumerate() {
        let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        match block["type"].as_str() {
            Some("header") => {
                if block["text"]["type"] != "plain_text" {
                    wrong.push(format!("blocks[{n}]: header text must be plain_text"));
                }
                if len(&block["text"]["text"]) > 150 {
                    wrong.push(format!("blocks[{n}]: header over 150 characters"));
                }
            }
            Some("section") => {
                if block["text"].is_null() && block["fields"].is_null() {
                    wrong.push(format!("blocks[{n}]: section without text or fields"));
                }
                if len(&block["text"]["text"]) > 3000 {
                    wrong.push(format!("blocks[{n}]: section text over 3000 characters"));
                }
                if let Some(fields) = block["fields"].as_array() {
                    if fields.len() > 10 {
                        wrong.push(format!("blocks[{n}]: {} fields (max 10)", fields.len()));
                    }
                    if fields.iter().any(|f| len(&f["text"]) > 2000) {
                        wrong.push(format!("blocks[{n}]: a field over 2000 characters"));
                    }
                }
            }
            Some("actions") => {
                let elements = block["elements"].as_array().map_or(0, Vec::len);
                if elements == 0 || elements > 25 {
                    wrong.push(format!("blocks[{n}]: actions with {elements} elements"));
                }
            }
            Some("context" | "divider") => {}
            other => wrong.push(format!("blocks[{n}]: unknown block type {other:?}")),
        }
    }
    wrong
}

fn bot_token_ok(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SLACK_TOKEN}"))
}

fn parse(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

async fn post_message(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = parse(&body);
    if let Some(fault) = arrive(&state, "/api/chat.postMessage", &body).await {
        return fault;
    }
    if !bot_token_ok(&headers) {
        violation(&state, "chat.postMessage without the bot token".to_owned());
        return axum::Json(json!({"ok": false, "error": "not_authed"})).into_response();
    }
    let mut wrong = block_kit_violations(&body);
    let Some(channel) = body["channel"].as_str() else {
        wrong.push("chat.postMessage without channel".to_owned());
        violation(&state, wrong.join("; "));
        return axum::Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
    };
    let mut script = lock(&state);
    if let Some(limited) = script.pace(&format!("channel {channel}"), slack_bucket) {
        return limited;
    }
    if let Some(thread) = body["thread_ts"].as_str()
        && !script.messages.iter().any(|ts| ts == thread)
    {
        wrong.push(format!("thread_ts {thread} is not a message"));
    }
    if !wrong.is_empty() {
        drop(script);
        violation(&state, wrong.join("; "));
        return axum::Json(json!({"ok": false, "error": "invalid_blocks"})).into_response();
    }
    script.next_ts += 1;
    let ts = format!("1700000000.{:06}", script.next_ts);
    script.messages.push(ts.clone());
    axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": body["text"]}}))
        .into_response()
}

async fn update(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = parse(&body);
    if let Some(fault) = arrive(&state, "/api/chat.update", &body).await {
        return fault;
    }
    if !bot_token_ok(&headers) {
        violation(&state, "chat.update without the bot token".to_owned());
        return axum::Json(json!({"ok": false, "error": "not_authed"})).into_response();
    }
    let mut wrong = block_kit_violations(&body);
    let known = body["ts"]
        .as_str()
        .is_some_and(|ts| lock(&state).messages.iter().any(|m| m == ts));
    if !known || body["channel"].as_str().is_none() {
        wrong.push("chat.update needs the channel and ts of an existing message".to_owned());
    }
    if !wrong.is_empty() {
        violation(&state, wrong.join("; "));
        return axum::Json(json!({"ok": false, "error": "message_not_found"})).into_response();
    }
    axum::Json(json!({"ok": true, "channel": body["channel"], "ts": body["ts"]})).into_response()
}

async fn incoming_webhook(State(state): State<Shared>, body: Bytes) -> Response {
    let body = parse(&body);
    if let Some(fault) = arrive(&state, "/webhook", &body).await {
        return fault;
    }
    if let Some(limited) = lock(&state).pace("incoming webhook", slack_bucket) {
        return limited;
    }
    let wrong = block_kit_violations(&body);
    if !wrong.is_empty() {
        violation(&state, wrong.join("; "));
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    }
    "ok".into_response()
}

/// A loopback PagerDuty Events API v2.
pub struct PagerDuty {
    receiver: Receiver,
}

/// A routing key the loopback PagerDuty accepts (32 characters).
pub const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";

impl std::ops::Deref for PagerDuty {
    type Target = Receiver;
    fn deref(&self) -> &Receiver {
        &self.receiver
    }
}

impl PagerDuty {
    /// Starts it.
    pub fn start() -> anyhow::Result<PagerDuty> {
        let router = Router::new().route("/v2/enqueue", post(enqueue));
        Ok(PagerDuty {
            receiver: Receiver::start(router, "pagerduty-receiver")?,
        })
    }

    /// The enqueue URL (`[notify.pagerduty] url`).
    pub fn enqueue_url(&self) -> String {
        self.url("/v2/enqueue")
    }
}

/// What is wrong with an event, by the Events API v2 contract.
pub fn event_violations(event: &Value, size: usize) -> Vec<String> {
    let mut wrong = Vec::new();
    if size > 512 * 1024 {
        wrong.push(format!("{size} bytes (max 512 KB)"));
    }
    if event["routing_key"].as_str().is_none_or(|k| k.len() != 32) {
        wrong.push("routing_key must be the 32-character integration key".to_owned());
    }
    let action = event["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        wrong.push(format!("event_action {action:?}"));
    }
    match event["dedup_key"].as_str() {
        Some(key) if key.len() <= 255 && !key.is_empty() => {}
        Some(_) => wrong.push("dedup_key must be 1..=255 characters".to_owned()),
        None if action == "trigger" => {}
        None => wrong.push(format!("{action} needs dedup_key")),
    }
    if action == "trigger" {
        let payload = &event["payload"];
        match payload["summary"].as_str() {
            Some(s) if s.chars().count() <= 1024 && !s.is_empty() => {}
            _ => wrong.push("payload.summary is required, ≤ 1024 characters".to_owned()),
        }
        if payload["source"].as_str().is_none_or(str::is_empty) {
            wrong.push("payload.source is required".to_owned());
        }
        let severity = payload["severity"].as_str().unwrap_or_default();
        if !["critical", "error", "warning", "info"].contains(&severity) {
            wrong.push(format!("payload.severity {severity:?}"));
        }
    }
    wrong
}

async fn enqueue(State(state): State<Shared>, body: Bytes) -> Response {
    let size = body.len();
    let event = parse(&body);
    if let Some(fault) = arrive(&state, "/v2/enqueue", &event).await {
        return fault;
    }
    let wrong = event_violations(&event, size);
    if !wrong.is_empty() {
        violation(&state, wrong.join("; "));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": wrong})),
        )
            .into_response();
    }
    let key = format!(
        "routing key {}",
        event["routing_key"].as_str().unwrap_or_default()
    );
    if let Some(limited) = lock(&state).pace(&key, || Limiter::Window(VecDeque::new())) {
        return limited;
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]})),
    )
        .into_response()
}

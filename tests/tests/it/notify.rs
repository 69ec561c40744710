//! Notifications end to end: the daemon in-process, loopback Slack and PagerDuty that check
//! every payload against the real contracts, scripted failures, an outage across a restart,
//! and signed Slack approvals.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use quell::config::{HumanDuration, NotifyConfig, PagerDutyConfig, SlackConfig};
use quell_tests::receivers::{Fault, PagerDuty, ROUTING_KEY, Received, SLACK_TOKEN, Slack};
use reqwest::StatusCode;
use serde_json::json;
use sha2::Sha256;

use crate::daemon::{Running, daemon_config, payload};
use crate::harness::Env;

const SIGNING_SECRET: &str = "test-signing-secret";
const WAIT: Duration = Duration::from_secs(30);

fn probe_policy(mode: &str) -> String {
    format!(
        "mode = \"{mode}\"\ntimeout = \"30s\"\n\
         [[kubectl.allow]]\nverbs = [\"get\"]\nresources = [\"pods\"]\nnamespaces = [\"production\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
         [ssh.commands]\ntouch = {{ run = \"true\", effect = \"write\" }}\n\
         [http]\nnetworks = [\"127.0.0.0/8\"]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n"
    )
}

pub fn configure(env: &mut Env, slack: &Slack, pagerduty: &PagerDuty) {
    daemon_config(env);
    env.config.notify = NotifyConfig {
        max_attempts: 6,
        backoff: HumanDuration(Duration::from_millis(100)),
        max_backoff: HumanDuration(Duration::from_secs(1)),
        // No loopback answer takes this long, however busy the machine: only a scripted
        // stall times out (the fault test shortens it).
        timeout: HumanDuration(Duration::from_secs(30)),
        batch: HumanDuration(Duration::from_secs(2)),
        slack: Some(SlackConfig {
            bot_token: Some(SLACK_TOKEN.to_owned()),
            channel: Some("C0QUELL".to_owned()),
            api_url: Some(slack.api_url()),
            signing_secret: Some(SIGNING_SECRET.to_owned()),
            approvers: vec!["U0ALICE".to_owned()],
            ..SlackConfig::default()
        }),
        pagerduty: Some(PagerDutyConfig {
            routing_key: ROUTING_KEY.to_owned(),
            url: pagerduty.enqueue_url(),
            ..PagerDutyConfig::default()
        }),
        webhook: None,
    };
}

fn firing(fingerprint: &str) -> String {
    payload(
        "firing",
        fingerprint,
        "2026-11-24T03:00:00Z",
        json!({"summary": "checkout latency high"}),
    )
}

fn text_of(message: &Received) -> String {
    message.body["blocks"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .map(|b| {
                    b["text"]["text"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| b["fields"].to_string())
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

async fn incident_of(app: &Running, body: String) -> String {
    let (status, answer) = app.post("/webhooks/alertmanager", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["alerts"][0]["incident"].as_str().unwrap().to_owned()
}

/// Runs blocking receiver waits off the async runtime.
pub async fn wait<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn signed(body: &str, timestamp: i64, secret: &str) -> (String, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    (
        timestamp.to_string(),
        format!("v0={}", hex::encode(mac.finalize().into_bytes())),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loopback_receivers_enforce_the_real_rate_limits() {
    let slack = Slack::start().unwrap();
    let pagerduty = PagerDuty::start().unwrap();
    let client = reqwest::Client::new();
    let post = |channel: &str| {
        client
            .post(slack.api_url() + "/chat.postMessage")
            .bearer_auth(SLACK_TOKEN)
            .json(&json!({"channel": channel, "text": "x"}))
            .send()
    };
    // A burst to one channel: the bucket's three (and one more per second the burst took),
    // then 429 with Retry-After. Bounds from the measured time, so a slow machine only
    // loosens them.
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..10).map(|_| post("C1"))).await;
    let took = started.elapsed().as_secs_f64();
    let mut accepted = 0;
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status() {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(answer.headers()["retry-after"], "1");
            }
            other => panic!("{other}"),
        }
    }
    assert!(
        (3..=3 + took.ceil() as usize).contains(&accepted),
        "{accepted} of 10 in {took:.2}s"
    );
    if took < 6.0 {
        assert_eq!(slack.rate_limited(), 10 - accepted);
    }
    // Another channel has its own rate.
    assert_eq!(post("C2").await.unwrap().status(), StatusCode::OK);
    // And a request that does not wait out its Retry-After is a violation.
    if slack.rate_limited() > 0 && started.elapsed() < std::time::Duration::from_secs(1) {
        let _ = post("C1").await.unwrap();
        assert!(
            slack
                .violations()
                .contains(&"a request for channel C1 ignored the 429 it was given".to_owned()),
            "{:?}",
            slack.violations()
        );
    }

    let event = json!({
        "routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "k",
        "payload": {"summary": "s", "source": "q", "severity": "critical"},
    });
    let started = Instant::now();
    let mut accepted = 0;
    for _ in 0..121 {
        let status = client
            .post(pagerduty.enqueue_url())
            .json(&event)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::ACCEPTED {
            accepted += 1;
        } else {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        }
    }
    if started.elapsed() < Duration::from_secs(60) {
        assert_eq!(accepted, 120, "120 events per minute per routing key");
        assert_eq!(pagerduty.rate_limited(), 1);
    }
}

/// The incidents the latest Slack digest message says it has told (0 without one).
pub fn digest_total(messages: &[Received]) -> usize {
    messages
        .iter()
        .filter_map(|m| {
            let text = m.body["text"].as_str()?;
            let rest = text.split_once("Incident storm: ")?.1;
            rest.split_whitespace().next()?.parse().ok()
        })
        .next_back()
        .unwrap_or(0)
}

// Shared behaviour: each runs on SQLite and on a real PostgreSQL server.
crate::harness::on_both_backends! {
    async fn escalation_reaches_slack_then_pagerduty_and_resolution_follows() {
        let slack = std::sync::Arc::new(Slack::start().unwrap());
        let pagerduty = std::sync::Arc::new(PagerDuty::start().unwrap());
        let mut env = Env::new();
        env.policy("probe", "probe", &probe_policy("diagnose"));
        configure(&mut env, &slack, &pagerduty);
        let app = Running::start_configured(env).await;
        let id = incident_of(&app, firing("path")).await;

        let pd = pagerduty.clone();
        let triggers = wait(move || {
            pd.wait_for("the trigger", WAIT, |r| {
                r.iter().any(|e| e.body["event_action"] == "trigger")
            })
        })
        .await;
        let trigger = triggers
            .iter()
            .find(|e| e.body["event_action"] == "trigger")
            .unwrap()
            .clone();
        assert_eq!(trigger.body["dedup_key"], id.as_str());
        assert_eq!(trigger.body["routing_key"], ROUTING_KEY);
        assert_eq!(trigger.body["payload"]["severity"], "critical");
        assert!(
            trigger.body["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{id}: checkout latency high — "))
        );
        assert_eq!(
            trigger.body["payload"]["custom_details"]["findings"],
            json!([])
        );

        let messages: Vec<Received> = slack
            .accepted()
            .into_iter()
            .filter(|m| m.path == "/api/chat.postMessage")
            .collect();
        assert!(messages.len() >= 2, "{messages:#?}");
        let root = &messages[0];
        assert!(root.body["thread_ts"].is_null());
        assert_eq!(
            root.body["blocks"][0]["text"]["text"],
            format!("🔴 {id}: checkout latency high")
        );
        assert!(text_of(root).contains("🚨 New incident created"));
        let diagnosis = &messages[1];
        assert!(
            text_of(diagnosis).contains("📋 Diagnosis complete (probe)"),
            "{}",
            text_of(diagnosis)
        );
        assert!(
            diagnosis.body["thread_ts"].is_string(),
            "replies go into the incident's thread"
        );
        assert!(
            root.at < diagnosis.at && diagnosis.at < trigger.at,
            "order: Slack created, Slack diagnosis, PagerDuty trigger"
        );

        let resolved = payload("resolved", "path", "2026-11-24T03:00:00Z", json!({}));
        app.post("/webhooks/alertmanager", resolved).await;
        let pd = pagerduty.clone();
        let events = wait(move || {
            pd.wait_for("the resolve", WAIT, |r| {
                r.iter().any(|e| e.body["event_action"] == "resolve")
            })
        })
        .await;
        let resolve = events
            .iter()
            .find(|e| e.body["event_action"] == "resolve")
            .unwrap();
        assert_eq!(
            resolve.body["dedup_key"],
            id.as_str(),
            "the same dedup_key resolves the page"
        );
        let sl = slack.clone();
        let updates = wait(move || {
            sl.wait_for("the root update", WAIT, |r| {
                r.iter().any(|m| {
                    m.path == "/api/chat.update"
                        && m.body["blocks"].to_string().contains("*Status:* resolved")
                })
            })
        })
        .await;
        let update = updates
            .iter()
            .rev()
            .find(|m| m.path == "/api/chat.update")
            .unwrap();
        assert_eq!(
            update.body["ts"], diagnosis.body["thread_ts"],
            "the root message is updated"
        );
        assert!(slack.violations().is_empty(), "{:?}", slack.violations());
        assert!(
            pagerduty.violations().is_empty(),
            "{:?}",
            pagerduty.violations()
        );
        app.stop().await;
    }

    async fn notifications_survive_a_receiver_outage_and_a_restart() {
        let slack = std::sync::Arc::new(Slack::start().unwrap());
        let pagerduty = std::sync::Arc::new(PagerDuty::start().unwrap());
        slack.set_down(Some(Fault::Status(503)));
        pagerduty.set_down(Some(Fault::Status(503)));
        let mut env = Env::new();
        configure(&mut env, &slack, &pagerduty);
        // Plenty of attempts: the outage outlasts several.
        env.config.notify.max_attempts = 50;
        let app = Running::start_configured(env).await;
        // No runbook applies: the incident escalates at once.
        let id = incident_of(&app, firing("outage")).await;
        let pd = pagerduty.clone();
        wait(move || {
            let deadline = Instant::now() + WAIT;
            while pd.received().len() < 3 {
                assert!(Instant::now() < deadline, "no retries");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await;
        let env = app.stop().await;

        // Back up, and the daemon restarted on the same database.
        slack.set_down(None);
        pagerduty.set_down(None);
        let app = Running::start_configured(env).await;
        let pd = pagerduty.clone();
        let accepted = wait(move || {
            pd.wait_for("the trigger after the outage", WAIT, |r| {
                r.iter().any(|e| e.body["event_action"] == "trigger")
            })
        })
        .await;
        assert!(accepted.iter().all(|e| e.body["dedup_key"] == id.as_str()));
        let sl = slack.clone();
        let messages = wait(move || {
            sl.wait_for("created and escalated in Slack", WAIT, |r| {
                r.iter()
                    .filter(|m| m.path == "/api/chat.postMessage")
                    .count()
                    >= 2
            })
        })
        .await;
        let texts: Vec<String> = messages.iter().map(text_of).collect();
        assert!(texts[0].contains("New incident created"), "{texts:#?}");
        assert!(
            texts.iter().any(|t| t.contains("Paging on-call engineer")),
            "{texts:#?}"
        );
        let roots = messages
            .iter()
            .filter(|m| m.path == "/api/chat.postMessage" && m.body["thread_ts"].is_null())
            .count();
        assert_eq!(
            roots,
            1,
            "one thread per incident: {:#?}",
            messages
                .iter()
                .map(|m| (&m.path, &m.body["thread_ts"], text_of(m)))
                .collect::<Vec<_>>()
        );
        let (_, dead) = app.get("/api/notifications/dead").await;
        assert_eq!(dead["dead"], json!([]));
        app.stop().await;
    }

    async fn faults_are_retried_with_retry_after_and_a_400_is_dead_lettered() {
        let slack = std::sync::Arc::new(Slack::start().unwrap());
        let pagerduty = std::sync::Arc::new(PagerDuty::start().unwrap());
        slack.fail_next([
            Fault::Stall(Duration::from_secs(30)),
            Fault::RateLimited(2),
            Fault::SlackNotOk("internal_error"),
            Fault::Status(500),
        ]);
        pagerduty.fail_next([Fault::Status(400)]);
        let mut env = Env::new();
        configure(&mut env, &slack, &pagerduty);
        env.config.notify.timeout = HumanDuration(Duration::from_secs(2));
        let app = Running::start_configured(env).await;
        let id = incident_of(&app, firing("faults")).await;

        let sl = slack.clone();
        wait(move || {
            sl.wait_for("the root message after the faults", WAIT, |r| {
                r.iter().any(|m| m.path == "/api/chat.postMessage")
            })
        })
        .await;
        let received = slack.received();
        assert!(received.len() >= 5, "{received:#?}");
        // The 429 said "Retry-After: 2": the next attempt waited at least that long.
        let gap = received[2].at - received[1].at;
        assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");

        // PagerDuty's 400 is permanent: dead at once, surfaced in the API and metrics.
        let deadline = Instant::now() + WAIT;
        let dead = loop {
            let (_, dead) = app.get("/api/notifications/dead").await;
            if !dead["dead"].as_array().unwrap().is_empty() {
                break dead;
            }
            assert!(Instant::now() < deadline, "nothing dead-lettered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(dead["dead"][0]["destination"], "pagerduty");
        assert_eq!(dead["dead"][0]["incident"], id.as_str());
        assert!(
            dead["dead"][0]["error"]
                .as_str()
                .unwrap()
                .starts_with("HTTP 400")
        );
        assert_eq!(pagerduty.received().len(), 1, "a 400 is not retried");
        let (_, metrics) = app.get("/metrics").await;
        let metrics = metrics.as_str().unwrap().to_owned();
        assert!(metrics.contains("quell_notifications_dead 1"), "{metrics}");
        // The stall, Slack's not-ok and the 500 are retries; the 429 is throttling, which does
        // not count against the retry budget.
        assert!(
            metrics.contains("quell_notifications_total{destination=\"slack\",outcome=\"retry\"} 3"),
            "{metrics}"
        );
        assert!(
            metrics
                .contains("quell_notifications_total{destination=\"slack\",outcome=\"throttled\"} 1"),
            "{metrics}"
        );
        app.stop().await;
    }

    async fn a_signed_slack_approval_decides_once_and_nothing_else_does() {
        let slack = std::sync::Arc::new(Slack::start().unwrap());
        let pagerduty = std::sync::Arc::new(PagerDuty::start().unwrap());
        let mut env = Env::new();
        env.policy("probe", "probe", &probe_policy("approve"));
        configure(&mut env, &slack, &pagerduty);
        let app = Running::start_configured(env).await;
        let id = incident_of(&app, firing("approval")).await;

        let sl = slack.clone();
        let messages = wait(move || {
            sl.wait_for("the plan with buttons", WAIT, |r| {
                r.iter().any(|m| {
                    m.body["blocks"]
                        .to_string()
                        .contains("\"action_id\":\"approve\"")
                })
            })
        })
        .await;
        let plan = messages
            .iter()
            .find(|m| {
                m.body["blocks"]
                    .to_string()
                    .contains("\"action_id\":\"approve\"")
            })
            .unwrap();
        let actions = plan.body["blocks"].as_array().unwrap().last().unwrap();
        let value = actions["elements"][0]["value"].as_str().unwrap().to_owned();
        // The button names the plan it shows, by its steps' digest.
        let shown = value
            .strip_prefix(&format!("{id}|probe|"))
            .expect("incident|runbook|plan");
        assert_eq!(shown.len(), 12, "{value}");

        let click_on = |user: &str, value: &str| {
            let payload = json!({
                "type": "block_actions",
                "user": {"id": user},
                "actions": [{"action_id": "approve", "value": value}],
            });
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &payload.to_string())
                .finish()
        };
        let send = |body: String, timestamp: String, signature: String| {
            let request = app
                .client
                .post(format!("{}/slack/interactions", app.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-slack-request-timestamp", timestamp)
                .header("x-slack-signature", signature)
                .body(body);
            async move { request.send().await.unwrap().status() }
        };
        let click = |user: &str| click_on(user, &value);
        let now = chrono::Utc::now().timestamp();
        let alice = click("U0ALICE");
        // A button of another plan (one since diagnosed again) decides nothing.
        let stale = click_on("U0ALICE", &format!("{id}|probe|000000000000"));
        let (ts, sig) = signed(&stale, now, SIGNING_SECRET);
        assert_eq!(
            send(stale, ts, sig).await,
            StatusCode::CONFLICT,
            "a plan nobody was shown"
        );

        let (ts, _) = signed(&alice, now, SIGNING_SECRET);
        let (_, forged) = signed(&alice, now, "not-the-secret");
        assert_eq!(
            send(alice.clone(), ts, forged).await,
            StatusCode::UNAUTHORIZED,
            "bad signature"
        );
        let (old_ts, old_sig) = signed(&alice, now - 400, SIGNING_SECRET);
        assert_eq!(
            send(alice.clone(), old_ts, old_sig).await,
            StatusCode::UNAUTHORIZED,
            "old timestamp"
        );
        let mallory = click("U0MALLORY");
        let (ts, sig) = signed(&mallory, now, SIGNING_SECRET);
        assert_eq!(
            send(mallory, ts, sig).await,
            StatusCode::FORBIDDEN,
            "not an approver"
        );
        let detail = app.incident(&id).await;
        assert_eq!(
            detail["jobs"][0]["state"], "awaiting_approval",
            "nothing above decided"
        );

        let (ts, sig) = signed(&alice, now, SIGNING_SECRET);
        assert_eq!(
            send(alice.clone(), ts.clone(), sig.clone()).await,
            StatusCode::OK
        );
        assert_eq!(
            send(alice, ts, sig).await,
            StatusCode::CONFLICT,
            "the second click"
        );
        let detail = app
            .wait_for(&id, "the approved remediation", |d| {
                d["jobs"][0]["state"] == "done"
            })
            .await;
        assert_eq!(detail["jobs"][0]["decided_by"], "slack:U0ALICE");
        let remediations = detail["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["phase"] == "remediate")
            .count();
        assert_eq!(remediations, 1);
        let timeline = crate::daemon::kinds(&detail);
        assert!(
            timeline.contains(&"approval-refused".to_owned()),
            "{timeline:?}"
        );
        // The plan message loses its buttons and shows the decision.
        let sl = slack.clone();
        let updates = wait(move || {
            sl.wait_for("the decided plan message", WAIT, |r| {
                r.iter().any(|m| {
                    m.path == "/api/chat.update"
                        && m.body["blocks"]
                            .to_string()
                            .contains("plan approved by slack:U0ALICE")
                })
            })
        })
        .await;
        let closed = updates
            .iter()
            .find(|m| {
                m.path == "/api/chat.update" && m.body["blocks"].to_string().contains("plan approved")
            })
            .unwrap();
        assert!(
            closed.body["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["type"] != "actions")
        );
        assert!(
            closed.body["blocks"]
                .to_string()
                .contains("proposes a remediation")
        );
        assert!(slack.violations().is_empty(), "{:?}", slack.violations());
        app.stop().await;
    }

    async fn routes_filter_by_severity_and_the_outgoing_webhook_is_signed() {
        use base64::Engine as _;
        use quell::config::{Route, WebhookConfig};
        use quell_tests::http::{HttpServer, TestRoutes};

        let slack = std::sync::Arc::new(Slack::start().unwrap());
        let routes = TestRoutes::new();
        let hook = HttpServer::start("127.0.0.1".parse().unwrap(), routes.router()).unwrap();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let mut env = Env::new();
        daemon_config(&mut env);
        env.config.notify.backoff = HumanDuration(Duration::from_millis(100));
        // An incoming webhook: no threads, no buttons; only critical incidents.
        env.config.notify.slack = Some(SlackConfig {
            webhook_url: Some(slack.url("/webhook")),
            route: Route {
                min_severity: "critical".to_owned(),
                ..Route::default()
            },
            ..SlackConfig::default()
        });
        env.config.notify.webhook = Some(WebhookConfig {
            url: hook.url("/echo"),
            secret: Some(secret.to_owned()),
            route: Route {
                events: vec!["created".to_owned(), "escalated".to_owned()],
                ..Route::default()
            },
        });
        let app = Running::start_configured(env).await;
        let critical = incident_of(&app, firing("sev-critical")).await;
        let low = payload(
            "firing",
            "sev-low",
            "2026-11-24T03:00:00Z",
            json!({"summary": "minor"}),
        )
        .replace("\"severity\":\"critical\"", "\"severity\":\"low\"");
        let low = incident_of(&app, low).await;

        let deadline = Instant::now() + WAIT;
        while routes.requests().len() < 4 {
            assert!(
                Instant::now() < deadline,
                "webhook got {:#?}",
                routes.requests()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .unwrap();
        let mut seen = Vec::new();
        for request in routes.requests() {
            let id = request.header("webhook-id").unwrap().to_owned();
            let ts = request.header("webhook-timestamp").unwrap().to_owned();
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(format!("{id}.{ts}.{}", request.body).as_bytes());
            let expected = format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
            );
            assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
            let event: serde_json::Value = serde_json::from_str(&request.body).unwrap();
            seen.push((
                event["data"]["incident"]["id"].as_str().unwrap().to_owned(),
                event["type"].as_str().unwrap().to_owned(),
            ));
        }
        seen.sort();
        let mut expected = vec![
            (critical.clone(), "incident.created".to_owned()),
            (critical.clone(), "incident.escalated".to_owned()),
            (low.clone(), "incident.created".to_owned()),
            (low.clone(), "incident.escalated".to_owned()),
        ];
        expected.sort();
        assert_eq!(seen, expected);

        let sl = slack.clone();
        // By the second message Slack's dispatcher has routed every notice above (it routes
        // before each send), so the low-severity ones were already skipped, not just late.
        let messages =
            wait(move || sl.wait_for("the critical incident's messages", WAIT, |r| r.len() >= 2)).await;
        for message in &messages {
            assert_eq!(message.path, "/webhook");
            assert!(
                text_of(message).contains(&critical),
                "only critical incidents go to Slack"
            );
            assert!(!text_of(message).contains(&low));
        }
        assert!(slack.violations().is_empty(), "{:?}", slack.violations());
        app.stop().await;
    }

    async fn throttling_pauses_the_destination_and_never_dead_letters_a_notice() {
        let slack = Slack::start().unwrap();
        let pagerduty = std::sync::Arc::new(PagerDuty::start().unwrap());
        // More 429s in a row than the retry budget (6 attempts) allows failures.
        pagerduty.fail_next(std::iter::repeat_n(Fault::RateLimited(1), 8));
        let mut env = Env::new();
        env.policy("probe", "probe", &probe_policy("diagnose"));
        configure(&mut env, &slack, &pagerduty);
        let app = Running::start_configured(env).await;
        let id = incident_of(&app, firing("throttled")).await;

        let pd = pagerduty.clone();
        let accepted = wait(move || {
            pd.wait_for(
                "the trigger past the throttling",
                Duration::from_secs(60),
                |r| r.iter().any(|e| e.body["event_action"] == "trigger"),
            )
        })
        .await;
        assert_eq!(accepted[0].body["dedup_key"], id.as_str());
        let received = pagerduty.received();
        assert_eq!(received.len(), 9, "eight 429s, then the trigger");
        // Each retry waited out the Retry-After it was given.
        for pair in received.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
        }
        let (_, dead) = app.get("/api/notifications/dead").await;
        assert_eq!(dead["dead"], json!([]));
        let (_, metrics) = app.get("/metrics").await;
        let metrics = metrics.as_str().unwrap().to_owned();
        assert!(
            metrics.contains(
                "quell_notifications_total{destination=\"pagerduty\",outcome=\"throttled\"} 8"
            ),
            "{metrics}"
        );
        app.stop().await;
    }

    async fn an_incident_pages_once_however_many_runbooks_escalate_it() {
        let slack = Slack::start().unwrap();
        let pagerduty = std::sync::Arc::new(PagerDuty::start().unwrap());
        let mut env = Env::new();
        // Two diagnose-mode runbooks: each hands its findings to on-call.
        env.policy("probe", "probe", &probe_policy("diagnose"));
        env.policy("probe-b", "probe", &probe_policy("diagnose"));
        configure(&mut env, &slack, &pagerduty);
        let app = Running::start_configured(env).await;
        let id = incident_of(&app, firing("twice")).await;
        let detail = app
            .wait_for(&id, "both escalations", |d| {
                crate::daemon::kinds(d)
                    .iter()
                    .filter(|k| *k == "escalated")
                    .count()
                    == 2
            })
            .await;
        assert_eq!(detail["escalated"], true);
        // Resolution goes out after everything before it: once it is there, so is any trigger.
        let (status, _) = app
            .post(
                "/webhooks/alertmanager",
                payload(
                    "resolved",
                    "twice",
                    "2026-11-24T03:00:00Z",
                    json!({"summary": "checkout latency high"}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let pd = pagerduty.clone();
        let events = wait(move || {
            pd.wait_for("the resolve", WAIT, |r| {
                r.iter().any(|e| e.body["event_action"] == "resolve")
            })
        })
        .await;
        let actions: Vec<&str> = events
            .iter()
            .map(|e| e.body["event_action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["trigger", "resolve"],
            "one page, then its resolve"
        );
        app.stop().await;
    }

    async fn a_long_backlog_sends_new_incidents_to_one_digest_message() {
        let slack = std::sync::Arc::new(Slack::start().unwrap());
        let pagerduty = std::sync::Arc::new(PagerDuty::start().unwrap());
        let mut env = Env::new();
        configure(&mut env, &slack, &pagerduty);
        if let Some(config) = env.config.notify.slack.as_mut() {
            config.digest_after = Some(2);
        }
        let app = Running::start_configured(env).await;
        // Ten alerts at once, no runbook: ten incidents, each with a "created" and an
        // "escalated" notice, all routed together.
        let alerts: Vec<serde_json::Value> = (0..10)
            .map(|n| {
                let one: serde_json::Value = serde_json::from_str(&payload(
                    "firing",
                    &format!("storm-{n}"),
                    "2026-11-24T03:00:00Z",
                    json!({"summary": format!("storm {n}")}),
                ))
                .unwrap();
                one["alerts"][0].clone()
            })
            .collect();
        let mut body: serde_json::Value = serde_json::from_str(&firing("storm-0")).unwrap();
        body["alerts"] = json!(alerts);
        let (status, answer) = app.post("/webhooks/alertmanager", body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            app.incidents().await.len(),
            10,
            "every incident is in the API"
        );

        // The first incident gets its thread (root and escalation): that is the backlog of
        // two; the other nine are told in one digest.
        let sl = slack.clone();
        let messages =
            wait(move || sl.wait_for("the digest of nine", WAIT, |r| digest_total(r) == 9)).await;
        let roots = messages
            .iter()
            .filter(|m| m.path == "/api/chat.postMessage" && m.body["thread_ts"].is_null())
            .filter(|m| !m.body.to_string().contains("Incident storm"))
            .count();
        assert_eq!(roots, 1, "one thread");
        let digests = messages
            .iter()
            .filter(|m| {
                m.path == "/api/chat.postMessage" && m.body.to_string().contains("Incident storm")
            })
            .count();
        assert_eq!(digests, 1, "one digest message, updated in place");
        // PagerDuty does not digest: every incident pages.
        let pd = pagerduty.clone();
        let events = wait(move || pd.wait_for("ten pages", WAIT, |r| r.len() >= 10)).await;
        assert_eq!(events.len(), 10);
        assert!(slack.violations().is_empty(), "{:?}", slack.violations());
        app.stop().await;
    }
}

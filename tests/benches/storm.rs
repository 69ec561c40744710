//! Notification storm: a burst of 10,000 single-alert incidents (no runbook matches, so
//! each escalates) into `quell serve` in-process (release build, SQLite), with the loopback
//! Slack (bot) and PagerDuty that enforce the real rate limits.
//!
//! Reports, per run and as medians of three:
//! - how long until every alert was acknowledged;
//! - how long until on-call has seen every incident on Slack, in its own thread or in the
//!   storm digest;
//! - the notification backlog at that moment (deliveries still waiting, Slack and PagerDuty
//!   together), and PagerDuty's share of it (it pages every incident, at most 120 a minute).
//!
//! `cargo bench -p quell-tests --bench storm` (QUELL_STORM_ALERTS changes the burst size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // a bench tool

use std::sync::Arc;
use std::time::{Duration, Instant};

use quell::config::{Config, NotifyConfig, PagerDutyConfig, SlackConfig};
use quell::daemon::Daemon;
use quell_tests::receivers::{PagerDuty, ROUTING_KEY, Received, SLACK_TOKEN, Slack};
use serde_json::{Value, json};

const PER_DELIVERY: usize = 100;
const IN_FLIGHT: usize = 16;

fn delivery(first: usize, count: usize) -> String {
    let alerts: Vec<Value> = (first..first + count)
        .map(|n| {
            json!({
                "status": "firing",
                "labels": {"alertname": "Storm", "instance": format!("host-{n}"), "severity": "critical"},
                "annotations": {"summary": format!("storm alert {n}")},
                "startsAt": "2026-11-30T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom/graph", "fingerprint": format!("{n:016x}"),
            })
        })
        .collect();
    json!({
        "receiver": "quell", "status": "firing", "version": "4",
        "groupKey": "{}:{alertname=\"Storm\"}", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://am:9093", "alerts": alerts,
    })
    .to_string()
}

/// Incidents on-call has seen on Slack: threads started, plus what the digest says it told.
fn seen(messages: &[Received]) -> usize {
    let threads = messages
        .iter()
        .filter(|m| m.path == "/api/chat.postMessage" && m.body["thread_ts"].is_null())
        .filter(|m| !m.body.to_string().contains("Incident storm"))
        .count();
    let digest = messages
        .iter()
        .filter_map(|m| {
            let rest = m.body["text"].as_str()?.split_once("Incident storm: ")?.1;
            rest.split_whitespace().next()?.parse::<usize>().ok()
        })
        .next_back()
        .unwrap_or(0);
    threads + digest
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

struct Run {
    acknowledged: Duration,
    seen: Duration,
    backlog: f64,
    pagerduty_sent: usize,
}

async fn run(alerts: usize) -> Run {
    let slack = Arc::new(Slack::start().unwrap());
    let pagerduty = Arc::new(PagerDuty::start().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.max_concurrent_requests = 4096;
    config.database.path = dir.path().join("quell.db");
    config.runbooks.dir = dir.path().join("runbooks");
    std::fs::create_dir_all(&config.runbooks.dir).unwrap();
    config.postmortems.dir = dir.path().join("postmortems");
    config.sandbox.cache_dir = dir.path().join("cache");
    config.notify = NotifyConfig {
        slack: Some(SlackConfig {
            bot_token: Some(SLACK_TOKEN.to_owned()),
            channel: Some("C0STORM".to_owned()),
            api_url: Some(slack.api_url()),
            ..SlackConfig::default()
        }),
        pagerduty: Some(PagerDutyConfig {
            routing_key: ROUTING_KEY.to_owned(),
            url: pagerduty.enqueue_url(),
            ..PagerDutyConfig::default()
        }),
        ..NotifyConfig::default()
    };
    let daemon = Daemon::start(config).await.unwrap();
    let url = format!("http://{}/webhooks/alertmanager", daemon.addr());
    let client = reqwest::Client::new();

    let started = Instant::now();
    let bodies: Vec<String> = (0..alerts)
        .step_by(PER_DELIVERY)
        .map(|first| delivery(first, PER_DELIVERY.min(alerts - first)))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let senders: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (queue, client, url) = (queue.clone(), client.clone(), url.clone());
            tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    loop {
                        let status = client.post(&url).body(body.clone()).send().await;
                        if status.is_ok_and(|r| r.status().is_success()) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = started.elapsed();

    let seen_at = loop {
        if seen(&slack.received()) >= alerts {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "on-call had seen {} of {alerts} incidents after 10 minutes",
            seen(&slack.received())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let metrics = client
        .get(format!("http://{}/metrics", daemon.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let backlog = gauge(&metrics, "quell_notifications_pending");
    let pagerduty_sent = pagerduty.accepted().len();
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    daemon.shutdown().await.unwrap();
    Run {
        acknowledged,
        seen: seen_at,
        backlog,
        pagerduty_sent,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let alerts: usize = std::env::var("QUELL_STORM_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut runs = Vec::new();
    for n in 1..=3 {
        let run = runtime.block_on(run(alerts));
        println!(
            "run {n}: {alerts} alerts acknowledged in {:.1} s; every incident seen on Slack after {:.1} s; \
             backlog then {} deliveries ({} pages sent so far)",
            run.acknowledged.as_secs_f64(),
            run.seen.as_secs_f64(),
            run.backlog,
            run.pagerduty_sent
        );
        runs.push(run);
    }
    println!(
        "median of 3: acknowledged {:.1} s, seen {:.1} s, backlog {}",
        median(runs.iter().map(|r| r.acknowledged.as_secs_f64()).collect()),
        median(runs.iter().map(|r| r.seen.as_secs_f64()).collect()),
        median(runs.iter().map(|r| r.backlog).collect())
    );
}

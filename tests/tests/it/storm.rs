//! A storm through the real Alertmanager: a thousand firing alerts in twenty groups, with
//! Slack (bot) and PagerDuty enforcing their real rate limits. Grouped by Alertmanager's
//! groups, on-call gets twenty incidents, twenty pages and a Slack channel that stays
//! readable; every alert is still in the API.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use quell::config::{GroupBy, HumanDuration};
use quell_tests::alertmanager::Alertmanager;
use quell_tests::receivers::{PagerDuty, Received, Slack};
use serde_json::{Value, json};

use crate::daemon::Running;
use crate::harness::Env;
use crate::notify::{configure, digest_total, wait};

const TOKEN: &str = "am-token";
const GROUPS: usize = 20;
const PER_GROUP: usize = 50;
/// A hang guard for each phase, not a timing: each ends on an event.
const PHASE: Duration = Duration::from_secs(240);

/// The storm's alerts in ten waves: every wave has five more alerts of each group.
fn wave(wave: usize, starts_at: &str, ends_at: Option<&str>) -> Value {
    let alerts: Vec<Value> = (0..GROUPS)
        .flat_map(|group| {
            (0..PER_GROUP / 10).map(move |n| {
                let mut alert = json!({
                    "labels": {"alertname": format!("Storm{group:02}"),
                               "instance": format!("node-{wave}-{n}"), "severity": "critical"},
                    "annotations": {"summary": format!("storm {group} on node-{wave}-{n}")},
                    "startsAt": starts_at,
                });
                if let Some(ends_at) = ends_at {
                    alert["endsAt"] = json!(ends_at);
                }
                alert
            })
        })
        .collect();
    Value::Array(alerts)
}

/// Incident threads started (digest messages aside).
fn roots(messages: &[Received]) -> usize {
    messages
        .iter()
        .filter(|m| m.path == "/api/chat.postMessage" && m.body["thread_ts"].is_null())
        .filter(|m| !m.body.to_string().contains("Incident storm"))
        .count()
}

fn triggers(events: &[Received], action: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.body["event_action"] == action)
        .map(|e| e.body["dedup_key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls the API until `done` holds for the incident list with each incident's detail.
async fn wait_for_incidents(app: &Running, what: &str, done: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + PHASE;
    loop {
        let mut details = Vec::new();
        for incident in app.incidents().await {
            details.push(app.incident(incident["id"].as_str().unwrap()).await);
        }
        if done(&details) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} incidents",
            details.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_alerts_in_twenty_groups_make_twenty_incidents_and_twenty_pages() {
    let slack = Arc::new(Slack::start().unwrap());
    let pagerduty = Arc::new(PagerDuty::start().unwrap());
    let mut env = Env::new();
    // No runbooks: every incident escalates "no runbook matches", once.
    configure(&mut env, &slack, &pagerduty);
    env.config.incidents.group_by = GroupBy::Alertmanager;
    env.config.notify.batch = HumanDuration(Duration::from_secs(60));
    env.config.sources.alertmanager.tokens = vec![TOKEN.to_owned()];
    let app = Running::start_configured(env).await;
    let am_dir = tempfile::tempdir().unwrap();
    let webhook = format!("{}/webhooks/alertmanager", app.base);
    let am_path = am_dir.path().to_owned();
    let am = tokio::task::spawn_blocking(move || {
        Alertmanager::start_grouped(&am_path, &webhook, Some(TOKEN), &["alertname"])
    })
    .await
    .unwrap()
    .unwrap();

    let started = Instant::now();
    let starts_at =
        humantime::format_rfc3339_millis(SystemTime::now() - Duration::from_secs(60)).to_string();
    for n in 0..10 {
        am.push(&wave(n, &starts_at, None)).unwrap();
    }

    wait_for_incidents(&app, "every alert in the API", |details| {
        details.len() == GROUPS
            && details
                .iter()
                .map(|d| d["alerts"].as_array().unwrap().len())
                .sum::<usize>()
                == GROUPS * PER_GROUP
    })
    .await;

    // One page per incident.
    let pd = pagerduty.clone();
    let events = wait(move || {
        pd.wait_for("a page per incident", PHASE, |r| {
            triggers(r, "trigger").len() >= GROUPS
        })
    })
    .await;
    let paged: BTreeSet<String> = triggers(&events, "trigger").into_iter().collect();
    assert_eq!(paged.len(), GROUPS, "{paged:?}");

    // Slack: every incident is told, in its own thread (a root, its escalation, and its
    // joining alerts batched into one reply) or, once Slack's backlog is long, in the digest.
    // No more than sixty messages in the first two minutes.
    let sl = slack.clone();
    let messages = wait(move || {
        sl.wait_for("every incident told", PHASE, |r| {
            let threads = roots(r);
            let batched = r
                .iter()
                .filter(|m| m.body.to_string().contains("➕"))
                .count();
            threads + digest_total(r) == GROUPS && batched == threads
        })
    })
    .await;
    let posted = |within: Duration| {
        messages
            .iter()
            .filter(|m| m.path == "/api/chat.postMessage" && m.at <= started + within)
            .count()
    };
    assert!(
        posted(Duration::from_secs(120)) <= 60,
        "{} Slack messages in the first two minutes",
        posted(Duration::from_secs(120))
    );
    assert!(roots(&messages) > 0, "the first incidents get their thread");
    // The figures, for the record (`-- --nocapture`).
    let told = messages.iter().map(|m| m.at).max().unwrap_or(started);
    eprintln!(
        "storm: {} threads, {} in the digest, {} Slack messages in the first two minutes, \
         the last of them {:.1} s after the first push",
        roots(&messages),
        digest_total(&messages),
        posted(Duration::from_secs(120)),
        (told - started).as_secs_f64()
    );

    // Resolution: every alert ends; each incident resolves with its last alert.
    let ends_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    for n in 0..10 {
        am.push(&wave(n, &starts_at, Some(&ends_at))).unwrap();
    }
    wait_for_incidents(&app, "every incident resolved", |details| {
        details.len() == GROUPS && details.iter().all(|d| d["status"] == "resolved")
    })
    .await;
    let pd = pagerduty.clone();
    let events = wait(move || {
        pd.wait_for("a resolve per page", PHASE, |r| {
            triggers(r, "resolve").len() >= GROUPS
        })
    })
    .await;
    assert_eq!(
        triggers(&events, "trigger").len(),
        GROUPS,
        "never paged again"
    );
    assert_eq!(triggers(&events, "resolve").len(), GROUPS);

    // The receivers' limits held: nothing was refused, nothing ignored a refusal.
    assert_eq!(slack.rate_limited(), 0);
    assert_eq!(pagerduty.rate_limited(), 0);
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    assert!(
        pagerduty.violations().is_empty(),
        "{:?}",
        pagerduty.violations()
    );
    drop(am);
    app.stop().await;
}

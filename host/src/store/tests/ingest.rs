//! Storing alerts: text a database would refuse as it came, and who is woken after.

use super::super::*;

super::on_both_backends!(an_alert_with_a_nul_character_is_stored_with_a_replacement);

/// PostgreSQL's text cannot hold NUL: an alert carrying one (`\u0000` in its JSON) would be
/// refused there, and retried by its sender for ever. Both backends keep it with U+FFFD.
async fn an_alert_with_a_nul_character_is_stored_with_a_replacement(store: &Store) {
    let body = r#"{"receiver": "quell", "status": "firing", "version": "4",
        "groupKey": "{}:{}", "alerts": [{
            "status": "firing",
            "labels": {"alertname": "Disk\u0000Full", "instance": "web-1\u0000"},
            "annotations": {"summary": "disk \u0000 full"},
            "startsAt": "2026-11-24T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "ab\u0000cd"}]}"#;
    let parse = || {
        crate::sources::parse(
            crate::sources::Source::Alertmanager,
            body.as_bytes(),
            None,
            &crate::config::GenericFields::default(),
        )
        .unwrap()
    };
    let Effect::Created(id) = super::ingest(store, parse()).await else {
        panic!("a new incident");
    };
    let detail = store.incident_detail(id.clone()).await.unwrap().unwrap();
    assert_eq!(detail.incident.title, "disk \u{FFFD} full");
    assert_eq!(detail.incident.fingerprint, "ab\u{FFFD}cd");
    assert_eq!(detail.labels["alertname"], "Disk\u{FFFD}Full");
    // The same alert again is the same incident.
    assert_eq!(super::ingest(store, parse()).await, Effect::Refired(id));
}

/// A delivery wakes the job workers when one of its alerts queued jobs (an alert with
/// runbooks that opened, or joined, an incident), and not for alerts that queued nothing.
/// On SQLite only: on PostgreSQL a replica also hears its own `NOTIFY` back, a wake-up that
/// arrives whenever the listener reads it.
#[tokio::test(flavor = "multi_thread")]
async fn workers_are_woken_exactly_when_an_alert_queued_jobs() {
    let (_keep, store) = super::on_sqlite();
    let store = &store;
    let runbooks = vec![Selected {
        name: "restart".to_owned(),
        priority: 100,
    }];
    let alert = |fingerprint: &str, runbooks: &[Selected], group: Option<&str>| {
        let body = format!(
            r#"{{"receiver": "quell", "status": "firing", "version": "4", "groupKey": "{{}}:{{}}",
                "alerts": [{{"status": "firing", "labels": {{"alertname": "{fingerprint}"}},
                "startsAt": "2026-11-24T03:00:00Z", "fingerprint": "{fingerprint}"}}]}}"#
        );
        let parsed = crate::sources::parse(
            crate::sources::Source::Alertmanager,
            body.as_bytes(),
            None,
            &crate::config::GenericFields::default(),
        )
        .unwrap();
        let arrivals = parsed
            .alerts
            .into_iter()
            .map(|a| Arrival::new(a, runbooks.to_vec()).grouped(group.map(str::to_owned)))
            .collect();
        Delivery {
            source: "alertmanager",
            body: body.into_bytes(),
            truncated: 0,
            arrivals,
            reopen_window_ms: 0,
        }
    };
    // Whether storing `delivery` woke the workers: a waiter registered before it, polled once
    // after (`notify_waiters` wakes only waiters already registered).
    let wakes = |delivery: Delivery| async move {
        let woken = store.hub().jobs().notified();
        let mut woken = std::pin::pin!(woken);
        woken.as_mut().enable();
        store.ingest(delivery).await.unwrap();
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        woken.as_mut().poll(&mut context).is_ready()
    };
    assert!(
        !wakes(alert("no-runbook", &[], None)).await,
        "nothing queued"
    );
    assert!(
        wakes(alert("with-runbook", &runbooks, None)).await,
        "a diagnosis queued"
    );
    assert!(
        !wakes(alert("with-runbook", &runbooks, None)).await,
        "a re-send queues nothing"
    );
    assert!(
        wakes(alert("first", &runbooks, Some("group"))).await,
        "a group opened"
    );
    assert!(
        wakes(alert("second", &runbooks, Some("group"))).await,
        "an alert joined"
    );
}

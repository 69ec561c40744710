//! Alerts whose text a database would refuse as it came.

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

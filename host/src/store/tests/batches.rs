//! PostgreSQL stores the deliveries that arrive together in one batch, with statements over
//! the whole batch for new incidents and re-sends (`postgres/batch.rs`). Whatever a batch
//! holds, the result is what storing its deliveries one after another does: here, the
//! SQLite store's, row for row.

use std::collections::HashMap;

use super::super::*;
use crate::incident::Severity;

const SOURCE: &str = "alertmanager";
const HOUR_MS: i64 = 3_600_000;

fn alert(fingerprint: &str, status: &str, starts_at: Option<&str>) -> Incident {
    Incident {
        id: crate::incident::episode_id(SOURCE, fingerprint, starts_at),
        title: format!("{fingerprint} is down"),
        severity: Severity::High,
        source: SOURCE.to_owned(),
        status: status.to_owned(),
        labels: vec![("alertname".to_owned(), fingerprint.to_owned())],
        annotations: vec![("summary".to_owned(), format!("about {fingerprint}"))],
        fingerprint: fingerprint.to_owned(),
        starts_at: starts_at.map(str::to_owned),
        ends_at: (status == "resolved").then(|| "2026-11-24T05:00:00Z".to_owned()),
        alert_json: format!(r#"{{"fingerprint":"{fingerprint}","status":"{status}"}}"#),
        previous_fingerprint: None,
    }
}

const S1: Option<&str> = Some("2026-11-24T03:00:00Z");
const S2: Option<&str> = Some("2026-11-24T04:00:00Z");

fn firing(fingerprint: &str) -> Arrival {
    Arrival::new(alert(fingerprint, "firing", S1), Vec::new())
}

fn with_runbooks(arrival: Arrival) -> Arrival {
    let runbooks = vec![
        Selected {
            name: "restart".to_owned(),
            priority: 10,
        },
        Selected {
            name: "diagnose-only".to_owned(),
            priority: 5,
        },
    ];
    Arrival {
        runbooks,
        ..arrival
    }
}

fn delivery(arrivals: Vec<Arrival>) -> Delivery {
    let body = format!(
        "{:?}",
        arrivals
            .iter()
            .map(|a| &a.incident.fingerprint)
            .collect::<Vec<_>>()
    );
    Delivery {
        source: SOURCE,
        body: body.into_bytes(),
        truncated: 0,
        arrivals,
        reopen_window_ms: HOUR_MS,
    }
}

/// Rounds of deliveries that arrive together: new incidents, re-sends, resolutions,
/// reopening, stale episodes, grouped alerts, a renamed identity, taken ids, one identity
/// several times in a round, and a round of 300 alerts.
fn rounds() -> Vec<Vec<Delivery>> {
    let grouped = |fingerprint: &str| firing(fingerprint).grouped(Some("checkout".to_owned()));
    let mut truncated = delivery(vec![firing("c"), firing("d"), {
        Arrival::new(alert("e", "resolved", S1), Vec::new())
    }]);
    truncated.truncated = 3;
    let mut no_start = firing("f");
    no_start.incident = alert("f", "firing", None);
    let first = vec![
        delivery(vec![firing("a")]),
        delivery(vec![with_runbooks(firing("b"))]),
        // Alertmanager HA: the same alert again in the same batch.
        delivery(vec![firing("a")]),
        truncated,
        delivery(vec![grouped("g1")]),
        delivery(vec![grouped("g2")]),
        delivery(vec![no_start.clone()]),
        delivery(vec![firing("h")]),
    ];
    let mut renamed = firing("h2");
    renamed.incident.previous_fingerprint = Some("h".to_owned());
    let mut b_again = with_runbooks(firing("b"));
    b_again.incident = alert("b", "firing", S2);
    let second = vec![
        delivery(vec![firing("a"), b_again]),
        delivery(vec![Arrival::new(alert("c", "resolved", S1), Vec::new())]),
        delivery(vec![Arrival::new(alert("d", "resolved", S1), Vec::new())]),
        delivery(vec![renamed, no_start]),
        delivery(vec![
            Arrival::new(alert("g1", "resolved", S1), Vec::new())
                .grouped(Some("checkout".to_owned())),
        ]),
    ];
    // An id already taken by another identity, and one id wanted twice in a batch.
    let mut taken = firing("j");
    taken.incident.id = alert("a", "firing", S1).id;
    let mut twice_1 = firing("k1");
    twice_1.incident.id = "INC-5A5E0001".to_owned();
    let mut twice_2 = firing("k2");
    twice_2.incident.id = "INC-5A5E0001".to_owned();
    let mut c_again = with_runbooks(firing("c"));
    c_again.incident = alert("c", "firing", S2);
    let third = vec![
        // A new episode of an identity resolved within the reopen window: reopened.
        delivery(vec![c_again]),
        // The episode that resolved, sent again late: stale.
        delivery(vec![firing("d")]),
        delivery(vec![taken, twice_1]),
        delivery(vec![twice_2, firing("h2")]),
    ];
    let mut storm: Vec<Delivery> = (0..150)
        .map(|n| {
            let one = firing(&format!("storm-{n}"));
            let other = firing(&format!("storm-{n}-b"));
            if n % 2 == 0 {
                delivery(vec![with_runbooks(one), other])
            } else {
                delivery(vec![one, other])
            }
        })
        .collect();
    // Half of them sent again within the same round.
    storm.extend(
        (0..150)
            .step_by(2)
            .map(|n| delivery(vec![firing(&format!("storm-{n}"))])),
    );
    vec![first, second, third, storm]
}

/// Everything ingest wrote, with incident ids named by identity and episode (ids a
/// collision salted depend on the time), and times left out.
async fn written(store: &Store, effects: &[Ingested]) -> Vec<String> {
    let rows = store
        .db
        .read(|tx| {
            let incidents = tx.query_vec(
                "SELECT id, fingerprint, starts_at, status, severity, title, labels, annotations,
                     alert_json, fired, escalated, remediated, ended_at
                 FROM incidents ORDER BY fingerprint, starts_at",
                &[],
                |row| {
                    let id: String = row.get(0)?;
                    let fingerprint: String = row.get(1)?;
                    let starts_at: Option<String> = row.get(2)?;
                    let mut rest = Vec::new();
                    for column in 3..13 {
                        rest.push(format!("{:?}", row.column(column)?));
                    }
                    Ok((id, format!("{fingerprint}@{starts_at:?}"), rest.join(" ")))
                },
            )?;
            let table = |sql: &str, width: usize| {
                tx.query_vec(sql, &[], |row| {
                    let incident: String = row.get(0)?;
                    let mut rest = Vec::new();
                    for column in 1..width {
                        rest.push(format!("{:?}", row.column(column)?));
                    }
                    Ok((incident, rest))
                })
            };
            Ok((
                incidents,
                table(
                    "SELECT incident_id, kind, runbook, message, detail FROM events ORDER BY id",
                    5,
                )?,
                tx.query_vec(
                    "SELECT incident_id, kind, notice FROM notifications ORDER BY id",
                    &[],
                    |row| {
                        Ok((
                            row.get::<String>(0)?,
                            vec![row.get::<String>(1)?, row.get::<String>(2)?],
                        ))
                    },
                )?,
                table(
                    "SELECT incident_id, alert, runbook, priority, phase, state, attempts
                     FROM jobs ORDER BY id",
                    7,
                )?,
                table(
                    "SELECT incident_id, fingerprint, status, fired FROM incident_alerts
                     ORDER BY fingerprint",
                    4,
                )?,
                table(
                    "SELECT source, status, alerts, truncated, body FROM inbox ORDER BY id",
                    5,
                )?,
            ))
        })
        .await
        .unwrap();
    let (incidents, events, notices, jobs, members, inbox) = rows;
    let mut name: HashMap<String, String> = HashMap::new();
    let mut lines = Vec::new();
    for (id, identity, rest) in incidents {
        assert!(
            name.insert(id, identity.clone()).is_none(),
            "one incident per id"
        );
        lines.push(format!("incident {identity}: {rest}"));
    }
    let named = |id: &str| name.get(id).cloned().unwrap_or_else(|| format!("?{id}"));
    // Per incident, in the order written; incidents in name order.
    let mut per_incident = |what: &str, rows: Vec<(String, Vec<String>)>| {
        let mut rows: Vec<(String, String)> = rows
            .into_iter()
            .map(|(incident, rest)| (named(&incident), rest.join(" ")))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        lines.extend(
            rows.into_iter()
                .map(|(n, rest)| format!("{what} {n}: {rest}")),
        );
    };
    per_incident("event", events);
    let notices = notices
        .into_iter()
        .map(|(incident, mut rest)| {
            // The notice without its times, its incident named.
            let mut notice: serde_json::Value = serde_json::from_str(&rest[1]).unwrap();
            notice.as_object_mut().unwrap().remove("at");
            let view = notice["incident"].as_object_mut().unwrap();
            view.remove("created_at");
            view.insert("id".to_owned(), named(&incident).into());
            rest[1] = notice.to_string();
            (incident, rest)
        })
        .collect();
    per_incident("notice", notices);
    per_incident("job", jobs);
    per_incident("member", members);
    lines.extend(
        inbox
            .into_iter()
            .map(|(source, rest)| format!("inbox {source}: {}", rest.join(" "))),
    );
    for (n, ingested) in effects.iter().enumerate() {
        let effects: Vec<String> = ingested
            .effects
            .iter()
            .map(|effect| {
                let incident = effect.incident().map(named).unwrap_or_default();
                let kind = format!("{effect:?}");
                format!("{} {incident}", kind.split('(').next().unwrap_or_default())
            })
            .collect();
        lines.push(format!(
            "delivery {n}: {effects:?}, {} escalated",
            ingested.escalations
        ));
    }
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_stores_what_its_deliveries_stored_one_by_one_would() {
    let (_sqlite, one_by_one) = super::on_sqlite();
    let (_postgres, batched) = super::on_postgres().await;
    for store in [&one_by_one, &batched] {
        store.configure_destinations(vec!["slack"]).await.unwrap();
    }
    let (mut expected, mut got) = (Vec::new(), Vec::new());
    for round in rounds() {
        for delivery in round.clone() {
            expected.push(one_by_one.ingest(delivery).await.unwrap());
        }
        for outcome in batched.db.postgres().ingest_together(round).await {
            got.push(outcome.unwrap());
        }
    }
    let expected_rows = written(&one_by_one, &expected).await;
    let got_rows = written(&batched, &got).await;
    for (n, (want, have)) in expected_rows.iter().zip(&got_rows).enumerate() {
        assert_eq!(want, have, "line {n} differs");
    }
    assert_eq!(expected_rows.len(), got_rows.len());
    // The cases the batch leaves to the shared code, and the ones it does itself, happened.
    let all = got_rows.join("\n");
    for effect in [
        "Created", "Refired", "Joined", "Reopened", "Resolved", "Stale",
    ] {
        assert!(all.contains(effect), "no {effect} in:\n{all}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_delivery_of_a_batch_is_told_its_own_inbox_row() {
    let (_postgres, store) = super::on_postgres().await;
    let round: Vec<Delivery> = (0..40)
        .map(|n| delivery(vec![firing(&format!("row-{n}"))]))
        .collect();
    let bodies: Vec<Vec<u8>> = round.iter().map(|d| d.body.clone()).collect();
    let outcomes = store.db.postgres().ingest_together(round).await;
    for (outcome, body) in outcomes.into_iter().zip(bodies) {
        let id = outcome.unwrap().delivery;
        let stored: Vec<u8> = store
            .db
            .read(move |tx| {
                tx.query_one("SELECT body FROM inbox WHERE id = ?1", &[&id], |row| {
                    row.get(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(stored, body, "inbox row {id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_the_database_refuses_fails_alone_and_its_batch_is_stored() {
    let (_postgres, store) = super::on_postgres().await;
    // PostgreSQL's text cannot hold a NUL character.
    let mut refused = firing("nul");
    refused.incident.title = "bad\u{0}title".to_owned();
    let round = vec![
        delivery(vec![firing("before")]),
        delivery(vec![refused]),
        delivery(vec![firing("after")]),
    ];
    let outcomes = store.db.postgres().ingest_together(round).await;
    assert!(matches!(&outcomes[0], Ok(i) if matches!(i.effects[..], [Effect::Created(_)])));
    let error = outcomes[1].as_ref().expect_err("the NUL is refused");
    assert!(matches!(error, StoreError::Failed { .. }), "{error}");
    assert!(matches!(&outcomes[2], Ok(i) if matches!(i.effects[..], [Effect::Created(_)])));
    let incidents: Vec<String> = store
        .db
        .read(|tx| {
            tx.query_vec(
                "SELECT fingerprint FROM incidents ORDER BY fingerprint",
                &[],
                |row| row.get(0),
            )
        })
        .await
        .unwrap();
    assert_eq!(incidents, ["after", "before"]);
}

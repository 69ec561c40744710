//! Post-mortem drafts in the database: stored per resolution, found missing when a replica
//! stopped before writing one, and deleted with their incident.

use super::super::*;

super::on_both_backends!(a_draft_is_kept_per_resolution_and_goes_with_its_incident);

async fn resolved_at(store: &Store, id: &str) -> String {
    let detail = store.incident_detail(id.to_owned()).await.unwrap().unwrap();
    detail.incident.resolved_at.expect("resolved")
}

async fn a_draft_is_kept_per_resolution_and_goes_with_its_incident(store: &Store) {
    let Effect::Created(id) = super::ingest(store, super::grafana("firing", 1)).await else {
        panic!("created")
    };
    assert!(
        store.missing_postmortems(10).await.unwrap().is_empty(),
        "open"
    );
    super::ingest(store, super::grafana("resolved", 1)).await;
    assert_eq!(
        store.missing_postmortems(10).await.unwrap(),
        std::slice::from_ref(&id)
    );
    assert_eq!(store.postmortem(id.clone()).await.unwrap(), None);

    let at = resolved_at(store, &id).await;
    for body in ["# first draft", "# written again"] {
        store
            .save_postmortem(id.clone(), at.clone(), body.to_owned())
            .await
            .unwrap();
        let stored = store.postmortem(id.clone()).await.unwrap().unwrap();
        assert_eq!(
            (stored.resolved_at.as_str(), stored.body.as_str()),
            (at.as_str(), body)
        );
    }
    assert!(store.missing_postmortems(10).await.unwrap().is_empty());

    // A draft of an earlier resolution does not count for the last one.
    store
        .save_postmortem(
            id.clone(),
            "2000-01-01T00:00:00Z".to_owned(),
            "old".to_owned(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.missing_postmortems(10).await.unwrap(),
        std::slice::from_ref(&id)
    );

    // Retention deletes the incident, and its draft with it.
    let pruned = store.prune(0, now().1 + 1).await.unwrap();
    assert_eq!(pruned.incidents, 1);
    assert_eq!(store.postmortem(id).await.unwrap(), None);
}

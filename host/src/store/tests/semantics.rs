//! Incident semantics at the store: evidence before action, one remediation at a time in
//! priority order, waiting plans diagnosed again, target locks and the global write budget.

use super::super::*;
use crate::capabilities::{CallRecord, Decision, Target};
use crate::lifecycle::{DiagnosisOutcome, Phase, RemediationOutcome, RunOutcome, RunRecord};
use crate::policy::Mode;

// Every case runs on both backends: the embedded SQLite file and a real PostgreSQL server.
super::on_both_backends!(
    remediation_waits_for_every_diagnosis_then_runs_one_at_a_time_by_priority,
    a_target_is_held_by_one_run_until_it_ends,
    the_global_write_budget_refuses_writes_past_it,
    recovery_lets_go_of_the_targets_of_runs_a_crash_ended,
    a_job_whose_end_cannot_be_recorded_is_recovered_alone,
);

/// Opens an incident (Grafana org `org`) with runbooks `a` (priority 100) and `b` (priority
/// 50); returns its id.
async fn incident_with_two_runbooks(store: &Store, org: u32) -> String {
    let selected = [("a", 100), ("b", 50)].map(|(name, priority)| Selected {
        name: name.to_owned(),
        priority,
    });
    match super::ingest_selecting(store, super::grafana("firing", org), &selected).await {
        Effect::Created(id) => id,
        other => panic!("{other:?}"),
    }
}

fn record(job: &Job, phase: Phase, outcome: RunOutcome) -> RunRecord {
    RunRecord {
        job: job.id,
        incident: job.incident.clone(),
        runbook: job.runbook.clone(),
        digest: "0".repeat(64),
        phase,
        mode: Mode::Auto,
        dry_run: false,
        started_at: "2026-11-30T00:00:00Z".to_owned(),
        duration_ms: 1,
        outcome,
        result: None,
        error: None,
        output: String::new(),
        calls: Vec::new(),
    }
}

/// Finishes `job`'s diagnosis with a plan, in mode auto.
async fn diagnose(store: &Store, job: &Job) {
    store.apply(diagnosed(job)).await.unwrap();
}

/// `job`'s diagnosis, done, with a plan in mode auto.
fn diagnosed(job: &Job) -> Transition {
    assert_eq!(job.phase, Phase::Diagnose, "{job:?}");
    Transition::Diagnosed {
        job: job.to_ref(),
        run: Box::new(record(job, Phase::Diagnose, RunOutcome::Diagnosed)),
        outcome: DiagnosisOutcome::Diagnosed {
            summary: "api is failing".to_owned(),
            findings: Vec::new(),
            plan: vec!["roll back".to_owned()],
            detail: serde_json::json!({}),
            stored: r#"{"summary":"api is failing","findings":[],"plan":["roll back"]}"#.to_owned(),
            escalation: None,
        },
        mode: Mode::Auto,
        expires_ms: i64::MAX,
    }
}

/// Starts `job`'s remediation; returns its run id.
async fn begin(store: &Store, job: &Job) -> i64 {
    assert_eq!(job.phase, Phase::Remediate, "{job:?}");
    store
        .apply(Transition::BeginRemediation {
            job: job.to_ref(),
            run: Box::new(record(job, Phase::Remediate, RunOutcome::Running)),
            mode: Mode::Auto,
            approved: false,
            plan: vec!["roll back".to_owned()],
            expires_ms: i64::MAX,
        })
        .await
        .unwrap()
        .run
        .expect("the remediation passed the gate")
}

async fn finish(store: &Store, job: &Job, run_id: i64) {
    store.apply(remediated(job, run_id)).await.unwrap();
}

/// `job`'s remediation (run `run_id`), done.
fn remediated(job: &Job, run_id: i64) -> Transition {
    Transition::Remediated {
        job: job.to_ref(),
        run_id,
        run: Box::new(record(job, Phase::Remediate, RunOutcome::Remediated)),
        outcome: RemediationOutcome::Done {
            success: true,
            action: "rolled back".to_owned(),
            details: String::new(),
        },
        verify: None,
    }
}

async fn claim(store: &Store) -> Option<Job> {
    store.claim_job().await.unwrap()
}

fn names(job: &Option<Job>) -> Option<(String, Phase)> {
    job.as_ref().map(|j| (j.runbook.clone(), j.phase))
}

async fn remediation_waits_for_every_diagnosis_then_runs_one_at_a_time_by_priority(store: &Store) {
    let incident = incident_with_two_runbooks(store, 1).await;

    let a = claim(store).await.unwrap();
    assert_eq!(a.runbook, "a");
    diagnose(store, &a).await;
    // a's plan is queued, but b has not diagnosed yet: b's diagnosis comes first.
    let b = claim(store).await;
    assert_eq!(names(&b), Some(("b".to_owned(), Phase::Diagnose)));
    assert!(
        names(&claim(store).await).is_none(),
        "no remediation while a diagnosis of the incident runs"
    );
    let b = b.unwrap();
    diagnose(store, &b).await;

    // Both plans wait; b's priority (50) is ahead of a's (100).
    let b_fix = claim(store).await;
    assert_eq!(names(&b_fix), Some(("b".to_owned(), Phase::Remediate)));
    assert!(
        claim(store).await.is_none(),
        "one remediation at a time per incident"
    );
    let b_fix = b_fix.unwrap();
    let run = begin(store, &b_fix).await;
    finish(store, &b_fix, run).await;

    // a's plan was made before b changed things: it is diagnosed again, not run.
    let again = claim(store).await;
    assert_eq!(names(&again), Some(("a".to_owned(), Phase::Diagnose)));
    let detail = store.incident_detail(incident).await.unwrap().unwrap();
    let timeline = serde_json::to_string(&detail).unwrap();
    assert!(
        timeline.contains("b's remediation of this incident ran first"),
        "{timeline}"
    );
}

/// Run `run` of `incident` writes to deployment/api, and so holds it.
async fn hold(store: &Store, run: i64, incident: &str) {
    let held = store
        .journal_write(write(run, incident, "b", "api"))
        .await
        .unwrap();
    assert!(held.is_ok(), "{held:?}");
}

fn write(run: i64, incident: &str, runbook: &str, target: &str) -> WriteClaim {
    WriteClaim {
        run,
        incident: incident.to_owned(),
        runbook: runbook.to_owned(),
        call: CallRecord {
            runbook: runbook.to_owned(),
            digest: "0".repeat(64),
            phase: crate::capabilities::Phase::Remediate,
            capability: "kubectl".to_owned(),
            request: serde_json::json!({}),
            command: Some("kubectl rollout undo deployment/api".to_owned()),
            decision: Decision::Allowed,
            rule: "[[kubectl.allow]] #1".to_owned(),
            started_at: "2026-11-30T00:00:00Z".to_owned(),
            duration_ms: 0.0,
            exit_status: None,
            output_bytes: 0,
            result: serde_json::json!({"pending": "started"}),
        },
        target: Target {
            key: format!("kubectl deployments/production/{target}"),
            shown: format!("deployment/{target} in production"),
        },
        budget: None,
    }
}

/// An incident of Grafana org `org` whose first remediation (b's) is running: its id, the
/// job and the run.
async fn remediating(store: &Store, org: u32) -> (String, Job, i64) {
    let incident = incident_with_two_runbooks(store, org).await;
    let a = claim(store).await.unwrap();
    diagnose(store, &a).await;
    let b = claim(store).await.unwrap();
    diagnose(store, &b).await;
    let fix = claim(store).await.unwrap();
    let run = begin(store, &fix).await;
    (incident, fix, run)
}

async fn a_target_is_held_by_one_run_until_it_ends(store: &Store) {
    let (incident, fix, run) = remediating(store, 1).await;
    let (other_incident, _, other) = remediating(store, 2).await;

    hold(store, run, &incident).await;
    let again = store
        .journal_write(write(run, &incident, "b", "api"))
        .await
        .unwrap();
    assert!(again.is_ok(), "the holder writes again: {again:?}");
    let refused = store
        .journal_write(write(other, &other_incident, "b", "api"))
        .await
        .unwrap();
    assert_eq!(
        refused,
        Err(format!(
            "deployment/api in production is being changed by {incident} (b)"
        ))
    );
    let elsewhere = store
        .journal_write(write(other, &other_incident, "b", "web"))
        .await
        .unwrap();
    assert!(elsewhere.is_ok(), "another target is free: {elsewhere:?}");

    finish(store, &fix, run).await;
    let after = store
        .journal_write(write(other, &other_incident, "b", "api"))
        .await
        .unwrap();
    assert!(after.is_ok(), "the lease ended with its run: {after:?}");
}

async fn the_global_write_budget_refuses_writes_past_it(store: &Store) {
    let (incident, _, run) = remediating(store, 1).await;
    let budget = Some((2, 3_600_000, "1h".to_owned()));
    for (n, target) in ["a", "b", "c"].into_iter().enumerate() {
        let mut claim = write(run, &incident, "b", target);
        claim.budget = budget.clone();
        let answer = store.journal_write(claim).await.unwrap();
        if n < 2 {
            assert!(answer.is_ok(), "{answer:?}");
        } else {
            assert_eq!(
                answer,
                Err("the global write budget is spent: at most 2 writes per 1h \
                     ([pipeline] max_writes)"
                    .to_owned())
            );
        }
    }
}

async fn recovery_lets_go_of_the_targets_of_runs_a_crash_ended(store: &Store) {
    let (incident, _, run) = remediating(store, 1).await;
    hold(store, run, &incident).await;
    remediating(store, 2).await;
    // This process's runs end (on SQLite, the one process; on PostgreSQL, this replica).
    let recovery = store.recover_own().await.unwrap();
    assert_eq!(recovery.interrupted, 2);
    let held: i64 = store
        .db
        .read(|tx| tx.query_one("SELECT count(*) FROM target_leases", &[], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(held, 0, "the target is free again");
    // What the interrupted remediation did is unknown: the plans behind it are diagnosed
    // again rather than run.
    let next = claim(store).await;
    assert_eq!(names(&next), Some(("a".to_owned(), Phase::Diagnose)));
}

async fn a_job_whose_end_cannot_be_recorded_is_recovered_alone(store: &Store) {
    let (incident, _, run) = remediating(store, 1).await;
    hold(store, run, &incident).await;
    // Another incident's diagnosis is running meanwhile.
    incident_with_two_runbooks(store, 2).await;
    let other = claim(store).await.unwrap();
    assert_ne!(other.incident, incident);

    let fix = store
        .incident_detail(incident.clone())
        .await
        .unwrap()
        .unwrap();
    let running: Vec<_> = fix.jobs.iter().filter(|j| j.state == "running").collect();
    assert_eq!(running.len(), 1);
    let job_id = store
        .db
        .read(move |tx| {
            tx.query_one(
                "SELECT id FROM jobs WHERE state = 'running' AND phase = 'remediate'",
                &[],
                |row| row.get::<i64>(0),
            )
        })
        .await
        .unwrap();
    let recovery = store.recover_job(job_id).await.unwrap();
    assert_eq!((recovery.requeued, recovery.interrupted), (0, 1));
    let detail = store.incident_detail(incident).await.unwrap().unwrap();
    let timeline = serde_json::to_string(&detail.timeline).unwrap();
    assert!(
        timeline.contains("the result could not be recorded"),
        "{timeline}"
    );
    assert!(detail.incident.escalated);
    // Its target is free again; the other job was left alone.
    let leases: i64 = store
        .db
        .read(|tx| tx.query_one("SELECT count(*) FROM target_leases", &[], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(leases, 0);
    let still: i64 = store
        .db
        .read(move |tx| {
            tx.query_one(
                "SELECT count(*) FROM jobs WHERE id = ?1 AND state = 'running'",
                &[&other.id],
                |row| row.get(0),
            )
        })
        .await
        .unwrap();
    assert_eq!(still, 1, "the other incident's diagnosis still runs");
}

/// A store on `server` as one replica, whose leases last `lease`.
async fn replica(server: &quell_tests::postgres::Postgres, lease: Duration) -> Store {
    let config = crate::config::DatabaseConfig {
        url: Some(server.url()),
        lease: crate::config::HumanDuration(lease),
        ..Default::default()
    };
    Store::connect(&config).await.unwrap()
}

/// What the incident's jobs and runs are doing: (job states, run outcomes), in id order.
async fn states(store: &Store, incident: &str) -> (Vec<String>, Vec<String>) {
    let detail = store
        .incident_detail(incident.to_owned())
        .await
        .unwrap()
        .unwrap();
    let jobs = detail.jobs.iter().map(|j| j.state.clone()).collect();
    let runs = detail.runs.iter().map(|r| r.outcome.clone()).collect();
    (jobs, runs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_replicas_work_is_taken_over_once_its_lease_lapses_and_live_work_is_not() {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    // `dead` claims with a lease that is over at once: a replica that stopped renewing.
    let (live, dead) = (
        replica(&server, Duration::from_secs(60)).await,
        replica(&server, Duration::ZERO).await,
    );
    let (live_incident, _, _) = remediating(&live, 1).await;
    let (dead_incident, _, _) = remediating(&dead, 2).await;
    let diagnosing = incident_with_two_runbooks(&dead, 3).await;
    let diagnosis = claim(&dead).await.unwrap();
    assert_eq!(diagnosis.incident, diagnosing);
    let before = states(&live, &live_incident).await;

    // A replica starting now leaves the live work alone and takes over the dead one's.
    let starting = replica(&server, Duration::from_secs(60)).await;
    let recovery = starting.recover().await.unwrap();
    assert_eq!((recovery.requeued, recovery.interrupted), (1, 1));
    assert_eq!(
        states(&live, &live_incident).await,
        before,
        "live work untouched"
    );
    let (jobs, runs) = states(&live, &dead_incident).await;
    assert!(jobs.contains(&"interrupted".to_owned()), "{jobs:?}");
    assert!(
        !jobs.contains(&"running".to_owned()),
        "never re-run: {jobs:?}"
    );
    assert_eq!(
        runs.last().map(String::as_str),
        Some("interrupted"),
        "{runs:?}"
    );
    let detail = live.incident_detail(dead_incident).await.unwrap().unwrap();
    assert!(
        detail.incident.escalated,
        "an interrupted remediation pages"
    );
    let (jobs, _) = states(&live, &diagnosing).await;
    assert!(jobs.contains(&"queued".to_owned()), "{jobs:?}");

    // The taken-over diagnosis is claimed again, by whoever is alive; a second sweep finds
    // nothing more, and the live replica's renewals keep its remediation its own.
    let mut claimed = Vec::new();
    while let Some(job) = claim(&starting).await {
        claimed.push(job.id);
    }
    assert!(claimed.contains(&diagnosis.id), "{claimed:?}");
    assert_eq!(live.renew_leases().await.unwrap(), 1);
    let again = starting.sweep_lapsed().await.unwrap();
    assert_eq!((again.requeued, again.interrupted), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_stops_recovers_only_its_own_work() {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    let (one, other) = (
        replica(&server, Duration::from_secs(60)).await,
        replica(&server, Duration::from_secs(60)).await,
    );
    assert_ne!(one.replica(), other.replica());
    let (mine, _, _) = remediating(&one, 1).await;
    let (theirs, _, _) = remediating(&other, 2).await;
    let before = states(&one, &theirs).await;
    let stopped = one.recover_own().await.unwrap();
    assert_eq!((stopped.requeued, stopped.interrupted), (0, 1));
    assert_eq!(states(&one, &theirs).await, before);
    let (jobs, _) = states(&one, &mine).await;
    assert!(jobs.contains(&"interrupted".to_owned()), "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_replica_at_a_time_sends_to_a_destination_and_another_takes_over_when_it_lapses() {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    let (one, other) = (
        replica(&server, Duration::from_secs(60)).await,
        replica(&server, Duration::from_secs(60)).await,
    );
    let held = Duration::from_secs(60);
    assert!(one.lead("dispatch:slack", held).await.unwrap());
    assert!(!other.lead("dispatch:slack", held).await.unwrap(), "taken");
    assert!(one.lead("dispatch:slack", held).await.unwrap(), "renewed");
    assert!(
        other.lead("dispatch:pagerduty", held).await.unwrap(),
        "another destination is another lease"
    );
    // `one` renews with a lease that is over at once, as a sender that stopped renewing.
    assert!(one.lead("dispatch:slack", Duration::ZERO).await.unwrap());
    assert!(
        other.lead("dispatch:slack", held).await.unwrap(),
        "taken over"
    );
    assert!(!one.lead("dispatch:slack", held).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn work_queued_on_one_replica_wakes_the_workers_of_another() {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    let (one, other) = (
        replica(&server, Duration::from_secs(60)).await,
        replica(&server, Duration::from_secs(60)).await,
    );
    super::listening(&other).await;
    let woken = other.hub().jobs().notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    // Nothing rings `other`'s hub in this process: only the database's NOTIFY can wake it.
    incident_with_two_runbooks(&one, 1).await;
    tokio::time::timeout(Duration::from_secs(30), woken)
        .await
        .expect("the other replica's workers were woken");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_lease_lapsed_records_nothing_more_and_may_not_write() {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    // `stalled` claims with a lease that is over at once: a replica in a long pause.
    let (stalled, taker) = (
        replica(&server, Duration::ZERO).await,
        replica(&server, Duration::from_secs(60)).await,
    );
    let (fixing, fix, run) = remediating(&stalled, 1).await;
    let diagnosing = incident_with_two_runbooks(&stalled, 2).await;
    let diagnosis = claim(&stalled).await.unwrap();
    assert_eq!(diagnosis.incident, diagnosing);
    let swept = taker.sweep_lapsed().await.unwrap();
    assert_eq!((swept.requeued, swept.interrupted), (1, 1));
    let before = (
        states(&taker, &fixing).await,
        states(&taker, &diagnosing).await,
    );

    // The stalled replica wakes up and tries to record its results: both are refused, and
    // neither incident changes.
    for (late, job) in [
        (stalled.apply(diagnosed(&diagnosis)).await, diagnosis.id),
        (stalled.apply(remediated(&fix, run)).await, fix.id),
    ] {
        match late {
            Err(StoreError::Lost { job: lost, replica }) => {
                assert_eq!((lost, replica.as_str()), (job, stalled.replica()));
            }
            other => panic!("job {job}: {other:?}"),
        }
    }
    // Its remediation may not write either: the journal refuses it, so it never runs.
    let refused = stalled
        .journal_write(write(run, &fixing, "b", "api"))
        .await
        .unwrap();
    let why = refused.expect_err("a write of a lost job is refused");
    assert!(why.contains("no longer holds the run's job"), "{why}");
    // And recovering "its" job is not its to do.
    let recovered = stalled.recover_job(fix.id).await.unwrap();
    assert_eq!((recovered.requeued, recovered.interrupted), (0, 0));
    assert_eq!(
        (
            states(&taker, &fixing).await,
            states(&taker, &diagnosing).await
        ),
        before
    );
    let leases: i64 = taker
        .db
        .read(|tx| tx.query_one("SELECT count(*) FROM target_leases", &[], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(leases, 0, "no target taken by the stalled replica");

    // The replica that took the diagnosis over runs it and records it.
    let again = loop {
        let job = claim(&taker).await.expect("the diagnosis is queued again");
        if job.id == diagnosis.id {
            break job;
        }
    };
    taker.apply(diagnosed(&again)).await.unwrap();
}

//! The lifecycle's decisions, without a database.

use super::*;

#[test]
fn names_round_trip_and_match_what_is_stored() {
    for state in JobState::ALL {
        assert_eq!(JobState::parse(state.as_str()), Some(*state));
        assert_eq!(
            serde_json::to_value(state).unwrap(),
            serde_json::json!(state.as_str())
        );
    }
    assert_eq!(JobState::AwaitingApproval.as_str(), "awaiting_approval");
    assert_eq!(EventKind::Refired.as_str(), "re-fired");
    assert_eq!(
        NoticeKind::parse("remediation-failed"),
        Some(NoticeKind::RemediationFailed)
    );
    assert_eq!(IncidentStatus::parse("closed"), None);
}

#[test]
fn the_gate_holds_unapproved_and_paused_plans_and_never_runs_diagnose_mode() {
    for (approved, paused) in [(false, false), (true, false), (false, true), (true, true)] {
        assert_eq!(gate(Mode::Diagnose, approved, paused), Gate::HandOver);
    }
    assert_eq!(
        gate(Mode::Approve, false, false),
        Gate::Hold(Hold::Approval)
    );
    assert_eq!(gate(Mode::Approve, false, true), Gate::Hold(Hold::Approval));
    assert_eq!(gate(Mode::Approve, true, false), Gate::Remediate);
    assert_eq!(gate(Mode::Approve, true, true), Gate::Hold(Hold::Paused));
    assert_eq!(gate(Mode::Auto, false, true), Gate::Hold(Hold::Paused));
    assert_eq!(gate(Mode::Auto, false, false), Gate::Remediate);
}

/// Facts as a test sets them; counts what was asked.
#[derive(Default)]
struct Snapshot {
    status: Option<IncidentStatus>,
    paused: bool,
    budget_left: bool,
    another_applies: bool,
    budget_taken: u32,
}

impl Facts for Snapshot {
    type Error = std::convert::Infallible;
    fn status(&mut self) -> Result<IncidentStatus, Self::Error> {
        Ok(self.status.unwrap_or(IncidentStatus::Open))
    }
    fn paused(&mut self) -> Result<bool, Self::Error> {
        Ok(self.paused)
    }
    fn take_budget(&mut self, _: &str, _: u32, _: i64) -> Result<bool, Self::Error> {
        if self.budget_left {
            self.budget_taken += 1;
        }
        Ok(self.budget_left)
    }
    fn another_applies(&mut self, _: i64) -> Result<bool, Self::Error> {
        Ok(self.another_applies)
    }
}

fn job() -> JobRef {
    JobRef {
        id: 7,
        incident: "INC-1".to_owned(),
        runbook: "rb".to_owned(),
    }
}

fn run() -> Box<RunRecord> {
    Box::new(RunRecord {
        job: 7,
        incident: "INC-1".to_owned(),
        runbook: "rb".to_owned(),
        digest: String::new(),
        phase: Phase::Diagnose,
        mode: Mode::Auto,
        dry_run: false,
        started_at: String::new(),
        duration_ms: 0,
        outcome: RunOutcome::Diagnosed,
        result: None,
        error: None,
        output: String::new(),
        calls: Vec::new(),
    })
}

fn diagnosed(mode: Mode) -> Transition {
    escalating(mode, None)
}

fn escalating(mode: Mode, escalation: Option<&str>) -> Transition {
    Transition::Diagnosed {
        job: job(),
        run: run(),
        outcome: DiagnosisOutcome::Diagnosed {
            summary: "api is failing".to_owned(),
            findings: Vec::new(),
            plan: vec!["roll back".to_owned()],
            detail: serde_json::Value::Null,
            stored: "{}".to_owned(),
            escalation: escalation.map(str::to_owned),
        },
        mode,
        expires_ms: 1_000,
    }
}

/// The job states, events and notices a transition writes, in order.
fn shape(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|step| match step {
            Step::Job(state) => format!("job {state}"),
            Step::AwaitApproval { .. } => "await approval".to_owned(),
            Step::HoldPlan { .. } => "hold".to_owned(),
            Step::QueueRemediation { .. } => "queue remediation".to_owned(),
            Step::QueueVerify { .. } => "queue verify".to_owned(),
            Step::Status(status) => format!("status {status}"),
            Step::CancelPendingJobs => "cancel pending".to_owned(),
            Step::MarkRemediated => "remediated".to_owned(),
            Step::Rediagnose(_) => "rediagnose the others".to_owned(),
            Step::Event { kind, .. } => format!("event {kind}"),
            Step::Notice { kind, .. } => format!("notice {kind}"),
            Step::Escalate(_) => "escalate".to_owned(),
            Step::RecordRun(_) => "record run".to_owned(),
            Step::StartRun(_) => "start run".to_owned(),
            Step::FinishRun(..) => "finish run".to_owned(),
        })
        .collect()
}

#[test]
fn a_diagnosis_goes_where_the_mode_and_the_pause_send_it() {
    let mut facts = Snapshot::default();
    let (steps, _) = diagnosed(Mode::Auto).steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps),
        [
            "record run",
            "event matched",
            "event diagnosed",
            "notice diagnosed",
            "queue remediation",
            "event plan"
        ]
    );
    facts.paused = true;
    let (steps, _) = diagnosed(Mode::Auto).steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps)[4..],
        ["await approval", "event plan", "notice plan"]
    );
    let (steps, _) = diagnosed(Mode::Diagnose).steps(&mut facts).unwrap();
    assert_eq!(shape(&steps)[4..], ["job done", "escalate"]);
    facts.status = Some(IncidentStatus::Resolved);
    let (steps, _) = diagnosed(Mode::Auto).steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps)[4..],
        ["job done", "event skipped"],
        "resolved during diagnosis: no remediation, no escalation"
    );
}

#[test]
fn a_runbook_that_escalates_goes_to_on_call_in_every_mode_with_no_plan_to_approve() {
    for mode in [Mode::Auto, Mode::Approve, Mode::Diagnose] {
        let mut facts = Snapshot::default();
        let (steps, _) = escalating(mode, Some("replicas mismatch: nothing to automate"))
            .steps(&mut facts)
            .unwrap();
        assert_eq!(
            shape(&steps)[3..],
            ["notice diagnosed", "job done", "escalate"],
            "{mode}"
        );
        assert!(steps.iter().any(|s| matches!(s, Step::Escalate(reason)
            if reason == "rb hands over to on-call: replicas mismatch: nothing to automate")));
    }
    // Resolved meanwhile: nobody is paged for an incident that is over.
    let mut facts = Snapshot {
        status: Some(IncidentStatus::Resolved),
        ..Snapshot::default()
    };
    let (steps, _) = escalating(Mode::Auto, Some("x")).steps(&mut facts).unwrap();
    assert!(!shape(&steps).contains(&"escalate".to_owned()));
}

#[test]
fn a_spent_budget_skips_and_escalates_without_running() {
    let begin = Transition::BeginDiagnosis {
        job: job(),
        budget: Some((3, 3_600_000, "1h".to_owned())),
    };
    let mut facts = Snapshot {
        budget_left: true,
        ..Snapshot::default()
    };
    let (steps, proceed) = begin.steps(&mut facts).unwrap();
    assert!(proceed);
    assert_eq!(shape(&steps), ["event diagnosing"]);
    assert_eq!(facts.budget_taken, 1);
    facts.budget_left = false;
    let (steps, proceed) = begin.steps(&mut facts).unwrap();
    assert!(!proceed);
    assert_eq!(
        shape(&steps),
        ["job skipped", "event budget-exhausted", "escalate"]
    );
}

#[test]
fn a_remediation_is_gated_again_when_it_starts() {
    let begin = |mode, approved| Transition::BeginRemediation {
        job: job(),
        run: run(),
        mode,
        approved,
        plan: vec!["roll back".to_owned()],
        expires_ms: 1_000,
    };
    let mut facts = Snapshot::default();
    let (steps, proceed) = begin(Mode::Auto, false).steps(&mut facts).unwrap();
    assert!(proceed);
    assert_eq!(shape(&steps), ["event remediating", "start run"]);
    let (steps, proceed) = begin(Mode::Approve, false).steps(&mut facts).unwrap();
    assert!(!proceed);
    assert_eq!(shape(&steps), ["hold", "event plan", "notice plan"]);
    let (steps, _) = begin(Mode::Diagnose, true).steps(&mut facts).unwrap();
    assert_eq!(shape(&steps), ["job skipped", "event skipped", "escalate"]);
    facts.paused = true;
    let (steps, _) = begin(Mode::Approve, true).steps(&mut facts).unwrap();
    assert_eq!(shape(&steps), ["hold", "event paused"]);
    facts.status = Some(IncidentStatus::Resolved);
    let (steps, proceed) = begin(Mode::Auto, false).steps(&mut facts).unwrap();
    assert!(!proceed);
    assert_eq!(shape(&steps), ["job cancelled", "event cancelled"]);
}

#[test]
fn acknowledging_and_resolving_apply_once() {
    let ack = Transition::Acknowledge {
        incident: "INC-1".to_owned(),
        message: "acknowledged by api".to_owned(),
    };
    let resolve = Transition::Resolve {
        incident: "INC-1".to_owned(),
        why: "resolved by api".to_owned(),
    };
    let mut facts = Snapshot::default();
    let (steps, _) = ack.steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps),
        [
            "status acknowledged",
            "event acknowledged",
            "notice acknowledged"
        ]
    );
    let (steps, _) = resolve.steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps),
        [
            "status resolved",
            "event resolved",
            "notice resolved",
            "cancel pending"
        ]
    );
    facts.status = Some(IncidentStatus::Acknowledged);
    assert!(ack.steps(&mut facts).unwrap().0.is_empty());
    facts.status = Some(IncidentStatus::Resolved);
    assert!(resolve.steps(&mut facts).unwrap().0.is_empty());
}

#[test]
fn a_runbook_that_declines_escalates_only_when_nothing_else_applies() {
    let declined = Transition::Diagnosed {
        job: job(),
        run: run(),
        outcome: DiagnosisOutcome::NotMatched,
        mode: Mode::Auto,
        expires_ms: 0,
    };
    let mut facts = Snapshot {
        another_applies: true,
        ..Snapshot::default()
    };
    let (steps, _) = declined.steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps),
        ["record run", "job done", "event not-matched"]
    );
    facts.another_applies = false;
    let (steps, _) = declined.steps(&mut facts).unwrap();
    assert_eq!(shape(&steps)[3..], ["event triage", "escalate"]);
}

fn check(outcome: VerifyOutcome, attempt: u32) -> Transition {
    Transition::Verified(Box::new(Verification {
        job: job(),
        run: *run(),
        outcome,
        attempt,
        attempts: 2,
        after: (60_000, "1m".to_owned()),
        before: "api is failing (✗ pods: 3 crash-looping)".to_owned(),
    }))
}

fn still_failing() -> VerifyOutcome {
    VerifyOutcome::Failing {
        summary: "api is still failing".to_owned(),
        findings: vec![FindingView {
            name: "pods".to_owned(),
            ok: false,
            summary: "2 crash-looping".to_owned(),
        }],
    }
}

#[test]
fn a_check_that_passes_mitigates_without_paging() {
    let mut facts = Snapshot::default();
    let (steps, _) = check(VerifyOutcome::Healthy("api is fine".to_owned()), 1)
        .steps(&mut facts)
        .unwrap();
    assert_eq!(
        shape(&steps),
        [
            "record run",
            "rediagnose the others",
            "job done",
            "event verified",
            "status mitigated",
            "notice mitigated"
        ]
    );
    // An incident resolved meanwhile stays resolved.
    let mut resolved = Snapshot {
        status: Some(IncidentStatus::Resolved),
        ..Snapshot::default()
    };
    let (steps, _) = check(VerifyOutcome::Healthy("fine".to_owned()), 1)
        .steps(&mut resolved)
        .unwrap();
    assert_eq!(
        shape(&steps),
        [
            "record run",
            "rediagnose the others",
            "job done",
            "event verified"
        ]
    );
}

#[test]
fn a_failing_check_tries_again_then_pages_with_both_diagnoses() {
    let mut facts = Snapshot::default();
    let (steps, _) = check(still_failing(), 1).steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps),
        ["record run", "queue verify", "event verifying"]
    );
    let (steps, _) = check(still_failing(), 2).steps(&mut facts).unwrap();
    assert_eq!(
        shape(&steps),
        [
            "record run",
            "rediagnose the others",
            "job failed",
            "event verification-failed",
            "escalate"
        ]
    );
    let Some(Step::Escalate(why)) = steps.last() else {
        unreachable!()
    };
    assert_eq!(
        why,
        "rb remediated, but its checks still fail after 2 check(s).\n\
         Before: api is failing (✗ pods: 3 crash-looping)\n\
         After: api is still failing (✗ pods: 2 crash-looping)"
    );
}

#[test]
fn a_success_with_verify_is_checked_before_the_job_is_done() {
    let remediated = |verify| Transition::Remediated {
        job: job(),
        run_id: 1,
        run: run(),
        outcome: RemediationOutcome::Done {
            success: true,
            action: "rolled back".to_owned(),
            details: String::new(),
        },
        verify,
    };
    let mut facts = Snapshot::default();
    let (steps, _) = remediated(Some((60_000, "1m".to_owned())))
        .steps(&mut facts)
        .unwrap();
    let shape = shape(&steps);
    assert!(shape.contains(&"queue verify".to_owned()), "{shape:?}");
    assert!(!shape.contains(&"job done".to_owned()), "{shape:?}");
    assert!(
        !shape.contains(&"rediagnose the others".to_owned()),
        "the plans behind it wait for the verification: {shape:?}"
    );
    let (steps, _) = remediated(None).steps(&mut facts).unwrap();
    assert!(super::tests::shape(&steps).contains(&"job done".to_owned()));
}

//! The Slack messages' limits and shapes, checked with arbitrary input.

use proptest::prelude::*;

use super::*;
use crate::lifecycle::CommandView;
use crate::notify::{FindingView, IncidentView};

fn notice(
    kind: &str,
    title: String,
    message: String,
    findings: Vec<FindingView>,
    plan: Vec<String>,
) -> Notice {
    Notice {
        kind: NoticeKind::parse(kind).unwrap(),
        at: "2026-11-24T03:00:00.000Z".to_owned(),
        incident: IncidentView {
            id: "INC-0000ABCD".to_owned(),
            title,
            severity: "critical".to_owned(),
            status: "open".to_owned(),
            source: "alertmanager".to_owned(),
            created_at: "2026-11-24T03:04:05.000Z".to_owned(),
            escalated: false,
            labels: json!({}),
        },
        runbook: Some("probe".to_owned()),
        message,
        findings,
        plan,
        commands: Vec::new(),
    }
}

fn command(command: &str, decision: &str, rule: &str) -> CommandView {
    CommandView {
        command: command.to_owned(),
        decision: decision.to_owned(),
        rule: rule.to_owned(),
    }
}

/// Checks a message against Block Kit's limits; returns what is wrong.
pub fn violations(payload: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    let blocks = payload["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.len() > Limits::BLOCKS {
        wrong.push(format!("{} blocks", blocks.len()));
    }
    let total = text_len(&Value::Array(blocks.clone()));
    if total > Limits::TOTAL {
        wrong.push(format!("{total} characters in blocks"));
    }
    for block in &blocks {
        let count = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        match block["type"].as_str() {
            Some("header") if count(&block["text"]["text"]) > Limits::HEADER => {
                wrong.push("header too long".to_owned());
            }
            Some("section") => {
                if count(&block["text"]["text"]) > Limits::SECTION {
                    wrong.push("section text too long".to_owned());
                }
                let fields = block["fields"].as_array().cloned().unwrap_or_default();
                if fields.len() > Limits::FIELDS
                    || fields.iter().any(|f| count(&f["text"]) > Limits::FIELD)
                {
                    wrong.push("fields over the limit".to_owned());
                }
            }
            _ => {}
        }
    }
    if payload["text"].as_str().map_or(0, |s| s.chars().count()) > Limits::TEXT {
        wrong.push("fallback text too long".to_owned());
    }
    wrong
}

#[test]
fn the_seed_message_shape() {
    let n = notice(
        "created",
        "api down".to_owned(),
        String::new(),
        vec![],
        vec![],
    );
    let p = payload(&n, false);
    assert_eq!(p["blocks"][0]["text"]["text"], "🔴 INC-0000ABCD: api down");
    assert_eq!(p["blocks"][1]["fields"][0]["text"], "*Severity:* critical");
    assert_eq!(p["blocks"][1]["fields"][3]["text"], "*Time:* 03:04 UTC");
    assert_eq!(p["blocks"][2]["text"]["text"], "🚨 New incident created");
}

#[test]
fn plans_carry_buttons_only_with_a_bot() {
    let n = notice(
        "plan",
        "t".to_owned(),
        "m".to_owned(),
        vec![],
        vec!["undo".to_owned()],
    );
    let with = payload(&n, true);
    let actions = with["blocks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(actions["elements"][0]["action_id"], "approve");
    assert_eq!(
        actions["elements"][1]["value"],
        format!(
            "INC-0000ABCD|probe|{}",
            crate::lifecycle::plan_digest(&["undo".to_owned()])
        )
    );
    let without = payload(&n, false);
    assert!(
        without["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] != "actions")
    );
}

#[test]
fn a_remediation_shows_the_commands_it_ran_with_their_decisions() {
    let mut n = notice(
        "remediated",
        "api down".to_owned(),
        "Rolled back deployment/api".to_owned(),
        vec![],
        vec![],
    );
    n.commands = vec![
        command(
            "kubectl rollout undo deployment/api --namespace=production",
            "allowed",
            "kubectl.allow[0]",
        ),
        command(
            "kubectl delete deployment/api --namespace=production",
            "denied",
            "verb delete is not allowed",
        ),
        command("kubectl scale deployment/api --replicas=3", "dry-run", "r"),
    ];
    let text = message(&n);
    assert!(
        text.contains("$ kubectl rollout undo deployment/api --namespace=production\n"),
        "{text}"
    );
    assert!(
        text.contains("✗ kubectl delete deployment/api --namespace=production (denied: verb delete is not allowed)"),
        "{text}"
    );
    assert!(text.contains("(dry run: not executed)"), "{text}");
    assert!(!text.contains("RolloutUndo"), "no request JSON: {text}");

    n.commands = (0..14)
        .map(|i| command(&format!("kubectl get pod/p{i}"), "allowed", "r"))
        .collect();
    let text = message(&n);
    assert!(
        text.contains("pod/p9") && !text.contains("pod/p10"),
        "{text}"
    );
    assert!(text.contains("… and 4 more on the incident page"), "{text}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_long_incident_text_never_breaks_block_kit_limits(
        title in ".{0,400}",
        message in ".{0,20000}",
        findings in proptest::collection::vec((".{0,60}", any::<bool>(), ".{0,3000}"), 0..40),
        plan in proptest::collection::vec(".{0,500}", 0..30),
        commands in proptest::collection::vec((".{0,3000}", ".{0,300}"), 0..20),
        kind in prop::sample::select(KINDS.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
        buttons in any::<bool>(),
    ) {
        let findings = findings
            .into_iter()
            .map(|(name, ok, summary)| FindingView { name, ok, summary })
            .collect();
        let mut n = notice(kind, title, message, findings, plan);
        n.commands = commands
            .into_iter()
            .map(|(c, rule)| command(&c, "denied", &rule))
            .collect();
        let p = payload(&n, buttons);
        let wrong = violations(&p);
        prop_assert!(wrong.is_empty(), "{wrong:?}");
    }
}

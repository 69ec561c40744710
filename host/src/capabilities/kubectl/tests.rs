use super::*;
use crate::bindings::quell::runbook::kubectl::Options;
use crate::capabilities::testing::context;
use crate::capabilities::{Decision, Phase};
use crate::policy::{Effect, Policy};

fn request(verb: WitVerb, resource: &str, namespace: Option<&str>, name: Option<&str>) -> Request {
    Request {
        verb,
        resource: resource.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        selector: None,
        options: Options {
            output: None,
            tail_lines: None,
            container: None,
            previous: false,
            to_revision: None,
            replicas: None,
        },
    }
}

const POLICY: &str = r#"
[runbook]
name = "t"
component = "t.wasm"
[[kubectl.allow]]
verbs = ["get", "rollout history"]
resources = ["pods", "deployments"]
namespaces = ["production"]
[[kubectl.allow]]
verbs = ["rollout undo"]
resources = ["deployments"]
namespaces = ["production"]
names = ["api-*"]
"#;

#[test]
fn argv_is_rendered_by_the_host() {
    let mut req = request(WitVerb::Get, "po", Some("production"), None);
    req.selector = Some("app=api".to_owned());
    req.options.output = Some(OutputFormat::Json);
    let call = Call::parse(&req).unwrap();
    assert_eq!(
        call.args(),
        [
            "get",
            "pods",
            "--namespace=production",
            "--selector=app=api",
            "--output=json"
        ]
    );

    let mut undo = request(
        WitVerb::RolloutUndo,
        "deploy",
        Some("production"),
        Some("api-1"),
    );
    undo.options.to_revision = Some(2);
    let call = Call::parse(&undo).unwrap();
    assert_eq!(
        call.args(),
        [
            "rollout",
            "undo",
            "deployment/api-1",
            "--namespace=production",
            "--to-revision=2"
        ]
    );
    assert_eq!(call.verb().effect(), Effect::Write);
}

#[test]
fn flag_injection_cannot_be_expressed() {
    for (namespace, name) in [
        ("--kubeconfig=/etc/admin.conf", "api"),
        ("production", "--token=abc"),
        ("production", "--as=system:admin"),
        ("production", "api --server=https://evil"),
        ("production", "-f"),
    ] {
        let req = request(WitVerb::Get, "pods", Some(namespace), Some(name));
        let err = Call::parse(&req).unwrap_err();
        assert!(err.starts_with("invalid "), "{namespace} {name}: {err}");
    }
    let mut req = request(WitVerb::Get, "pods", Some("production"), None);
    req.selector = Some("--raw=/api".to_owned());
    assert!(Call::parse(&req).is_err());
    assert!(
        Call::parse(&request(
            WitVerb::Get,
            "secrets/../x",
            Some("production"),
            None
        ))
        .unwrap_err()
        .starts_with("unknown resource")
    );
}

#[test]
fn policy_names_the_rule_or_the_missing_one() {
    let policy = Policy::parse(POLICY).unwrap();
    let get = Call::parse(&request(WitVerb::Get, "pods", Some("production"), None)).unwrap();
    assert_eq!(policy.kubectl.check(&get).unwrap(), "[[kubectl.allow]] #1");
    let undo = Call::parse(&request(
        WitVerb::RolloutUndo,
        "deployments",
        Some("production"),
        Some("api-7"),
    ))
    .unwrap();
    assert_eq!(policy.kubectl.check(&undo).unwrap(), "[[kubectl.allow]] #2");
    let other = Call::parse(&request(
        WitVerb::RolloutUndo,
        "deployments",
        Some("production"),
        Some("db"),
    ))
    .unwrap();
    assert!(policy.kubectl.check(&other).is_err());
    let staging = Call::parse(&request(WitVerb::Get, "pods", Some("staging"), None)).unwrap();
    assert_eq!(
        policy.kubectl.check(&staging).unwrap_err(),
        "no [[kubectl.allow]] rule allows \"get\" on pods in namespace \"staging\"; \
         a rule with verbs = [\"get\"], resources = [\"pods\"], namespaces = [\"staging\"] would"
    );
}

#[tokio::test]
async fn diagnose_may_not_write_and_dry_run_does_not_execute() {
    let mut ctx = context(POLICY, Phase::Diagnose, false);
    let undo = request(
        WitVerb::RolloutUndo,
        "deployments",
        Some("production"),
        Some("api-1"),
    );
    let err = ctx.run(undo.clone()).await.unwrap_err();
    assert!(
        matches!(&err, HostError::Denied(r) if r.contains("diagnose may only read")),
        "{err:?}"
    );

    let mut ctx = context(POLICY, Phase::Remediate, true);
    let out = ctx.run(undo).await.unwrap();
    assert!(
        out.stdout.starts_with("dry run: not executed:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("rollout undo deployment/api-1 --namespace=production")
    );
    assert_eq!(ctx.calls[0].decision, Decision::DryRun);
}

#[tokio::test]
async fn absent_section_denies_everything() {
    let mut ctx = context(
        "[runbook]\nname = \"t\"\ncomponent = \"t.wasm\"\n",
        Phase::Diagnose,
        false,
    );
    let err = ctx
        .run(request(WitVerb::Get, "pods", Some("production"), None))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Denied(_)));
    assert_eq!(ctx.calls.len(), 1);
    assert_eq!(ctx.calls[0].decision, Decision::Denied);
}

#[test]
fn a_namespace_object_is_covered_by_the_namespace_globs() {
    let policy = Policy::parse(
        "[runbook]\nname = \"t\"\ncomponent = \"t.wasm\"\n[[kubectl.allow]]\nverbs = [\"get\", \"delete\"]\nresources = [\"namespaces\"]\nnamespaces = [\"staging-*\"]\n",
    )
    .unwrap();
    let call = |verb, name| Call::parse(&request(verb, "namespaces", None, name)).unwrap();
    assert!(
        policy
            .kubectl
            .check(&call(WitVerb::Delete, Some("staging-1")))
            .is_ok()
    );
    assert!(
        policy
            .kubectl
            .check(&call(WitVerb::Delete, Some("production")))
            .is_err()
    );
    assert!(policy.kubectl.check(&call(WitVerb::Get, None)).is_err());
}

#[tokio::test]
async fn a_huge_request_is_recorded_cut_to_size() {
    let mut ctx = context(POLICY, Phase::Diagnose, false);
    let huge = "\u{1}".repeat(1 << 20);
    let err = ctx
        .run(request(WitVerb::Get, &huge, Some("production"), None))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Denied(_)));
    let record = serde_json::to_string(&ctx.calls[0]).unwrap();
    assert!(record.len() < 64 << 10, "record is {} bytes", record.len());
    assert!(ctx.calls[0].rule.ends_with("… (cut)"));
}

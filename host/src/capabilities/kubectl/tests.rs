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
async fn a_huge_request_is_too_large_and_recorded_cut_to_size() {
    let mut ctx = context(POLICY, Phase::Diagnose, false);
    let huge = "\u{1}".repeat(1 << 20);
    let err = ctx
        .run(request(WitVerb::Get, &huge, Some("production"), None))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::TooLarge), "{err:?}");
    let record = serde_json::to_string(&ctx.calls[0]).unwrap();
    assert!(record.len() < 64 << 10, "record is {} bytes", record.len());
    assert!(
        ctx.calls[0].rule.starts_with("too large: the request is"),
        "{}",
        ctx.calls[0].rule
    );
}

#[tokio::test]
async fn a_long_invalid_request_is_refused_and_its_reason_cut_in_the_record() {
    let mut ctx = context(POLICY, Phase::Diagnose, false);
    let long = "\u{1}".repeat(8 << 10);
    let err = ctx
        .run(request(WitVerb::Get, &long, Some("production"), None))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Denied(_)), "{err:?}");
    assert!(ctx.calls[0].rule.ends_with("… (cut)"));
}

fn selector(text: &str) -> Result<String, String> {
    let mut req = request(WitVerb::Get, "pods", Some("production"), None);
    req.selector = Some(text.to_owned());
    Call::parse(&req).map(|call| call.selector.unwrap())
}

#[test]
fn every_form_of_label_selector_is_accepted_and_rendered_without_spaces() {
    for (written, rendered) in [
        ("app=api", "app=api"),
        ("app==api", "app==api"),
        ("tier!=db", "tier!=db"),
        ("canary", "canary"),
        ("!canary", "!canary"),
        ("! canary", "!canary"),
        ("app=", "app="),
        (
            "environment in (production, qa)",
            "environment in (production,qa)",
        ),
        (
            "tier notin (frontend,backend)",
            "tier notin (frontend,backend)",
        ),
        ("tier in(a)", "tier in (a)"),
        (" app = api , tier in ( a , b ) ", "app=api,tier in (a,b)"),
        ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
        (
            "example.com/Key_1.x=Val-1.2_z",
            "example.com/Key_1.x=Val-1.2_z",
        ),
    ] {
        assert_eq!(selector(written).as_deref(), Ok(rendered), "{written:?}");
    }
}

#[test]
fn a_bad_label_selector_is_refused_naming_the_rule() {
    let value_rule = "(empty, or at most 63 characters: letters, digits, '-', '_' and '.', \
                      starting and ending with a letter or digit)";
    assert_eq!(
        selector("app=a b").unwrap_err(),
        format!(
            "invalid label selector \"app=a b\": value \"a b\" is not a valid label value {value_rule}"
        )
    );
    let long = "x".repeat(64);
    for (written, why) in [
        ("-l=x", "key \"-l\" is not a valid label key"),
        ("--raw=/api", "key \"--raw\" is not a valid label key"),
        ("a b", "key \"a b\" is not a valid label key"),
        ("app=-x", "value \"-x\" is not a valid label value"),
        ("app=x/y", "value \"x/y\" is not a valid label value"),
        (&format!("{long}=y"), "is not a valid label key"),
        (&format!("app={long}"), "is not a valid label value"),
        (
            "Bad_Prefix/x=y",
            "has the prefix \"Bad_Prefix\", which is not a DNS-1123 subdomain",
        ),
        (
            "/x=y",
            "has the prefix \"\", which is not a DNS-1123 subdomain",
        ),
        ("a/b/c=d", "key \"a/b/c\" is not a valid label key"),
        ("app=x,,tier=y", "a requirement is empty"),
        ("app=x,", "a requirement is empty"),
        ("", "it has no requirement"),
        ("app in ()", "has no values between its parentheses"),
        ("app in (a", "its parentheses do not pair up"),
        ("app in ((a))", "its parentheses do not pair up"),
        ("app in (a b)", "value \"a b\" is not a valid label value"),
        ("app on (a)", "\"on\" is no operator"),
        ("app in (a) x", "has text after its closing ')'"),
        ("app!x", "'!' is only an operator as `!key` or `!=`"),
        ("app=a=b", "value \"a=b\" is not a valid label value"),
    ] {
        let err = selector(written).unwrap_err();
        assert!(
            err.starts_with(&format!("invalid label selector {written:?}: ")) && err.contains(why),
            "{written:?}: {err}"
        );
    }
    let huge = format!("app={}", "a,app=".repeat(200));
    assert!(
        selector(&huge)
            .unwrap_err()
            .contains("over the 1024-byte limit")
    );
}

#[test]
fn names_namespaces_and_containers_follow_their_grammars() {
    let get = |resource: &str, namespace: Option<&str>, name: &str| {
        Call::parse(&request(WitVerb::Get, resource, namespace, Some(name)))
    };
    assert!(get("pods", Some("production"), "api-7d9.x1").is_ok());
    assert!(get("nodes", None, "ip-10-0-0-1.ec2.internal").is_ok());
    for (resource, namespace, name, err) in [
        (
            "pods",
            Some("production"),
            "a..b",
            "invalid name \"a..b\": not a DNS-1123 subdomain",
        ),
        (
            "pods",
            Some("production"),
            "a.-b",
            "invalid name \"a.-b\": not a DNS-1123 subdomain",
        ),
        (
            "pods",
            Some("production"),
            "Api",
            "invalid name \"Api\": not a DNS-1123 subdomain",
        ),
        (
            "pods",
            Some("prod.eu"),
            "api",
            "invalid namespace \"prod.eu\": not a DNS-1123 label",
        ),
        (
            "pods",
            Some("Production"),
            "api",
            "invalid namespace \"Production\": not a DNS-1123 label",
        ),
        (
            "namespaces",
            None,
            "team.a",
            "invalid name \"team.a\": not a DNS-1123 label",
        ),
    ] {
        let got = get(resource, namespace, name).unwrap_err();
        assert!(got.starts_with(err), "{got}");
    }
    // Labels of 63 characters each: three make a subdomain, four are over 253 characters.
    let label = "a".repeat(63);
    assert!(get("pods", Some("production"), &[label.as_str(); 3].join(".")).is_ok());
    assert!(get("pods", Some("production"), &[label.as_str(); 4].join(".")).is_err());

    let mut logs = request(WitVerb::Logs, "pods", Some("production"), Some("api"));
    logs.options.container = Some("Sidecar".to_owned());
    assert!(
        Call::parse(&logs)
            .unwrap_err()
            .starts_with("invalid container \"Sidecar\": not a DNS-1123 label")
    );
}

#[tokio::test]
async fn a_bad_selector_is_a_refusal_the_runbook_sees() {
    let mut ctx = context(POLICY, Phase::Diagnose, false);
    let mut req = request(WitVerb::Get, "pods", Some("production"), None);
    req.selector = Some("app=a b".to_owned());
    let err = ctx.run(req).await.unwrap_err();
    assert!(
        matches!(&err, HostError::Denied(reason) if reason.starts_with(
            "invalid kubectl request: invalid label selector \"app=a b\": value \"a b\" is not a valid label value ("
        )),
        "{err:?}"
    );
    assert_eq!(ctx.calls[0].decision, Decision::Denied);
}

#[test]
fn field_selectors_render_canonically_and_refuse_anything_else() {
    assert_eq!(
        grammar::field_selector("involvedObject.kind=Pod,involvedObject.name==api-1").unwrap(),
        "involvedObject.kind=Pod,involvedObject.name=api-1"
    );
    assert_eq!(
        grammar::field_selector("status.phase!=Running").unwrap(),
        "status.phase!=Running"
    );
    for bad in [
        "",
        "name",
        "a=b;c",
        "a=$(id)",
        "a= b",
        "-a=b",
        "a=-b",
        "a..b=c",
        &"a=".repeat(600),
    ] {
        let error = grammar::field_selector(bad).unwrap_err();
        assert!(
            error.starts_with("invalid field selector"),
            "{bad:?}: {error}"
        );
    }
}

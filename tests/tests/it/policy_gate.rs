//! The policy gate, seen from a guest: the probe component makes scripted calls and reports
//! what it got back. Each capability: allowed, denied (and the run goes on), diagnose-phase
//! writes refused, dry-run writes recorded and not executed, bypass attempts refused.

use std::net::{IpAddr, Ipv4Addr};

use quell::bindings::quell::runbook::types::Finding;
use quell::capabilities::Decision;
use quell::runner::{RunOptions, RunbookReport, run};
use quell_tests::http::{HttpServer, TestRoutes};
use quell_tests::kube_sim::{KubeSim, Scenario};
use quell_tests::sshd::Sshd;
use serde_json::json;

use crate::harness::{Env, calls, incident, load};

/// Grants a little of everything, so the probe (which imports every capability) loads.
fn probe_policy(extra_http_networks: &str) -> String {
    format!(
        "mode = \"auto\"\ntimeout = \"20s\"\n\
         [[kubectl.allow]]\nverbs = [\"get\"]\nresources = [\"pods\", \"deployments\"]\nnamespaces = [\"production\"]\n\
         [[kubectl.allow]]\nverbs = [\"rollout restart\"]\nresources = [\"deployments\"]\nnamespaces = [\"production\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
         [ssh.commands]\necho = {{ run = \"echo {{word}}\", params = {{ word = \"[a-z]{{1,10}}\" }}, effect = \"read\" }}\n\
         touch = {{ run = \"true\", effect = \"write\" }}\n\
         [http]\nnetworks = [{extra_http_networks}]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.2:*/**\", \"http://127.0.0.1:*/**\", \"http://169.254.169.254/**\", \"http://[::ffff:127.0.0.1]:*/**\", \"http://localhost:*/**\"]\n\
         headers = {{ Authorization = \"health-token\" }}\n\
         [[http.allow]]\nmethods = [\"POST\"]\nurls = [\"http://127.0.0.2:*/**\"]\n"
    )
}

async fn probe(
    env: &Env,
    policy: &str,
    diagnose: serde_json::Value,
    remediate: serde_json::Value,
    options: RunOptions,
) -> RunbookReport {
    let runtime = env.runtime();
    let runbook = load(&runtime, &env.policy("probe", "probe", policy));
    let incident = incident(
        &[("alertname", "Probe")],
        &[
            ("quell.test/diagnose-calls", &calls(diagnose)),
            ("quell.test/remediate-calls", &calls(remediate)),
        ],
    );
    let mut report = run(&runtime, &[runbook], &incident, &options).await;
    report.runbooks.remove(0)
}

fn findings(report: &RunbookReport) -> Vec<Finding> {
    match &report.diagnosis {
        Some(Ok(d)) => d.findings.clone(),
        other => panic!("no diagnosis: {other:?}"),
    }
}

fn summaries(report: &RunbookReport) -> Vec<String> {
    findings(report).into_iter().map(|f| f.summary).collect()
}

fn kubectl(verb: &str, resource: &str, namespace: &str, name: Option<&str>) -> serde_json::Value {
    json!({ "kubectl": { "verb": verb, "resource": resource, "namespace": namespace, "name": name, "output": "json" } })
}

#[tokio::test]
async fn kubectl_allowed_denied_and_the_run_goes_on() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::healthy(1));
    let env = Env::new().kube(&sim);
    let report = probe(
        &env,
        &probe_policy(""),
        json!([
            kubectl("get", "pods", "kube-system", None),
            kubectl("rollout restart", "deployments", "production", Some("api")),
            kubectl("get", "pods", "production", Some("--token=abc")),
            kubectl(
                "get",
                "pods",
                "--kubeconfig=/etc/kubernetes/admin.conf",
                None
            ),
            kubectl("get", "deployments", "production", Some("api")),
        ]),
        json!([]),
        RunOptions::default(),
    )
    .await;
    let s = summaries(&report);
    assert_eq!(
        s[0],
        "denied: no [[kubectl.allow]] rule allows \"get\" on pods in namespace \"kube-system\"; \
         a rule with verbs = [\"get\"], resources = [\"pods\"], namespaces = [\"kube-system\"] would"
    );
    assert_eq!(
        s[1],
        "denied: this call writes, and diagnose may only read; writes run in remediate"
    );
    assert!(
        s[2].starts_with("denied: invalid kubectl request: invalid name \"--token=abc\""),
        "{}",
        s[2]
    );
    assert!(
        s[3].starts_with("denied: invalid kubectl request: invalid namespace"),
        "{}",
        s[3]
    );
    // After four refusals the guest still runs, and the allowed call reaches the cluster.
    assert_eq!(s[4], "ok");
    let detail: serde_json::Value =
        serde_json::from_str(findings(&report)[4].detail_json.as_deref().unwrap()).unwrap();
    let deployment: serde_json::Value =
        serde_json::from_str(detail["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(deployment["metadata"]["name"], "api");
    assert!(sim.writes().is_empty());
    let decisions: Vec<_> = report.calls.iter().map(|c| c.decision).collect();
    assert_eq!(
        decisions,
        [
            Decision::Denied,
            Decision::Denied,
            Decision::Denied,
            Decision::Denied,
            Decision::Allowed
        ]
    );
}

#[tokio::test]
async fn dry_run_records_writes_without_executing_them() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::healthy(1));
    let env = Env::new().kube(&sim);
    let report = probe(
        &env,
        &probe_policy("\"127.0.0.2/32\""),
        json!([]),
        json!([
            kubectl("rollout restart", "deployments", "production", Some("api")),
            { "http": { "method": "POST", "url": "http://127.0.0.2:9/anything" } },
            // Never executed, so no sshd is needed: the record shows what would have run.
            { "ssh": { "host": "127.0.0.1", "command": "touch", "params": {} } },
        ]),
        RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
    )
    .await;
    assert!(
        matches!(&report.remediation, Some(Ok(r)) if r.success),
        "{report:#?}"
    );
    let remediate: Vec<_> = report
        .calls
        .iter()
        .filter(|c| c.phase == quell::capabilities::Phase::Remediate)
        .collect();
    assert_eq!(remediate.len(), 3);
    assert!(
        remediate.iter().all(|c| c.decision == Decision::DryRun),
        "{remediate:#?}"
    );
    assert!(sim.writes().is_empty(), "dry run wrote: {:?}", sim.writes());
    let ssh_out = remediate[2].result["ok"]["stdout"].as_str().unwrap();
    assert_eq!(ssh_out, "dry run: not executed: ssh root@127.0.0.1 true\n");
    let kubectl_out = remediate[0].result["ok"]["stdout"].as_str().unwrap();
    assert!(
        kubectl_out.contains("rollout restart deployment/api --namespace=production"),
        "{kubectl_out}"
    );
}

#[tokio::test]
async fn http_allowed_with_secret_header_and_guarded_against_ssrf() {
    let routes = TestRoutes::new();
    let server =
        HttpServer::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), routes.router()).unwrap();
    let loopback_routes = TestRoutes::new();
    let loopback =
        HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), loopback_routes.router()).unwrap();
    let mut env = Env::new();
    env.config
        .secrets
        .insert("health-token".to_owned(), "Bearer s3cret-token".to_owned());
    env.config.http.max_response = quell::config::ByteSize(1 << 20);
    let port = loopback.addr().port();
    let get = |url: String| json!({ "http": { "method": "GET", "url": url } });
    let report = probe(
        &env,
        &probe_policy("\"127.0.0.2/32\""),
        json!([
            get(server.url("/health")),
            get("http://169.254.169.254/latest/meta-data/".to_owned()),
            get(format!("http://[::ffff:127.0.0.1]:{port}/health")),
            get(server.url(&format!("/redirect?to=http://127.0.0.1:{port}/health"))),
            get(format!("http://127.0.0.1:{port}/health")),
            get(format!("http://localhost:{port}/health")),
            get("http://example.invalid/health".to_owned()),
            get(server.url("/big?mib=2")),
            json!({ "http": { "method": "POST", "url": server.url("/echo") } }),
        ]),
        json!([]),
        RunOptions::default(),
    )
    .await;
    let s = summaries(&report);
    assert_eq!(s[0], "ok");
    assert_eq!(
        s[1],
        "denied: IP-literal host 169.254.169.254 (a link-local (cloud metadata) address) is not named in [http] networks"
    );
    assert_eq!(
        s[2],
        "denied: IP-literal host ::ffff:127.0.0.1 (a loopback address) is not named in [http] networks"
    );
    // The redirect is handed back, not followed; following it is a new, refused request.
    assert_eq!(s[3], "ok");
    let redirect: serde_json::Value =
        serde_json::from_str(findings(&report)[3].detail_json.as_deref().unwrap()).unwrap();
    assert_eq!(redirect["status"], 302);
    assert!(
        s[4].starts_with("denied: IP-literal host 127.0.0.1"),
        "{}",
        s[4]
    );
    assert!(
        s[5].starts_with("denied: localhost: ")
            && s[5].contains("is a loopback address; name it in [http] networks"),
        "{}",
        s[5]
    );
    assert!(
        s[6].starts_with("denied: no [[http.allow]] rule allows GET http://example.invalid/health"),
        "{}",
        s[6]
    );
    assert_eq!(s[7], "too-large");
    // A write in diagnose is refused even where the policy allows the method.
    assert_eq!(
        s[8],
        "denied: this call writes, and diagnose may only read; writes run in remediate"
    );
    assert!(
        !routes.requests().iter().any(|r| r.method == "POST"),
        "a POST reached the server"
    );
    assert!(
        loopback_routes.requests().is_empty(),
        "loopback was reached: {:?}",
        loopback_routes.requests()
    );

    // The secret header reached the server; it is in no record the guest or the audit sees.
    let health = routes
        .requests()
        .into_iter()
        .find(|r| r.path == "/health")
        .unwrap();
    assert_eq!(health.header("authorization"), Some("Bearer s3cret-token"));
    assert!(
        !serde_json::to_string(&report.calls)
            .unwrap()
            .contains("s3cret")
    );
    assert!(
        !serde_json::to_string(&findings(&report))
            .unwrap()
            .contains("s3cret")
    );
}

#[tokio::test]
async fn ssh_templates_allowed_and_injection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(dir.path()).unwrap();
    let env = Env::new().ssh(&sshd);
    let policy =
        probe_policy("").replace("user = \"root\"", &format!("user = \"{}\"", sshd.user()));
    let ssh = |host: &str, command: &str, word: Option<&str>| {
        let params = word.map_or_else(|| json!({}), |w| json!({ "word": w }));
        json!({ "ssh": { "host": host, "command": command, "params": params } })
    };
    let report = probe(
        &env,
        &policy,
        json!([
            ssh("127.0.0.1", "echo", Some("hello")),
            ssh("127.0.0.1", "echo", Some("hi; touch /tmp/quell-pwned")),
            ssh("127.0.0.1", "echo", Some("$(id)")),
            ssh("127.0.0.1", "rm-everything", None),
            ssh("10.9.9.9", "echo", Some("hello")),
            ssh("127.0.0.1", "touch", None),
        ]),
        json!([]),
        RunOptions::default(),
    )
    .await;
    let s = summaries(&report);
    assert_eq!(s[0], "ok");
    let out: serde_json::Value =
        serde_json::from_str(findings(&report)[0].detail_json.as_deref().unwrap()).unwrap();
    assert_eq!(out["stdout"], "hello\n");
    assert!(s[1].contains("does not match its pattern"), "{}", s[1]);
    assert!(s[2].contains("does not match its pattern"), "{}", s[2]);
    assert!(!std::path::Path::new("/tmp/quell-pwned").exists());
    assert!(
        s[3].starts_with("denied: no command \"rm-everything\" in [ssh.commands]"),
        "{}",
        s[3]
    );
    assert_eq!(
        s[4],
        "denied: host \"10.9.9.9\" is not in [ssh] hosts; add a pattern that covers it"
    );
    assert_eq!(
        s[5],
        "denied: this call writes, and diagnose may only read; writes run in remediate"
    );
}

#[tokio::test]
async fn a_capability_the_policy_does_not_grant_is_noted_at_load_and_denied_at_every_call() {
    let env = Env::new();
    // The probe imports ssh; this policy has no [ssh] section.
    let policy = probe_policy("").split("[ssh]").next().unwrap().to_owned()
        + "[[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://x.internal/\"]\n";
    let loaded = env
        .runtime()
        .load(&env.policy("probe", "probe", &policy))
        .unwrap();
    assert_eq!(
        loaded.notes,
        [
            "the component imports quell:runbook/ssh@0.1.1, but the policy grants no ssh: every ssh call is denied (add [ssh] with hosts and [ssh.commands] to allow it)"
        ]
    );
    // `quell policy check` says the same without compiling the component.
    let wasm = std::fs::read(crate::harness::component("probe")).unwrap();
    assert_eq!(
        quell::sandbox::import_notes(&wasm, &loaded.policy).unwrap(),
        loaded.notes
    );
    // Fail-closed: the import is linked, and every call through it is refused by policy.
    let ssh =
        json!({ "ssh": { "host": "127.0.0.1", "command": "echo", "params": {"word": "hi"} } });
    let report = probe(
        &env,
        &policy,
        json!([ssh]),
        json!([ssh]),
        RunOptions::default(),
    )
    .await;
    assert!(summaries(&report)[0].starts_with("denied: "), "{report:#?}");
    assert!(
        report.calls.iter().all(|c| c.decision == Decision::Denied),
        "{:#?}",
        report.calls
    );
}

#[tokio::test]
async fn a_swapped_component_is_refused_by_its_pin() {
    let env = Env::new();
    let runtime = env.runtime();
    let pinned = format!("sha256 = \"{}\"\n{}", "ab".repeat(32), probe_policy(""));
    let error = runtime
        .load(&env.policy("probe", "probe", &pinned))
        .unwrap_err();
    assert!(
        error.message.contains(&format!(
            "but the policy pins {}: refusing a swapped component",
            "ab".repeat(32)
        )),
        "{}",
        error.message
    );
}

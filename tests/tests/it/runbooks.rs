//! The three example runbooks, as wasm, against real kubectl + the API simulator, a real sshd
//! and loopback HTTP: the seed's decisions, observed in the world they act on.

use std::net::{IpAddr, Ipv4Addr, TcpListener};

use quell::capabilities::{Decision, Phase};
use quell::runner::{RunOptions, RunbookReport, run};
use quell_tests::http::{HttpServer, TestRoutes};
use quell_tests::kube_sim::{KubeSim, Scenario};
use quell_tests::sshd::Sshd;

use crate::harness::{Env, incident, load};

fn image(sim: &KubeSim) -> String {
    let deployment = sim.deployment("production", "api").expect("deployment api");
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The high-error-rate runbook in Rust and its twin in Python: every scenario runs against
/// both, and both must decide alike.
const TWINS: [&str; 2] = ["high-error-rate", "high-error-rate-py"];

/// The shipped high-error-rate policy, plus loopback named for the test's health server.
pub fn high_error_rate(env: &Env) -> std::path::PathBuf {
    twin_policy(env, "high-error-rate")
}

fn twin_policy(env: &Env, twin: &str) -> std::path::PathBuf {
    env.shipped_policy(twin, |text| {
        // The Python twin ships in mode diagnose beside the Rust one; here it acts.
        text.replace("mode = \"diagnose\"", "mode = \"auto\"")
            .replace(
                "networks = [\"10.0.0.0/8\"]",
                "networks = [\"10.0.0.0/8\", \"127.0.0.1/32\"]",
            )
            .replace(
                "urls = [\"http://*.internal/health\"]",
                "urls = [\"http://*.internal/health\", \"http://127.0.0.1:*/health\"]",
            )
    })
}

async fn run_high_error_rate(twin: &str, sim: &KubeSim, health_url: &str) -> RunbookReport {
    let env = Env::new().kube(sim);
    let runtime = env.runtime();
    let runbook = load(&runtime, &twin_policy(&env, twin));
    let incident = incident(
        &[
            ("alertname", "HighErrorRate"),
            ("service", "api"),
            ("severity", "critical"),
        ],
        &[("summary", "api 5xx above 5%"), ("health_url", health_url)],
    );
    let mut report = run(&runtime, &[runbook], &incident, &RunOptions::default()).await;
    report.runbooks.remove(0)
}

fn remediation(report: &RunbookReport) -> (bool, String) {
    match &report.remediation {
        Some(Ok(r)) => (r.success, r.action_taken.clone()),
        other => panic!("no remediation: {other:?}\n{report:#?}"),
    }
}

#[tokio::test]
async fn crash_looping_service_is_rolled_back() {
    for twin in TWINS {
        let sim = KubeSim::start().unwrap();
        sim.add_service("production", "api", Scenario::crash_looping(5));
        let health =
            HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), TestRoutes::new().router()).unwrap();
        assert_eq!(image(&sim), "api:v2");

        let report = run_high_error_rate(twin, &sim, &health.url("/health")).await;

        assert_eq!(
            remediation(&report),
            (true, "Rolled back deployment/api".to_owned()),
            "{twin}"
        );
        // The real kubectl sent the rollback and the simulated cluster now runs the old
        // template.
        assert_eq!(image(&sim), "api:v1", "{twin}");
        let patches: Vec<_> = sim
            .writes()
            .into_iter()
            .filter(|w| w.method == "PATCH")
            .collect();
        assert_eq!(patches.len(), 1, "{twin}: {patches:?}");
        assert_eq!(
            patches[0].content_type.as_deref(),
            Some("application/json-patch+json")
        );
        // Diagnosis only read; the one write happened in remediate, allowed by rule #2.
        let writes: Vec<_> = report
            .calls
            .iter()
            .filter(|c| c.request["verb"] == "RolloutUndo")
            .collect();
        assert_eq!(writes.len(), 1, "{twin}");
        assert_eq!(
            (writes[0].phase, writes[0].decision),
            (Phase::Remediate, Decision::Allowed)
        );
        assert_eq!(writes[0].rule, "[[kubectl.allow]] #2");
        assert_eq!(writes[0].exit_status, Some(0));
    }
}

#[tokio::test]
async fn unreachable_service_is_restarted() {
    for twin in TWINS {
        let sim = KubeSim::start().unwrap();
        sim.add_service("production", "api", Scenario::healthy(2));
        // A port nobody listens on: the health check is refused, i.e. unreachable.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();

        let url = format!("http://127.0.0.1:{closed}/health");
        let report = run_high_error_rate(twin, &sim, &url).await;

        assert_eq!(
            remediation(&report),
            (true, "Restarted deployment/api".to_owned()),
            "{twin}"
        );
        let deployment = sim.deployment("production", "api").unwrap();
        let restarted = &deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
        assert!(
            restarted.is_string(),
            "{twin}: no restart annotation: {deployment:#}"
        );
        assert_eq!(
            image(&sim),
            "api:v2",
            "{twin}: a restart must not roll back"
        );
    }
}

#[tokio::test]
async fn healthy_service_gets_no_write() {
    for twin in TWINS {
        let sim = KubeSim::start().unwrap();
        sim.add_service("production", "api", Scenario::healthy(2));
        let health =
            HttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), TestRoutes::new().router()).unwrap();

        let report = run_high_error_rate(twin, &sim, &health.url("/health")).await;

        assert_eq!(
            remediation(&report),
            (false, "No automatic remediation available".to_owned()),
            "{twin}"
        );
        assert!(
            sim.writes().is_empty(),
            "{twin}: unexpected writes: {:?}",
            sim.writes()
        );
        assert!(
            report.calls.iter().all(|c| c.phase == Phase::Diagnose),
            "{twin}: {:?}",
            report.calls
        );
        let diagnosis = report.diagnosis.unwrap().unwrap();
        assert!(
            diagnosis
                .findings
                .iter()
                .any(|f| f.name == "health" && f.ok),
            "{twin}: {diagnosis:?}"
        );
    }
}

#[tokio::test]
async fn k8s_context_gathers_logs_events_and_history_without_writing() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::crash_looping(7));
    let env = Env::new().kube(&sim);
    let runtime = env.runtime();
    let runbook = load(&runtime, &env.shipped_policy("k8s-context", |t| t));
    let incident = incident(
        &[
            ("alertname", "KubePodCrashLooping"),
            ("namespace", "production"),
            ("service", "api"),
        ],
        &[],
    );

    let mut report = run(&runtime, &[runbook], &incident, &RunOptions::default()).await;
    let report = report.runbooks.remove(0);

    let diagnosis = report.diagnosis.clone().unwrap().unwrap();
    let text = serde_json::to_string(&diagnosis.findings).unwrap();
    assert!(
        text.contains("panic: invalid config"),
        "crash logs missing: {text}"
    );
    assert!(text.contains("BackOff"), "events missing: {text}");
    assert!(
        text.contains("restarts") || text.contains('7'),
        "restart count missing: {text}"
    );
    assert!(
        report.remediation.is_none(),
        "diagnose-only runbook remediated"
    );
    assert!(sim.writes().is_empty());
    let logs_calls: Vec<_> = report
        .calls
        .iter()
        .filter(|c| c.request["verb"] == "Logs")
        .collect();
    assert!(
        !logs_calls.is_empty()
            && logs_calls
                .iter()
                .all(|c| c.request["options"]["previous"] == true)
    );
}

#[tokio::test]
async fn disk_space_cleans_the_host_over_real_ssh() {
    for twin in ["disk_space", "disk_space_py"] {
        let dir = tempfile::tempdir().unwrap();
        let sshd = Sshd::start(dir.path()).unwrap();
        let data = dir.path().join("data");
        for sub in ["tmp", "log", "journal"] {
            std::fs::create_dir_all(data.join(sub)).unwrap();
        }
        // Old and new files in each place the runbook cleans.
        for (path, age_days) in [
            ("tmp/old", 10),
            ("tmp/new", 0),
            ("log/app.1.gz", 40),
            ("log/app.log", 40),
            ("journal/old.journal", 5),
            ("journal/new.journal", 1),
        ] {
            let file = data.join(path);
            std::fs::write(&file, "x").unwrap();
            let status = std::process::Command::new("touch")
                .arg("-d")
                .arg(format!("{age_days} days ago"))
                .arg(&file)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let env = Env::new().ssh(&sshd);
        let d = data.display();
        // The runbook's command ids, mapped to the test's directory instead of the machine's /tmp.
        let body = format!(
            "mode = \"approve\"\n\
             [ssh]\nuser = \"{user}\"\nhosts = [\"127.0.0.1\"]\n\
             [ssh.commands]\n\
             disk-usage = {{ run = \"du -s {d}\", effect = \"read\" }}\n\
             clean-tmp = {{ run = \"find {d}/tmp -type f -mtime +7 -delete\", effect = \"write\" }}\n\
             vacuum-journal = {{ run = \"find {d}/journal -type f -mtime +{{days}} -delete\", params = {{ days = \"[0-9]{{1,3}}\" }}, effect = \"write\" }}\n\
             clean-old-logs = {{ run = \"find {d}/log -name '*.gz' -mtime +30 -delete\", effect = \"write\" }}\n",
            user = sshd.user()
        );
        let runtime = env.runtime();
        let runbook = load(&runtime, &env.policy("disk-space", twin, &body));
        let incident = incident(
            &[
                ("alertname", "DiskSpaceLow"),
                ("instance", "127.0.0.1:9100"),
            ],
            &[("value", "93")],
        );

        // approve mode: without approval nothing runs.
        let waiting = run(
            &runtime,
            std::slice::from_ref(&runbook),
            &incident,
            &RunOptions::default(),
        )
        .await;
        assert!(
            waiting.runbooks[0]
                .remediation_skipped
                .as_deref()
                .unwrap_or_default()
                .contains("awaits approval")
        );
        assert!(data.join("tmp/old").exists());

        let options = RunOptions {
            approve: true,
            ..RunOptions::default()
        };
        let mut report = run(&runtime, &[runbook], &incident, &options).await;
        let report = report.runbooks.remove(0);

        let (success, action) = remediation(&report);
        assert!(success, "{twin}: {report:#?}");
        assert_eq!(action, "Cleaned disk on 127.0.0.1");
        for gone in ["tmp/old", "log/app.1.gz", "journal/old.journal"] {
            assert!(!data.join(gone).exists(), "{gone} survived");
        }
        for kept in ["tmp/new", "log/app.log", "journal/new.journal"] {
            assert!(data.join(kept).exists(), "{kept} was deleted");
        }
        let ssh_calls: Vec<_> = report
            .calls
            .iter()
            .filter(|c| c.capability == "ssh")
            .collect();
        assert_eq!(ssh_calls.len(), 4, "{ssh_calls:#?}");
        assert!(
            ssh_calls
                .iter()
                .all(|c| c.decision == Decision::Allowed && c.exit_status == Some(0)),
            "{ssh_calls:#?}"
        );
    }
}

/// The SDK's views read what the real kubectl prints from the API (the simulator's objects),
/// in each scenario `kube-sim --scenario` offers: restarts, readiness, why a container waits,
/// and a deployment's replicas and selector.
#[test]
fn the_sdk_views_read_what_real_kubectl_prints_in_each_scenario() {
    use quell_runbook_sdk::kubectl::{DeploymentStatus, PodStatus};
    for (name, phase, waiting, ready) in [
        ("healthy", "Running", None, 2),
        ("crash-looping", "Running", Some("CrashLoopBackOff"), 0),
        ("image-pull-failing", "Pending", Some("ImagePullBackOff"), 0),
    ] {
        let sim = KubeSim::start().unwrap();
        sim.add_service("production", "api", Scenario::named(name).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
        let kubectl = |args: &[&str]| -> serde_json::Value {
            let out = std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args([
                    "--context",
                    "sim",
                    "--namespace",
                    "production",
                    "-o",
                    "json",
                ])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let pods: Vec<PodStatus> = kubectl(&["get", "pods", "-l", "app=api"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(PodStatus::from_json)
            .collect();
        assert!(!pods.is_empty(), "{name}");
        for pod in &pods {
            assert_eq!(pod.phase, phase, "{name}: {pod:?}");
            assert_eq!(pod.waiting_reason.as_deref(), waiting, "{name}: {pod:?}");
            assert_eq!(pod.ready, waiting.is_none(), "{name}: {pod:?}");
        }
        let deployment = DeploymentStatus::from_json(&kubectl(&["get", "deployment", "api"]));
        assert_eq!(deployment.ready, ready, "{name}: {deployment:?}");
        assert_eq!(
            deployment.desired as usize,
            pods.len(),
            "{name}: {deployment:?}"
        );
        // The selector finds the deployment's own pods.
        let selected = kubectl(&["get", "pods", "-l", &deployment.selector]);
        assert_eq!(
            selected["items"].as_array().unwrap().len(),
            pods.len(),
            "{name}"
        );
    }
    assert!(
        Scenario::named("melting")
            .unwrap_err()
            .contains("healthy, crash-looping")
    );
}

#[tokio::test]
async fn a_damaged_compile_cache_is_rebuilt_and_the_runbook_still_runs() {
    let mut env = Env::new();
    env.config.sandbox.cache_dir = env.dir.path().join("cache");
    let policy = env.policy("probe", "probe", "mode = \"diagnose\"\n");
    let alert = incident(
        &[("alertname", "Cache"), ("service", "api")],
        &[("quell.test/diagnose-calls", "[]")],
    );
    let cached = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(env.config.sandbox.cache_dir.join("components"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "cwasm"))
            .collect()
    };
    load(&env.runtime(), &policy);
    let artifacts = cached();
    assert_eq!(artifacts.len(), 1, "one compiled artifact: {artifacts:?}");
    let size = std::fs::metadata(&artifacts[0]).unwrap().len();

    // A crash or a full disk leaves a truncated artifact behind.
    std::fs::write(&artifacts[0], b"not a compiled component").unwrap();
    let runtime = env.runtime();
    let runbook = load(&runtime, &policy);
    assert_eq!(cached(), artifacts, "rewritten in place, nothing else left");
    assert_eq!(
        std::fs::metadata(&artifacts[0]).unwrap().len(),
        size,
        "the damaged artifact is replaced by a whole one"
    );
    let run = runtime.match_and_diagnose(&runbook, &alert).await;
    assert!(
        matches!(run.outcome, Ok(Some(_))),
        "the rebuilt runbook diagnoses: {:?}",
        run.outcome
    );
}

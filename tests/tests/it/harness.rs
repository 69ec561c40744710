//! The small harness every test uses: a temp dir, a host configuration pointing at the test's
//! real parts, policies written next to the components, and incidents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quell::config::{Config, HumanDuration};
use quell::incident::Incident;
use quell::sandbox::{LoadedRunbook, Runtime};
use quell_tests::kube_sim::KubeSim;
use quell_tests::postgres::Postgres;
use quell_tests::sshd::Sshd;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// A built component, by crate name (`probe`, `high_error_rate`).
pub fn component(name: &str) -> PathBuf {
    // A Python runbook's component is built beside its app.py.
    let python = workspace().join("runbooks").join(name.replace('_', "-"));
    if python.join("app.py").is_file() {
        let path = python.join(format!("{name}.wasm"));
        assert!(
            path.is_file(),
            "{} is missing: run scripts/build-runbooks.sh (scripts/test.sh does)",
            path.display()
        );
        return path;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let path = target
        .join("wasm32-wasip2/wasm")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-runbooks.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// One test's world: a temp dir, a host configuration and, for a test on PostgreSQL, its
/// server.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub postgres: Option<std::sync::Arc<Postgres>>,
}

/// What `Env::new()` means inside the PostgreSQL half of [`on_both_backends!`]: the same
/// world, its database a real PostgreSQL server of its own.
pub struct OnPostgres;

impl OnPostgres {
    // Named `new` on purpose: it stands in for `Env::new` in the tests' bodies.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Env {
        let mut env = Env::new();
        let server = Postgres::start().expect("PostgreSQL starts (scripts/setup.sh installs it)");
        env.config.database.url = Some(server.url());
        env.postgres = Some(std::sync::Arc::new(server));
        env
    }
}

/// Runs each test twice, as `sqlite::name` and `postgres::name`: in the second, `Env::new()`
/// in the test's body gives an `Env` on PostgreSQL ([`OnPostgres`]).
macro_rules! on_both_backends {
    ($(async fn $name:ident() $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() $body
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use crate::harness::OnPostgres as Env;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() $body
            )*
        }
    };
}
pub(crate) use on_both_backends;

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        // Compiled components are keyed by digest, so tests can share one cache.
        config.sandbox.cache_dir = workspace().join("target/quell-test-cache");
        config.kubectl.timeout = HumanDuration(Duration::from_secs(20));
        config.secrets.insert(
            "health-token".to_owned(),
            "Bearer test-token-value".to_owned(),
        );
        Env {
            dir,
            config,
            postgres: None,
        }
    }

    /// Points kubectl at the simulator.
    pub fn kube(mut self, sim: &KubeSim) -> Env {
        let kubeconfig = self.dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, "sim")
            .expect("kubeconfig");
        self.config.kubectl.kubeconfig = Some(kubeconfig);
        self.config.kubectl.context = Some("sim".to_owned());
        self
    }

    /// Points ssh at the loopback sshd.
    pub fn ssh(mut self, sshd: &Sshd) -> Env {
        self.config.ssh.identity = Some(sshd.client_key());
        self.config.ssh.known_hosts = sshd.known_hosts();
        self.config.ssh.port = sshd.port();
        self
    }

    pub fn runtime(&self) -> Runtime {
        Runtime::new(&self.config).expect("runtime")
    }

    /// Writes `<dir>/<name>/policy.toml` for `component` with `body` after the `[runbook]`
    /// header's name and component lines.
    pub fn policy(&self, name: &str, component_name: &str, body: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("runbook dir");
        let path = dir.join("policy.toml");
        let text = format!(
            "[runbook]\nname = \"{name}\"\ncomponent = {:?}\n{body}",
            component(component_name).display().to_string()
        );
        std::fs::write(&path, text).expect("write policy");
        path
    }

    /// A shipped runbook's policy, with the component path made absolute and `edit` applied.
    pub fn shipped_policy(&self, runbook: &str, edit: impl Fn(String) -> String) -> PathBuf {
        let text = std::fs::read_to_string(
            workspace()
                .join("runbooks")
                .join(runbook)
                .join("policy.toml"),
        )
        .expect("shipped policy");
        let crate_name = runbook.replace('-', "_");
        let built = component(&crate_name);
        let text = text.replace(
            &format!("component = \"{crate_name}.wasm\""),
            &format!("component = {:?}", built.display().to_string()),
        );
        let dir = self.dir.path().join(runbook);
        std::fs::create_dir_all(&dir).expect("runbook dir");
        let path = dir.join("policy.toml");
        std::fs::write(&path, edit(text)).expect("write policy");
        path
    }
}

pub fn load(runtime: &Runtime, policy: &Path) -> LoadedRunbook {
    runtime
        .load(policy)
        .unwrap_or_else(|e| panic!("runbook does not load: {e}"))
}

/// An incident from labels and annotations, through the same parser `quell run` uses.
pub fn incident(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Incident {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
    };
    let alert = serde_json::json!({
        "status": "firing",
        "labels": map(labels),
        "annotations": map(annotations),
        "startsAt": "2026-11-24T03:00:00Z",
    });
    quell::incident::from_alert_json(&alert.to_string(), "test")
        .expect("incident")
        .remove(0)
}

/// The probe guest's scripted calls, as its annotation value.
pub fn calls(calls: serde_json::Value) -> String {
    calls.to_string()
}

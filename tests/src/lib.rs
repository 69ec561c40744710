//! Test support for Quell's integration tests: the real parts a runbook's capabilities talk to.
//!
//! - [`kube_sim`]: a Kubernetes API server simulator that the real `kubectl` talks to over
//!   plain HTTP on loopback (discovery, pods, logs, events, deployments, replica sets, rollouts,
//!   scale), with a tiny deployment controller and a log of every request.
//! - [`sshd`]: a real OpenSSH server on loopback with a throwaway host key and client key.
//! - [`alertmanager`]: the real Prometheus Alertmanager on loopback, delivering to one webhook.
//! - [`receivers`]: loopback Slack and PagerDuty that check payloads against the real API
//!   contracts and can be scripted to fail (429 with `Retry-After`, 5xx, `ok: false`, stalls).
//! - [`http`]: loopback HTTP servers (axum) with ready-made routes: settable health, redirects,
//!   large and stalled responses, and a request log.
//! - [`postgres`]: a real PostgreSQL server (Debian's) in a throwaway directory.
//!
//! Every server runs on its own thread with its own tokio runtime, so it works the same from a
//! plain `#[test]` and from `#[tokio::test]`, and stops when dropped.
//!
//! ```no_run
//! use quell_tests::kube_sim::{KubeSim, Scenario};
//!
//! let sim = KubeSim::start()?;
//! sim.add_service("production", "api", Scenario::crash_looping(5));
//! sim.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), "sim")?;
//! // `kubectl --kubeconfig /tmp/kubeconfig --context sim rollout undo deployment/api -n production`
//! assert!(sim.writes().is_empty());
//! # Ok::<(), anyhow::Error>(())
//! ```
#![forbid(unsafe_code)]
// Test support starts real servers (sshd, ssh-keygen); the spawn rule in clippy.toml is for
// the product, whose one spawning module is host/src/capabilities/process.rs.
#![allow(clippy::disallowed_methods)]

pub mod alertmanager;
pub mod fuzz;
pub mod http;
pub mod kube_sim;
pub mod postgres;
pub mod receivers;
pub mod record;
mod serve;
pub mod sshd;

pub use record::{RecordedRequest, RequestLog};

/// The workspace's root directory.
pub fn workspace() -> std::path::PathBuf {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_owned()
}

/// The `probe` test guest, built by `scripts/build-runbooks.sh`.
///
/// # Panics
/// When it has not been built, saying how to build it.
pub fn probe_component() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), std::path::PathBuf::from);
    let path = target.join("wasm32-wasip2/wasm/probe.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-runbooks.sh",
        path.display()
    );
    path
}

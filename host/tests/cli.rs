//! The `quell` binary as an author uses it: the shipped runbooks and example alerts, a
//! simulated cluster, and bad input answered with a clear message and a non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests run the binary

use quell_tests::kube_sim::{KubeSim, Scenario};

mod common;
use common::{quell, text, workspace};

#[test]
fn shipped_runbooks_run_on_a_shipped_alert_against_a_cluster() {
    assert!(
        workspace()
            .join("runbooks/high-error-rate/high_error_rate.wasm")
            .is_file(),
        "run scripts/build-runbooks.sh first"
    );
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::crash_looping(6));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, "sim").unwrap();
    let config = dir.path().join("quell.toml");
    std::fs::write(
        &config,
        format!(
            "[kubectl]\nkubeconfig = {:?}\ncontext = \"sim\"\n[sandbox]\ncache_dir = {:?}\n",
            kubeconfig.display().to_string(),
            dir.path().join("cache").display().to_string()
        ),
    )
    .unwrap();

    let out = quell(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--alert",
        "examples/alerts/high-error-rate.json",
        "--dry-run",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("incident INC-"), "{stdout}");
    assert!(
        stdout.contains("runbook high-error-rate (mode auto, dry run"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- roll back deployment/api"),
        "plan missing: {stdout}"
    );
    // The write is shown as the command the host would have run.
    assert!(
        stdout.contains(
            "remediate kubectl  dry-run kubectl rollout undo deployment/api --namespace=production"
        ),
        "dry-run write not shown: {stdout}"
    );
    // The Python twin diagnoses alike, and ships in mode diagnose: it plans, it does not act.
    let python = stdout
        .split("runbook high-error-rate-py (mode diagnose")
        .nth(1)
        .unwrap_or_else(|| panic!("no Python twin: {stdout}"));
    assert!(
        python.contains("- roll back deployment/api in production (pod api-"),
        "{stdout}"
    );
    assert!(
        python.contains("remediation not run: the policy's mode is diagnose"),
        "{stdout}"
    );
    assert!(
        stdout.contains("runbook disk-space") && stdout.contains("not matched"),
        "{stdout}"
    );
    // Dry run: the cluster saw reads only.
    assert!(sim.writes().is_empty(), "{:?}", sim.writes());
}

#[test]
fn bad_input_gets_a_clear_error_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = quell(&["run", "--alert", "/nonexistent/alert.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("cannot read alert /nonexistent/alert.json"),
        "{}",
        text(&missing.stderr)
    );

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"alerts\": [").unwrap();
    let out = quell(&["run", "--alert", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("broken.json: not valid JSON"),
        "{}",
        text(&out.stderr)
    );

    let out = quell(&[
        "policy",
        "check",
        "tests/fixtures/policies/bad_mode.toml",
        "runbooks/k8s-context/policy.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "tests/fixtures/policies/bad_mode.toml: line 4, column 8: unknown variant `sometimes`, expected one of `diagnose`, `approve`, `auto`"
    );
    assert!(text(&out.stdout).contains("runbooks/k8s-context/policy.toml: ok"));
}

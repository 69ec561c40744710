//! `quell new` as a new author uses it, in both languages, outside the workspace: the runbook
//! it creates passes its own unit test unchanged, builds with `quell build`, and `quell run` on
//! its example alert matches, diagnoses, and shows the call its empty policy denies with the
//! TOML that would allow it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests run the binary

use std::process::{Command, Output};

mod common;
use common::workspace;

/// The toolchain this repository pins (its wasm target is installed by scripts/setup.sh):
/// a runbook outside the repository would otherwise build with the machine's default.
fn toolchain() -> String {
    let pin = std::fs::read_to_string(workspace().join("rust-toolchain.toml")).unwrap();
    pin.lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(workspace())
        .env("RUSTUP_TOOLCHAIN", toolchain())
        // Shared between runs, so a warm machine builds the SDK once.
        .env("CARGO_TARGET_DIR", workspace().join("target/scaffold"))
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn quell(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_quell"), args)
}

#[test]
fn a_new_runbook_tests_builds_and_runs_unchanged_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let sdk = workspace().join("runbook-sdk");
    for (name, lang) in [
        ("replica-mismatch", "rust"),
        ("replica-mismatch-py", "python"),
    ] {
        let made = quell(&[
            "new",
            name,
            "--lang",
            lang,
            "--dir",
            root,
            "--alertname",
            "KubeDeploymentReplicasMismatch",
            "--sdk",
            sdk.to_str().unwrap(),
        ]);
        assert!(made.status.success(), "{}", said(&made));
        let runbook = dir.path().join(name);
        let policy = std::fs::read_to_string(runbook.join("policy.toml")).unwrap();
        assert!(policy.contains("mode = \"diagnose\""), "{policy}");
        assert!(
            !policy.contains("\n[[kubectl.allow]]"),
            "it grants nothing yet: {policy}"
        );

        // Its unit test passes as created.
        let tested = match lang {
            "rust" => run(
                "cargo",
                &[
                    "test",
                    "--manifest-path",
                    runbook.join("Cargo.toml").to_str().unwrap(),
                ],
            ),
            _ => run(
                workspace().join(".quell/venv-python/bin/pytest"),
                &["-q", "-p", "no:cacheprovider", runbook.to_str().unwrap()],
            ),
        };
        assert!(tested.status.success(), "{name}: {}", said(&tested));
        assert!(
            said(&tested).contains("2 passed"),
            "{name}: {}",
            said(&tested)
        );

        // It builds in place, and `quell run` uses what was built.
        let built = quell(&[
            "build",
            runbook.to_str().unwrap(),
            "--sdk",
            sdk.to_str().unwrap(),
        ]);
        assert!(built.status.success(), "{name}: {}", said(&built));
        let component = format!("{}.wasm", name.replace('-', "_"));
        assert!(
            runbook.join(&component).is_file(),
            "{name}: {}",
            said(&built)
        );
        // Built again with nothing changed: the same component, so a sha256 pin still holds
        // (componentize-py output is not reproducible, so it must not be rebuilt).
        let first = std::fs::read(runbook.join(&component)).unwrap();
        let again = quell(&[
            "build",
            runbook.to_str().unwrap(),
            "--sdk",
            sdk.to_str().unwrap(),
        ]);
        assert!(again.status.success(), "{name}: {}", said(&again));
        assert!(
            std::fs::read(runbook.join(&component)).unwrap() == first,
            "{name}: rebuilt with nothing changed"
        );
        let cache = dir.path().join("cache");
        let config = dir.path().join("quell.toml");
        std::fs::write(
            &config,
            format!("[sandbox]\ncache_dir = {:?}\n", cache.display().to_string()),
        )
        .unwrap();
        let ran = quell(&[
            "run",
            "--runbooks",
            root,
            "--runbook",
            name,
            "--config",
            config.to_str().unwrap(),
            "--alert",
            runbook.join("alert.json").to_str().unwrap(),
        ]);
        let out = said(&ran);
        assert!(ran.status.success(), "{name}: {out}");
        assert!(
            out.contains(&format!("runbook {name} (mode diagnose")),
            "{out}"
        );
        assert!(out.contains("  matched"), "{name}: {out}");
        assert!(
            out.contains(
                "pods unavailable: denied: no [[kubectl.allow]] rule allows \"get\" on pods"
            ),
            "{name}: {out}"
        );
        assert!(
            out.contains("a rule with verbs = [\"get\"], resources = [\"pods\"]"),
            "{name}: {out}"
        );
    }
    // A name that is not one is refused before anything is written.
    let bad = quell(&["new", "Replica Mismatch", "--dir", root]);
    assert!(!bad.status.success());
    assert!(
        said(&bad).contains("is not a runbook name"),
        "{}",
        said(&bad)
    );
    let again = quell(&[
        "new",
        "replica-mismatch",
        "--dir",
        root,
        "--sdk",
        sdk.to_str().unwrap(),
    ]);
    assert!(said(&again).contains("already exists"), "{}", said(&again));
}

//! Fresh instance + `matches` + `diagnose` with one host call, the cost Quell pays per
//! runbook per alert. Needs the probe guest: run `scripts/build-runbooks.sh` first.
//!
//! `cargo bench -p quell --bench runtime`

#![allow(clippy::unwrap_used)] // a benchmark harness: failing loudly is the point

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use quell::config::Config;
use quell::sandbox::Runtime;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

fn setup(
    dir: &Path,
    guest: &str,
    calls: &str,
) -> (
    Runtime,
    quell::sandbox::LoadedRunbook,
    quell::bindings::quell::runbook::types::Incident,
) {
    let probe = workspace().join(format!("target/wasm32-wasip2/wasm/{guest}.wasm"));
    assert!(
        probe.is_file(),
        "{} is missing: run scripts/build-runbooks.sh",
        probe.display()
    );
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[runbook]\nname = \"probe\"\ncomponent = {:?}\nmode = \"diagnose\"\n\
             [[kubectl.allow]]\nverbs = [\"get\"]\nresources = [\"pods\"]\nnamespaces = [\"production\"]\n\
             [ssh]\nuser = \"quell\"\nhosts = [\"*.internal\"]\n[ssh.commands]\nid = {{ run = \"id\", effect = \"read\" }}\n\
             [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://*.internal/health\"]\n",
            probe.display().to_string()
        ),
    )
    .unwrap();
    let mut config = Config::default();
    config.sandbox.cache_dir = dir.join("cache");
    let runtime = Runtime::new(&config).unwrap();
    let runbook = runtime.load(&policy).unwrap();
    let alert = serde_json::json!({
        "labels": { "alertname": "Bench", "service": "api", "namespace": "kube-system" },
        "annotations": { "quell.test/diagnose-calls": calls },
    });
    let incident = quell::incident::from_alert_json(&alert.to_string(), "bench")
        .unwrap()
        .remove(0);
    (runtime, runbook, incident)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each diagnose makes one host call. "kubectl denied" is a call the policy refuses:
    // validation, policy check and the audit record, no process.
    let cases = [
        ("minimal guest, kubectl denied", "minimal", ""),
        (
            "probe guest, timeline note",
            "probe",
            r#"[{"note": "checked"}]"#,
        ),
        (
            "probe guest, kubectl denied",
            "probe",
            r#"[{"kubectl": {"verb": "get", "resource": "pods", "namespace": "kube-system"}}]"#,
        ),
    ];
    let mut group = c.benchmark_group("fresh instance + matches + diagnose");
    for (name, guest, calls) in cases {
        let (runtime, runbook, incident) = setup(dir.path(), guest, calls);
        // Sanity: the call really happens in every iteration.
        let once = rt.block_on(runtime.match_and_diagnose(&runbook, &incident));
        assert!(
            once.outcome.as_ref().is_ok_and(Option::is_some),
            "{:?}",
            once.outcome
        );
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(runtime.match_and_diagnose(&runbook, &incident)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

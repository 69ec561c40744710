//! Fresh instance + `matches` + `diagnose` with one host call, the cost Quell pays per
//! runbook per alert. Needs the probe guest: run `scripts/build-runbooks.sh` first.
//!
//! A second group, "floor", does the same work with nothing of Quell's around it (a bare
//! store, a no-op host function), step by step: what wasmtime itself costs for this WIT world
//! and guest with Quell's engine settings. The difference is Quell's own overhead.
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

/// A guest's component: a Rust test guest in target/, or the Python guest beside its app.py.
fn component(guest: &str) -> PathBuf {
    if guest == "python-hostile" {
        return workspace().join("tests/python-guests/python-hostile/python_hostile.wasm");
    }
    workspace().join(format!("target/wasm32-wasip2/wasm/{guest}.wasm"))
}

fn setup(
    dir: &Path,
    guest: &str,
    calls: &str,
) -> (
    Runtime,
    quell::sandbox::LoadedRunbook,
    quell::incident::Incident,
) {
    let probe = component(guest);
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
        "annotations": { "quell.test/diagnose-calls": calls, "quell.test/python": "one-call" },
    });
    let incident = quell::incident::from_alert_json(&alert.to_string(), "bench")
        .unwrap()
        .remove(0);
    (runtime, runbook, incident)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = current_thread();
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
        // componentize-py: 18 MB, CPython pre-initialised, 12 MiB of initial memory.
        ("python guest, kubectl denied", "python-hostile", ""),
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

criterion_group!(benches, bench, bench_floor);
criterion_main!(benches);

mod floor {
    //! The same work with nothing of Quell's around it: a bare store (empty WASI context, no
    //! limiter, no epoch callback) and host functions that refuse without a policy check or
    //! a record. What wasmtime itself costs for this WIT world with Quell's engine settings.
    use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
    use wasmtime::{Engine, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    use quell::bindings::quell::runbook::types::{CommandOutput, HostError};
    use quell::bindings::quell::runbook::{http, kubectl, run_context, ssh, timeline, types};
    use quell::bindings::{Runbook, RunbookPre};

    pub struct Bare {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl WasiView for Bare {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    impl types::Host for Bare {}
    impl kubectl::Host for Bare {
        async fn run(&mut self, _: kubectl::Request) -> Result<CommandOutput, HostError> {
            Err(HostError::Denied(String::new()))
        }
        async fn run_selected(
            &mut self,
            _: kubectl::Request,
            _: String,
        ) -> Result<CommandOutput, HostError> {
            Err(HostError::Denied(String::new()))
        }
    }
    impl ssh::Host for Bare {
        async fn run(
            &mut self,
            _: String,
            _: String,
            _: Vec<(String, String)>,
        ) -> Result<CommandOutput, HostError> {
            Err(HostError::Denied(String::new()))
        }
    }
    impl http::Host for Bare {
        async fn send(&mut self, _: http::Request) -> Result<http::Response, HostError> {
            Err(HostError::Denied(String::new()))
        }
    }
    impl timeline::Host for Bare {
        async fn note(&mut self, _: String) {}
    }
    impl run_context::Host for Bare {
        async fn dry_run(&mut self) -> bool {
            false
        }
        async fn escalate(&mut self, _: String) {}
    }

    /// Compiles `wasm` into `dir` and maps it from there, as Quell's cache does (a component
    /// compiled in memory instantiates more slowly).
    pub fn pre(engine: &Engine, wasm: &std::path::Path, dir: &std::path::Path) -> RunbookPre<Bare> {
        let compiled = dir.join("floor.cwasm");
        let bytes = engine
            .precompile_component(&std::fs::read(wasm).unwrap())
            .unwrap();
        std::fs::write(&compiled, bytes).unwrap();
        // SAFETY: the file was written just above by this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(engine, &compiled) }.unwrap();
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        Runbook::add_to_linker::<Bare, HasSelf<Bare>>(&mut linker, |s| s).unwrap();
        RunbookPre::new(linker.instantiate_pre(&component).unwrap()).unwrap()
    }

    pub fn store(engine: &Engine) -> Store<Bare> {
        let mut store = Store::new(
            engine,
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(1 << 20);
        store
    }
}

fn bench_floor(c: &mut Criterion) {
    let rt = current_thread();
    let dir = tempfile::tempdir().unwrap();
    for guest in ["minimal", "python-hostile"] {
        let (runtime, _, incident) = setup(dir.path(), guest, "");
        let incident = quell::bindings::quell::runbook::types::Incident::from(&incident);
        let pre = floor::pre(runtime.engine(), &component(guest), dir.path());
        let engine = runtime.engine().clone();
        let mut group = c.benchmark_group(format!("floor: bare store, {guest} guest"));
        group.bench_function("store + drop", |b| b.iter(|| floor::store(&engine)));
        let steps = [
            "store + instantiate + drop",
            "... + matches",
            "... + matches + diagnose (one no-op host call)",
        ];
        for (exports, name) in steps.into_iter().enumerate() {
            group.bench_function(name, |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut store = floor::store(&engine);
                        let rb = pre.instantiate_checked_once(&mut store).await.unwrap();
                        if exports >= 1 {
                            rb.call_matches(&mut store, &incident).await.unwrap();
                        }
                        if exports >= 2 {
                            rb.call_diagnose(&mut store, &incident)
                                .await
                                .unwrap()
                                .unwrap();
                        }
                    })
                })
            });
        }
        group.finish();
    }
}

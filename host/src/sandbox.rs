//! The sandbox: loading runbook components and calling their exports under limits.
//!
//! One [`Runtime`] per process holds the engine, the linker and the capabilities. Each
//! runbook is loaded once (`Runtime::load`): policy parsed, digest checked, component compiled
//! (or taken from the on-disk cache), imports compared with the policy's grants. Every
//! export call gets a fresh `Store` and instance with a memory cap, low host-side limits,
//! an empty WASI context, an epoch deadline for guest CPU, and an outer deadline, per phase,
//! for time spent in host calls. Values crossing the boundary are bounded: by the hostcall
//! fuel (the instance's memory cap) on the way in, by [`MAX_RESULT`] for an export's value.
//! Everything a run leaves (output, notes, values) has the host's secrets redacted.

mod engine;
mod limits;
mod loader;
mod output;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::quell::runbook::types::{self as wit, Diagnosis, Remediation};
use crate::bindings::{Runbook, RunbookPre};
use crate::capabilities::{CallContext, CallRecord, Capabilities, Capability, JournalEntry, Phase};
use crate::config::{ByteSize, Config, HumanDuration};
use crate::incident::{Incident, Severity};
use crate::policy::Policy;

use limits::{Limits, bounded, past_deadline};
pub use loader::{LoadError, MAX_COMPONENT_SIZE, import_notes};
use output::CappedPipe;

/// `matches` must be cheap; it never gets more than this, whatever the policy's timeout.
const MATCHES_DEADLINE: Duration = Duration::from_secs(2);

/// The largest value an export may return (a diagnosis with its `data-json`, a
/// remediation), as JSON: room for several capped command outputs.
pub const MAX_RESULT: usize = 4 << 20;

/// The engine, linker and capabilities shared by every runbook.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    caps: Arc<Capabilities>,
    cache_dir: PathBuf,
    output_cap: usize,
    max_memory: u64,
    /// Set by [`Runtime::replaying`]: calls are answered from a recorded incident.
    replay: Option<Arc<crate::replay::Recording>>,
    _ticker: engine::Ticker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// A runbook ready to run: its policy, its digest and its pre-linked component.
pub struct LoadedRunbook {
    /// The policy's `[runbook] name`.
    pub name: String,
    /// The policy, shared with every call the runbook makes.
    pub policy: Arc<Policy>,
    /// Where the policy was read from.
    pub policy_path: PathBuf,
    /// The component's sha256, hex.
    pub digest: String,
    /// The capabilities the component imports.
    pub imports: Vec<Capability>,
    /// What the load noticed and let pass: an import the policy does not grant (every call
    /// through it is denied).
    pub notes: Vec<String>,
    pre: RunbookPre<RunState>,
    http_client: reqwest::Client,
}

impl std::fmt::Debug for LoadedRunbook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedRunbook")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// The data of one store: WASI (empty), limits, and what the capabilities see.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    /// The deadline of the export running now, for the error message.
    deadline: Duration,
    /// When the running phase's deadline passes; the outer deadline watches it.
    clock: watch::Sender<Instant>,
    calls: CallContext,
}

impl RunState {
    /// Starts the clock for the export about to run.
    fn set_deadline(&mut self, deadline: Duration) {
        let until = Instant::now() + deadline;
        self.deadline = deadline;
        self.calls.deadline = until;
        self.clock.send_replace(until);
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Receives capability call records as they are made (a write's twice: started, then done).
pub type Journal = tokio::sync::mpsc::UnboundedSender<JournalEntry>;

/// Why an export call did not produce a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// It ran past its deadline (guest CPU or time in host calls) and was stopped.
    #[error("stopped after its deadline of {0}")]
    Deadline(HumanDuration),
    /// It tried to grow memory past its cap and was stopped.
    #[error("stopped at its memory limit of {0}")]
    Memory(ByteSize),
    /// It trapped (a panic, an abort, a host-side limit), or could not be instantiated.
    #[error("trapped: {0}")]
    Trap(String),
    /// The export returned an error.
    #[error("returned an error: {0}")]
    Guest(String),
    /// The export's value was larger than [`MAX_RESULT`].
    #[error(
        "returned a value of {size} bytes as JSON, over the {limit} limit for an export's value"
    )]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: ByteSize,
    },
}

/// The outcome of one export call, with everything it did on the way.
#[derive(Debug)]
pub struct Invocation<T> {
    /// The export's value, or why there is none.
    pub outcome: Result<T, InvokeError>,
    /// Every capability call, in order.
    pub calls: Vec<CallRecord>,
    /// Lines added to the timeline.
    pub notes: Vec<String>,
    /// Why `diagnose` handed the incident to on-call (`run-context.escalate`), if it did:
    /// no plan is run or awaited then.
    pub escalation: Option<String>,
    /// Captured stdout (capped).
    pub stdout: String,
    /// Captured stderr (capped).
    pub stderr: String,
    /// Wall time, instantiation included.
    pub duration: Duration,
}

impl Runtime {
    /// Builds the engine, the linker and the capabilities from the host configuration.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let engine = engine::build(&config.sandbox)?;
        let mut linker = Linker::new(&engine);
        link_wasi(&mut linker)?;
        Runbook::add_to_linker::<RunState, HasSelf<CallContext>>(&mut linker, |state| {
            &mut state.calls
        })?;
        let cache_dir = config.sandbox.cache_dir.join("components");
        loader::private_dir(&cache_dir)?;
        Ok(Self {
            _ticker: engine::Ticker::start(&engine)?,
            caps: Arc::new(Capabilities::new(config)?),
            cache_dir,
            output_cap: config.sandbox.output_cap.as_usize(),
            max_memory: config.sandbox.max_memory.0,
            replay: None,
            engine,
            linker,
        })
    }

    /// This runtime, answering every capability call that passes the policy from
    /// `recording` instead of running it (`quell replay`): nothing reaches the world.
    pub fn replaying(mut self, recording: Arc<crate::replay::Recording>) -> Self {
        self.replay = Some(recording);
        self
    }

    /// The engine every runbook is compiled for and instantiated in.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads every `<dir>/*/policy.toml`. Runbooks that fail to load are returned as errors
    /// beside the ones that loaded; one bad runbook does not stop the others.
    pub fn load_dir(&self, dir: &Path) -> (Vec<LoadedRunbook>, Vec<LoadError>) {
        let mut policies: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("policy.toml"))
                // Anything there is loaded, or reported: a FIFO or a device in a policy's
                // place is refused by the loader with a reason, not skipped in silence.
                .filter(|path| path.symlink_metadata().is_ok())
                .collect(),
            Err(e) => {
                return (
                    Vec::new(),
                    vec![LoadError::new(
                        dir,
                        format!("cannot read runbooks directory: {e}"),
                    )],
                );
            }
        };
        policies.sort();
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for path in policies {
            match self.load(&path) {
                Ok(runbook) => loaded.push(runbook),
                Err(e) => errors.push(e),
            }
        }
        (loaded, errors)
    }

    /// Calls `matches` and, when it says yes, `diagnose` on the same fresh instance.
    /// Capability calls are refused in `matches`; `diagnose` may only read, whatever the
    /// policy grants. `Ok(None)` means the runbook does not apply.
    pub async fn match_and_diagnose(
        &self,
        runbook: &LoadedRunbook,
        incident: &Incident,
    ) -> Invocation<Option<Diagnosis>> {
        self.match_and_diagnose_as(runbook, incident, false).await
    }

    /// [`Runtime::match_and_diagnose`] for a run whose writes will be simulated even if the
    /// policy's are not (`quell run --dry-run`): what `run-context.dry-run` tells the runbook.
    /// Diagnose reads either way.
    pub async fn match_and_diagnose_as(
        &self,
        runbook: &LoadedRunbook,
        incident: &Incident,
        dry_run: bool,
    ) -> Invocation<Option<Diagnosis>> {
        let timeout = runbook.policy.runbook.timeout.0;
        let matches_deadline = timeout.min(MATCHES_DEADLINE);
        let incident = &wit::Incident::from(incident);
        self.invoke(
            runbook,
            Phase::Matches,
            dry_run || runbook.policy.runbook.dry_run,
            matches_deadline,
            None,
            async |store, pre| {
                store.data_mut().set_deadline(matches_deadline);
                let instance = pre.instantiate_checked_once(&mut *store).await?;
                if !instance.call_matches(&mut *store, incident).await? {
                    return Ok(Ok(None));
                }
                store.data_mut().calls.phase = Phase::Diagnose;
                store.data_mut().set_deadline(timeout);
                instance
                    .call_diagnose(&mut *store, incident)
                    .await
                    .map(|r| r.map(Some))
            },
        )
        .await
    }

    /// Calls `remediate`; with `dry_run` (or the policy's), writes are recorded, not executed.
    pub async fn remediate(
        &self,
        runbook: &LoadedRunbook,
        incident: &Incident,
        diagnosis: &Diagnosis,
        dry_run: bool,
    ) -> Invocation<Remediation> {
        self.remediate_journaled(runbook, incident, diagnosis, dry_run, None)
            .await
    }

    /// [`Runtime::remediate`], also sending each call's record to `journal` as it is made.
    pub async fn remediate_journaled(
        &self,
        runbook: &LoadedRunbook,
        incident: &Incident,
        diagnosis: &Diagnosis,
        dry_run: bool,
        journal: Option<Journal>,
    ) -> Invocation<Remediation> {
        let deadline = runbook.policy.runbook.timeout.0;
        let dry_run = dry_run || runbook.policy.runbook.dry_run;
        let incident = &wit::Incident::from(incident);
        self.invoke(
            runbook,
            Phase::Remediate,
            dry_run,
            deadline,
            journal,
            async |store, pre| {
                let instance = pre.instantiate_checked_once(&mut *store).await?;
                instance
                    .call_remediate(&mut *store, incident, diagnosis)
                    .await
            },
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn invoke<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        runbook: &LoadedRunbook,
        phase: Phase,
        dry_run: bool,
        deadline: Duration,
        journal: Option<Journal>,
        call: impl AsyncFnOnce(
            &mut Store<RunState>,
            &RunbookPre<RunState>,
        ) -> wasmtime::Result<Result<T, String>>,
    ) -> Invocation<T> {
        let started = Instant::now();
        let stdout = CappedPipe::new(self.output_cap);
        let stderr = CappedPipe::new(self.output_cap);
        let mut store = self.new_store(
            runbook,
            phase,
            dry_run,
            deadline,
            (&stdout, &stderr),
            journal,
        );
        // The epoch deadline stops guest code; this one also covers time inside host calls,
        // phase by phase.
        let clock = store.data().clock.subscribe();
        let result = tokio::select! {
            result = call(&mut store, &runbook.pre) => Ok(result),
            () = past_deadline(clock) => Err(()),
        };
        let memory = ByteSize(store.data().limits.memory as u64);
        let current = HumanDuration(store.data().deadline);
        let redact = &self.caps.redact;
        let outcome = match result {
            Err(()) => Err(InvokeError::Deadline(current)),
            Ok(Ok(Ok(value))) => bounded(value).and_then(|v| {
                redact.value(v).ok_or_else(|| {
                    InvokeError::Trap(
                        "the export's value holds a host secret that could not be redacted"
                            .to_owned(),
                    )
                })
            }),
            Ok(Ok(Err(message))) => Err(InvokeError::Guest(redact.text(message))),
            Ok(Err(error)) => Err(classify_trap(
                &error,
                store.data().limits.hit,
                current,
                memory,
            )),
        };
        let state = store.into_data();
        let phase = state.calls.phase;
        let (stdout, stderr) = (
            redact.text(stdout.contents()),
            redact.text(stderr.contents()),
        );
        if !stdout.is_empty() || !stderr.is_empty() {
            tracing::debug!(runbook = %runbook.name, %phase, %stdout, %stderr, "guest output");
        }
        if let Err(error) = &outcome {
            tracing::info!(runbook = %runbook.name, %phase, %error, "runbook invocation failed");
        }
        Invocation {
            outcome,
            escalation: state.calls.escalation,
            calls: state.calls.calls,
            notes: state
                .calls
                .notes
                .into_iter()
                .map(|note| redact.text(note))
                .collect(),
            stdout,
            stderr,
            duration: started.elapsed(),
        }
    }

    fn new_store(
        &self,
        runbook: &LoadedRunbook,
        phase: Phase,
        dry_run: bool,
        deadline: Duration,
        (stdout, stderr): (&CappedPipe, &CappedPipe),
        journal: Option<Journal>,
    ) -> Store<RunState> {
        // Nothing is granted: the builder's defaults, spelt out where they matter.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(64 << 10)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(1_000);
        let memory = runbook.policy.runbook.memory.0.min(self.max_memory) as usize;
        let (clock, _) = watch::channel(Instant::now() + deadline);
        let state = RunState {
            wasi,
            table,
            limits: Limits {
                memory,
                used: 0,
                hit: false,
            },
            deadline,
            clock,
            calls: CallContext {
                runbook: runbook.name.clone(),
                digest: runbook.digest.clone(),
                phase,
                dry_run,
                policy: Arc::clone(&runbook.policy),
                caps: Arc::clone(&self.caps),
                http_client: runbook.http_client.clone(),
                calls: Vec::new(),
                notes: Vec::new(),
                escalation: None,
                deadline: Instant::now() + deadline,
                dropped_calls: 0,
                recorded_bytes: 0,
                replay: self.replay.clone(),
                journal,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // What one transfer may copy into the host: no more than the guest's memory holds,
        // so a value built from repeated references cannot make the host allocate more.
        store.set_hostcall_fuel(memory);
        store.set_max_component_handles(1_000);
        // Every tick, a running guest yields to the executor (so a spinning runbook cannot hold
        // a worker thread) and is stopped once the export's deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            Ok(if Instant::now() >= context.data().calls.deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
    }
}

fn classify_trap(
    error: &wasmtime::Error,
    memory_hit: bool,
    deadline: HumanDuration,
    memory: ByteSize,
) -> InvokeError {
    if memory_hit {
        return InvokeError::Memory(memory);
    }
    if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        return InvokeError::Deadline(deadline);
    }
    InvokeError::Trap(format!("{error:#}"))
}

/// Links WASI 0.2, every interface backed by an empty context that grants nothing: no
/// environment, arguments or stdin, no preopened directory (so `wasi:filesystem` reaches no
/// file), and sockets with TCP, UDP and name lookup off and every address refused. Rust
/// runbooks import only the clocks, random and stdio; componentize-py links the whole of
/// WASI into every Python runbook, used or not. `wasi:http` is not linked: a component that
/// imports it is refused at load.
fn link_wasi(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
}

/// The sandbox boundary: the incident as the WIT world carries it to a runbook.
impl From<&Incident> for wit::Incident {
    fn from(incident: &Incident) -> Self {
        Self {
            id: incident.id.clone(),
            title: incident.title.clone(),
            severity: match incident.severity {
                Severity::Critical => wit::Severity::Critical,
                Severity::High => wit::Severity::High,
                Severity::Medium => wit::Severity::Medium,
                Severity::Low => wit::Severity::Low,
                Severity::Info => wit::Severity::Info,
            },
            source: incident.source.clone(),
            status: incident.status.clone(),
            labels: incident.labels.clone(),
            annotations: incident.annotations.clone(),
            fingerprint: incident.fingerprint.clone(),
            starts_at: incident.starts_at.clone(),
            alert_json: incident.alert_json.clone(),
        }
    }
}

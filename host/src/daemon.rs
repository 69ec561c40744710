//! `quell serve`: the store, the runtime, the pipeline's workers and the HTTP server, with
//! crash recovery at start, reload on SIGHUP, and a graceful stop on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, bail};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::sandbox::Runtime;
use crate::store::{Store, jobs};

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: JoinSet<()>,
}

/// Refuses configurations that would expose an unauthenticated daemon.
fn check_exposure(config: &Config) -> anyhow::Result<()> {
    if config.server.listen.ip().is_loopback() || config.auth.allow_unauthenticated {
        return Ok(());
    }
    let mut open = Vec::new();
    if config.auth.api_tokens.is_empty() {
        open.push("[auth] api_tokens".to_owned());
    }
    for (name, source) in [
        ("alertmanager", &config.sources.alertmanager),
        ("grafana", &config.sources.grafana),
        ("generic", &config.sources.generic.source),
    ] {
        if source.tokens.is_empty() && source.basic.is_empty() {
            open.push(format!("[sources.{name}] tokens or basic"));
        }
    }
    if !open.is_empty() {
        bail!(
            "listening on {} (not loopback) without credentials: set {} (or [auth] allow_unauthenticated = true)",
            config.server.listen,
            open.join(", ")
        );
    }
    Ok(())
}

impl Daemon {
    /// Opens the database, recovers what a crash left running, loads the runbooks, starts
    /// the workers and the listener. Returns once it is serving.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        check_exposure(&config)?;
        let config = Arc::new(config);
        let store = Store::open(&config.database.path, config.database.busy_timeout.0)?;
        let recovery = store
            .write(jobs::recover)
            .await
            .context("cannot recover jobs left running")?;
        if recovery.requeued + recovery.interrupted > 0 {
            warn!(
                requeued = recovery.requeued,
                interrupted = recovery.interrupted,
                "recovered work left running by the previous process"
            );
        }
        let runtime = Arc::new(Runtime::new(&config)?);
        let metrics = Arc::new(Metrics::new());
        let pipeline = Pipeline::new(store.clone(), runtime, &config, metrics.clone()).await;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            store,
            pipeline: pipeline.clone(),
            metrics,
            config,
            ready: false.into(),
        });
        let (stop, stopped) = watch::channel(false);
        let mut workers = pipeline.spawn_workers(stopped.clone());
        crate::notify::start(
            &state.config,
            &state.store,
            &state.metrics,
            pipeline.notices(),
            &stopped,
            &mut workers,
        )
        .await?;
        let router = api::router(state.clone());
        let mut until = stopped;
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = until.wait_for(|stop| *stop).await;
                })
                .await
        });
        state.ready.store(true, Ordering::Release);
        info!(%addr, "quell is serving");
        Ok(Self {
            addr,
            state,
            stop,
            server,
            workers,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pipeline (reload, wake).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.state.pipeline
    }

    /// Stops gracefully: readiness off, no new requests or jobs, running work gets the
    /// configured grace, then anything still running is interrupted (diagnoses requeued,
    /// remediations escalated) exactly as after a crash.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        let grace = self.state.config.server.shutdown_grace.0;
        let drained = tokio::time::timeout(grace, async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                ?grace,
                "work still running after the shutdown grace; interrupting it"
            );
            self.workers.abort_all();
            while self.workers.join_next().await.is_some() {}
            let recovery = self.state.store.write(jobs::recover).await?;
            warn!(
                requeued = recovery.requeued,
                interrupted = recovery.interrupted,
                "interrupted work recorded"
            );
        }
        match tokio::time::timeout(grace, &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "the HTTP server stopped with an error"),
            Ok(Err(e)) => warn!(error = %e, "the HTTP server task failed"),
            Err(_) => {
                warn!("HTTP connections still open after the grace; closing them");
                self.server.abort();
            }
        }
        info!("quell stopped");
        Ok(())
    }
}

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads runbooks and policies.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let daemon = Daemon::start(config).await?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                let report = daemon.pipeline().reload().await;
                info!(loaded = report.loaded.len(), errors = report.errors.len(), "reloaded on SIGHUP");
            }
        }
    }
    info!("shutting down");
    daemon.shutdown().await
}

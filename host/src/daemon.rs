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
use crate::store::Store;

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    workers: JoinSet<()>,
}

/// Serves `router` on `listener` until `stop`, then lets the connections in flight finish.
///
/// This is `axum::serve` plus what it does not offer: a deadline for each request's headers
/// (hyper's `header_read_timeout`), so a client trickling bytes cannot hold a connection
/// open forever, and `TCP_NODELAY` so small answers are not held back by Nagle.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async {
                let _ = stop.wait_for(|stop| *stop).await;
            } => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Refuses configurations that would expose an unauthenticated daemon.
fn check_exposure(config: &Config) -> anyhow::Result<()> {
    if config.server.listen.ip().is_loopback() || config.auth.allow_unauthenticated {
        return Ok(());
    }
    let mut open = Vec::new();
    if config.auth.api_tokens.is_empty() && config.auth.viewer_tokens.is_empty() {
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
        let store = Store::connect(&config.database).await?;
        info!(database = %store.location(), "database open");
        let recovery = store
            .recover()
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
        metrics.escalations.inc_by(recovery.interrupted as u64);
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
            sessions: crate::console::session::Sessions::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let mut workers = pipeline.spawn_workers(stopped.clone());
        crate::notify::start(
            &state.config,
            &state.store,
            &state.metrics,
            &stopped,
            &mut workers,
        )
        .await?;
        let router = api::router(state.clone());
        let header_timeout = state.config.server.header_read_timeout.0;
        let server = tokio::spawn(serve_http(listener, router, header_timeout, stopped));
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
            let recovery = self.state.store.recover_own().await?;
            self.state
                .metrics
                .escalations
                .inc_by(recovery.interrupted as u64);
            warn!(
                requeued = recovery.requeued,
                interrupted = recovery.interrupted,
                "interrupted work recorded"
            );
        }
        match tokio::time::timeout(grace, &mut self.server).await {
            Ok(Ok(())) => {}
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

//! Serving an axum router from its own thread and runtime, so a server works from sync and
//! async tests alike and stops (abandoning in-flight and stalled requests) when dropped.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::Context as _;
use axum::Router;
use tokio::sync::oneshot;

/// A router being served on a background thread.
pub(crate) struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` (port 0 picks a free port) and serves `router` until dropped.
    pub(crate) fn start(addr: SocketAddr, router: Router, name: &str) -> anyhow::Result<Self> {
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || serve(listener, router, stop, ready_tx))
            .context("spawning the server thread")?;
        ready_rx
            .recv()
            .context("the server thread died before it was ready")??;
        Ok(ServerThread {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(
    listener: std::net::TcpListener,
    router: Router,
    stop: oneshot::Receiver<()>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        tokio::select! {
            result = axum::serve(listener, router) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "test server stopped");
                }
            }
            _ = stop => {}
        }
    });
    // Dropping the runtime here cancels every connection task, stalled ones included.
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

//! Wake-ups rung after commits, within this process and, on a shared database, across
//! replicas.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

/// Wake-ups rung after commits: workers wait on `jobs`, dispatchers on `notices`.
#[derive(Default)]
pub struct Hub {
    jobs: Notify,
    notices: Notify,
    /// Tells the other replicas (PostgreSQL's NOTIFY), when there are any.
    remote: OnceLock<Arc<dyn Fn(bool) + Send + Sync>>,
    /// Whether this replica hears the others' wake-ups (its LISTEN is in place).
    listening: AtomicBool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("remote", &self.remote.get().is_some())
            .field("listening", &self.listening())
            .finish()
    }
}

impl Hub {
    /// What workers wait on: a job may be ready.
    pub fn jobs(&self) -> &Notify {
        &self.jobs
    }

    /// What dispatchers wait on: a notice may have been committed.
    pub fn notices(&self) -> &Notify {
        &self.notices
    }

    /// Whether wake-ups from other replicas reach this one (always false on SQLite).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// After a commit here: wakes this process's waiters and tells the other replicas.
    pub(super) fn ring(&self, jobs: bool) {
        self.wake(jobs);
        if let Some(remote) = self.remote.get() {
            remote(jobs);
        }
    }

    /// Wakes this process's waiters only (a wake-up from another replica).
    pub(super) fn wake(&self, jobs: bool) {
        if jobs {
            self.jobs.notify_waiters();
        }
        self.notices.notify_waiters();
    }

    pub(super) fn set_remote(&self, remote: Arc<dyn Fn(bool) + Send + Sync>) {
        let _ = self.remote.set(remote);
    }

    pub(super) fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
    }
}

//! Several replicas on one database: who runs which job, and taking over the work of a
//! replica that died.
//!
//! A claimed job carries its replica's identity and a lease that the replica renews while it
//! lives. A replica that stops renewing (killed, partitioned from the database) loses its
//! running jobs once the lease lapses: another replica's sweep queues its diagnoses again and
//! marks its remediations interrupted and escalated, never re-run, as crash recovery does on
//! one node. On the embedded SQLite store there is one process, so it recovers everything
//! at start, as before.

use super::jobs::{self, Job, Recovery, Scope};
use super::tx::Tx;
use super::{Store, StoreError, now};

/// Whether job `job` is still running under replica `me`: the fence that keeps a replica
/// whose lease lapsed (a stall, a partition) from recording over the replica that took its
/// job over. On PostgreSQL the job's row stays locked to the end of the transaction, so a
/// takeover waits for it, or it for the takeover.
pub(super) fn holds(tx: &dyn Tx, job: i64, me: &str) -> Result<bool, StoreError> {
    let held: Option<i64> = tx.query_opt(
        &format!(
            "SELECT id FROM jobs WHERE id = ?1 AND state = 'running' AND owner = ?2{}",
            tx.dialect().for_update()
        ),
        &[&job, &me],
        |row| row.get(0),
    )?;
    Ok(held.is_some())
}

/// [`holds`], for the job of run `run`.
pub(super) fn holds_run(tx: &dyn Tx, run: i64, me: &str) -> Result<bool, StoreError> {
    let job: Option<i64> =
        tx.query_opt("SELECT job_id FROM runs WHERE id = ?1", &[&run], |row| {
            row.get(0)
        })?;
    match job {
        Some(job) => holds(tx, job, me),
        None => Ok(false),
    }
}

/// This process among the replicas: host name, process id and a random part (a restarted
/// process with a recycled pid is still another owner).
pub(super) fn identity() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "quell".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Store {
    /// This replica's identity, as job owners record it.
    pub fn replica(&self) -> &str {
        &self.me
    }

    /// Whether several replicas may share this database (PostgreSQL).
    fn shared(&self) -> bool {
        matches!(self.db, super::backend::Backend::Postgres(_))
    }

    /// Claims the oldest ready job for this replica, under its lease.
    pub async fn claim_job(&self) -> Result<Option<Job>, StoreError> {
        let (me, lease_ms) = (self.me.clone(), self.lease_ms);
        self.db
            .write(move |tx| jobs::claim(tx, &me, lease_ms))
            .await
    }

    /// Keeps this replica's running jobs its own for another lease; returns how many. On
    /// SQLite, with one process, nothing (and no write every second).
    pub async fn renew_leases(&self) -> Result<u64, StoreError> {
        if !self.shared() {
            return Ok(0);
        }
        let (me, until) = (self.me.clone(), now().1 + self.lease_ms);
        self.db.write(move |tx| jobs::renew(tx, &me, until)).await
    }

    /// Whether this replica is the one doing the work named `name` (a destination's
    /// sender) for the next `lease`: it takes the lease when it is free or lapsed and renews
    /// it while it holds it. On SQLite there is one process, so always.
    pub async fn lead(&self, name: &str, lease: std::time::Duration) -> Result<bool, StoreError> {
        if !self.shared() {
            return Ok(true);
        }
        let (name, me) = (name.to_owned(), self.me.clone());
        let now_ms = now().1;
        let until = now_ms + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        self.db
            .write(move |tx| jobs::lead(tx, &name, &me, (now_ms, until)))
            .await
    }

    /// A job whose end could not be recorded, while the daemon goes on: a diagnosis or
    /// verification is queued again, a remediation marked interrupted and escalated (never
    /// re-run), as after a crash; its targets are let go.
    pub async fn recover_job(&self, job: i64) -> Result<Recovery, StoreError> {
        self.recover_scope(Scope::Job(job, self.me.to_string()))
            .await
    }

    /// At start, after a crash: diagnoses that were running are queued again, remediations
    /// are marked interrupted and escalated, never re-run. On SQLite that is every running
    /// job; on a shared database only those whose replica's lease has lapsed, never the
    /// live work of the others.
    pub async fn recover(&self) -> Result<Recovery, StoreError> {
        let scope = if self.shared() {
            Scope::Lapsed
        } else {
            Scope::All
        };
        self.recover_scope(scope).await
    }

    /// As this replica stops with work still running (its shutdown ran out of time): that
    /// work, recovered as after a crash.
    pub async fn recover_own(&self) -> Result<Recovery, StoreError> {
        let scope = if self.shared() {
            Scope::Owner(self.me.to_string())
        } else {
            Scope::All
        };
        self.recover_scope(scope).await
    }

    /// Takes over the work of replicas whose lease lapsed; nothing on SQLite.
    pub async fn sweep_lapsed(&self) -> Result<Recovery, StoreError> {
        if !self.shared() {
            return Ok(Recovery::default());
        }
        self.recover_scope(Scope::Lapsed).await
    }

    async fn recover_scope(&self, scope: Scope) -> Result<Recovery, StoreError> {
        let one = matches!(scope, Scope::Job(..));
        let recovery = self.db.write(move |tx| jobs::recover(tx, &scope)).await?;
        self.hub.ring(one || recovery.requeued > 0);
        Ok(recovery)
    }
}

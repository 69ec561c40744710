//! Work on a clock: approval expiry, retention, and post-mortem drafts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{POLL, Pipeline, millis};
use crate::store::now;

/// How long the replica that does the hourly housekeeping keeps it without doing it again:
/// two rounds, so its own renewal is never late.
const HOUSEKEEPING_LEASE: Duration = Duration::from_secs(2 * 3600);

impl Pipeline {
    /// Applies `[retention]` at start and every hour, and writes the post-mortem drafts that
    /// are missing. Of several replicas, the one holding the `housekeeping` lease does it
    /// (another takes over once a holder that died lets it lapse).
    pub(super) async fn prune(&self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.store.lead("housekeeping", HOUSEKEEPING_LEASE).await {
                Ok(true) => self.housekeep().await,
                Ok(false) => debug!("another replica applies retention"),
                Err(e) => warn!(error = %e, "cannot take the housekeeping lease"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Retention, then the missing post-mortem drafts.
    async fn housekeep(&self) {
        let (_, ms) = now();
        let inbox = ms - millis(self.retention.inbox.0);
        let incidents = ms - millis(self.retention.incidents.0);
        match self.store.prune(inbox, incidents).await {
            Ok(pruned) if pruned.deliveries + pruned.incidents > 0 => info!(
                deliveries = pruned.deliveries,
                incidents = pruned.incidents,
                "history past its retention deleted"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot apply retention"),
        }
        self.write_missing_postmortems().await;
    }

    /// Expires plans nobody approved in time, every [`POLL`]. On a shared database it also
    /// renews this replica's leases and takes over the work of replicas whose lease lapsed.
    pub(super) async fn expire_approvals(&self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(e) = self.store.renew_leases().await {
                warn!(error = %e, "cannot renew this replica's job leases");
            }
            match self.store.sweep_lapsed().await {
                Ok(taken) if taken.requeued + taken.interrupted > 0 => {
                    self.metrics.escalations.inc_by(taken.interrupted as u64);
                    warn!(
                        requeued = taken.requeued,
                        interrupted = taken.interrupted,
                        "took over the work of a replica whose lease lapsed"
                    );
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot take over lapsed work"),
            }
            match self.store.expire_approvals().await {
                Ok(n) if n > 0 => {
                    self.metrics.escalations.inc_by(n as u64);
                    info!(expired = n, "approvals expired");
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot expire approvals"),
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Writes the post-mortem draft of a resolved incident, in the background.
    pub fn resolved(self: &Arc<Self>, id: &str) {
        let pipeline = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move { pipeline.write_postmortem(&id).await });
    }

    /// Writes the drafts a replica that resolved an incident did not get to write (it
    /// stopped first), a page at a time.
    async fn write_missing_postmortems(&self) {
        match self.store.missing_postmortems(100).await {
            Ok(ids) => {
                for id in ids {
                    self.write_postmortem(&id).await;
                }
            }
            Err(e) => warn!(error = %e, "cannot look for missing post-mortem drafts"),
        }
    }

    /// Writes the draft of incident `id`'s resolution into the database, and as a file when
    /// `[postmortems] files` is on; nothing if it is no longer resolved.
    async fn write_postmortem(&self, id: &str) {
        let detail = match self.store.incident_detail(id.to_owned()).await {
            Ok(Some(detail)) => detail,
            Ok(None) => return,
            Err(e) => {
                warn!(incident = %id, error = %e, "cannot read the incident for its post-mortem");
                return;
            }
        };
        let Some(resolved_at) = detail
            .incident
            .resolved_at
            .clone()
            .filter(|_| detail.incident.status == "resolved")
        else {
            return;
        };
        let draft = crate::postmortem::render(&detail, self.public_url.as_deref());
        let stored = self
            .store
            .save_postmortem(id.to_owned(), resolved_at, draft.clone())
            .await;
        match stored {
            Ok(()) => info!(incident = %id, "post-mortem draft stored"),
            Err(e) => warn!(incident = %id, error = %e, "cannot store the post-mortem draft"),
        }
        let Some(dir) = self.postmortems.clone() else {
            return;
        };
        let saved =
            tokio::task::spawn_blocking(move || crate::postmortem::save(&dir, &detail, &draft))
                .await;
        match saved {
            Ok(Ok(path)) => {
                info!(incident = %id, path = %path.display(), "post-mortem draft written")
            }
            Ok(Err(e)) => warn!(incident = %id, error = %e, "cannot write the post-mortem draft"),
            Err(e) => warn!(incident = %id, error = %e, "post-mortem task failed"),
        }
    }
}

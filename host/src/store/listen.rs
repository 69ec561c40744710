//! Wake-ups across replicas: PostgreSQL's `LISTEN`/`NOTIFY` on the channel `quell`.
//!
//! After a commit that queued work or notices, a replica wakes its own workers at once and
//! sends one `NOTIFY` (coalescing the commits that came meanwhile), outside the transaction
//! that committed. Each replica keeps one connection, outside the pool, listening; a
//! notification wakes its workers or dispatchers as a local commit would. Polling stays as
//! the fallback: a lost connection costs latency, never work. After it reconnects, a replica
//! wakes everything once, for what it may have missed.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::hub::Hub;
use super::postgres::Postgres;

const CHANNEL: &str = "quell";
const JOBS: u8 = 1;
const NOTICES: u8 = 2;

/// Starts this replica's listener and sender for `hub`. Both stop once the store is dropped.
pub(super) fn start(db: &Postgres, hub: &Arc<Hub>) {
    let pending = Arc::new(AtomicU8::new(0));
    let kick = Arc::new(Notify::new());
    let (flags, wake) = (pending.clone(), kick.clone());
    hub.set_remote(Arc::new(move |jobs| {
        flags.fetch_or(
            if jobs { JOBS | NOTICES } else { NOTICES },
            Ordering::AcqRel,
        );
        wake.notify_one();
    }));
    tokio::spawn(send(db.clone(), Arc::downgrade(hub), pending, kick));
    tokio::spawn(listen(db.clone(), Arc::downgrade(hub)));
}

async fn send(db: Postgres, hub: Weak<Hub>, pending: Arc<AtomicU8>, kick: Arc<Notify>) {
    loop {
        kick.notified().await;
        if hub.strong_count() == 0 {
            return;
        }
        let flags = pending.swap(0, Ordering::AcqRel);
        let payload = if flags & JOBS != 0 { "jobs" } else { "notices" };
        if let Err(e) = db.notify(CHANNEL, payload).await {
            tracing::debug!(error = %e, "cannot tell the other replicas; they will poll");
        }
    }
}

async fn listen(db: Postgres, hub: Weak<Hub>) {
    loop {
        match db.listener().await {
            Ok((client, mut connection)) => {
                let heard = hub.clone();
                let messages = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match (message, heard.upgrade()) {
                            (Ok(AsyncMessage::Notification(n)), Some(hub)) => {
                                hub.wake(n.payload() == "jobs");
                            }
                            (Ok(_), Some(_)) => {}
                            (Err(e), _) => {
                                tracing::warn!(error = %e, "the database listener dropped");
                                return;
                            }
                            (_, None) => return,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        if let Some(hub) = hub.upgrade() {
                            // Whatever was committed while this replica was not listening;
                            // then it counts as listening.
                            hub.wake(true);
                            hub.set_listening(true);
                        }
                        let _ = messages.await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for the other replicas");
                        messages.abort();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect the database listener"),
        }
        let Some(hub) = hub.upgrade() else { return };
        hub.set_listening(false);
        drop(hub);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

//! The limits of one export call: the memory cap, the per-phase outer deadline, and the
//! size of an export's value.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use wasmtime::ResourceLimiter;

use super::{InvokeError, MAX_RESULT};
use crate::config::ByteSize;

/// How long past a phase's deadline a call blocked in the host may go on before it is cut
/// off: the epoch ticks that stop guest code, a little more for the host's own work.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

/// The memory cap for the whole instance (all its linear memories together), remembering
/// whether the guest ran into it.
pub(super) struct Limits {
    pub(super) memory: usize,
    pub(super) used: usize,
    pub(super) hit: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_add(desired.saturating_sub(current));
        if total > self.memory {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} reached",
                ByteSize(self.memory as u64)
            ));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 10_000)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

/// Returns once the phase's deadline (which moves when the next phase starts) has passed
/// by [`DEADLINE_GRACE`].
pub(super) async fn past_deadline(mut clock: watch::Receiver<Instant>) {
    loop {
        let until = *clock.borrow_and_update() + DEADLINE_GRACE;
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => {
                if *clock.borrow() + DEADLINE_GRACE <= Instant::now() {
                    return;
                }
            }
            changed = clock.changed() => {
                if changed.is_err() {
                    // The store is gone, and with it the call.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// `value`, unless its JSON form is larger than [`MAX_RESULT`].
pub(super) fn bounded<T: serde::Serialize>(value: T) -> Result<T, InvokeError> {
    let size = serde_json::to_vec(&value).map_or(0, |json| json.len());
    if size > MAX_RESULT {
        return Err(InvokeError::TooLarge {
            size,
            limit: ByteSize(MAX_RESULT as u64),
        });
    }
    Ok(value)
}

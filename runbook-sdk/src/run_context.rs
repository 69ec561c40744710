//! The run in progress (WIT `quell:runbook/run-context`, since 0.1.1): whether writes are
//! simulated, and handing an incident to on-call from `diagnose`.

/// Whether writes are recorded instead of executed: the policy's `dry_run`, or
/// `quell run --dry-run`. Reads run either way.
pub fn dry_run() -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::quell::runbook::run_context::dry_run()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::dispatch_dry_run()
    }
}

/// From `diagnose`: on-call is needed and there is nothing to automate. The diagnosis goes to
/// on-call at once with `reason`; no plan waits for approval and `remediate` is not called,
/// whatever the policy's mode. Elsewhere it does nothing. The first reason is the one kept.
pub fn escalate(reason: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::quell::runbook::run_context::escalate(reason);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::dispatch_escalate(reason);
    }
}

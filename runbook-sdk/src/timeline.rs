//! Lines a runbook adds to the incident timeline (WIT `quell:runbook/timeline`).

/// Adds `text` to the incident's timeline. Always allowed.
pub fn note(text: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::quell::runbook::timeline::note(text);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::dispatch_note(text);
    }
}

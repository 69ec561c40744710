//! Commands on remote hosts (WIT `quell:runbook/ssh`).
//!
//! A runbook never sends a command line: it names a command template from its policy's
//! `[ssh.commands]` and passes parameters, which the host validates against the template's
//! patterns and quotes itself.
//!
//! ```
//! use quell_runbook_sdk::ssh;
//!
//! // `vacuum-journal = { run = "journalctl --vacuum-time={days}d", params = { days = "^[0-9]{1,3}$" }, … }`
//! match ssh::run("db-1.internal", "vacuum-journal", &[("days", "3")]) {
//!     Ok(output) if output.succeeded() => println!("{}", output.stdout),
//!     Ok(output) => println!("exited with {}: {}", output.exit_code, output.stderr),
//!     Err(error) => println!("not run: {error}"),
//! }
//! ```

use crate::{CommandOutput, HostError};

/// Runs the policy command `command_id` on `host` with `params`. A non-zero exit is still
/// `Ok`: check [`CommandOutput::exit_code`].
pub fn run(
    host: &str,
    command_id: &str,
    params: &[(&str, &str)],
) -> Result<CommandOutput, HostError> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::quell::runbook::ssh::run(host, command_id, &params)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::dispatch_ssh(host, command_id, &params)
    }
}

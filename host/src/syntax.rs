//! The vocabulary of Quell's TOML files, shared by runbook policies and the host
//! configuration: validated patterns, human-readable units, and the one way a TOML error is
//! rendered.
//!
//! A leaf: it imports nothing from the rest of the crate, so every module that reads a file
//! can depend on it without depending on each other.

mod patterns;
mod units;

pub use patterns::{AnchoredRegex, Glob, HostPattern, Identifier, Network};
pub use units::{Budget, ByteSize, HumanDuration};

/// Renders a TOML error as `line L, column C: reason`, the form every Quell file error uses.
pub fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

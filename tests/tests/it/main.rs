//! Integration tests: runbooks as wasm in the real host, against real kubectl (talking to the
//! Kubernetes API simulator), a real sshd on loopback and real HTTP servers on loopback.
//!
//! Components are built by `scripts/build-runbooks.sh` (called by `scripts/test.sh`).

// Tests age files with `touch -d`; the spawn rule in clippy.toml is for the product.
#![allow(clippy::disallowed_methods)]
// Helpers outside #[test] functions panic on setup failures, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alertmanager;
mod browser;
mod compat;
mod console;
mod containment;
mod daemon;
mod deploy;
mod fuzz_corpus;
mod harness;
mod hostile;
mod notify;
mod policy_fixtures;
mod policy_gate;
mod python;
mod runbooks;
mod semantics;
mod sources;
mod storm;

//! Integration tests: runbooks as wasm in the real host, against real kubectl (talking to the
//! Kubernetes API simulator), a real sshd on loopback and real HTTP servers on loopback.
//!
//! Components are built by `scripts/build-runbooks.sh` (called by `scripts/test.sh`).

mod harness;
mod hostile;
mod policy_fixtures;
mod policy_gate;
mod runbooks;

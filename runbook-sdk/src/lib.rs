//! Write Quell runbooks in Rust.
//!
//! A runbook is a WebAssembly component (`wasm32-wasip2`) that Quell calls when an incident
//! arrives: `matches` says whether the runbook applies, `diagnose` gathers facts through
//! read-only capability calls, and `remediate` acts on them when the runbook's policy allows.
//! The component reaches the world only through the host capabilities in [`kubectl`],
//! [`ssh`], [`http`] and [`timeline`]; every call is checked against the runbook's
//! `policy.toml` and recorded. A refused call is a value, [`HostError::Denied`], never a trap.
//!
//! This crate holds the WIT contract (`wit/runbook.wit`), its generated bindings, the
//! [`Runbook`] trait with the [`export_runbook!`] macro that turns an implementation into the
//! component's exports, typed helpers over the capabilities, and [`testing`], a scripted
//! host that lets a runbook's decisions be unit-tested natively with `cargo test`.
//!
//! # A complete runbook
//!
//! ```
//! use quell_runbook_sdk::prelude::*;
//! use quell_runbook_sdk::serde_json;
//!
//! /// Restarts a deployment whose health check does not answer 200.
//! pub struct RestartUnhealthy;
//!
//! impl Runbook for RestartUnhealthy {
//!     fn matches(incident: &Incident) -> bool {
//!         incident.label("alertname") == Some("ServiceDown")
//!     }
//!
//!     fn diagnose(incident: &Incident) -> Result<Diagnosis, String> {
//!         let service = incident.label("service").ok_or("the alert has no service label")?;
//!         let healthy = match http::get(&format!("http://{service}.internal/health")) {
//!             Ok(response) => response.status == 200,
//!             Err(error) => {
//!                 timeline::note(&format!("health check failed: {error}"));
//!                 false
//!             }
//!         };
//!         let check = if healthy {
//!             Finding::ok("health", "answers 200")
//!         } else {
//!             Finding::failed("health", "does not answer 200")
//!         };
//!         let mut diagnosis = Diagnosis::new(format!("{service} healthy: {healthy}")).finding(check);
//!         if !healthy {
//!             diagnosis = diagnosis.step(format!("restart deployment/{service} in production"));
//!         }
//!         diagnosis
//!             .with_data(&serde_json::json!({ "service": service, "healthy": healthy }))
//!             .map_err(|e| e.to_string())
//!     }
//!
//!     fn remediate(_: &Incident, diagnosis: &Diagnosis) -> Result<Remediation, String> {
//!         let facts: serde_json::Value = diagnosis.data()?;
//!         let service = facts["service"].as_str().ok_or("no service in the diagnosis")?;
//!         if facts["healthy"] == true {
//!             return Ok(Remediation::failed("nothing to do", "the service is healthy"));
//!         }
//!         Ok(match kubectl::rollout_restart("production", service) {
//!             Ok(_) => Remediation::succeeded(format!("restarted deployment/{service}"), ""),
//!             Err(error) => Remediation::failed("restart failed", error.to_string()),
//!         })
//!     }
//! }
//!
//! // The component's exports; expands to nothing outside wasm32.
//! quell_runbook_sdk::export_runbook!(RestartUnhealthy);
//!
//! // A native test: script the host, run the runbook, assert on its decisions.
//! use quell_runbook_sdk::testing::{self, Call, MockHost};
//!
//! let host = MockHost::new()
//!     .http(|_| Ok(testing::response(503, "down")))
//!     .kubectl(|_| Ok(testing::stdout("deployment.apps/api restarted\n")));
//! let _guard = host.install();
//!
//! let incident = testing::incident().label("alertname", "ServiceDown").label("service", "api").build();
//! assert!(RestartUnhealthy::matches(&incident));
//! let diagnosis = RestartUnhealthy::diagnose(&incident).unwrap();
//! assert_eq!(diagnosis.plan, ["restart deployment/api in production"]);
//! let remediation = RestartUnhealthy::remediate(&incident, &diagnosis).unwrap();
//! assert!(remediation.success);
//! assert!(host.calls().iter().any(|call| matches!(
//!     call,
//!     Call::Kubectl(request) if request.verb == kubectl::Verb::RolloutRestart
//! )));
//! ```
//!
//! # Building
//!
//! A runbook crate has `crate-type = ["cdylib", "rlib"]` (the `rlib` lets its unit tests run
//! natively) and is built with `cargo build --target wasm32-wasip2 --profile wasm`, which
//! writes the component straight to `target/wasm32-wasip2/wasm/<crate>.wasm`. Copy it beside
//! the runbook's `policy.toml`.
//!
//! The component imports only the capabilities its code calls: the linker drops unused
//! helpers and Quell's component tooling drops imports nothing refers to. Quell refuses a
//! component that imports a capability its policy does not grant, so a runbook that never
//! calls [`ssh`] needs no `[ssh]` section.
//!
//! # Testing natively
//!
//! Outside `wasm32` the capability functions do not reach a host: they call the test double
//! installed on the current thread with [`testing::MockHost::install`]. With no double
//! installed, or a double without a handler for the capability, every call returns
//! [`HostError::Denied`] — what a policy that grants nothing would do — and timeline notes are
//! dropped. See [`testing`].

#![deny(missing_docs)]

pub mod http;
pub mod kubectl;
pub mod run_context;
pub mod ssh;
pub mod testing;
pub mod timeline;
mod types;

pub use serde_json;
pub use types::{CommandOutput, Diagnosis, Finding, HostError, Incident, Remediation, Severity};

/// The bindings generated from `wit/runbook.wit`. Use the re-exports and helpers instead;
/// this module is public for [`export_runbook!`].
#[doc(hidden)]
#[allow(
    missing_docs,
    unsafe_code,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "runbook",
        path: "wit",
        pub_export_macro: true,
        default_bindings_module: "quell_runbook_sdk::bindings",
        additional_derives: [PartialEq, Eq],
        // A hand-written twin of the generated variant, for a readable `Display`.
        with: { "quell:runbook/types@0.1.1/host-error": crate::types::HostError },
    });
}

/// What a runbook implements: the three exports of the `runbook` world, over borrowed
/// SDK types. Turn an implementation into a component with [`export_runbook!`].
///
/// The functions are associated functions, without `self`: every call runs in a fresh
/// instance, so a runbook keeps no state between calls. State that `remediate` needs travels
/// in [`Diagnosis::data_json`].
pub trait Runbook {
    /// Cheap and side-effect free: does this runbook apply to the incident? Capability calls
    /// are refused here.
    fn matches(incident: &Incident) -> bool;

    /// Gathers facts. Only read operations are allowed, whatever the policy grants. The
    /// [`Diagnosis::plan`] says what `remediate` would do with these facts.
    fn diagnose(incident: &Incident) -> Result<Diagnosis, String>;

    /// Acts on the diagnosis, when the policy's mode allows it. `diagnosis` is exactly what
    /// `diagnose` returned.
    fn remediate(incident: &Incident, diagnosis: &Diagnosis) -> Result<Remediation, String>;
}

impl<T: Runbook> bindings::Guest for T {
    fn matches(incident: Incident) -> bool {
        <T as Runbook>::matches(&incident)
    }

    fn diagnose(incident: Incident) -> Result<Diagnosis, String> {
        <T as Runbook>::diagnose(&incident)
    }

    fn remediate(incident: Incident, diagnosis: Diagnosis) -> Result<Remediation, String> {
        <T as Runbook>::remediate(&incident, &diagnosis)
    }
}

/// Exports a [`Runbook`] implementation as the component's `matches`, `diagnose` and
/// `remediate`. Invoke it once, at the root of the runbook crate:
///
/// ```
/// # use quell_runbook_sdk::prelude::*;
/// pub struct Noop;
/// # impl Runbook for Noop {
/// #     fn matches(_: &Incident) -> bool { false }
/// #     fn diagnose(_: &Incident) -> Result<Diagnosis, String> { Ok(Diagnosis::new("noop")) }
/// #     fn remediate(_: &Incident, _: &Diagnosis) -> Result<Remediation, String> {
/// #         Ok(Remediation::failed("noop", ""))
/// #     }
/// # }
/// quell_runbook_sdk::export_runbook!(Noop);
/// ```
///
/// Outside `wasm32` it expands to nothing, so the crate still builds and unit-tests natively.
#[macro_export]
macro_rules! export_runbook {
    ($runbook:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!($runbook with_types_in $crate::bindings);
    };
}

/// The names a runbook usually needs: `use quell_runbook_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CommandOutput, Diagnosis, Finding, HostError, Incident, Remediation, Runbook, Severity,
        http, kubectl, run_context, ssh, timeline,
    };
}

//! Quell: an incident-response daemon that runs runbooks as sandboxed WebAssembly components.
//!
//! Alerts become incidents; matching runbooks — components built for `wasm32-wasip2` against
//! the `quell:runbook` WIT world — diagnose and remediate them through three host
//! capabilities (kubectl, ssh, HTTP), each call checked against the runbook's capability
//! policy and recorded.
//!
//! The library holds everything; `main.rs` only parses arguments. Tests start the same code
//! in-process:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = quell::config::Config::default();
//! let runtime = quell::sandbox::Runtime::new(&config)?;
//! let (runbooks, errors) = runtime.load_dir(std::path::Path::new("runbooks"));
//! assert!(errors.is_empty());
//! let alert = std::fs::read_to_string("examples/alerts/high-error-rate.json")?;
//! for incident in quell::incident::from_alert_json(&alert, "cli").map_err(anyhow::Error::msg)? {
//!     let report = quell::runner::run(&runtime, &runbooks, &incident, &Default::default()).await;
//!     println!("{}", report.render());
//! }
//! # Ok(()) }
//! ```

pub mod api;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod files;
pub mod incident;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod postmortem;
pub mod replay;
pub mod runner;
pub mod sandbox;
pub mod sources;
pub mod store;
pub mod syntax;

/// Host bindings for the `quell:runbook` world (`runbook-sdk/wit`).
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "runbook",
        path: "../runbook-sdk/wit",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [serde::Serialize, serde::Deserialize],
    });

    impl<T: Send + 'static> RunbookPre<T> {
        /// [`RunbookPre::instantiate_async`] without type-checking the three exports again
        /// in every new instance: [`RunbookPre::new`] checked them once against this very
        /// component, and an instance cannot change its component's types. Saves about a
        /// microsecond per instance (the `incident` record's type is walked three times).
        pub async fn instantiate_checked_once(
            &self,
            mut store: impl wasmtime::AsContextMut<Data = T>,
        ) -> wasmtime::Result<Runbook> {
            let mut store = store.as_context_mut();
            let instance = self.instance_pre.instantiate_async(&mut store).await?;
            let mut export = |index: &wasmtime::component::ComponentExportIndex| {
                instance
                    .get_func(&mut store, index)
                    .ok_or_else(|| wasmtime::format_err!("the component lost an export"))
            };
            Ok(Runbook {
                matches: export(&self.indices.matches)?,
                diagnose: export(&self.indices.diagnose)?,
                remediate: export(&self.indices.remediate)?,
            })
        }
    }
}

impl bindings::quell::runbook::types::Host for capabilities::CallContext {}

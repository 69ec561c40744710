//! Loading a runbook: policy, digest pin, compile-or-cache, import check, pre-linking.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::{LoadedRunbook, Runtime};
use crate::bindings::RunbookPre;
use crate::capabilities::Capability;
use crate::policy::Policy;

/// The WASI interfaces the sandbox provides (all backed by an empty context).
const PROVIDED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // Linked to nothing: no preopened directory, no network (componentize-py imports them).
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// The largest component file Quell reads (runbooks are a few hundred KiB).
pub const MAX_COMPONENT_SIZE: u64 = 64 << 20;

/// A runbook that could not be loaded, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct LoadError {
    /// The policy (or directory) at fault.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl LoadError {
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl Runtime {
    /// Loads one runbook from its policy file.
    pub fn load(&self, policy_path: &Path) -> Result<LoadedRunbook, LoadError> {
        let fail = |message: String| LoadError::new(policy_path, message);
        let policy = Policy::load(policy_path).map_err(|e| fail(e.message))?;
        let component_path = policy_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&policy.runbook.component);
        let wasm = crate::files::read(&component_path, MAX_COMPONENT_SIZE).map_err(|e| {
            let hint = if e.is_not_found() {
                " (build the runbooks first: scripts/build-runbooks.sh)"
            } else {
                ""
            };
            fail(format!("component {}: {e}{hint}", component_path.display()))
        })?;
        let digest = hex::encode(Sha256::digest(&wasm));
        if let Some(pin) = &policy.runbook.sha256
            && pin.0 != digest
        {
            return Err(fail(format!(
                "component {} has sha256 {digest}, but the policy pins {}: refusing a swapped component",
                component_path.display(),
                pin.0
            )));
        }
        self.caps
            .http
            .check_secrets(&policy.http)
            .map_err(|e| fail(format!("[http]: {e}")))?;
        let component = self
            .compile(&wasm, &digest)
            .map_err(|e| fail(format!("component {}: {e:#}", component_path.display())))?;
        let (imports, notes) = check_imports(&self.engine, &component, &policy).map_err(fail)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(RunbookPre::new)
            .map_err(|e| {
                fail(format!(
                    "component {} does not fit the quell:runbook world: {e:#}",
                    component_path.display()
                ))
            })?;
        let http_client = self
            .caps
            .http
            .client(&policy.http)
            .map_err(|e| fail(format!("http client: {e:#}")))?;
        let granted = policy.granted();
        for capability in &granted {
            if *capability != Capability::Timeline && !imports.contains(capability) {
                tracing::warn!(runbook = %policy.runbook.name, %capability, "policy grants a capability the component does not import");
            }
        }
        for note in &notes {
            tracing::info!(runbook = %policy.runbook.name, "{note}");
        }
        Ok(LoadedRunbook {
            name: policy.runbook.name.to_string(),
            policy: Arc::new(policy),
            policy_path: policy_path.to_owned(),
            digest,
            imports,
            notes,
            pre,
            http_client,
        })
    }

    /// Compiles a component, or loads it from the cache keyed by sha256 and engine.
    fn compile(&self, wasm: &[u8], digest: &str) -> anyhow::Result<Component> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let cached = self
            .cache_dir
            .join(format!("{digest}-{:016x}.cwasm", hasher.finish()));
        if cached.is_file()
            && let Some(component) = self.load_cached(&cached)
        {
            return Ok(component);
        }
        let component = Component::new(&self.engine, wasm)?;
        let bytes = component.serialize()?;
        // Write to a private temporary file and rename it into place, so a concurrent loader
        // never maps a half-written artifact.
        let written = tempfile::NamedTempFile::new_in(&self.cache_dir)
            .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes).map(|()| file))
            .and_then(|file| file.persist(&cached).map_err(|e| e.error));
        match written {
            // Run what was just written, mapped from the file: instances of a file-backed
            // component start faster than those of one compiled in memory (its memory image
            // comes from the page cache rather than an anonymous copy; 1.63 ms against 1.84
            // ms for a componentize-py runbook, docs/benchmarks.md).
            Ok(_) => {
                if let Some(component) = self.load_cached(&cached) {
                    return Ok(component);
                }
            }
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "cannot cache compiled component");
            }
        }
        component.initialize_copy_on_write_image()?;
        Ok(component)
    }

    /// A compiled component from the cache, or `None` (logged) when it cannot be used.
    fn load_cached(&self, cached: &Path) -> Option<Component> {
        // SAFETY: files in the cache directory are written only by `compile` above, from a
        // component whose sha256 is part of the file name and was just checked; the
        // directory is created 0700 and refused at start-up unless it belongs to this user
        // and nobody else can write it (`private_dir`). The engine-compatibility hash in the
        // name keeps artifacts of other engines out, and wasmtime checks it again while
        // loading.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(&self.engine, cached) };
        match loaded.and_then(|component| {
            component
                .initialize_copy_on_write_image()
                .map(|()| component)
        }) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "ignoring unusable cached component");
                None
            }
        }
    }
}

/// Creates the component cache (mode 0700) and refuses one that another user could write:
/// it holds native code that is loaded without further checks.
pub(super) fn private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let meta = std::fs::metadata(path)?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw();
    if !ours || meta.mode() & 0o022 != 0 {
        anyhow::bail!(
            "{}: the component cache must belong to this user and be writable by no one else (mode {:o})",
            path.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

/// The note for a capability the component imports and the policy does not grant.
fn ungranted(import: &str, capability: Capability) -> String {
    format!(
        "the component imports {import}, but the policy grants no {capability}: every {capability} call is denied (add {} to allow it)",
        capability.section()
    )
}

/// What one of a component's imports is: a capability (and whether the policy grants it),
/// or something Quell links without a grant (WASI given nothing, the world's types). The
/// error is the load's refusal. The one rule for [`Runtime::load`] and `quell policy check`.
fn classify(
    name: &str,
    is_type: bool,
    granted: &[Capability],
) -> Result<Option<(Capability, bool)>, String> {
    if let Some(capability) = Capability::from_import(name) {
        return Ok(Some((capability, granted.contains(&capability))));
    }
    if name.starts_with("wasi:") {
        let interface = name.split('@').next().unwrap_or(name);
        if !PROVIDED_WASI.contains(&interface) {
            return Err(format!(
                "the component imports {name}, which Quell does not provide to runbooks"
            ));
        }
    } else if !is_type
        && !name.starts_with("quell:runbook/types")
        && !name.starts_with("quell:runbook/run-context")
    {
        return Err(format!(
            "the component imports {name}, which is not part of the quell:runbook world"
        ));
    }
    Ok(None)
}

/// What [`Runtime::load`] would say about `wasm`'s imports under `policy`, read without
/// compiling it (for `quell policy check`): its notes, or the refusal.
pub fn import_notes(wasm: &[u8], policy: &Policy) -> Result<Vec<String>, String> {
    use wasmparser::{ComponentTypeRef, Parser, Payload};
    let granted = policy.granted();
    let mut notes = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| format!("not a component: {e}"))? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(imports) if depth == 0 => {
                for import in imports {
                    let import = import.map_err(|e| format!("not a component: {e}"))?;
                    let name = import.name.name;
                    let is_type = matches!(import.ty, ComponentTypeRef::Type(_));
                    if let Some((capability, false)) = classify(name, is_type, &granted)? {
                        notes.push(ungranted(name, capability));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(notes)
}

/// Compares the component's imports with the policy's grants: the capabilities it imports,
/// and a note for each one the policy does not grant. Such an import is linked all the same
/// and every call through it is denied by the policy, as any call outside the grants is:
/// componentize-py imports the whole world, so refusing the load would force grants.
fn check_imports(
    engine: &wasmtime::Engine,
    component: &Component,
    policy: &Policy,
) -> Result<(Vec<Capability>, Vec<String>), String> {
    let granted = policy.granted();
    let mut imported = Vec::new();
    let mut notes = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        let is_type = matches!(item.ty, ComponentItem::Type(_));
        if let Some((capability, granted)) = classify(name, is_type, &granted)? {
            if !granted {
                notes.push(ungranted(name, capability));
            }
            imported.push(capability);
        }
    }
    imported.sort();
    imported.dedup();
    Ok((imported, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::files::tests::{fifo, within_deadline};

    #[test]
    fn a_fifo_component_fails_the_load_instead_of_blocking_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.sandbox.cache_dir = dir.path().join("cache");
        config.sandbox.max_instances = 1;
        let runbook = dir.path().join("runbooks").join("fifo");
        std::fs::create_dir_all(&runbook).unwrap();
        std::fs::write(
            runbook.join("policy.toml"),
            "[runbook]\nname = \"fifo\"\ncomponent = \"fifo.wasm\"\n",
        )
        .unwrap();
        let component = fifo(&runbook, "fifo.wasm");
        let runbooks = dir.path().join("runbooks");
        let (loaded, errors) = within_deadline(move || {
            let runtime = Runtime::new(&config).unwrap();
            let (loaded, errors) = runtime.load_dir(&runbooks);
            (loaded.len(), errors)
        });
        assert_eq!(loaded, 0);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].message,
            format!(
                "component {}: cannot read: it is a FIFO, not a regular file",
                component.display()
            )
        );
    }
}

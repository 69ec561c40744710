//! The loaded runbooks, and reloading them without dropping a good version for a bad one.

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::incident::Incident;
use crate::incident::label;
use crate::sandbox::{LoadError, LoadedRunbook, Runtime};
use crate::store::Selected;

/// The loaded runbooks, replaced as a whole on reload.
#[derive(Debug, Default)]
pub struct Runbooks {
    /// Runbooks that loaded, by name order.
    pub loaded: Vec<Arc<LoadedRunbook>>,
    /// Files that did not load at the last (re)load, with why.
    pub errors: Vec<LoadError>,
}

impl Runbooks {
    /// The runbook called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedRunbook>> {
        self.loaded.iter().find(|r| r.name == name)
    }

    /// The runbooks whose `[match]` selector accepts the alert, with their priorities.
    pub fn selected(&self, incident: &Incident) -> Vec<Selected> {
        self.loaded
            .iter()
            .filter(|r| r.policy.selector.matches(|key| label(incident, key)))
            .map(|r| Selected {
                name: r.name.clone(),
                priority: r.policy.runbook.priority,
            })
            .collect()
    }
}

/// What a reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reload {
    /// Runbooks now serving, with their digests.
    pub loaded: Vec<(String, String)>,
    /// Files that failed; for each, the previous version (if any) keeps serving.
    pub errors: Vec<String>,
}

/// Loads every runbook under `dir`.
pub async fn load(runtime: Arc<Runtime>, dir: &Path) -> (Vec<LoadedRunbook>, Vec<LoadError>) {
    let owned = dir.to_owned();
    tokio::task::spawn_blocking(move || runtime.load_dir(&owned))
        .await
        .unwrap_or_else(|e| {
            (
                Vec::new(),
                vec![LoadError::new(dir, format!("loading panicked: {e}"))],
            )
        })
}

/// The runbooks to serve after a load: what loaded, and for each file that failed, its
/// version in `previous` (matched by directory); the failures are reported and logged.
pub fn merge(
    previous: &Runbooks,
    fresh: Vec<LoadedRunbook>,
    errors: Vec<LoadError>,
) -> (Runbooks, Reload) {
    let mut loaded: Vec<Arc<LoadedRunbook>> = fresh.into_iter().map(Arc::new).collect();
    for error in &errors {
        warn!(path = %error.path.display(), error = %error.message, "runbook not (re)loaded");
        let dir = error.path.parent();
        if let Some(old) = previous
            .loaded
            .iter()
            .find(|r| r.policy_path.parent() == dir)
            && !loaded.iter().any(|r| r.name == old.name)
        {
            loaded.push(old.clone());
        }
    }
    loaded.sort_by(|a, b| a.name.cmp(&b.name));
    let report = Reload {
        loaded: loaded
            .iter()
            .map(|r| (r.name.clone(), r.digest.clone()))
            .collect(),
        errors: errors.iter().map(ToString::to_string).collect(),
    };
    info!(runbooks = ?report.loaded.iter().map(|(n, _)| n).collect::<Vec<_>>(), errors = report.errors.len(), "runbooks loaded");
    (Runbooks { loaded, errors }, report)
}

//! `quell export` and `quell replay`: a recorded incident to a file, and that file against
//! the runbooks of a directory, offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;

use super::{Remote, load_config, remote};
use crate::config::Config;
use crate::replay::{Decisions, Export, Recording};
use crate::runner::{RunOptions, run as run_incident};
use crate::sandbox::Runtime;
use crate::store::Store;

/// The largest export file `quell replay` reads.
const MAX_EXPORT_SIZE: u64 = 256 << 20;

/// An incident's export: from the database file when `database` is given (offline), else
/// from the daemon's API. Secret values the configuration knows are redacted from all of it
/// (records were redacted when made; this is the backstop for a file that leaves the host).
pub async fn export(
    id: &str,
    remote: &Remote,
    database: Option<&Path>,
    config: &Config,
) -> anyhow::Result<Export> {
    let mut detail: Value = match database {
        Some(path) => {
            if !path.is_file() {
                anyhow::bail!("{}: no such database file", path.display());
            }
            let detail = Store::incident_detail_offline(path, id)?
                .ok_or_else(|| anyhow::anyhow!("{}: no incident {id}", path.display()))?;
            serde_json::to_value(detail)?
        }
        None => {
            let path = format!("/api/incidents/{}", remote::segment(id));
            remote::get_json(&remote.url, remote.token.as_deref(), &path, &[]).await?
        }
    };
    let secrets = config.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    crate::capabilities::Redactor::new(secrets)
        .map_err(anyhow::Error::msg)?
        .json(&mut detail);
    Ok(Export::new(detail))
}

/// `quell replay`: what the runbooks in `runbooks` decide on the recorded incident, compared
/// with what was recorded. Exit 1 when a decision differs, 2 when the replay could not run.
pub async fn replay(
    source: &str,
    runbooks: &Path,
    remote: &Remote,
    config_path: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let export = if source.starts_with("INC-") && !Path::new(source).exists() {
        export(source, remote, None, &config).await?
    } else {
        let text = crate::files::read_to_string(Path::new(source), MAX_EXPORT_SIZE)
            .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        Export::parse(&text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?
    };
    let incident = &export.incident;
    let alert = incident["alert"].to_string();
    let source_name = incident["source"].as_str().unwrap_or("replay");
    let incidents = crate::incident::from_alert_json(&alert, source_name)
        .map_err(|e| anyhow::anyhow!("{source}: the recorded alert does not parse: {e}"))?;
    let Some(mut replayed_incident) = incidents.into_iter().next() else {
        anyhow::bail!("{source}: the recorded alert holds no alert");
    };
    replayed_incident.id = incident["id"].as_str().unwrap_or_default().to_owned();

    let recording = Arc::new(Recording::of(&export));
    let runtime = Runtime::new(&config)?.replaying(Arc::clone(&recording));
    let (loaded, errors) = runtime.load_dir(runbooks);
    for error in &errors {
        eprintln!("error: runbook not loaded: {error}");
    }
    if loaded.is_empty() {
        anyhow::bail!("no runbook loaded from {}", runbooks.display());
    }
    // A runbook is remediated when it was then (nothing is executed: every answer is
    // recorded); a plan that waited, expired or was rejected is not run now either.
    let options = RunOptions {
        dry_run: false,
        approve: false,
        remediate_only: Some(export.remediated()),
    };
    let report = run_incident(&runtime, &loaded, &replayed_incident, &options).await;

    let mut differs = false;
    let mut out = Vec::new();
    for rb in &report.runbooks {
        let now = Decisions::replayed(rb);
        let differences = match Decisions::recorded(&export, &rb.name) {
            Some(before) => now.differences(&before),
            None if now.matched => vec!["not in the recording: it did not run then".to_owned()],
            None => Vec::new(),
        };
        differs |= !differences.is_empty();
        out.push((rb.name.clone(), now, differences));
    }
    let unrecorded = recording.unrecorded();
    if json {
        let runbooks: Vec<Value> = out
            .iter()
            .map(|(name, now, diff)| serde_json::json!({"runbook": name, "decisions": now, "differences": diff}))
            .collect();
        let doc = serde_json::json!({
            "incident": replayed_incident.id,
            "runbooks": runbooks,
            "unrecorded_calls": unrecorded,
            "same": !differs,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("replay of {} ({source})", replayed_incident.id);
        for (name, now, differences) in &out {
            if differences.is_empty() {
                let what = if now.matched {
                    "same decisions"
                } else {
                    "not matched, as recorded"
                };
                println!("  {name}: {what}");
            } else {
                println!("  {name}: differs");
                for line in differences {
                    println!("    {line}");
                }
            }
        }
        for call in &unrecorded {
            println!("  not in the recording (answered failed): {call}");
        }
    }
    Ok(if differs {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes `export` to `output`, or stdout when it is `None` or `-`.
pub fn write(export: &Export, output: Option<&PathBuf>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(export)?;
    match output.filter(|p| p.as_os_str() != "-") {
        Some(path) => std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

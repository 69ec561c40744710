//! The command line: `quell serve`, `quell run`, `quell policy check`, and `quell incidents`,
//! `quell incident`, `quell postmortem` against a running daemon.

mod remote;
mod replay;
mod scaffold;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::policy::Policy;
use crate::runner::{RunOptions, run as run_incident};
use crate::sandbox::Runtime;

/// Quell: incident response with runbooks as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "quell", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one alert through the runbooks, for runbook authors: prints what matched, the
    /// diagnosis, the plan, every capability call with its decision, and the remediation.
    Run {
        /// Directory of runbooks (`<dir>/*/policy.toml`); default: the configuration's
        /// `[runbooks] dir`, which defaults to `runbooks`.
        #[arg(long)]
        runbooks: Option<PathBuf>,
        /// An Alertmanager webhook payload, or one alert, as JSON.
        #[arg(long)]
        alert: PathBuf,
        /// Host configuration (kubectl, ssh, http, secrets).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Record writes instead of executing them.
        #[arg(long)]
        dry_run: bool,
        /// Approve plans of runbooks in `approve` mode.
        #[arg(long)]
        approve: bool,
        /// Only this runbook.
        #[arg(long)]
        runbook: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: webhooks, incidents, the runbook pipeline and the API. Without a
    /// configuration it listens on 127.0.0.1:8080 with `.quell/quell.db` and `runbooks/`.
    Serve {
        /// The configuration file (`quell.toml`).
        #[arg(long, env = "QUELL_CONFIG")]
        config: Option<PathBuf>,
        /// Listen here instead of `[server] listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Use this database file instead of `[database] path`.
        #[arg(long)]
        database: Option<PathBuf>,
    },
    /// List incidents from a running daemon.
    Incidents {
        #[command(flatten)]
        remote: Remote,
        /// Only this status: open, acknowledged, mitigated, resolved.
        #[arg(long)]
        status: Option<String>,
        /// Only this severity.
        #[arg(long)]
        severity: Option<String>,
        /// Only since this RFC 3339 time or duration back (`1h`).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one incident (timeline, runs, capability calls) from a running daemon.
    Incident {
        /// `INC-XXXXXXXX`
        id: String,
        #[command(flatten)]
        remote: Remote,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an incident's post-mortem draft (Markdown) from a running daemon.
    Postmortem {
        /// `INC-XXXXXXXX`
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write a recorded incident (the alert, every run, every capability call with its
    /// request, decision and result) to one JSON file, from a running daemon or, with
    /// `--database`, from the database file offline. Secrets are redacted.
    Export {
        /// `INC-XXXXXXXX`
        id: String,
        #[command(flatten)]
        remote: Remote,
        /// Read the SQLite database file instead of asking a daemon.
        #[arg(long)]
        database: Option<PathBuf>,
        /// Host configuration (its `[secrets]` are redacted from the export).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Re-run a recorded incident against the runbooks in `--runbooks`, offline: every
    /// capability call is answered from the recording (nothing is executed, writes included),
    /// and what the runbooks decide differently is printed. Exits 1 when a decision differs.
    Replay {
        /// An export file (`quell export`), or an incident id to export from the daemon.
        source: String,
        /// Directory of runbooks (`<dir>/*/policy.toml`).
        #[arg(long)]
        runbooks: PathBuf,
        #[command(flatten)]
        remote: Remote,
        /// Host configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a runbook: `<dir>/<name>/` with the code, a unit test, a policy that grants
    /// nothing yet, and an example alert.
    New {
        /// The runbook's name: lowercase letters, digits and dashes (`replica-mismatch`).
        name: String,
        /// Rust or Python.
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// Where to create it.
        #[arg(long, default_value = "runbooks")]
        dir: PathBuf,
        /// The `alertname` it matches; default: the name in CamelCase (`ReplicaMismatch`).
        #[arg(long)]
        alertname: Option<String>,
        /// The `runbook-sdk` directory; default: found above `--dir` (a Quell checkout).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the runbook in a directory (Rust: cargo for wasm32-wasip2; Python:
    /// componentize-py) and put its component beside its policy.toml.
    Build {
        /// The runbook's directory.
        dir: PathBuf,
        /// The `runbook-sdk` directory (Python); default: found above the runbook or the
        /// current directory.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Validate capability policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// Where the daemon is.
#[derive(Debug, clap::Args)]
struct Remote {
    /// The daemon's base URL.
    #[arg(long, env = "QUELL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A bearer token from `[auth] api_tokens`.
    #[arg(long, env = "QUELL_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check policy files; prints each error with its file, line and reason.
    Check {
        /// Policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

impl Cli {
    /// Whether the command is `serve` (which logs at info by default).
    pub fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve { .. })
    }
}

/// The largest alert file `quell run` reads (the default webhook body limit).
const MAX_ALERT_SIZE: u64 = 10 << 20;

/// Whether log lines carry ANSI colour: only on a terminal, and never when `NO_COLOR` is set
/// to anything but the empty string (<https://no-color.org>).
fn log_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Starts logging to stderr, in colour only when stderr is a terminal.
pub fn init_tracing(format: LogFormat, verbose: u8, serving: bool) {
    let default = match verbose {
        0 if serving => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUELL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = log_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs a parsed command line; the exit code says how it went.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            runbooks,
            alert,
            config,
            dry_run,
            approve,
            runbook,
            json,
        } => {
            let config = load_config(config.as_deref())?;
            let runbooks = runbooks.unwrap_or_else(|| config.runbooks.dir.clone());
            let text = crate::files::read_to_string(&alert, MAX_ALERT_SIZE).map_err(|e| {
                let why = e.to_string();
                let why = why.strip_prefix("cannot read: ").unwrap_or(&why).to_owned();
                anyhow::anyhow!("cannot read alert {}: {why}", alert.display())
            })?;
            let incidents = crate::incident::from_alert_json(&text, "cli")
                .map_err(|e| anyhow::anyhow!("{}: {e}", alert.display()))?;
            let runtime = Runtime::new(&config)?;
            let (mut loaded, errors) = runtime.load_dir(&runbooks);
            for error in &errors {
                eprintln!("error: runbook not loaded: {error}");
            }
            for rb in &loaded {
                for note in &rb.notes {
                    eprintln!("note: {}: {note}", rb.name);
                }
            }
            if let Some(only) = &runbook {
                loaded.retain(|rb| &rb.name == only);
                if loaded.is_empty() {
                    anyhow::bail!(
                        "no loaded runbook is named {only:?} in {}",
                        runbooks.display()
                    );
                }
            }
            if loaded.is_empty() && errors.is_empty() {
                anyhow::bail!(
                    "no runbooks in {} (expected <dir>/*/policy.toml)",
                    runbooks.display()
                );
            }
            let options = RunOptions {
                dry_run,
                approve,
                remediate_only: None,
            };
            let mut reports = Vec::new();
            for incident in &incidents {
                reports.push(run_incident(&runtime, &loaded, incident, &options).await);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for report in &reports {
                    print!("{}", report.render());
                }
            }
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Serve {
            config,
            listen,
            database,
        } => {
            let mut config = load_config(config.as_deref())?;
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            if let Some(database) = database {
                config.database.path = database;
            }
            crate::daemon::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Incidents {
            remote,
            status,
            severity,
            since,
            limit,
            json,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(status.map(|v| ("status", v)));
            query.extend(severity.map(|v| ("severity", v)));
            query.extend(since.map(|v| ("since", v)));
            let page = remote::get_json(
                &remote.url,
                remote.token.as_deref(),
                "/api/incidents",
                &query,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", remote::render_list(&page));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Incident { id, remote, json } => {
            let path = format!("/api/incidents/{}", remote::segment(&id));
            let detail = remote::get_json(&remote.url, remote.token.as_deref(), &path, &[]).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print!("{}", remote::render_detail(&detail));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Postmortem { id, remote } => {
            let path = format!("/api/incidents/{}/postmortem", remote::segment(&id));
            let text = remote::get_text(&remote.url, remote.token.as_deref(), &path).await?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::New {
            name,
            lang,
            dir,
            alertname,
            sdk,
        } => {
            let made = scaffold::new(&name, lang, &dir, alertname.as_deref(), sdk.as_deref())?;
            let d = made.display();
            let test = match lang {
                scaffold::Lang::Rust => format!("cargo test --manifest-path {d}/Cargo.toml"),
                scaffold::Lang::Python => format!(".quell/venv-python/bin/pytest {d}"),
            };
            println!("created {d}\nnext:");
            println!("  {test}");
            println!("  quell build {d}");
            println!(
                "  quell run --runbooks {} --runbook {name} --alert {d}/alert.json",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { dir, sdk } => {
            let built = scaffold::build(&dir, sdk.as_deref())?;
            println!("built {}", built.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            id,
            remote,
            database,
            config,
            output,
        } => {
            let config = load_config(config.as_deref())?;
            let export = replay::export(&id, &remote, database.as_deref(), &config).await?;
            replay::write(&export, output.as_ref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            source,
            runbooks,
            remote,
            config,
            json,
        } => replay::replay(&source, &runbooks, &remote, config.as_deref(), json).await,
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => {
            let mut failed = false;
            for file in &files {
                match Policy::load(file) {
                    Ok(policy) => {
                        let granted: Vec<_> = policy.granted().iter().map(|c| c.name()).collect();
                        println!(
                            "{}: ok (runbook {}, mode {}, grants {})",
                            file.display(),
                            policy.runbook.name,
                            policy.runbook.mode,
                            granted.join(", ")
                        );
                        match component_notes(file, &policy) {
                            Ok(notes) => {
                                for note in notes {
                                    println!("  note: {note}");
                                }
                            }
                            Err(why) => {
                                failed = true;
                                eprintln!("{}: {why}", file.display());
                            }
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("{e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// What loading would note about the component beside `policy_file`, or why it would refuse
/// it. A component not built yet is no error: the policy alone is what is checked then.
fn component_notes(policy_file: &Path, policy: &Policy) -> Result<Vec<String>, String> {
    let component = policy_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(&policy.runbook.component);
    match crate::files::read(&component, crate::sandbox::MAX_COMPONENT_SIZE) {
        Ok(wasm) => crate::sandbox::import_notes(&wasm, policy)
            .map_err(|e| format!("component {}: {e}", component.display())),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(format!("component {}: {e}", component.display())),
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => {
            let mut config = Config::default();
            config.apply_env(|name| std::env::var(name).ok());
            Ok(config)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn a_fifo_alert_is_refused_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let alert = crate::files::tests::fifo(dir.path(), "alert.json");
        let cli = Cli::try_parse_from([
            "quell",
            "run",
            "--runbooks",
            "/nonexistent",
            "--alert",
            alert.to_str().unwrap(),
        ])
        .unwrap();
        let err = crate::files::tests::within_deadline(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(run(cli)).unwrap_err()
        });
        assert_eq!(
            format!("{err:#}"),
            format!(
                "cannot read alert {}: it is a FIFO, not a regular file",
                alert.display()
            )
        );
    }
}

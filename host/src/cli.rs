//! The command line: `quell run`, `quell policy check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
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
    /// Validate capability policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
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

/// Starts logging to stderr.
pub fn init_tracing(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUELL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            let text = std::fs::read_to_string(&alert)
                .with_context(|| format!("cannot read alert {}", alert.display()))?;
            let incidents = crate::incident::from_alert_json(&text, "cli")
                .map_err(|e| anyhow::anyhow!("{}: {e}", alert.display()))?;
            let runtime = Runtime::new(&config)?;
            let (mut loaded, errors) = runtime.load_dir(&runbooks);
            for error in &errors {
                eprintln!("error: runbook not loaded: {error}");
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
            let options = RunOptions { dry_run, approve };
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

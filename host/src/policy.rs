//! Capability policies: one TOML file per runbook, written by the platform team.
//!
//! Deny by default: an absent or empty section grants nothing. Unknown keys are errors,
//! every pattern is compiled here, once, and a bad file is rejected with its path, line and
//! reason. The capability sections (`[kubectl]`, `[ssh]`, `[http]`) are defined in
//! [`kubectl`], [`ssh`] and [`http`], and enforced by the capabilities. This module depends
//! on [`crate::syntax`] and [`crate::files`] only, never on the capabilities or the host
//! configuration.

mod capability;
pub mod http;
pub mod kubectl;
pub mod ssh;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::syntax::Budget as RunBudget;
pub use crate::syntax::{
    AnchoredRegex, Glob, HostPattern, Identifier, Network, describe_toml_error,
};
use crate::syntax::{ByteSize, HumanDuration};
pub use capability::{Capability, Effect};
pub use http::HttpPolicy;
pub use kubectl::KubectlPolicy;
pub use ssh::SshPolicy;

/// A runbook's whole policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `[runbook]`: identity, mode and limits.
    pub runbook: RunbookSection,
    /// `[match]`: a cheap label selector checked before the component's `matches`.
    #[serde(default, rename = "match")]
    pub selector: Selector,
    /// `[[kubectl.allow]]` rules.
    #[serde(default)]
    pub kubectl: KubectlPolicy,
    /// `[ssh]`: hosts, user and command templates.
    #[serde(default)]
    pub ssh: Option<SshPolicy>,
    /// `[http]`: URL rules and the non-public networks this runbook may reach.
    #[serde(default)]
    pub http: HttpPolicy,
    /// `[verify]`: after a remediation that worked, diagnose again to check it did.
    #[serde(default)]
    pub verify: Option<VerifySection>,
}

/// `[verify] after = "60s", attempts = 2`: once a remediation says it worked, the host runs
/// the runbook's `diagnose` again after `after` (read-only, as diagnose always is); every
/// finding `ok` mitigates the incident, anything else tries again, up to `attempts` times,
/// and then escalates.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// How long the world gets to settle before each check.
    #[serde(default = "default_verify_after")]
    pub after: HumanDuration,
    /// How many checks before giving up (1 to 10).
    #[serde(default = "default_verify_attempts")]
    pub attempts: Attempts,
}

/// How many verification checks: 1 to 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Attempts(pub u32);

impl TryFrom<i64> for Attempts {
    type Error = String;

    fn try_from(n: i64) -> Result<Self, String> {
        match u32::try_from(n) {
            Ok(n @ 1..=10) => Ok(Self(n)),
            _ => Err(format!("attempts must be 1 to 10, not {n}")),
        }
    }
}

fn default_verify_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_verify_attempts() -> Attempts {
    Attempts(2)
}

/// `[runbook]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookSection {
    /// The runbook's name, used in audit records and the API.
    pub name: Identifier,
    /// The component file, relative to the policy file.
    pub component: PathBuf,
    /// Optional pin: the component's SHA-256, hex. A different file is refused.
    #[serde(default)]
    pub sha256: Option<Sha256Pin>,
    /// What happens after diagnosis.
    #[serde(default)]
    pub mode: Mode,
    /// When true, `remediate` runs but its writes are recorded, not executed.
    #[serde(default)]
    pub dry_run: bool,
    /// Deadline for one export call.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Linear memory cap for one instance.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Run budget: at most `count` runs per `per`.
    #[serde(default)]
    pub max_runs: Option<RunBudget>,
    /// Order among the runbooks of one incident: remediations run one at a time, lowest
    /// priority first, then by name.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Free text shown in listings.
    #[serde(default)]
    pub description: Option<String>,
}

/// The priority of a policy that names none.
pub const DEFAULT_PRIORITY: i32 = 100;

fn default_priority() -> i32 {
    DEFAULT_PRIORITY
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_memory() -> ByteSize {
    ByteSize(64 << 20)
}

/// What Quell does after `diagnose` (the seed's trade-offs table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Diagnose, then hand over to a human with the findings. The default.
    #[default]
    Diagnose,
    /// Diagnose, then wait for a human to approve the plan before `remediate`.
    Approve,
    /// Diagnose, then `remediate` at once.
    Auto,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Diagnose => "diagnose",
            Self::Approve => "approve",
            Self::Auto => "auto",
        })
    }
}

/// A lowercase hex SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Sha256Pin(pub String);

impl TryFrom<String> for Sha256Pin {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let lower = text.to_ascii_lowercase();
        if lower.len() == 64 && lower.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Self(lower))
        } else {
            Err(format!("invalid sha256 {text:?}: expected 64 hex digits"))
        }
    }
}

/// `[match]`: every listed label must be present and match. Values are exact strings, or
/// `"~regex"` for a regular expression over the whole value.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Selector(BTreeMap<String, LabelMatcher>);

impl Selector {
    /// Whether the labels satisfy every term. An empty selector matches everything.
    pub fn matches<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0
            .iter()
            .all(|(key, matcher)| labels(key).is_some_and(|value| matcher.is_match(value)))
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `[match]` term.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub enum LabelMatcher {
    /// The value must equal this.
    Exact(String),
    /// The value must match this expression (`"~…"` in the file).
    Regex(AnchoredRegex),
}

impl LabelMatcher {
    fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Exact(expected) => expected == value,
            Self::Regex(regex) => regex.is_match(value),
        }
    }
}

impl TryFrom<String> for LabelMatcher {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.strip_prefix('~') {
            Some(expression) => AnchoredRegex::try_from(expression.to_owned()).map(Self::Regex),
            None => Ok(Self::Exact(text)),
        }
    }
}

/// A policy file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct PolicyError {
    /// The policy file.
    pub path: PathBuf,
    /// What is wrong, starting with `line L, column C:` when a line is known.
    pub message: String,
}

impl Policy {
    /// The largest policy file Quell reads.
    pub const MAX_SIZE: u64 = 1 << 20;

    /// Reads and validates a policy file (a regular file of at most [`Self::MAX_SIZE`]).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = crate::files::read_to_string(path, Self::MAX_SIZE).map_err(|e| PolicyError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text).map_err(|message| PolicyError {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and validates policy text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| describe_toml_error(text, &e))
    }

    /// The capabilities this policy grants anything for.
    pub fn granted(&self) -> Vec<Capability> {
        let mut granted = vec![Capability::Timeline];
        if !self.kubectl.allow.is_empty() {
            granted.push(Capability::Kubectl);
        }
        if self
            .ssh
            .as_ref()
            .is_some_and(|ssh| !ssh.commands.is_empty() && !ssh.hosts.is_empty())
        {
            granted.push(Capability::Ssh);
        }
        if !self.http.allow.is_empty() {
            granted.push(Capability::Http);
        }
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[runbook]\nname = \"x\"\ncomponent = \"x.wasm\"\n";

    #[test]
    fn minimal_policy_grants_nothing_but_timeline() {
        let policy = Policy::parse(MINIMAL).unwrap();
        assert_eq!(policy.granted(), vec![Capability::Timeline]);
        assert_eq!(policy.runbook.mode, Mode::Diagnose);
        assert!(!policy.runbook.dry_run);
    }

    #[test]
    fn verify_takes_a_settle_time_and_a_bounded_number_of_attempts() {
        let policy = Policy::parse(&format!("{MINIMAL}[verify]\n")).unwrap();
        let verify = policy.verify.unwrap();
        assert_eq!(verify.after.0, Duration::from_secs(60));
        assert_eq!(verify.attempts, Attempts(2));
        let err = Policy::parse(&format!("{MINIMAL}[verify]\nattempts = 0\n")).unwrap_err();
        assert!(err.contains("attempts must be 1 to 10, not 0"), "{err}");
        assert!(Policy::parse(MINIMAL).unwrap().verify.is_none());
    }

    #[test]
    fn empty_sections_grant_nothing() {
        let text = format!(
            "{MINIMAL}[kubectl]\nallow = []\n[http]\nallow = []\n[ssh]\nuser = \"u\"\nhosts = []\n[ssh.commands]\n"
        );
        let policy = Policy::parse(&text).unwrap();
        assert_eq!(policy.granted(), vec![Capability::Timeline]);
    }

    #[test]
    fn a_fifo_policy_is_refused_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::files::tests::fifo(dir.path(), "policy.toml");
        let shown = path.display().to_string();
        let err = crate::files::tests::within_deadline(move || Policy::load(&path)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{shown}: cannot read: it is a FIFO, not a regular file")
        );
    }

    #[test]
    fn an_oversized_policy_is_refused_naming_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let padding = "#".repeat(Policy::MAX_SIZE as usize);
        std::fs::write(&path, format!("{MINIMAL}{padding}\n")).unwrap();
        let err = Policy::load(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot read: it is larger than the 1.0 MiB limit",
                path.display()
            )
        );
    }

    #[test]
    fn selector_terms_must_all_match() {
        let text =
            format!("{MINIMAL}[match]\nalertname = \"~.*(ErrorRate|5xx).*\"\nteam = \"web\"\n");
        let policy = Policy::parse(&text).unwrap();
        let labels = |alertname: &'static str, team: &'static str| {
            move |key: &str| match key {
                "alertname" => Some(alertname),
                "team" => Some(team),
                _ => None,
            }
        };
        assert!(policy.selector.matches(labels("HighErrorRate", "web")));
        assert!(!policy.selector.matches(labels("HighErrorRate", "db")));
        assert!(!policy.selector.matches(labels("DiskSpaceLow", "web")));
    }
}

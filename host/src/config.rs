//! The host configuration (`quell.toml`): how capabilities reach the world.
//!
//! Policies say *what* a runbook may do; this file says *how* the host does it: which
//! kubectl binary, kubeconfig and context, which ssh key and known_hosts, HTTP limits,
//! and the secrets that policies may attach to requests. Every section is optional and
//! every field has a safe default, so an empty file is a valid configuration.

mod daemon;
mod notify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::syntax::{Budget, ByteSize, HumanDuration};
pub use daemon::{
    AuthConfig, BasicCredential, DatabaseConfig, GenericFields, GenericSourceConfig,
    PipelineConfig, PostmortemConfig, RetentionConfig, ServerConfig, SeverityConfig, SourceConfig,
    SourcesConfig, StatusField, StatusMap, UtcOffset,
};
pub use notify::{NotifyConfig, PagerDutyConfig, Route, SlackConfig, WebhookConfig};

/// The whole host configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP listener (`quell serve`).
    pub server: ServerConfig,
    /// The database: embedded SQLite, or PostgreSQL for several replicas.
    pub database: DatabaseConfig,
    /// API credentials.
    pub auth: AuthConfig,
    /// Webhook sources: credentials and body limits.
    pub sources: SourcesConfig,
    /// Workers, approvals, reopening.
    pub pipeline: PipelineConfig,
    /// How alerts are grouped into incidents.
    pub incidents: IncidentsConfig,
    /// Post-mortem drafts.
    pub postmortems: PostmortemConfig,
    /// How long history is kept.
    pub retention: RetentionConfig,
    /// Slack, PagerDuty and the outgoing webhook.
    pub notify: NotifyConfig,
    /// Where runbooks live: every `<dir>/*/policy.toml` is a runbook.
    pub runbooks: RunbooksConfig,
    /// Engine and per-instance limits.
    pub sandbox: SandboxConfig,
    /// How the kubectl capability runs the real `kubectl`.
    pub kubectl: KubectlConfig,
    /// How the ssh capability runs the real `ssh`.
    pub ssh: SshConfig,
    /// Limits for the http capability.
    pub http: HttpConfig,
    /// Named secrets that policies may inject as HTTP headers. A value can be overridden
    /// by the environment variable `QUELL_SECRET_<NAME>` (upper case, `-` as `_`).
    pub secrets: BTreeMap<String, String>,
}

/// `[incidents]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Which alerts make one incident.
    pub group_by: GroupBy,
}

/// `group_by`: which alerts make one incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "GroupByText")]
pub enum GroupBy {
    /// `"fingerprint"`: each alert is its own incident.
    #[default]
    Fingerprint,
    /// `"alertmanager"`: the alerts of one Alertmanager (or Grafana) notification group
    /// (`groupKey`) are one incident; senders without groups fall back to the fingerprint.
    Alertmanager,
    /// `["label", …]`: alerts with the same values of these labels are one incident.
    Labels(Vec<String>),
}

/// `group_by` as written.
#[derive(Deserialize)]
#[serde(untagged)]
enum GroupByText {
    Name(String),
    Labels(Vec<String>),
}

impl TryFrom<GroupByText> for GroupBy {
    type Error = String;

    fn try_from(text: GroupByText) -> Result<Self, String> {
        match text {
            GroupByText::Name(name) if name == "fingerprint" => Ok(Self::Fingerprint),
            GroupByText::Name(name) if name == "alertmanager" => Ok(Self::Alertmanager),
            GroupByText::Name(name) => Err(format!(
                "group_by must be \"fingerprint\", \"alertmanager\" or a list of label names, \
                 not {name:?}"
            )),
            GroupByText::Labels(labels) if labels.is_empty() => {
                Err("group_by needs at least one label name".to_owned())
            }
            GroupByText::Labels(labels) => Ok(Self::Labels(labels)),
        }
    }
}

impl GroupBy {
    /// The identity of the incident `alert` belongs to, when it is grouped: a key for the
    /// sender's group (`group_key`) or for the alert's values of the labels. `None` when the
    /// alert is its own incident.
    pub fn key(
        &self,
        group_key: Option<&str>,
        alert: &crate::incident::Incident,
    ) -> Option<String> {
        use sha2::Digest as _;
        let (kind, text) = match self {
            Self::Fingerprint => return None,
            Self::Alertmanager => ("group", group_key?.to_owned()),
            Self::Labels(names) => (
                "labels",
                names
                    .iter()
                    .map(|name| {
                        let value = crate::incident::label(alert, name).unwrap_or("");
                        format!("{name}={value:?}")
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        let digest = sha2::Sha256::digest(text.as_bytes());
        Some(format!("{kind}-{}", hex::encode(&digest[..8])))
    }
}

/// `[runbooks]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunbooksConfig {
    /// Directory holding one sub-directory per runbook.
    pub dir: PathBuf,
}

impl Default for RunbooksConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("runbooks"),
        }
    }
}

/// `[sandbox]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Where compiled components are cached, keyed by sha256 and engine.
    pub cache_dir: PathBuf,
    /// How many runbook instances may be alive at once (the pooling allocator's size).
    pub max_instances: u32,
    /// The largest linear memory any policy may ask for.
    pub max_memory: ByteSize,
    /// How much of a guest's stdout and stderr is kept, each.
    pub output_cap: ByteSize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from(".quell/cache"),
            max_instances: 64,
            max_memory: ByteSize(256 << 20),
            output_cap: ByteSize(64 << 10),
        }
    }
}

/// `[kubectl]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubectlConfig {
    /// The kubectl binary; a bare name is looked up on `PATH` once at start-up.
    pub binary: PathBuf,
    /// The kubeconfig passed as `--kubeconfig`. Without one, kubectl's default applies.
    pub kubeconfig: Option<PathBuf>,
    /// The context passed as `--context`; pin it, never rely on `current-context`.
    pub context: Option<String>,
    /// Outer deadline for one kubectl call; the whole process group is killed after it.
    pub timeout: HumanDuration,
    /// Cap on the captured stdout and stderr, each.
    pub output_cap: ByteSize,
}

impl Default for KubectlConfig {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("kubectl"),
            kubeconfig: None,
            context: None,
            timeout: HumanDuration(Duration::from_secs(30)),
            output_cap: ByteSize(1 << 20),
        }
    }
}

/// `[ssh]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshConfig {
    /// The ssh binary; a bare name is looked up on `PATH` once at start-up.
    pub binary: PathBuf,
    /// The private key (`-i`, with `IdentitiesOnly=yes`).
    pub identity: Option<PathBuf>,
    /// The known_hosts file Quell manages; host keys are never accepted on first use.
    pub known_hosts: PathBuf,
    /// The port to connect to.
    pub port: u16,
    /// TCP connect and banner timeout.
    pub connect_timeout: HumanDuration,
    /// Outer deadline for one ssh call; the whole process group is killed after it.
    pub timeout: HumanDuration,
    /// Cap on the captured stdout and stderr, each.
    pub output_cap: ByteSize,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("ssh"),
            identity: None,
            known_hosts: PathBuf::from("/etc/quell/known_hosts"),
            port: 22,
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            timeout: HumanDuration(Duration::from_secs(60)),
            output_cap: ByteSize(1 << 20),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: HumanDuration,
    /// Deadline for a whole request, body included.
    pub timeout: HumanDuration,
    /// Responses larger than this are refused with `too-large`.
    pub max_response: ByteSize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            timeout: HumanDuration(Duration::from_secs(10)),
            max_response: ByteSize(1 << 20),
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (or is not a regular file of at most [`Config::MAX_SIZE`]).
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: crate::files::ReadError,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// The largest configuration file Quell reads.
    pub const MAX_SIZE: u64 = 1 << 20;

    /// Reads and validates a configuration file, then applies environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::files::read_to_string(path, Self::MAX_SIZE).map_err(|source| {
            ConfigError::Read {
                path: path.to_owned(),
                source,
            }
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        config.apply_env(|name| std::env::var(name).ok());
        Ok(config)
    }

    /// Parses configuration text; the error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| crate::syntax::describe_toml_error(text, &e))
    }

    /// Applies environment overrides: `QUELL_DATABASE_URL`, `QUELL_SECRET_<NAME>`,
    /// `QUELL_API_TOKENS`,
    /// `QUELL_VIEWER_TOKENS` and `QUELL_<SOURCE>_TOKENS` (comma-separated lists that replace
    /// the file's).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        let tokens = |var: &str| {
            lookup(var).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
        };
        if let Some(url) = lookup("QUELL_DATABASE_URL").filter(|u| !u.trim().is_empty()) {
            self.database.url = Some(url);
        }
        if let Some(list) = tokens("QUELL_API_TOKENS") {
            self.auth.api_tokens = list;
        }
        if let Some(list) = tokens("QUELL_VIEWER_TOKENS") {
            self.auth.viewer_tokens = list;
        }
        if let Some(list) = tokens("QUELL_ALERTMANAGER_TOKENS") {
            self.sources.alertmanager.tokens = list;
        }
        if let Some(list) = tokens("QUELL_GRAFANA_TOKENS") {
            self.sources.grafana.tokens = list;
        }
        if let Some(list) = tokens("QUELL_GENERIC_TOKENS") {
            self.sources.generic.source.tokens = list;
        }
        if let Some(slack) = &mut self.notify.slack {
            for (var, field) in [
                ("QUELL_SLACK_WEBHOOK_URL", &mut slack.webhook_url),
                ("QUELL_SLACK_BOT_TOKEN", &mut slack.bot_token),
                ("QUELL_SLACK_SIGNING_SECRET", &mut slack.signing_secret),
            ] {
                if let Some(value) = lookup(var) {
                    *field = Some(value);
                }
            }
        }
        if let Some(pagerduty) = &mut self.notify.pagerduty
            && let Some(key) = lookup("QUELL_PAGERDUTY_ROUTING_KEY")
        {
            pagerduty.routing_key = key;
        }
        if let Some(webhook) = &mut self.notify.webhook
            && let Some(secret) = lookup("QUELL_WEBHOOK_SECRET")
        {
            webhook.secret = Some(secret);
        }
        for (name, value) in &mut self.secrets {
            let var = format!("QUELL_SECRET_{}", name.to_uppercase().replace('-', "_"));
            if let Some(v) = lookup(&var) {
                *value = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_safe_default() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.kubectl.timeout.0, Duration::from_secs(30));
        assert!(config.secrets.is_empty());
    }

    #[test]
    fn group_by_names_a_mode_or_labels_and_says_what_is_wrong() {
        let parse = |text: &str| Config::parse(&format!("[incidents]\ngroup_by = {text}\n"));
        assert_eq!(
            parse("\"alertmanager\"").unwrap().incidents.group_by,
            GroupBy::Alertmanager
        );
        assert_eq!(
            parse("[\"cluster\", \"alertname\"]")
                .unwrap()
                .incidents
                .group_by,
            GroupBy::Labels(vec!["cluster".to_owned(), "alertname".to_owned()])
        );
        let err = parse("\"alert\"").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("not \"alert\""),
            "{err}"
        );
        assert!(parse("[]").unwrap_err().contains("at least one label"));

        let alert = |cluster: &str, instance: &str| crate::incident::Incident {
            labels: vec![
                ("alertname".to_owned(), "DiskFull".to_owned()),
                ("cluster".to_owned(), cluster.to_owned()),
                ("instance".to_owned(), instance.to_owned()),
            ],
            id: "INC-1".to_owned(),
            title: "t".to_owned(),
            severity: crate::incident::severity(None),
            source: "alertmanager".to_owned(),
            status: "firing".to_owned(),
            annotations: Vec::new(),
            fingerprint: instance.to_owned(),
            starts_at: None,
            ends_at: None,
            alert_json: "{}".to_owned(),
            previous_fingerprint: None,
        };
        let by_cluster = GroupBy::Labels(vec!["cluster".to_owned()]);
        assert_eq!(
            by_cluster.key(None, &alert("eu", "a")),
            by_cluster.key(None, &alert("eu", "b")),
            "same cluster, one incident"
        );
        assert_ne!(
            by_cluster.key(None, &alert("eu", "a")),
            by_cluster.key(None, &alert("us", "a"))
        );
        assert_eq!(GroupBy::Fingerprint.key(Some("g"), &alert("eu", "a")), None);
        assert_eq!(
            GroupBy::Alertmanager.key(None, &alert("eu", "a")),
            None,
            "a sender without groups: one incident per alert"
        );
        assert_eq!(
            GroupBy::Alertmanager.key(Some("{}:{a=\"1\"}"), &alert("eu", "a")),
            GroupBy::Alertmanager.key(Some("{}:{a=\"1\"}"), &alert("us", "b"))
        );
    }

    #[test]
    fn the_shipped_example_parses() {
        let config = Config::parse(include_str!("../../quell.example.toml")).unwrap();
        assert_eq!(config.ssh.port, 22);
        assert_eq!(config.sandbox.max_memory.0, 256 << 20);
        // It says its values are the defaults: hold it to that.
        assert_eq!(format!("{config:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let err = Config::parse("[kubectl]\ncontext = \"prod\"\nkubeconfg = \"x\"\n").unwrap_err();
        assert!(
            err.starts_with("line 3, column 1: unknown field `kubeconfg`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_in_flattened_sections_too() {
        let err = Config::parse("[sources.generic]\ntokenz = []\n").unwrap_err();
        assert!(err.contains("unknown field `tokenz`"), "{err}");
    }

    #[test]
    fn a_fifo_config_is_refused_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::files::tests::fifo(dir.path(), "quell.toml");
        let shown = path.display().to_string();
        let err = crate::files::tests::within_deadline(move || Config::load(&path)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{shown}: cannot read: it is a FIFO, not a regular file")
        );
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let mut config = Config::parse("[secrets]\nhealth-token = \"from-file\"\n").unwrap();
        config.apply_env(|var| (var == "QUELL_SECRET_HEALTH_TOKEN").then(|| "from-env".to_owned()));
        assert_eq!(config.secrets["health-token"], "from-env");
    }
}

//! The sections only `quell serve` reads: listener, database, authentication, sources,
//! pipeline, post-mortems and retention.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Budget, ByteSize, HumanDuration};

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API and webhooks listen on.
    pub listen: SocketAddr,
    /// The daemon's own base URL, used in links (post-mortems, notifications).
    pub public_url: Option<String>,
    /// How long a graceful shutdown waits for running work before interrupting it.
    pub shutdown_grace: HumanDuration,
    /// Most requests served at once; beyond it, a request is answered 503 with
    /// `Retry-After: 1` (`/healthz` and `/readyz` excepted).
    pub max_concurrent_requests: usize,
    /// How long a client has to send a request's headers once it starts (or, on a kept-alive
    /// connection, once the previous answer went out). A connection that trickles its
    /// headers (slowloris) is closed after it instead of being held open.
    pub header_read_timeout: HumanDuration,
    /// The most one request may take, its body included; past it the answer is 408 and the
    /// slot is free again. A client trickling a body cannot hold a slot for longer.
    pub request_timeout: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            shutdown_grace: HumanDuration(Duration::from_secs(20)),
            max_concurrent_requests: 1024,
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            request_timeout: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// `[database]`: the embedded SQLite file, or a shared PostgreSQL database given `url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL (`postgres://user:password@host/db`), for several replicas on one
    /// database; `QUELL_DATABASE_URL` replaces it. Unset: SQLite at `path`.
    pub url: Option<String>,
    /// Connections each replica keeps to PostgreSQL.
    pub pool_size: usize,
    /// How long a job a replica claimed stays its own without a renewal (renewed every
    /// second). A replica that dies has its running work taken over this long after.
    pub lease: HumanDuration,
    /// TLS to PostgreSQL: PEM certificates of the authorities that sign the server's
    /// certificate, trusted beside the web's public roots. TLS is used as the URL's
    /// `sslmode` says (`prefer` by default, `require`, `disable`); when it is used, the
    /// server's certificate and name are always verified.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM chain) for servers that ask for one; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The SQLite file (WAL mode, `synchronous=FULL`); created with its directory.
    pub path: PathBuf,
    /// How long a write waits for a lock held by another process before the request is
    /// answered 503.
    pub busy_timeout: HumanDuration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            lease: HumanDuration(Duration::from_secs(30)),
            ca_file: None,
            cert_file: None,
            key_file: None,
            path: PathBuf::from(".quell/quell.db"),
            busy_timeout: HumanDuration(Duration::from_secs(5)),
        }
    }
}

// By hand: the URL carries the database password.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("lease", &self.lease)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("path", &self.path)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

/// `[auth]`: who may call the API (`/api/*`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Operator bearer tokens for `/api/*`: read, and act (ack, resolve, approve, reject,
    /// pause, reload); list several to rotate. `QUELL_API_TOKENS` (comma-separated) replaces
    /// the list.
    pub api_tokens: Vec<String>,
    /// Viewer bearer tokens for `/api/*`: read only; every other method is refused (403).
    /// `QUELL_VIEWER_TOKENS` replaces the list.
    pub viewer_tokens: Vec<String>,
    /// Serve without any credentials on a non-loopback address. Off: Quell refuses to
    /// start that way, because anyone who can reach it could approve remediations.
    pub allow_unauthenticated: bool,
}

/// `[sources.*]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// `POST /webhooks/alertmanager`
    pub alertmanager: SourceConfig,
    /// `POST /webhooks/grafana`
    pub grafana: SourceConfig,
    /// `POST /webhooks/generic`
    pub generic: GenericSourceConfig,
}

/// One webhook source's credentials and limits. With no credentials listed the source is
/// open (only allowed on loopback unless `[auth] allow_unauthenticated`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Accepted bearer tokens (`Authorization: Bearer …`); several for rotation.
    /// `QUELL_<SOURCE>_TOKENS` (comma-separated) replaces the list.
    pub tokens: Vec<String>,
    /// Accepted basic-auth pairs.
    pub basic: Vec<BasicCredential>,
    /// Largest body accepted; larger requests get 413.
    pub body_limit: ByteSize,
    /// What the sender's severity values mean.
    pub severity: SeverityConfig,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            basic: Vec::new(),
            body_limit: ByteSize(10 << 20),
            severity: SeverityConfig::default(),
        }
    }
}

/// `[sources.<name>.severity]`: the sender's own severity values, for schemes the built-in
/// names do not cover (numeric levels, a team's words).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityConfig {
    /// Value (compared without case) → `critical`, `high`, `medium`, `low` or `info`.
    pub map: std::collections::BTreeMap<String, crate::incident::Severity>,
    /// For a value neither the map nor the built-in names know, or none at all (`medium`).
    pub default: Option<crate::incident::Severity>,
}

/// A basic-auth user and password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// `[sources.generic]`: credentials plus where the fields are in the sender's JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericSourceConfig {
    /// Credentials and limits.
    #[serde(flatten)]
    pub source: SourceConfig,
    /// JSON pointers (RFC 6901) to each field; the defaults read the documented shape.
    pub fields: GenericFields,
}

impl Default for GenericSourceConfig {
    fn default() -> Self {
        Self {
            source: SourceConfig {
                body_limit: ByteSize(1 << 20),
                ..SourceConfig::default()
            },
            fields: GenericFields::default(),
        }
    }
}

/// Where a generic payload keeps its status, and, for senders that do not say
/// `firing`/`resolved`, which of their values mean which.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "a JSON pointer such as \"/status\", or a table such as \
                 { pointer = \"/heartbeat/status\", firing = [\"0\"], resolved = [\"1\"] }"
)]
pub enum StatusField {
    /// A JSON pointer to `firing` or `resolved`.
    Pointer(String),
    /// A JSON pointer and the sender's values (compared without case).
    Mapped(StatusMap),
}

/// `status = { pointer = "…", firing = [...], resolved = [...] }`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMap {
    /// Where the value is.
    pub pointer: String,
    /// The values that mean the alert fires.
    pub firing: Vec<String>,
    /// The values that mean it resolved.
    pub resolved: Vec<String>,
}

impl StatusField {
    /// Where the value is.
    pub fn pointer(&self) -> &str {
        match self {
            Self::Pointer(pointer) | Self::Mapped(StatusMap { pointer, .. }) => pointer,
        }
    }
}

/// A fixed UTC offset for timestamps written without a zone: `UTC`, or `+02:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset(pub chrono::FixedOffset);

impl Default for UtcOffset {
    fn default() -> Self {
        Self(chrono::FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("0 is in range")))
    }
}

impl std::str::FromStr for UtcOffset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Ok(Self::default());
        }
        text.parse::<chrono::FixedOffset>()
            .map(Self)
            .map_err(|_| format!("{text:?} is not a UTC offset: write UTC, or +HH:MM / -HH:MM"))
    }
}

impl<'de> Deserialize<'de> for UtcOffset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where a generic payload keeps each field, as JSON pointers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericFields {
    /// The stable identity of the alert (required in the payload).
    pub dedup_key: String,
    /// `firing` or `resolved` (default firing), or a map of the sender's values.
    pub status: StatusField,
    /// The incident's title.
    pub title: String,
    /// The severity (mapped like a `severity` label).
    pub severity: String,
    /// An object of string labels.
    pub labels: String,
    /// An object of string annotations.
    pub annotations: String,
    /// The start of this episode: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` with or without a
    /// zone, or Unix seconds or milliseconds.
    pub starts_at: String,
    /// The zone of timestamps written without one.
    pub timezone: UtcOffset,
}

impl GenericFields {
    /// Whether these are the defaults (the documented shape, no mapping of the sender's).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for GenericFields {
    fn default() -> Self {
        Self {
            dedup_key: "/dedup_key".to_owned(),
            status: StatusField::Pointer("/status".to_owned()),
            title: "/title".to_owned(),
            severity: "/severity".to_owned(),
            labels: "/labels".to_owned(),
            annotations: "/annotations".to_owned(),
            starts_at: "/starts_at".to_owned(),
            timezone: UtcOffset::default(),
        }
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Runbook runs executing at once.
    pub workers: usize,
    /// How long a plan waits for approval before it expires and the incident escalates.
    pub approval_timeout: HumanDuration,
    /// A firing alert whose incident resolved less than this long ago reopens it instead of
    /// opening a new incident (stops flapping storms); `0s` always opens a new episode.
    pub reopen_window: HumanDuration,
    /// A backstop across every runbook: at most this many writes (kubectl, ssh, HTTP calls
    /// that change something) per window; beyond it a write is refused and recorded.
    pub max_writes: Option<Budget>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            approval_timeout: HumanDuration(Duration::from_secs(30 * 60)),
            reopen_window: HumanDuration(Duration::from_secs(5 * 60)),
            max_writes: None,
        }
    }
}

/// `[postmortems]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostmortemConfig {
    /// Where drafts are written as files when an incident resolves.
    pub dir: PathBuf,
    /// Whether drafts are also written as files under `dir`; they are always kept in the
    /// database and served by the API (`false` suits several replicas, which share no disk).
    pub files: bool,
}

impl Default for PostmortemConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".quell/postmortems"),
            files: true,
        }
    }
}

/// `[retention]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Raw deliveries (the inbox, dead letters included) older than this are deleted.
    pub inbox: HumanDuration,
    /// Resolved incidents (with their timeline, runs and calls) older than this are deleted.
    pub incidents: HumanDuration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            inbox: HumanDuration(Duration::from_secs(7 * 86_400)),
            incidents: HumanDuration(Duration::from_secs(180 * 86_400)),
        }
    }
}

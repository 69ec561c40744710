//! The real Prometheus Alertmanager on loopback, delivering to one webhook.
//!
//! Needs `/usr/bin/prometheus-alertmanager` (Debian: `apt-get install prometheus-alertmanager`,
//! which also installs the templates the Debian build hard-codes under
//! `/usr/share/prometheus/alertmanager/`). Clustering is off, the route groups by every label
//! so each alert is its own notification, and the timers are short: the first notification
//! leaves about 1 s after an alert is pushed, a resolution within about 2 s.
//!
//! Alerts are pushed the way Prometheus does it, without Prometheus: `POST /api/v2/alerts`.
//!
//! ```no_run
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let am = quell_tests::alertmanager::Alertmanager::start(
//!     dir.path(),
//!     "http://127.0.0.1:8080/webhooks/alertmanager",
//!     Some("am-token"),
//! )?;
//! am.push(&json!([{
//!     "labels": {"alertname": "DiskFull", "severity": "critical"},
//!     "annotations": {"summary": "disk full"},
//! }]))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const STARTUP: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running Alertmanager on `127.0.0.1`; killed when dropped.
pub struct Alertmanager {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Alertmanager {
    /// Writes `am.yml` in `dir` (created if missing) with one webhook receiver for
    /// `webhook_url` (sending `Authorization: Bearer <bearer>` when given, and resolutions),
    /// starts Alertmanager on a free loopback port with its storage in `dir/data`, and waits
    /// (at most 20 s) until `GET /-/ready` answers 200.
    pub fn start(dir: &Path, webhook_url: &str, bearer: Option<&str>) -> anyhow::Result<Self> {
        Self::start_grouped(dir, webhook_url, bearer, &["..."])
    }

    /// [`start`](Self::start), with the route grouping by `group_by` (`["..."]`: every
    /// label, so each alert is its own group).
    pub fn start_grouped(
        dir: &Path,
        webhook_url: &str,
        bearer: Option<&str>,
        group_by: &[&str],
    ) -> anyhow::Result<Self> {
        if !Path::new(ALERTMANAGER).is_file() {
            bail!(
                "{ALERTMANAGER} is missing: install prometheus-alertmanager \
                 (scripts/setup.sh does)"
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        fs::write(dir.join("am.yml"), config(webhook_url, bearer, group_by)?)
            .context("writing am.yml")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let log =
            fs::File::create(dir.join("alertmanager.log")).context("creating alertmanager.log")?;
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--web.external-url=http://{addr}"))
            // An empty address switches clustering (gossip on 0.0.0.0:9094) off.
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting {ALERTMANAGER} (install prometheus-alertmanager)")
            })?;
        let mut am = Self { child, dir, addr };
        am.wait_until_ready()?;
        Ok(am)
    }

    /// `http://127.0.0.1:PORT`, the API and UI base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pushes alerts as Prometheus would: `POST /api/v2/alerts` with `alerts`, a JSON array
    /// of `{labels, annotations, startsAt?, endsAt?, generatorURL?}`. An alert resolves when
    /// pushed again with the same labels and an `endsAt` that is not in the future.
    pub fn push(&self, alerts: &serde_json::Value) -> anyhow::Result<()> {
        let body = serde_json::to_vec(alerts).context("encoding alerts")?;
        let (status, answer) = request(self.addr, "POST", "/api/v2/alerts", Some(&body))
            .context("POST /api/v2/alerts")?;
        if !(200..300).contains(&status) {
            bail!("POST /api/v2/alerts answered {status}: {answer}");
        }
        Ok(())
    }

    /// What Alertmanager logged so far (debug level: every notification attempt and its
    /// outcome).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }

    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{ALERTMANAGER} exited ({status}) before it was ready: {}",
                    log_tail(&self.dir)
                );
            }
            if request(self.addr, "GET", "/-/ready", None).is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{ALERTMANAGER} on {} was not ready within {STARTUP:?}: {}",
                    self.addr,
                    log_tail(&self.dir)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `am.yml`: one route, one webhook receiver. Strings are written as JSON strings, which
/// YAML reads as double-quoted scalars, so URLs and tokens need no further escaping.
fn config(webhook_url: &str, bearer: Option<&str>, group_by: &[&str]) -> anyhow::Result<String> {
    let url = serde_json::to_string(webhook_url)?;
    let group_by = serde_json::to_string(group_by)?;
    let http_config = match bearer {
        Some(token) => format!(
            "\n        http_config:\n          authorization:\n            type: Bearer\n            credentials: {}",
            serde_json::to_string(token)?
        ),
        None => String::new(),
    };
    Ok(format!(
        "global:\n\
         \x20 resolve_timeout: 5m\n\
         route:\n\
         \x20 receiver: quell\n\
         \x20 group_by: {group_by}\n\
         \x20 group_wait: 1s\n\
         \x20 group_interval: 2s\n\
         \x20 repeat_interval: 24h\n\
         receivers:\n\
         \x20 - name: quell\n\
         \x20   webhook_configs:\n\
         \x20     - url: {url}\n\
         \x20       send_resolved: true{http_config}\n"
    ))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns the status
/// and the body as text (chunked framing left in: callers only show it in errors).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Content-Type: application/json\r\n\
         Accept: application/json\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("not an HTTP response: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The last lines of alertmanager.log, for error messages.
fn log_tail(dir: &Path) -> String {
    let log = fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default();
    let lines = log.lines().collect::<Vec<_>>();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_quotes_url_and_token() {
        let yaml = config(
            "http://127.0.0.1:1/webhooks/alertmanager",
            Some("a\"b"),
            &["..."],
        )
        .unwrap();
        assert!(yaml.contains("- url: \"http://127.0.0.1:1/webhooks/alertmanager\"\n"));
        assert!(yaml.contains("credentials: \"a\\\"b\"\n"));
        assert!(yaml.contains("group_by: [\"...\"]\n"));
        let open = config("http://x/", None, &["alertname"]).unwrap();
        assert!(!open.contains("http_config"));
        assert!(open.contains("group_by: [\"alertname\"]\n"));
    }
}

//! A real OpenSSH server on loopback, with a throwaway host key and client key.
//!
//! Needs `/usr/sbin/sshd` and `ssh-keygen` (Debian: `apt-get install openssh-server`) and
//! root (sshd's privilege separation). The client side is whatever uses
//! [`Sshd::client_key`] and [`Sshd::known_hosts`], e.g. the real `ssh`:
//!
//! ```no_run
//! let dir = tempfile::tempdir()?;
//! let sshd = quell_tests::sshd::Sshd::start(dir.path())?;
//! let out = std::process::Command::new("ssh")
//!     .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
//!     .arg("-o").arg(format!("UserKnownHostsFile={}", sshd.known_hosts().display()))
//!     .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"])
//!     .arg("-i").arg(sshd.client_key())
//!     .arg("-p").arg(sshd.port().to_string())
//!     .arg(format!("{}@127.0.0.1", sshd.user()))
//!     .arg("echo hi")
//!     .output()?;
//! assert_eq!(out.stdout, b"hi\n");
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::fs;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const SSHD: &str = "/usr/sbin/sshd";
const STARTUP: Duration = Duration::from_secs(10);

/// A running `sshd -D` on `127.0.0.1`; killed when dropped.
pub struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
    user: String,
}

impl Sshd {
    /// Generates keys and a config in `dir` (created if missing), starts sshd on a free
    /// loopback port accepting only the client key for the current user, and waits (at most
    /// 10 s) until it sends its banner.
    pub fn start(dir: &Path) -> anyhow::Result<Sshd> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        keygen(&dir.join("host_ed25519"), "quell-test-host")?;
        keygen(&dir.join("client_ed25519"), "quell-test-client")?;
        fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys"))
            .context("writing authorized_keys")?;
        let user = current_user()?;
        let port = free_port()?;

        write_config(&dir, port, &user, true)?;
        if !config_ok(&dir)? {
            // OpenSSH before 9.8 has no PerSourcePenalties.
            write_config(&dir, port, &user, false)?;
            if !config_ok(&dir)? {
                bail!("sshd rejected its config: {}", log_tail(&dir));
            }
        }
        let known_hosts = known_hosts_line(&dir, port)?;
        fs::write(dir.join("known_hosts"), known_hosts).context("writing known_hosts")?;

        let log = fs::File::create(dir.join("sshd.log")).context("creating sshd.log")?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {SSHD} (apt-get install openssh-server)"))?;
        let mut sshd = Sshd {
            child,
            dir,
            port,
            user,
        };
        sshd.wait_for_banner()?;
        Ok(sshd)
    }

    /// The port sshd listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user allowed to log in: the current user.
    pub fn user(&self) -> String {
        self.user.clone()
    }

    /// The private key that may log in (`-i`).
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_ed25519")
    }

    /// A known_hosts file holding `[127.0.0.1]:PORT ssh-ed25519 AAAA…` for this server.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// What sshd logged so far (it runs with `-e`, `LogLevel VERBOSE`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    fn wait_for_banner(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sshd exited ({status}) before accepting connections: {}",
                    log_tail(&self.dir)
                );
            }
            if read_banner(addr).is_ok_and(|banner| banner.starts_with("SSH-2.0-")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "sshd sent no banner on {addr} within {STARTUP:?}: {}",
                    log_tail(&self.dir)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path, comment: &str) -> anyhow::Result<()> {
    for file in [path.to_path_buf(), path.with_extension("pub")] {
        if file.exists() {
            fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
    }
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn current_user() -> anyhow::Result<String> {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .context("running id -un")?;
    let user = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || user.is_empty() {
        bail!("id -un failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(user)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn write_config(dir: &Path, port: u16, user: &str, penalties_option: bool) -> anyhow::Result<()> {
    let d = dir.display();
    let mut config = format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {d}/host_ed25519\n\
         PidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers {user}\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         LogLevel VERBOSE\n\
         MaxStartups 200\n"
    );
    if penalties_option {
        // Tests fail logins on purpose; OpenSSH 9.8+ would otherwise start refusing loopback.
        config.push_str("PerSourcePenalties no\n");
    }
    fs::write(dir.join("sshd_config"), config).context("writing sshd_config")
}

/// Runs `sshd -t` on the config; its complaints go to `sshd.log`.
fn config_ok(dir: &Path) -> anyhow::Result<bool> {
    let out = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {SSHD} -t (apt-get install openssh-server)"))?;
    fs::write(dir.join("sshd.log"), &out.stderr).context("writing sshd.log")?;
    Ok(out.status.success())
}

fn known_hosts_line(dir: &Path, port: u16) -> anyhow::Result<String> {
    let public =
        fs::read_to_string(dir.join("host_ed25519.pub")).context("reading the host key")?;
    let mut fields = public.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(key)) => Ok(format!("[127.0.0.1]:{port} {kind} {key}\n")),
        _ => bail!("unexpected host public key: {public:?}"),
    }
}

fn read_banner(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The last lines of sshd.log, for error messages.
fn log_tail(dir: &Path) -> String {
    let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    let lines = log.lines().collect::<Vec<_>>();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

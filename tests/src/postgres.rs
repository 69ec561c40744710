//! A real PostgreSQL server (Debian's `postgresql` package) in a throwaway directory, on a
//! free loopback port, for the tests of the PostgreSQL store.
//!
//! `initdb` and `postgres` refuse to run as root, and tests (and CI) run as root: then every
//! server tool runs as the `postgres` user through `runuser`, in a data directory that user
//! owns. A missing PostgreSQL is an error that says what to install, never a skip.
//!
//! ```no_run
//! let pg = quell_tests::postgres::Postgres::start()?;
//! let version = pg.psql("SELECT current_setting('server_version_num')")?;
//! assert!(version.trim().parse::<u32>()? >= 150_000);
//! println!("{}", pg.url()); // postgres://quell@127.0.0.1:<port>/quell
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, bail};

/// A running server; stopped (immediately) and its directory removed when dropped.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    /// Creates a cluster (`initdb`, trust authentication on loopback, a `quell` superuser and
    /// database), starts it on a free `127.0.0.1` port and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Postgres> {
        let bin = bin_dir()?;
        let as_postgres = is_root()?;
        let dir =
            std::env::temp_dir().join(format!("quell-pg-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if as_postgres {
            // The server user must own its directory (and be able to reach it).
            checked(
                Command::new("chown").arg("postgres:postgres").arg(&dir),
                "chown postgres",
            )?;
        }
        let port = free_port()?;
        let pg = Postgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = pg.dir.join("data");
        pg.tool(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "quell",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        pg.restart()?;
        pg.psql_as("postgres", "CREATE DATABASE quell")?;
        Ok(pg)
    }

    /// Starts the server again after [`Postgres::stop`], on the same port and data, and waits
    /// until it accepts connections.
    pub fn restart(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.dir.join("data").display().to_string(),
                "-l",
                &self.dir.join("server.log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map_err(|e| anyhow::anyhow!("{e}\nserver log:\n{}", self.log()))?;
        Ok(())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: connections are cut, as when
    /// the database's node fails); [`Postgres::restart`] brings it back.
    pub fn stop(&self) -> anyhow::Result<()> {
        let data = self.dir.join("data").display().to_string();
        self.tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])?;
        Ok(())
    }

    /// `postgres://quell@127.0.0.1:<port>/quell`.
    pub fn url(&self) -> String {
        format!("postgres://quell@127.0.0.1:{}/quell", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `sql` with `psql` in database `quell`; its output, unaligned and tuples only.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        self.psql_as("quell", sql)
    }

    fn psql_as(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "quell", "-d", database])
            .args(["-c", sql])
            .output()
            .context("running psql (Debian: apt-get install postgresql-client)")?;
        Ok(text(&checked_output(out, "psql")?))
    }

    /// Turns TLS on (`ssl = on`, reloaded) with a server certificate for `127.0.0.1` signed
    /// by a certificate authority made for it with `openssl`; returns the authority's PEM
    /// file, for clients to trust. Plain connections are still accepted.
    pub fn enable_tls(&self) -> anyhow::Result<PathBuf> {
        let tls = self.tls_dir();
        std::fs::create_dir_all(&tls).with_context(|| format!("creating {}", tls.display()))?;
        let ca = self.tls_file("ca.pem");
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=quell test CA",
            "-keyout",
            &self.tls_file("ca.key"),
            "-out",
            &ca,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        self.issue(
            "server",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )?;
        if self.as_postgres {
            checked(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&tls),
                "chown postgres",
            )?;
        }
        // The server refuses a key others can read.
        checked(
            Command::new("chmod").arg("600").arg(tls.join("server.key")),
            "chmod",
        )?;
        for (setting, file) in [
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
        ] {
            self.psql(&format!(
                "ALTER SYSTEM SET {setting} = '{}'",
                self.tls_file(file)
            ))?;
        }
        self.psql("ALTER SYSTEM SET ssl = on")?;
        self.reload_until("ssl", "on")?;
        Ok(tls.join("ca.pem"))
    }

    /// After [`Postgres::enable_tls`]: a superuser `user` who may connect only over TLS with
    /// a client certificate for that name (`clientcert=verify-full`), signed by the same
    /// authority; returns the certificate's and its key's PEM files. Other users are as before.
    pub fn require_client_certificate(&self, user: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        self.issue(
            "client",
            &format!("/CN={user}"),
            "extendedKeyUsage=clientAuth\n",
        )?;
        self.psql(&format!("CREATE ROLE {user} LOGIN SUPERUSER"))?;
        // First match wins: the user's TLS connections need the certificate, its plain
        // ones are refused, and every other line stays as it was.
        let hba = self.dir.join("data/pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).context("reading pg_hba.conf")?;
        std::fs::write(
            &hba,
            format!(
                "hostssl all {user} 127.0.0.1/32 trust clientcert=verify-full\n\
                 host all {user} 127.0.0.1/32 reject\n{rules}"
            ),
        )
        .context("writing pg_hba.conf")?;
        let ca = self.tls_file("ca.pem");
        self.psql(&format!("ALTER SYSTEM SET ssl_ca_file = '{ca}'"))?;
        // The server rereads pg_hba.conf with its settings: once a new session shows the
        // authority, both are in force.
        self.reload_until("ssl_ca_file", &ca)?;
        let tls = self.tls_dir();
        Ok((tls.join("client.crt"), tls.join("client.key")))
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    /// A file of the test certificate authority's directory, as a string for arguments.
    fn tls_file(&self, name: &str) -> String {
        self.tls_dir().join(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) -> anyhow::Result<()> {
        checked(
            Command::new("openssl")
                .args(args)
                .current_dir(self.tls_dir()),
            "openssl (Debian: apt-get install openssl)",
        )
    }

    /// `<name>.key` and `<name>.crt` for `subject`, signed by the test authority, as X.509
    /// version 3 with `extensions` (rustls refuses version 1 certificates).
    fn issue(&self, name: &str, subject: &str, extensions: &str) -> anyhow::Result<()> {
        let file = |suffix: &str| self.tls_file(&format!("{name}.{suffix}"));
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &file("key"),
            "-out",
            &file("csr"),
        ])?;
        std::fs::write(
            file("ext"),
            format!("basicConstraints=CA:FALSE\n{extensions}"),
        )?;
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &file("csr"),
            "-CA",
            &self.tls_file("ca.pem"),
            "-CAkey",
            &self.tls_file("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &file("ext"),
            "-out",
            &file("crt"),
        ])
    }

    /// Reloads the configuration and waits until a new session shows `setting` as `value`
    /// (the reload is asynchronous).
    fn reload_until(&self, setting: &str, value: &str) -> anyhow::Result<()> {
        self.psql("SELECT pg_reload_conf()")?;
        for _ in 0..600 {
            if self.psql(&format!("SHOW {setting}"))?.trim() == value {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        bail!(
            "{setting} did not become {value} after a reload; server log:\n{}",
            self.log()
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Runs one of the server's tools, as `postgres` when we are root.
    fn tool(&self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let program = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command.args(args).current_dir(&self.dir);
        let out = command
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        Ok(text(&checked_output(out, name)?))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let _ = self.tool("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's `bin` directory (`/usr/lib/postgresql/<major>/bin`).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin).ok_or_else(|| {
        anyhow::anyhow!(
            "no PostgreSQL server in {}: install Debian's postgresql (scripts/setup.sh does)",
            root.display()
        )
    })
}

fn is_root() -> anyhow::Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(text(&out.stdout).trim() == "0")
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    checked_output(out, what).map(|_| ())
}

fn checked_output(out: Output, what: &str) -> anyhow::Result<Vec<u8>> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_server_starts_answers_and_is_gone_when_dropped() {
        let pg = Postgres::start().unwrap();
        let version: u32 = pg
            .psql("SELECT current_setting('server_version_num')")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(version >= 150_000, "{version}");
        pg.psql("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
            .unwrap();
        pg.psql("INSERT INTO t (v) VALUES ('a'), ('b')").unwrap();
        assert_eq!(pg.psql("SELECT count(*) FROM t").unwrap().trim(), "2");
        let error = pg.psql("SELECT * FROM missing").unwrap_err().to_string();
        assert!(
            error.contains("relation \"missing\" does not exist"),
            "{error}"
        );
        let port = pg.port();
        drop(pg);
        assert!(
            std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "still listening after drop"
        );
    }
}

//! The one place Quell starts child processes.
//!
//! argv only, never a shell; an absolute binary; a cleared environment; stdin closed; the
//! child leads its own process group, and an outer deadline kills the whole group (kubectl's
//! own `--request-timeout` was measured taking 18 s on a stalled server, ssh 30 s on a
//! stalled key exchange). Output is captured up to a cap and the rest drained and dropped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A command to run.
#[derive(Debug)]
pub struct Spec {
    /// Absolute path of the binary.
    pub program: PathBuf,
    /// Arguments, each a whole argv element.
    pub args: Vec<OsString>,
    /// The only environment the child gets.
    pub env: Vec<(&'static str, OsString)>,
    /// The outer deadline.
    pub timeout: Duration,
    /// Cap on stdout and on stderr, each.
    pub output_cap: usize,
}

/// What the child printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Exit code, or `128 + signal` when killed by a signal.
    pub exit_code: i32,
    /// Captured stdout, at most the cap.
    pub stdout: Vec<u8>,
    /// Captured stderr, at most the cap.
    pub stderr: Vec<u8>,
    /// Whether either stream was cut.
    pub truncated: bool,
    /// Bytes the child wrote in all, before capping.
    pub total_bytes: u64,
}

/// Why a command produced no output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binary could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The deadline passed; the process group was killed.
    #[error("deadline of {0:?} passed; process group killed")]
    Timeout(Duration),
    /// Reading the output or waiting failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// Kills the child's whole process group if dropped while armed: covers both the deadline
/// and a caller that stops waiting (its future dropped by an outer timeout).
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH means the group is already gone, which is what we want.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `spec` to completion or to its deadline.
pub async fn run(spec: Spec) -> Result<Output, Error> {
    let program = spec.program.display().to_string();
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place that spawns: cleared environment, own process group, deadline"
    )]
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let cap = spec.output_cap;
    let work = async {
        let (out, err, status) = tokio::join!(
            read_capped(stdout, cap),
            read_capped(stderr, cap),
            child.wait()
        );
        (out, err, status)
    };
    let Ok((out, err, status)) = tokio::time::timeout(spec.timeout, work).await else {
        guard.kill();
        let _ = child.wait().await;
        return Err(Error::Timeout(spec.timeout));
    };
    // The leader has been reaped: its pid may be reused, so never signal the group now.
    guard.disarm();
    let wait_error = |source| Error::Wait {
        program: program.clone(),
        source,
    };
    let status = status.map_err(wait_error)?;
    let (stdout, out_total) = out.map_err(wait_error)?;
    let (stderr, err_total) = err.map_err(wait_error)?;
    let exit_code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Ok(Output {
        exit_code,
        truncated: out_total > stdout.len() as u64 || err_total > stderr.len() as u64,
        total_bytes: out_total + err_total,
        stdout,
        stderr,
    })
}

/// Reads a stream to its end, keeping at most `cap` bytes; returns them and the total.
async fn read_capped(
    stream: Option<impl AsyncRead + Unpin>,
    cap: usize,
) -> std::io::Result<(Vec<u8>, u64)> {
    let Some(mut stream) = stream else {
        return Ok((Vec::new(), 0));
    };
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, total));
        }
        total += n as u64;
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// Resolves a configured binary to an absolute path, once, at start-up.
pub fn resolve_binary(binary: &Path) -> anyhow::Result<PathBuf> {
    if binary.is_absolute() {
        return Ok(binary.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow::anyhow!("{} not found on PATH", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration, cap: usize) -> Spec {
        Spec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: vec![("PATH", "/usr/bin:/bin".into())],
            timeout,
            output_cap: cap,
        }
    }

    #[tokio::test]
    async fn environment_is_cleared_and_stdin_closed() {
        // Whatever KUBECONFIG the test process has, the child sees none.
        let out = run(sh(
            "echo \"[$KUBECONFIG]\"; cat",
            Duration::from_secs(5),
            1024,
        ))
        .await
        .unwrap();
        assert_eq!(out.exit_code, 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n");
    }

    #[tokio::test]
    async fn output_is_capped_and_drained() {
        let out = run(sh("head -c 1000000 /dev/zero", Duration::from_secs(5), 100))
            .await
            .unwrap();
        assert_eq!(out.stdout.len(), 100);
        assert!(out.truncated);
        assert_eq!(out.total_bytes, 1_000_000);
    }

    #[tokio::test]
    async fn deadline_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        // The pid file appears whole (renamed into place); the deadline leaves a busy machine
        // ample time to write it first.
        let script = format!(
            "sleep 60 & echo $! > {0}.tmp && mv {0}.tmp {0}; wait",
            pidfile.display()
        );
        let err = run(sh(&script, Duration::from_secs(3), 1024))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the group and got SIGKILL; the kernel reaps it in its own time.
        let mut alive = true;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A killed orphan is reaped by init; a zombie (state Z) counts as dead.
            if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
                alive = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive, "grandchild {pid} survived the deadline");
    }
}

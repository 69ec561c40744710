//! How Quell reads its input files (the configuration, policies, components, alerts): only a
//! regular file, and at most so many bytes of it.
//!
//! A path that names a FIFO, a device or a directory is refused before it is opened, because
//! opening a FIFO for reading waits for a writer and reading a device may never end. The file
//! is then opened non-blocking and looked at again, so a path swapped for a FIFO between the
//! look and the open cannot block either. A symlink is followed: a link to a regular file (a
//! Kubernetes ConfigMap mount) is read, a link to a FIFO is refused like the FIFO.

use std::fs::{Metadata, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use nix::fcntl::OFlag;

use crate::syntax::ByteSize;

/// Why a file was not read. The caller names the path.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed. (Not a `#[source]`: the text already says it, and an
    /// error chain printed with `{:#}` would say it twice.)
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    /// The path names something other than a regular file.
    #[error("cannot read: it is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// The file is larger than the caller's limit.
    #[error("cannot read: it is larger than the {limit} limit")]
    TooLarge {
        /// The limit.
        limit: ByteSize,
    },
    /// The file is not UTF-8 text.
    #[error("cannot read: it is not UTF-8 text")]
    NotUtf8,
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads the regular file at `path`, refusing it if it holds more than `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    // `metadata` follows symlinks, so this is the type of what would be opened.
    regular(&std::fs::metadata(path)?)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)?;
    let opened = file.metadata()?;
    regular(&opened)?;
    let too_large = || ReadError::TooLarge {
        limit: ByteSize(limit),
    };
    if opened.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    // The file may grow while it is read: never take more than one byte past the limit.
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads the regular file at `path` as UTF-8 text, at most `limit` bytes of it.
pub fn read_to_string(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read(path, limit)?).map_err(|_| ReadError::NotUtf8)
}

fn regular(meta: &Metadata) -> Result<(), ReadError> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(ReadError::NotRegular(if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else {
        "special file"
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;
    use std::sync::mpsc;
    use std::time::Duration;

    use nix::sys::stat::Mode;

    use super::*;

    /// Runs `load` on another thread and returns its result, failing the test if it takes
    /// longer than a generous deadline, so that a regression fails instead of hanging.
    pub(crate) fn within_deadline<T: Send + 'static>(
        load: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(load());
        });
        result
            .recv_timeout(Duration::from_secs(20))
            .expect("loading blocked instead of failing (a FIFO must be refused, not opened)")
    }

    /// A FIFO nobody writes to, in a fresh directory.
    pub(crate) fn fifo(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
        path
    }

    #[test]
    fn a_regular_file_is_read_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_to_string(&path, 10).unwrap(), "0123456789");
        let err = read(&path, 9).unwrap_err();
        assert!(
            matches!(err, ReadError::TooLarge { limit: ByteSize(9) }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "cannot read: it is larger than the 9 B limit"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path(), "component.wasm");
        let err = within_deadline(move || read(&path, 1 << 20)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read: it is a FIFO, not a regular file"
        );
    }

    #[test]
    fn a_symlink_is_judged_by_what_it_points_at() {
        let dir = tempfile::tempdir().unwrap();
        let target = fifo(dir.path(), "fifo");
        let link = dir.path().join("to-fifo");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = within_deadline(move || read(&link, 1 << 20)).unwrap_err();
        assert!(matches!(err, ReadError::NotRegular("FIFO")), "{err:?}");

        let file = dir.path().join("file");
        std::fs::write(&file, "ok").unwrap();
        let link = dir.path().join("to-file");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_to_string(&link, 2).unwrap(), "ok");
    }

    #[test]
    fn directories_and_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(dir.path(), 1 << 20),
            Err(ReadError::NotRegular("directory"))
        ));
        // /dev/zero never ends: it must be refused, not read up to the limit.
        assert!(matches!(
            read(Path::new("/dev/zero"), 1 << 20),
            Err(ReadError::NotRegular("character device"))
        ));
    }

    #[test]
    fn text_must_be_utf8_and_a_missing_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.toml");
        std::fs::write(&path, b"caf\xe9").unwrap();
        assert!(matches!(
            read_to_string(&path, 100),
            Err(ReadError::NotUtf8)
        ));
        let missing = read(&dir.path().join("missing"), 100).unwrap_err();
        assert!(missing.is_not_found(), "{missing:?}");
    }
}

//! One server per data directory, and how the other commands find it.
//!
//! The local IAM stand-ins keep their state in memory and rewrite their
//! JSON files whole (`json_file`): two processes changing them would lose
//! each other's updates. So the server holds an exclusive lock on
//! `<data-dir>/jit-local.lock` (`flock`, released by the kernel when the
//! process ends, even by `kill -9`) and writes into it where it listens and
//! how it grants. `jit-local reconcile` takes the same lock to work on the
//! data directory alone, or — when the server holds it — asks the server
//! to reconcile, over loopback with the API key (`POST /local/reconcile`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "jit-local.lock";

/// What the server holding the lock writes into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub pid: u32,
    /// Where it listens (`127.0.0.1:3000`).
    pub addr: String,
    /// How it reaches IAM: `local` (the files in the data directory) or
    /// `aws`. Kept after the server stops, so a later hand reconcile works
    /// on the same IAM.
    pub grants: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another jit-local (pid {pid}, {addr}) is using the data directory {}", path.display())]
    Held {
        path: PathBuf,
        pid: String,
        addr: String,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock without waiting.
    pub fn try_acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut opts = OpenOptions::new();
        // Not truncated on open: the holder's information stays readable.
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { file, path }),
            Err(TryLockError::WouldBlock) => {
                let info = read_info(data_dir);
                Err(LockError::Held {
                    path,
                    pid: info.as_ref().map_or("?".into(), |i| i.pid.to_string()),
                    addr: info.map_or("?".into(), |i| i.addr),
                })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// Says who holds the lock (replacing what an earlier holder wrote).
    pub fn publish(&mut self, info: &ServerInfo) -> std::io::Result<()> {
        let text = serde_json::to_vec(info).map_err(std::io::Error::other)?;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&text)?;
        self.file.sync_all()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the last holder wrote, if anything readable.
pub fn read_info(data_dir: &Path) -> Option<ServerInfo> {
    let text = std::fs::read(data_dir.join(LOCK_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_next_one_reads_who() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = DataDirLock::try_acquire(dir.path()).unwrap();
        let info = ServerInfo {
            pid: 42,
            addr: "127.0.0.1:3000".into(),
            grants: "local".into(),
        };
        first.publish(&info).unwrap();
        match DataDirLock::try_acquire(dir.path()) {
            Err(LockError::Held { pid, addr, .. }) => {
                assert_eq!((pid.as_str(), addr.as_str()), ("42", "127.0.0.1:3000"))
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        let _second = DataDirLock::try_acquire(dir.path()).expect("released on drop");
        assert_eq!(read_info(dir.path()), Some(info), "kept for the next one");
    }
}

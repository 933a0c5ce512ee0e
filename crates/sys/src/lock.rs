//! Lock files: `flock(LOCK_EX|LOCK_NB)` on a file in a directory we hold open, with the
//! holder's pid written inside for messages. A flock belongs to the open file description, so
//! it can never go stale: it is released when the holder exits, however it exits.

use std::ffi::OsStr;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FlockOperation, OFlags};
use rustix::io::Errno;

use crate::dir::{Dir, Resolve, check_component};
use crate::error::{Context, Error, Result};

/// A held lock; dropping it releases the lock (the file stays).
#[derive(Debug)]
pub struct LockFile {
    fd: OwnedFd,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; its pid if it wrote one.
    #[error("{path} is locked by {}", holder.map(|p| format!("pid {p}")).unwrap_or_else(|| "another process".into()))]
    Busy { path: String, holder: Option<i32> },
    #[error(transparent)]
    Sys(#[from] Error),
}

/// Takes an exclusive lock on `dir/name` without waiting, creating the file with `mode`,
/// then writes this process's pid into it.
pub fn try_lock(dir: &Dir, name: impl AsRef<OsStr>, mode: u32) -> Result<LockFile, LockError> {
    let name = name.as_ref();
    let path = dir.path().join(name);
    check_component(name).ctx("lock", path.display())?;
    let fd = dir.open_at(
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW,
        mode,
        Resolve::STRICT,
    )?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            let mut buf = [0u8; 32];
            let n = rustix::io::pread(&fd, &mut buf, 0).unwrap_or(0);
            let holder = std::str::from_utf8(&buf[..n])
                .ok()
                .and_then(|s| s.trim().parse().ok());
            return Err(LockError::Busy {
                path: path.display().to_string(),
                holder,
            });
        }
        Err(e) => return Err(Error::errno("lock", path.display(), e).into()),
    }
    let pid = format!("{}\n", rustix::process::getpid().as_raw_nonzero());
    rustix::fs::ftruncate(&fd, 0).ctx("truncate", path.display())?;
    rustix::io::pwrite(&fd, pid.as_bytes(), 0).ctx("write", path.display())?;
    Ok(LockFile { fd })
}

impl AsFd for LockFile {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_and_names_holder_until_released() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        let held = try_lock(&d, "x.lock", 0o644).unwrap();
        match try_lock(&d, "x.lock", 0o644) {
            Err(LockError::Busy { holder, path }) => {
                assert_eq!(
                    holder,
                    Some(rustix::process::getpid().as_raw_nonzero().get())
                );
                assert!(path.ends_with("x.lock"));
            }
            other => panic!("{other:?}"),
        }
        // flock(1), a real independent peer, sees it held too.
        let st = std::process::Command::new("flock")
            .args(["-n", t.path().join("x.lock").to_str().unwrap(), "true"])
            .status()
            .unwrap();
        assert!(!st.success());
        drop(held);
        // A child spawned meanwhile by another test thread may hold a copy of the open file
        // description between its clone and exec (CLOEXEC closes it at exec): allow that
        // transient holder, but the lock must come free.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match try_lock(&d, "x.lock", 0o644) {
                Ok(_) => break,
                Err(LockError::Busy { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("lock not released: {e}"),
            }
        }
    }
}

//! Atomic state files: write `NAME.new`, fsync it, rename it over `NAME`, fsync the directory.
//!
//! A reader sees either the old content or the new, never a torn file; after a crash the
//! directory holds the old or the new file and possibly a stale `NAME.new`, which the next
//! write truncates. The non-atomic exception, named as such: two writers of the same name in
//! one directory race on `NAME.new`; callers serialize writes to one name.

use std::ffi::{OsStr, OsString};

use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self, OFlags};

use crate::dir::{Dir, Resolve, check_component};
use crate::error::{Context, Result};

/// Whether a write must reach stable storage before the rename (`fsync`), or only be atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and the directory: survives a power loss (for disk-backed state).
    Sync,
    /// Skip the fsyncs: for tmpfs, where they cannot add anything (state under `/run`).
    Volatile,
}

/// Whether `dir` lives on a tmpfs (or ramfs), where fsync is pointless.
pub fn is_volatile(dir: &Dir) -> bool {
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    rustix::fs::fstatfs(dir.fd())
        .is_ok_and(|s| matches!(s.f_type as u64, TMPFS_MAGIC | RAMFS_MAGIC))
}

/// Writes `data` to `dir/name` atomically with permission bits `mode` ([`Durability::Sync`]).
pub fn write_atomic(dir: &Dir, name: impl AsRef<OsStr>, data: &[u8], mode: u32) -> Result<()> {
    write_atomic_with(dir, name, data, mode, Durability::Sync)
}

/// [`write_atomic`] with the choice of [`Durability`].
pub fn write_atomic_with(
    dir: &Dir,
    name: impl AsRef<OsStr>,
    data: &[u8],
    mode: u32,
    durability: Durability,
) -> Result<()> {
    let name = name.as_ref();
    let target = dir.path().join(name);
    check_component(name).ctx("write", target.display())?;
    let mut tmp = OsString::from(name);
    tmp.push(".new");
    let tmp_path = dir.path().join(&tmp);
    let fd = dir.open_at(
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW,
        mode,
        Resolve::STRICT,
    )?;
    // The umask may have narrowed the mode; set it exactly.
    fs::fchmod(&fd, fs::Mode::from_raw_mode(mode)).ctx("change mode of", tmp_path.display())?;
    write_all(fd.as_fd(), data, &tmp_path.display())?;
    if durability == Durability::Sync {
        fs::fsync(&fd).ctx("fsync", tmp_path.display())?;
    }
    drop(fd);
    dir.rename(&tmp, name)?;
    if durability == Durability::Sync {
        fs::fsync(dir.fd()).ctx("fsync", dir.path().display())?;
    }
    Ok(())
}

/// Reads `dir/name` (not following a symlink); `None` when it does not exist. `limit` bounds
/// what is read: a larger file is an error (`EFBIG`), not a truncated read.
pub fn read_file(dir: &Dir, name: impl AsRef<OsStr>, limit: usize) -> Result<Option<Vec<u8>>> {
    let name = name.as_ref();
    let path = dir.path().join(name);
    check_component(name).ctx("read", path.display())?;
    let fd = match dir.open_at(name, OFlags::RDONLY | OFlags::NOFOLLOW, 0, Resolve::STRICT) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    read_to_end(fd.as_fd(), limit, &path.display()).map(Some)
}

/// Writes all of `data` at the file position of `fd`; `what` names it in errors.
pub(crate) fn write_all(
    fd: BorrowedFd<'_>,
    mut data: &[u8],
    what: &dyn std::fmt::Display,
) -> Result<()> {
    while !data.is_empty() {
        let n = rustix::io::write(fd, data).ctx("write", what)?;
        data = &data[n..];
    }
    Ok(())
}

/// Reads `fd` from its start to its end (`pread`, so the file position does not matter and
/// a seq_file of /proc restarts cleanly). More than `limit` bytes is an error (`EFBIG`), not
/// a truncated read; `what` names the file in errors.
pub(crate) fn read_to_end(
    fd: BorrowedFd<'_>,
    limit: usize,
    what: &dyn std::fmt::Display,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = rustix::io::pread(fd, &mut buf, out.len() as u64).ctx("read", what)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(crate::Error::errno(
                "read (larger than its limit)",
                what,
                rustix::io::Errno::FBIG,
            ));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn writes_replaces_and_sets_exact_mode() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        write_atomic(&d, "state", b"one", 0o640).unwrap();
        write_atomic(&d, "state", b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(t.path().join("state")).unwrap(), b"two");
        let m = std::fs::metadata(t.path().join("state"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o7777, 0o600);
        assert!(!t.path().join("state.new").exists());
        assert_eq!(read_file(&d, "state", 16).unwrap().unwrap(), b"two");
        assert!(read_file(&d, "missing", 16).unwrap().is_none());
        let e = read_file(&d, "state", 2).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG));
    }

    #[test]
    fn volatile_writes_are_atomic_too_and_tmpfs_is_recognised() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        write_atomic_with(&d, "v", b"1", 0o600, Durability::Volatile).unwrap();
        write_atomic_with(&d, "v", b"2", 0o600, Durability::Volatile).unwrap();
        assert_eq!(std::fs::read(t.path().join("v")).unwrap(), b"2");
        assert!(!t.path().join("v.new").exists());
        assert!(
            is_volatile(&Dir::open("/dev/shm").unwrap())
                || !std::path::Path::new("/dev/shm").exists()
        );
        assert!(!is_volatile(&Dir::open("/proc").unwrap()));
    }

    #[test]
    fn planted_symlink_at_new_name_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        symlink(&victim, t.path().join("state.new")).unwrap();
        let d = Dir::open(t.path()).unwrap();
        let e = write_atomic(&d, "state", b"evil", 0o600).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(e.to_string().contains("state.new"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // And a symlink at the final name is replaced, not followed.
        std::fs::remove_file(t.path().join("state.new")).unwrap();
        symlink(&victim, t.path().join("state")).unwrap();
        write_atomic(&d, "state", b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(t.path().join("state")).unwrap(), b"new");
    }
}

//! `$XDG_RUNTIME_DIR` with the checks the XDG Base Directory specification demands.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Why `$XDG_RUNTIME_DIR` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    #[error("XDG_RUNTIME_DIR is not set")]
    Unset,
    #[error("XDG_RUNTIME_DIR={} is not an absolute path", .0.display())]
    Relative(PathBuf),
    #[error("unable to use XDG_RUNTIME_DIR={}: {source}", path.display())]
    Inaccessible {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("XDG_RUNTIME_DIR={} is a symlink; the runtime directory must be a real directory", .0.display())]
    Symlink(PathBuf),
    #[error("XDG_RUNTIME_DIR={} is a {kind}, not a directory", path.display())]
    NotADirectory { path: PathBuf, kind: &'static str },
    #[error("XDG_RUNTIME_DIR={} is owned by uid {owner}, not by uid {expected}", path.display())]
    WrongOwner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
    #[error("XDG_RUNTIME_DIR={} has mode {mode:04o}; it must be 0700 (only its owner may enter it)", path.display())]
    WrongMode { path: PathBuf, mode: u32 },
}

/// `$XDG_RUNTIME_DIR` of the calling process, validated for its effective uid.
pub fn runtime_dir() -> Result<PathBuf, RuntimeDirError> {
    let value = std::env::var_os("XDG_RUNTIME_DIR");
    validate_runtime_dir(value.as_deref(), rustix::process::geteuid().as_raw())
}

fn kind_name(ft: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match ft {
        FileType::RegularFile => "regular file",
        FileType::Socket => "socket",
        FileType::Fifo => "fifo",
        FileType::CharacterDevice | FileType::BlockDevice => "device",
        _ => "non-directory",
    }
}

/// Validates `value` (the variable's content) as the runtime directory of `uid`: set and not
/// empty, absolute, a directory that is not a symlink, owned by `uid`, mode exactly 0700.
pub fn validate_runtime_dir(value: Option<&OsStr>, uid: u32) -> Result<PathBuf, RuntimeDirError> {
    let (path, pinned) = pin_runtime_dir(value)?;
    check_runtime_dir(&path, pinned.as_fd(), uid)?;
    Ok(path)
}

/// The first half of [`validate_runtime_dir`]: `value` set, absolute, and pinned with
/// `O_PATH | O_NOFOLLOW`, which asks the filesystem of the object nothing (on a mount point,
/// the root of what is mounted there). A caller that must not stat through a mount it did
/// not expect (a user's FUSE mount may never answer) checks the pinned object's mount first,
/// then [`check_runtime_dir`].
pub fn pin_runtime_dir(value: Option<&OsStr>) -> Result<(PathBuf, OwnedFd), RuntimeDirError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(RuntimeDirError::Unset)?;
    let path = Path::new(value).to_owned();
    if !path.is_absolute() {
        return Err(RuntimeDirError::Relative(path));
    }
    let pinned = rustix::fs::open(
        &path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeDirError::Inaccessible {
        path: path.clone(),
        source: e.into(),
    })?;
    Ok((path, pinned))
}

/// The second half of [`validate_runtime_dir`]: what `pinned` (from [`pin_runtime_dir`]) is
/// must be a directory, not a symlink, owned by `uid`, mode exactly 0700.
pub fn check_runtime_dir(
    path: &Path,
    pinned: BorrowedFd<'_>,
    uid: u32,
) -> Result<(), RuntimeDirError> {
    let st = rustix::fs::fstat(pinned).map_err(|e| RuntimeDirError::Inaccessible {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let path = path.to_owned();
    let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if ft == rustix::fs::FileType::Symlink {
        return Err(RuntimeDirError::Symlink(path));
    }
    if ft != rustix::fs::FileType::Directory {
        return Err(RuntimeDirError::NotADirectory {
            path,
            kind: kind_name(ft),
        });
    }
    if st.st_uid != uid {
        return Err(RuntimeDirError::WrongOwner {
            path,
            owner: st.st_uid,
            expected: uid,
        });
    }
    let mode = st.st_mode & 0o7777;
    if mode != 0o700 {
        return Err(RuntimeDirError::WrongMode { path, mode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn accepts_a_correct_dir() {
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            validate_runtime_dir(Some(t.path().as_os_str()), me()).unwrap(),
            t.path()
        );
    }

    #[test]
    fn names_exactly_what_is_wrong() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let v = |p: &Path| {
            validate_runtime_dir(Some(p.as_os_str()), me())
                .unwrap_err()
                .to_string()
        };

        assert_eq!(
            validate_runtime_dir(None, me()).unwrap_err().to_string(),
            "XDG_RUNTIME_DIR is not set"
        );
        assert_eq!(
            validate_runtime_dir(Some(OsStr::new("")), me())
                .unwrap_err()
                .to_string(),
            "XDG_RUNTIME_DIR is not set"
        );
        assert_eq!(
            v(Path::new("run/user/1")),
            "XDG_RUNTIME_DIR=run/user/1 is not an absolute path"
        );
        assert!(
            v(&dir).ends_with("has mode 0755; it must be 0700 (only its owner may enter it)"),
            "{}",
            v(&dir)
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = validate_runtime_dir(Some(dir.as_os_str()), me() + 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(&format!(
                "is owned by uid {}, not by uid {}",
                me(),
                me() + 1
            )),
            "{e}"
        );
        symlink(&dir, t.path().join("link")).unwrap();
        assert!(
            v(&t.path().join("link"))
                .ends_with("is a symlink; the runtime directory must be a real directory")
        );
        std::fs::write(t.path().join("file"), b"").unwrap();
        assert!(v(&t.path().join("file")).ends_with("is a regular file, not a directory"));
        assert!(v(&t.path().join("missing")).contains("No such file or directory"));
    }
}

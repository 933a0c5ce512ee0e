//! Recursive removal that never follows a symlink and never crosses a mount.
//!
//! Root removing a user-writable tree is the classic bug of this field: pam_rundir's `rm -rf`
//! style removal follows symlinks, tmpfiles once chowned through them. Here every directory is
//! opened with `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)` and `O_NOFOLLOW` relative to its
//! parent's fd, and every removal is `unlinkat` on one name in a directory we hold open: a
//! symlink is removed as a link, a directory renamed away meanwhile is simply not found, and
//! a directory whose mount id differs from its parent's (a bind or FUSE mount inside the tree)
//! is left alone and reported.

use std::ffi::OsStr;
use std::path::PathBuf;

use rustix::io::Errno;

use crate::dir::{Dir, Kind, Resolve};
use crate::error::{Error, Result};

/// How deep the remover descends before it gives up (each level holds one fd).
pub const MAX_DEPTH: usize = 256;

/// What a removal did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Non-directories unlinked (files, symlinks, sockets, fifos, devices).
    pub files: u64,
    /// Directories removed.
    pub dirs: u64,
    /// Mount points found inside the tree and left in place (with everything above them).
    pub mounts_skipped: Vec<PathBuf>,
}

/// Removes everything inside `dir`, leaving `dir` itself. Mount points inside are skipped and
/// reported, so the directories above them cannot be removed either and stay.
pub fn empty_dir(dir: &Dir) -> Result<Report> {
    let mut report = Report::default();
    let mnt = dir.mount_id()?;
    empty_inner(dir, mnt, 0, &mut report)?;
    Ok(report)
}

/// Removes `name` inside `parent` and everything below it. A symlink or other non-directory is
/// unlinked itself. A `name` that is a mount point is not entered and not removed: it is
/// reported in `mounts_skipped`. A missing `name` is not an error.
pub fn remove_tree(parent: &Dir, name: impl AsRef<OsStr>) -> Result<Report> {
    let mut report = Report::default();
    let mnt = parent.mount_id()?;
    remove_entry(parent, name.as_ref(), None, mnt, 0, &mut report)?;
    Ok(report)
}

fn remove_entry(
    parent: &Dir,
    name: &OsStr,
    kind: Option<Kind>,
    mnt: u64,
    depth: usize,
    report: &mut Report,
) -> Result<()> {
    let kind = match kind {
        Some(k) => k,
        None => match parent.stat(name)? {
            Some(st) => crate::dir::kind_of(&st),
            None => return Ok(()),
        },
    };
    if kind != Kind::Directory {
        return match parent.unlink(name) {
            Ok(()) => {
                report.files += 1;
                Ok(())
            }
            // Gone meanwhile, or replaced by a directory: look again once.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                remove_entry(parent, name, Some(Kind::Directory), mnt, depth, report)
            }
            Err(e) => Err(e),
        };
    }
    if depth >= MAX_DEPTH {
        return Err(Error::errno(
            "remove (tree deeper than 256 levels)",
            parent.path().join(name).display(),
            Errno::LOOP,
        ));
    }
    let child = match parent.open_dir(name, Resolve::STRICT) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        // Replaced by a symlink or a file since the listing: remove that as a link.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            return remove_entry(parent, name, Some(Kind::File), mnt, depth, report);
        }
        // A mount that refuses even root (FUSE without allow_other): not ours to enter. If
        // mountinfo shows a mount there, skip it as any other mount; else it is a real error.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            let path = parent.path().join(name);
            if crate::mountinfo::read()?
                .iter()
                .any(|m| m.mount_point == path)
            {
                report.mounts_skipped.push(path);
                return Ok(());
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if child.mount_id()? != mnt {
        report.mounts_skipped.push(child.path().to_owned());
        return Ok(());
    }
    let before = report.mounts_skipped.len();
    empty_inner(&child, mnt, depth + 1, report)?;
    if report.mounts_skipped.len() > before {
        // Something below is mounted: this directory cannot be empty.
        return Ok(());
    }
    match parent.rmdir(name) {
        Ok(()) => {
            report.dirs += 1;
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn empty_inner(dir: &Dir, mnt: u64, depth: usize, report: &mut Report) -> Result<()> {
    // A writer racing us can add entries after the listing; a few passes settle it, and
    // what is still there afterwards makes the final rmdir fail with ENOTEMPTY, loudly.
    for _ in 0..4 {
        let entries = dir.entries()?;
        if entries.is_empty() {
            break;
        }
        for e in entries {
            remove_entry(dir, &e.name, Some(e.kind), mnt, depth, report)?;
        }
        if !report.mounts_skipped.is_empty() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn removes_tree_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep").unwrap();
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        std::fs::write(outside.path().join("dir/also"), b"keep").unwrap();

        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("victim");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/b/c/f"), b"x").unwrap();
        symlink(outside.path(), root.join("a/to-outside-dir")).unwrap();
        symlink(outside.path().join("precious"), root.join("a/b/to-file")).unwrap();
        symlink(outside.path().join("dir"), root.join("linkdir")).unwrap();
        let fifo = root.join("a/fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();

        let parent = Dir::open(t.path()).unwrap();
        let r = remove_tree(&parent, "victim").unwrap();
        assert!(!root.exists());
        assert_eq!(r.dirs, 4, "{r:?}");
        assert_eq!(r.files, 5, "{r:?}");
        assert!(r.mounts_skipped.is_empty());
        assert_eq!(
            std::fs::read(outside.path().join("precious")).unwrap(),
            b"keep"
        );
        assert_eq!(
            std::fs::read(outside.path().join("dir/also")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn top_level_symlink_is_unlinked_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep").unwrap();
        let t = tempfile::tempdir().unwrap();
        symlink(outside.path(), t.path().join("victim")).unwrap();
        let parent = Dir::open(t.path()).unwrap();
        let r = remove_tree(&parent, "victim").unwrap();
        assert_eq!(r.files, 1);
        assert!(outside.path().join("precious").exists());
        assert!(t.path().join("victim").symlink_metadata().is_err());
    }

    #[test]
    fn empty_dir_keeps_the_dir_and_missing_is_fine() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("d/e")).unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        let d = Dir::open(t.path()).unwrap();
        let r = empty_dir(&d).unwrap();
        assert_eq!((r.files, r.dirs), (1, 2));
        assert!(t.path().exists());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        assert_eq!(remove_tree(&d, "nope").unwrap(), Report::default());
    }

    #[test]
    fn too_deep_is_an_error_naming_the_path() {
        let t = tempfile::tempdir().unwrap();
        let mut p = t.path().join("deep");
        for _ in 0..(MAX_DEPTH + 2) {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let d = Dir::open(t.path()).unwrap();
        let e = remove_tree(&d, "deep").unwrap_err();
        assert!(e.to_string().contains("deeper than 256"), "{e}");
    }
}

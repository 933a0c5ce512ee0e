//! Recursive removal that never follows a symlink and never crosses a mount.
//!
//! Root removing a user-writable tree is the classic bug of this field: pam_rundir's `rm -rf`
//! style removal follows symlinks, tmpfiles once chowned through them. Here every directory is
//! opened with `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)` and `O_NOFOLLOW` relative to its
//! parent's fd, and every removal is `unlinkat` on one name in a directory we hold open: a
//! symlink is removed as a link, a directory renamed away meanwhile is simply not found, and
//! a mount point inside the tree (a bind or FUSE mount) is left alone and reported: it is
//! opened with `RESOLVE_NO_XDEV`, so its filesystem is never asked anything (a FUSE server
//! that hangs cannot hang the removal).
//!
//! Depth costs one fd and one stack frame per level, so the walk goes at most [`MAX_DEPTH`]
//! levels down. A user can make a tree of any depth (`mkdir d; cd d` in a loop), and a tree the
//! remover cannot finish must not keep a runtime dir alive: a directory found at that depth is
//! moved, with `renameat2(RENAME_NOREPLACE)` between two directories held open, to the top of
//! the tree being removed, under a new name, and removed from there on a later pass. It never
//! leaves the tree (nor its mount: every directory entered is on the tree's mount).

use std::cell::Cell;
use std::ffi::OsStr;
use std::path::PathBuf;

use rustix::io::Errno;

use crate::dir::{Dir, Kind, Resolve};
use crate::error::{Error, Result};

/// How deep the remover descends (each level holds one fd and one stack frame); a directory
/// deeper than this is moved to the top of the tree and removed from there.
pub const MAX_DEPTH: usize = 256;
/// The most directories one removal moves up (each carries up to [`MAX_DEPTH`] levels): far
/// beyond any tree an inode-limited tmpfs can hold, and a bound against a writer who keeps
/// deepening the tree while it is removed.
pub const MAX_MOVES: u64 = 1 << 16;
/// The name a moved directory gets at the top of the tree, followed by a number.
const MOVED_PREFIX: &str = ".runplane-deep-";
// The errors spell both limits out.
const _: () = assert!(MAX_DEPTH == 256 && MAX_MOVES == 65536);

/// What a removal did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Non-directories unlinked (files, symlinks, sockets, fifos, devices).
    pub files: u64,
    /// Directories removed.
    pub dirs: u64,
    /// Mount points found inside the tree and left in place (with everything above them).
    pub mounts_skipped: Vec<PathBuf>,
    /// Directories deeper than [`MAX_DEPTH`] moved to the top of the tree to be removed there.
    pub moved: u64,
}

impl Report {
    /// Adds what `other` did to what this says.
    pub fn merge(&mut self, other: Report) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.mounts_skipped.extend(other.mounts_skipped);
        self.moved += other.moved;
    }
}

/// The directory at the top of the tree being removed, where deep directories are moved (every
/// directory entered is on its mount: none is opened across a mount point).
struct Tree<'a> {
    top: Option<&'a Dir>,
    /// The number the next moved directory's name is tried with (one for the whole tree).
    next_name: &'a Cell<u64>,
}

/// Removes everything inside `dir`, leaving `dir` itself. Mount points inside are skipped and
/// reported, so the directories above them cannot be removed either and stay.
pub fn empty_dir(dir: &Dir) -> Result<Report> {
    let mut report = Report::default();
    let next_name = Cell::new(0);
    let tree = Tree {
        top: Some(dir),
        next_name: &next_name,
    };
    empty_inner(dir, &tree, 0, &mut report)?;
    Ok(report)
}

/// Removes `name` inside `parent` and everything below it. A symlink or other non-directory is
/// unlinked itself. A `name` that is a mount point is not entered and not removed: it is
/// reported in `mounts_skipped`. A missing `name` is not an error.
pub fn remove_tree(parent: &Dir, name: impl AsRef<OsStr>) -> Result<Report> {
    let mut report = Report::default();
    let next_name = Cell::new(0);
    let tree = Tree {
        top: None, // `name` itself, once entered
        next_name: &next_name,
    };
    remove_entry(parent, name.as_ref(), None, &tree, 0, &mut report)?;
    Ok(report)
}

fn remove_entry(
    parent: &Dir,
    name: &OsStr,
    kind: Option<Kind>,
    tree: &Tree<'_>,
    depth: usize,
    report: &mut Report,
) -> Result<()> {
    let kind = match kind {
        Some(k) => k,
        // Pinned without crossing into a mount: a mount point's filesystem is never asked.
        None => match parent.open_path(name, Resolve::STRICT.no_xdev()) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd)
                    .map_err(|e| Error::errno("stat", parent.path().join(name).display(), e))?;
                crate::dir::kind_of(&st)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                report.mounts_skipped.push(parent.path().join(name));
                return Ok(());
            }
            Err(e) => return Err(e),
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
                remove_entry(parent, name, Some(Kind::Directory), tree, depth, report)
            }
            Err(e) => Err(e),
        };
    }
    if depth >= MAX_DEPTH
        && let Some(top) = tree.top
    {
        return move_up(parent, name, top, tree.next_name, report);
    }
    // Never into a mount (RESOLVE_NO_XDEV: EXDEV before its filesystem is asked anything, so
    // that a FUSE mount that refuses root, or whose server hangs, is skipped, not entered).
    let child = match parent.open_dir(name, Resolve::STRICT.no_xdev()) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        // Replaced by a symlink or a file since the listing: remove that as a link.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            return remove_entry(parent, name, Some(Kind::File), tree, depth, report);
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            report.mounts_skipped.push(parent.path().join(name));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let before = report.mounts_skipped.len();
    // The first directory entered is the top of the tree.
    let below = Tree {
        top: Some(tree.top.unwrap_or(&child)),
        next_name: tree.next_name,
    };
    empty_inner(&child, &below, depth + 1, report)?;
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

/// Moves the directory `name` of `parent` (at the depth limit) to `top` under a free name, to
/// be removed from there: both are directories of the tree, held open, on its mount.
fn move_up(
    parent: &Dir,
    name: &OsStr,
    top: &Dir,
    next_name: &Cell<u64>,
    report: &mut Report,
) -> Result<()> {
    let from = parent.path().join(name);
    if report.moved >= MAX_MOVES {
        return Err(Error::errno(
            "remove (more than 65536 directories deeper than 256 levels)",
            from.display(),
            Errno::LOOP,
        ));
    }
    // A name the user made may be taken: the next number then (NOREPLACE never clobbers).
    // A filesystem without renameat2 flags (EINVAL) gets a plain rename to a name found free:
    // the worst a racing writer can have it replace is an entry of the tree being removed.
    let mut flags = rustix::fs::RenameFlags::NOREPLACE;
    let first = next_name.get();
    for n in first..first + 1024 {
        let to = format!("{MOVED_PREFIX}{n}");
        if flags.is_empty() && top.stat(&to)?.is_some() {
            continue;
        }
        match rustix::fs::renameat_with(parent.fd(), name, top.fd(), to.as_str(), flags) {
            Ok(()) => {
                next_name.set(n + 1);
                report.moved += 1;
                return Ok(());
            }
            Err(Errno::EXIST) => continue,
            Err(Errno::INVAL) if !flags.is_empty() => {
                flags = rustix::fs::RenameFlags::empty();
                continue;
            }
            // Gone meanwhile: nothing left to remove.
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => {
                return Err(Error::errno(
                    "move up (deeper than 256 levels)",
                    format_args!("{} to {}", from.display(), top.path().display()),
                    e,
                ));
            }
        }
    }
    Err(Error::errno(
        "move up (deeper than 256 levels; 1024 names taken)",
        format_args!("{} to {}", from.display(), top.path().display()),
        Errno::EXIST,
    ))
}

fn empty_inner(dir: &Dir, tree: &Tree<'_>, depth: usize, report: &mut Report) -> Result<()> {
    // A writer racing us can add entries after the listing; a few passes settle it, and
    // what is still there afterwards makes the final rmdir fail with ENOTEMPTY, loudly. At
    // the top of the tree, a pass that moved deep directories up is followed by another.
    let mut passes = 0;
    while passes < 4 {
        let entries = dir.entries()?;
        if entries.is_empty() {
            break;
        }
        let moved = report.moved;
        for e in entries {
            remove_entry(dir, &e.name, Some(e.kind), tree, depth, report)?;
        }
        if !report.mounts_skipped.is_empty() {
            break;
        }
        let at_top = tree.top.is_some_and(|t| std::ptr::eq(t, dir));
        if !(at_top && report.moved > moved) {
            passes += 1;
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
    fn a_moved_directory_never_replaces_an_entry_of_the_same_name() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/deep/x")).unwrap();
        std::fs::write(t.path().join(format!("{MOVED_PREFIX}0")), b"mine").unwrap();
        std::fs::create_dir(t.path().join(format!("{MOVED_PREFIX}1"))).unwrap();
        let (top, parent) = (
            Dir::open(t.path()).unwrap(),
            Dir::open(t.path().join("a")).unwrap(),
        );
        let (next, mut r) = (Cell::new(0), Report::default());
        move_up(&parent, OsStr::new("deep"), &top, &next, &mut r).unwrap();
        assert_eq!((r.moved, next.get()), (1, 3));
        assert!(t.path().join(format!("{MOVED_PREFIX}2/x")).is_dir());
        assert_eq!(
            std::fs::read(t.path().join(format!("{MOVED_PREFIX}0"))).unwrap(),
            b"mine"
        );
        assert!(t.path().join(format!("{MOVED_PREFIX}1")).is_dir());
        assert!(!t.path().join("a/deep").exists());
        // Gone meanwhile: nothing to do.
        move_up(&parent, OsStr::new("deep"), &top, &next, &mut r).unwrap();
        assert_eq!(r.moved, 1);
    }

    #[test]
    fn a_tree_of_any_depth_is_removed_within_the_depth_limit() {
        // Deeper than the walk goes, twice over, below a name a moved directory would take
        // and a symlink out of the tree that must not be followed on the way.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep").unwrap();
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("deep");
        let mut p = top.clone();
        for i in 0..(2 * MAX_DEPTH + 10) {
            p.push("d");
            std::fs::create_dir_all(&p).unwrap();
            if i % 100 == 0 {
                symlink(outside.path(), p.join("out")).unwrap();
            }
        }
        std::fs::write(p.join("f"), b"x").unwrap();
        std::fs::write(top.join(format!("{MOVED_PREFIX}0")), b"mine").unwrap();
        let d = Dir::open(t.path()).unwrap();
        let r = remove_tree(&d, "deep").unwrap();
        assert!(!top.exists());
        assert_eq!(r.moved, 2, "{r:?}");
        assert_eq!(r.dirs, 2 * MAX_DEPTH as u64 + 10 + 1, "{r:?}");
        assert_eq!(r.files, 1 + 1 + 6, "{r:?}");
        assert_eq!(
            std::fs::read(outside.path().join("precious")).unwrap(),
            b"keep"
        );
        // The same when only the contents go: the top stays, empty.
        let mut p = t.path().join("kept");
        for _ in 0..(MAX_DEPTH + 1) {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let kept = Dir::open(t.path().join("kept")).unwrap();
        let r = empty_dir(&kept).unwrap();
        assert_eq!((r.moved, r.dirs), (1, MAX_DEPTH as u64 + 1), "{r:?}");
        assert_eq!(std::fs::read_dir(t.path().join("kept")).unwrap().count(), 0);
    }
}

//! fd-relative directory operations.
//!
//! A [`Dir`] is an open directory fd plus the path it was opened as (for messages only: the
//! path is never used to reach the directory again). Everything below it is reached with
//! `openat2(2)` and the `RESOLVE_*` flags of a [`Resolve`], or with `*at` calls on a single
//! name component and `AT_SYMLINK_NOFOLLOW`, so that a symlink planted by an unprivileged user
//! is never followed by privileged code (CVE-2012-1174, CVE-2017-18078, CVE-2018-6954).

use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, StatxFlags};
use rustix::io::Errno;

use crate::error::{Context, Error, Result};

/// How `openat2(2)` may resolve a relative path. The default is the strict set: no symlinks
/// anywhere (`RESOLVE_NO_SYMLINKS`), no escape above the starting directory
/// (`RESOLVE_BENEATH`), no magic links (`RESOLVE_NO_MAGICLINKS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolve(ResolveFlags);

impl Default for Resolve {
    fn default() -> Self {
        Self::STRICT
    }
}

impl Resolve {
    /// `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`.
    pub const STRICT: Self = Self(
        ResolveFlags::NO_SYMLINKS
            .union(ResolveFlags::BENEATH)
            .union(ResolveFlags::NO_MAGICLINKS),
    );
    /// Only `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: symlinks are followed as long as they
    /// stay below the starting directory.
    pub const BENEATH: Self = Self(ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS));

    /// Also refuse to cross a mount point (`RESOLVE_NO_XDEV`).
    pub const fn no_xdev(self) -> Self {
        Self(self.0.union(ResolveFlags::NO_XDEV))
    }

    /// The raw flags.
    pub fn flags(self) -> ResolveFlags {
        self.0
    }
}

/// The kind of a directory entry, from `d_type` or, when the filesystem does not fill it,
/// from `fstatat(AT_SYMLINK_NOFOLLOW)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Directory,
    File,
    Symlink,
    Socket,
    Fifo,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl From<FileType> for Kind {
    fn from(t: FileType) -> Self {
        match t {
            FileType::Directory => Kind::Directory,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            FileType::Socket => Kind::Socket,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            _ => Kind::Unknown,
        }
    }
}

/// One entry of a directory listing (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub kind: Kind,
    pub ino: u64,
}

/// An open directory.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Checks that `name` is one path component: not empty, no `/`, not `.` or `..`.
pub fn check_component(name: &OsStr) -> std::result::Result<(), Errno> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Errno::INVAL);
    }
    Ok(())
}

impl Dir {
    /// Opens the directory at `path`. Intermediate components resolve normally (the path comes
    /// from configuration, not from a user); the last one must not be a symlink.
    pub fn open(path: impl AsRef<Path>) -> Result<Dir> {
        let path = path.as_ref();
        let fd = fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open directory", path.display())?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// Opens the directory at the absolute `path` refusing a symlink in any component.
    pub fn open_no_symlinks(path: impl AsRef<Path>) -> Result<Dir> {
        let path = path.as_ref();
        let root = Dir::open("/")?;
        let rel = path.strip_prefix("/").unwrap_or(path);
        if rel.as_os_str().is_empty() {
            return Ok(root);
        }
        root.open_dir(rel, Resolve::STRICT).map(|d| Dir {
            fd: d.fd,
            path: path.to_owned(),
        })
    }

    /// Wraps an already open directory fd; `path` is used in messages only.
    pub fn from_fd(fd: OwnedFd, path: impl Into<PathBuf>) -> Dir {
        Dir {
            fd,
            path: path.into(),
        }
    }

    /// The path this directory was opened as (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives up the fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// A second handle on the same open directory.
    pub fn try_clone(&self) -> Result<Dir> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .ctx("duplicate fd of", self.path.display())?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// `openat2(self, rel, flags | O_CLOEXEC, mode, resolve)`.
    pub fn open_at(
        &self,
        rel: impl AsRef<Path>,
        flags: OFlags,
        mode: u32,
        resolve: Resolve,
    ) -> Result<OwnedFd> {
        let rel = rel.as_ref();
        fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            resolve.flags(),
        )
        .ctx("open", self.join(rel).display())
    }

    /// Opens the subdirectory `rel` (which may have several components) under `resolve`.
    /// The last component is never followed if it is a symlink.
    pub fn open_dir(&self, rel: impl AsRef<Path>, resolve: Resolve) -> Result<Dir> {
        let rel = rel.as_ref();
        let fd = match self.open_at(
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            0,
            resolve,
        ) {
            Ok(fd) => fd,
            // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR; say what it is: a symlink we
            // refuse to follow (ELOOP, as for a symlink in the middle of the path).
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) && self.is_symlink(rel) => {
                return Err(Error::errno("open", self.join(rel).display(), Errno::LOOP));
            }
            Err(e) => return Err(e),
        };
        Ok(Dir {
            fd,
            path: self.join(rel),
        })
    }

    /// An `O_PATH | O_NOFOLLOW` handle on `rel`: identifies the object (a symlink itself, if
    /// it is one) without opening it for I/O. Used to mount on or stat an object race-free.
    /// Taking it asks the filesystem of the object nothing: on a mount point it pins the root
    /// of the topmost mount there, whose [`mount_id`] can be read before anything of it is
    /// opened.
    pub fn open_path(&self, rel: impl AsRef<Path>, resolve: Resolve) -> Result<OwnedFd> {
        self.open_at(rel, OFlags::PATH | OFlags::NOFOLLOW, 0, resolve)
    }

    /// Opens the directory an [`Dir::open_path`] handle pins, for reading, at the mount it
    /// was taken on: a mount made over it since is not entered (`"."` with
    /// `RESOLVE_NO_XDEV`). `path` is for messages.
    pub fn reopen(pinned: BorrowedFd<'_>, path: impl Into<PathBuf>) -> Result<Dir> {
        let path = path.into();
        let fd = fs::openat2(
            pinned,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            Resolve::STRICT.no_xdev().flags(),
        )
        .ctx("open", path.display())?;
        Ok(Dir { fd, path })
    }

    fn is_symlink(&self, rel: &Path) -> bool {
        self.open_path(rel, Resolve::BENEATH)
            .and_then(|fd| fs::fstat(&fd).ctx("stat", ""))
            .is_ok_and(|st| kind_of(&st) == Kind::Symlink)
    }

    /// `fstatat(self, name, AT_SYMLINK_NOFOLLOW)`; `None` when it does not exist.
    pub fn stat(&self, name: impl AsRef<OsStr>) -> Result<Option<Stat>> {
        let name = name.as_ref();
        check_component(name).ctx("stat", self.join(name).display())?;
        match fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::errno("stat", self.join(name).display(), e)),
        }
    }

    /// `name` as this directory's filesystem holds it, never through a mount: `None` when it
    /// does not exist or a mount covers it (that mount's filesystem is not asked: it is
    /// pinned with `O_PATH` and `RESOLVE_NO_XDEV`, then `fstat`). For listings of
    /// directories users write to (`/dev/shm`), where a user's FUSE mount may refuse root or
    /// never answer.
    pub fn stat_here(&self, name: impl AsRef<OsStr>) -> Result<Option<Stat>> {
        let name = name.as_ref();
        check_component(name).ctx("stat", self.join(name).display())?;
        match self.open_path(name, Resolve::STRICT.no_xdev()) {
            Ok(fd) => fs::fstat(&fd)
                .map(Some)
                .ctx("stat", self.join(name).display()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EXDEV)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `fstat` of the directory itself.
    pub fn stat_self(&self) -> Result<Stat> {
        fs::fstat(&self.fd).ctx("stat", self.path.display())
    }

    /// The id of the mount this directory is on (`statx` `STATX_MNT_ID`), which differs across
    /// bind mounts of one filesystem where `st_dev` does not.
    pub fn mount_id(&self) -> Result<u64> {
        mount_id(self.fd(), &self.path)
    }

    /// `mkdirat(self, name, mode)`. Returns `false` when `name` already existed (of any type:
    /// the caller checks what it is with [`Dir::open_dir`] or [`Dir::stat`]). The mode is
    /// subject to the umask; use [`Dir::set_perms`] for an exact mode.
    pub fn mkdir(&self, name: impl AsRef<OsStr>, mode: u32) -> Result<bool> {
        let name = name.as_ref();
        check_component(name).ctx("create directory", self.join(name).display())?;
        match fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(Error::errno(
                "create directory",
                self.join(name).display(),
                e,
            )),
        }
    }

    /// Sets owner and exact mode of this directory through its fd (never through a path).
    pub fn set_perms(&self, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
        set_perms(self.fd(), &self.path, mode, owner)
    }

    /// `unlinkat(self, name, 0)`: removes a non-directory (a symlink itself, never its target).
    pub fn unlink(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        check_component(name).ctx("remove", self.join(name).display())?;
        fs::unlinkat(&self.fd, name, AtFlags::empty()).ctx("remove", self.join(name).display())
    }

    /// `unlinkat(self, name, AT_REMOVEDIR)`: removes an empty directory.
    pub fn rmdir(&self, name: impl AsRef<OsStr>) -> Result<()> {
        let name = name.as_ref();
        check_component(name).ctx("remove directory", self.join(name).display())?;
        fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
            .ctx("remove directory", self.join(name).display())
    }

    /// `renameat(self, from, self, to)`, both single components.
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        check_component(from).ctx("rename", self.join(from).display())?;
        check_component(to).ctx("rename to", self.join(to).display())?;
        fs::renameat(&self.fd, from, &self.fd, to).ctx("rename", self.join(from).display())
    }

    /// Lists the entries (never `.` or `..`), in directory order.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let mut reader = fs::Dir::read_from(&self.fd).ctx("read directory", self.path.display())?;
        let mut out = Vec::new();
        while let Some(ent) = reader.read() {
            let ent = ent.ctx("read directory", self.path.display())?;
            let name: &CStr = ent.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let name = OsStr::from_bytes(bytes).to_owned();
            let mut kind = Kind::from(ent.file_type());
            if kind == Kind::Unknown {
                // Some filesystems leave d_type empty: ask without following, and not through
                // a mount (whose filesystem is not asked; it stays Unknown).
                if let Some(st) = self.stat_here(&name)? {
                    kind = Kind::from(FileType::from_raw_mode(st.st_mode));
                }
            }
            out.push(Entry {
                name,
                kind,
                ino: ent.ino(),
            });
        }
        Ok(out)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The mount id of the object behind `fd` (`STATX_MNT_ID`), asked without asking the
/// filesystem anything: `statx` with an empty mask and `AT_STATX_DONT_SYNC`, for which the
/// kernel fills in the mount id all the same. A FUSE mount's server is not consulted (a
/// mount that refuses root answers rather than failing with `EACCES`, and one whose server
/// hangs answers rather than hanging), so a user's mount can be told apart before anything
/// of it is touched.
pub fn mount_id(fd: BorrowedFd<'_>, what: &Path) -> Result<u64> {
    let stx = fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::empty(),
    )
    .ctx("statx", what.display())?;
    if !StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::MNT_ID) {
        return Err(Error::errno(
            "read the mount id of",
            what.display(),
            Errno::NOSYS,
        ));
    }
    Ok(stx.stx_mnt_id)
}

/// `STATX_MNT_ID_UNIQUE` (Linux >= 6.8; not in rustix): asked for, `stx_mnt_id` is the
/// mount's 64-bit id, which is never reused (the first is `2^31 + 1`, above every reusable
/// id).
pub const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// A mount as `statx` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountIds {
    /// The id mountinfo shows ([`mount_id`], `STATX_MNT_ID`): once the mount is gone the
    /// kernel gives it to the next mount made anywhere (the lowest free id goes first).
    pub id: u64,
    /// The id never reused ([`STATX_MNT_ID_UNIQUE`]); `None` where the kernel has none.
    pub unique: Option<u64>,
}

impl MountIds {
    /// Whether the mount `fd` is on, whose reusable id [`mount_id`] read as `top`, is this
    /// one. The unique id is asked only when `top` matches (a reused id, or this mount), with
    /// `AT_STATX_DONT_SYNC` and nothing else in the mask, so a FUSE server is never consulted;
    /// a FUSE mount that refuses root answers `EACCES`, and is not this one.
    pub fn is(&self, fd: BorrowedFd<'_>, what: &Path, top: u64) -> Result<bool> {
        if top != self.id {
            return Ok(false);
        }
        let Some(unique) = self.unique else {
            return Ok(true);
        };
        match unique_mount_id(fd) {
            Ok(now) => Ok(now == Some(unique)),
            Err(Errno::ACCESS) => Ok(false),
            Err(e) => Err(Error::errno("read the mount id of", what.display(), e)),
        }
    }
}

/// `statx` of a mount root of one's own, pinned as `fd`: type, mode, owner and both of its
/// mount's ids, read through the one pin (a mount made over its path meanwhile cannot mix
/// in). Not for another's mount: with a non-empty mask a FUSE mount that refuses root answers
/// `EACCES`.
pub fn statx_own_mount(fd: BorrowedFd<'_>, what: &Path) -> Result<(fs::Statx, MountIds)> {
    let want = StatxFlags::TYPE | StatxFlags::MODE | StatxFlags::UID | StatxFlags::GID;
    let stx = fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH,
        want | StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )
    .ctx("statx", what.display())?;
    if !StatxFlags::from_bits_retain(stx.stx_mask).contains(want) {
        return Err(Error::errno("statx", what.display(), Errno::NOSYS));
    }
    let unique = (stx.stx_mask & STATX_MNT_ID_UNIQUE != 0).then_some(stx.stx_mnt_id);
    let id = mount_id(fd, what)?;
    Ok((stx, MountIds { id, unique }))
}

/// The unique id of the mount `fd` is on ([`STATX_MNT_ID_UNIQUE`]), `None` before Linux
/// 6.8. Only that is asked, with `AT_STATX_DONT_SYNC`: FUSE asks its server for nothing then
/// (but still refuses root with `EACCES` where the mount does).
pub fn unique_mount_id(fd: BorrowedFd<'_>) -> rustix::io::Result<Option<u64>> {
    let stx = fs::statx(
        fd,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )?;
    Ok((stx.stx_mask & STATX_MNT_ID_UNIQUE != 0).then_some(stx.stx_mnt_id))
}

/// `fchown` then `fchmod` on `fd` (in that order: chown clears set-id bits).
pub fn set_perms(
    fd: BorrowedFd<'_>,
    what: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    if let Some((uid, gid)) = owner {
        let (u, g) = (
            rustix::process::Uid::from_raw(uid),
            rustix::process::Gid::from_raw(gid),
        );
        fs::fchown(fd, Some(u), Some(g)).ctx("change owner of", what.display())?;
    }
    fs::fchmod(fd, Mode::from_raw_mode(mode)).ctx("change mode of", what.display())
}

/// The permission bits (`07777`) of a stat.
pub fn mode_bits(st: &Stat) -> u32 {
    st.st_mode & 0o7777
}

/// The file type of a stat.
pub fn kind_of(st: &Stat) -> Kind {
    Kind::from(FileType::from_raw_mode(st.st_mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        (t, d)
    }

    #[test]
    fn strict_resolve_refuses_symlink_anywhere_and_escape() {
        let (t, d) = tmp();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink("real", t.path().join("link")).unwrap();
        // A symlink in the middle of the path: ELOOP.
        let e = d.open_dir("link", Resolve::STRICT).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(e.to_string().contains("/link"), "{e}");
        // `..` escape: EXDEV.
        let e = d.open_dir("real/../..", Resolve::STRICT).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
        // BENEATH alone follows an inner symlink but never an escaping one.
        assert!(d.open_dir("link/.", Resolve::BENEATH).is_ok());
        assert!(d.open_dir("link/.", Resolve::STRICT).is_err());
        symlink("/etc", t.path().join("out")).unwrap();
        let e = d.open_dir("out/.", Resolve::BENEATH).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
    }

    #[test]
    fn last_component_symlink_is_never_followed() {
        let (t, d) = tmp();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink("real", t.path().join("link")).unwrap();
        let e = d.open_dir("link", Resolve::BENEATH).err();
        // BENEATH follows inner links, but open_dir adds O_NOFOLLOW for the last component.
        assert!(e.is_some());
        assert!(Dir::open(t.path().join("link")).is_err());
        // O_PATH|O_NOFOLLOW gives a handle on the link itself.
        let p = d.open_path("link", Resolve::STRICT).unwrap();
        let st = fs::fstat(&p).unwrap();
        assert_eq!(kind_of(&st), Kind::Symlink);
    }

    #[test]
    fn single_component_ops_refuse_paths() {
        let (_t, d) = tmp();
        for bad in ["a/b", "..", ".", ""] {
            let e = d.mkdir(bad, 0o700).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{bad}: {e}");
        }
    }

    #[test]
    fn mkdir_set_perms_stat_unlink_rename_entries() {
        let (t, d) = tmp();
        assert!(d.mkdir("x", 0o777).unwrap());
        assert!(!d.mkdir("x", 0o777).unwrap());
        let x = d.open_dir("x", Resolve::STRICT).unwrap();
        x.set_perms(0o700, None).unwrap();
        assert_eq!(mode_bits(&d.stat("x").unwrap().unwrap()), 0o700);
        std::fs::write(t.path().join("f"), b"1").unwrap();
        symlink("/nonexistent", t.path().join("l")).unwrap();
        let mut names: Vec<_> = d
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("f".into(), Kind::File),
                ("l".into(), Kind::Symlink),
                ("x".into(), Kind::Directory)
            ]
        );
        d.rename("f", "g").unwrap();
        assert!(d.stat("f").unwrap().is_none());
        d.unlink("l").unwrap();
        d.rmdir("x").unwrap();
        assert!(d.stat("x").unwrap().is_none());
        // A dangling symlink is reported as a symlink, not as missing.
        symlink("/nonexistent", t.path().join("m")).unwrap();
        assert_eq!(kind_of(&d.stat("m").unwrap().unwrap()), Kind::Symlink);
    }

    #[test]
    fn open_no_symlinks_refuses_symlinked_component() {
        let (t, _d) = tmp();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink(t.path().join("real"), t.path().join("link")).unwrap();
        assert!(Dir::open_no_symlinks(t.path().join("real")).is_ok());
        let e = Dir::open_no_symlinks(t.path().join("link")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn mount_id_is_read() {
        let (_t, d) = tmp();
        assert!(d.mount_id().unwrap() > 0);
    }
}

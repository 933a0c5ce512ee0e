//! The effects: making and removing `/run/user` and `/run/user/<uid>` through runplane-sys.
//!
//! Every step is fd-relative under the open root directory and never follows a symlink.
//! Creation (systemd's order, with checks systemd skips):
//! 1. `/run/user` is created 0755 root:root; an existing one must be a real directory owned
//!    by root with no write bits for group or others, else it is refused.
//! 2. `/run/user/<uid>`: missing → `mkdir 0700`; a symlink, file, fifo or socket → removed
//!    (unlinked, never followed) and replaced; a plain directory → mounted over (its content
//!    is hidden, as logind does, and removed at final removal); a tmpfs mount root owned by the
//!    uid with mode 0700 → adopted; any other mount → detached and replaced.
//! 3. A tmpfs with `mode=0700,uid,gid,size,nr_inodes[,noswap][,huge][,mpol]`, `nodev,nosuid`,
//!    mounted on the directory as opened (never through a path a symlink could redirect; see
//!    `runplane_sys::tmpfs::mount_tmpfs`). Then what the name leads to is checked to be that
//!    tmpfs, right on the root's mount (`statmount`), before its owner and mode are taken:
//!    its owner may mount over it the moment it exists, and such a mount is detached.
//! 4. Mounting refused with EPERM or EACCES (containers, LSMs): a plain 0700 directory owned
//!    by the user instead (backend `fallback-dir`), reported in status.
//!
//! Removal (systemd's order): children first (frees the memory even if something pins the
//! mount), lazy unmount (which also drops nested FUSE and bind mounts), then the directory and
//! whatever a mount hid, all without following symlinks; by numeric uid.
//!
//! A user owns the root of its tmpfs, so it may mount over it (FUSE, through fusermount3), as
//! inside it. Nothing here opens, stats or lists what it did not make: the dir is pinned with
//! `O_PATH` and its mount id read without asking the filesystem (a FUSE mount may refuse
//! root, or its server never answer); a mount over the dir that is not the recorded one is
//! detached unlooked-at, and the walk never crosses into a mount.

use std::num::NonZeroU64;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, StatxFlags};

use runplane_sys::dir::{Dir, Kind, MountIds, Resolve, kind_of, mode_bits};
use runplane_sys::remove::{self, Report};
use runplane_sys::statmount::Placement;
use runplane_sys::tmpfs::{self, TmpfsOptions, Usage};

use crate::lifecycle::{Backend, DirInfo};

/// `statfs.f_type` of tmpfs.
const TMPFS_MAGIC: u64 = 0x0102_1994;
/// The most mounts detached from one user's dir before it is made or removed: each one a user
/// stacks on it (FUSE over its own tmpfs) goes; fusermount3 lets a user make `mount_max`
/// mounts (1000 by default), and a pile beyond this bound (a user mounting as fast as they
/// are detached) is refused rather than chased for ever.
const MAX_STACKED: usize = 4096;

/// What [`Root::made`] reads of a new dir's root: type, mode, owner, and its mount's unique id.
const MADE_ATTRS: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID);
const MADE_MASK: StatxFlags = MADE_ATTRS.union(StatxFlags::from_bits_retain(
    runplane_sys::dir::STATX_MNT_ID_UNIQUE,
));

/// What [`Root::made`] found at a new dir's name (returned, never stored: not boxed).
#[allow(clippy::large_enum_variant)]
enum Placed {
    /// The new tmpfs.
    Made(rustix::fs::Statx, MountIds),
    /// A mount over it.
    Over,
    /// A mount no longer in the tree (unmounted since it was pinned).
    Gone,
}

/// Whether a `statx` (with type, mode and owner) shows what a dir made for `uid` is: a
/// directory owned by it, mode exactly 0700.
fn shows_as_made_for(st: &rustix::fs::Statx, uid: u32) -> bool {
    let mode = u32::from(st.stx_mode);
    rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory
        && st.stx_uid == uid
        && mode & 0o7777 == 0o700
}

fn vanished(path: &Path) -> DirError {
    DirError::UnsafeRoot {
        path: path.to_owned(),
        why: "the new mount vanished right after it was made".into(),
    }
}

/// What [`Root::status_of`] reads of a user's directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirStatus {
    /// Space and inode use (zero while covered or unmounted).
    pub usage: Usage,
    /// The mount as `statmount(2)` shows it, when asked for (`None` where the kernel cannot
    /// say: read mountinfo).
    pub mount: Option<runplane_sys::statmount::Mount>,
    /// Another's mount covers the directory (a user's FUSE mount over its own dir): nothing
    /// of it was read.
    pub covered: bool,
    /// The tmpfs it was made as is no longer mounted there (someone unmounted it behind the
    /// daemon's back): a plain directory is left, whose use is not the user's limit.
    pub unmounted: bool,
}

/// A failure to prepare or change a user's directory, naming what and why.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("refusing to use {}: {why}", path.display())]
    UnsafeRoot { path: PathBuf, why: String },
    #[error(transparent)]
    Sys(#[from] runplane_sys::Error),
}

/// Options for new user directories (the per-user limits come with each request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPolicy {
    /// Ask for `noswap` (only honoured where the kernel has it).
    pub noswap: bool,
    pub huge: Option<String>,
    pub mpol: Option<String>,
}

/// What [`Root::remove`] did.
#[derive(Debug, Default)]
pub struct Removed {
    /// What was unlinked, moved up and found mounted inside.
    pub report: Report,
    /// Why the directory could not be emptied before it was unmounted and removed (its
    /// contents then went with the mount).
    pub not_emptied: Option<runplane_sys::Error>,
}

/// The open `/run/user` and what the kernel supports.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    mount_id: u64,
    kernel_noswap: bool,
}

/// Creates or checks the root (`/run/user`): 0755 root:root, a real directory.
pub fn open_root(path: &Path) -> Result<Root, DirError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| DirError::UnsafeRoot {
        path: path.to_owned(),
        why: "not a directory path".into(),
    })?;
    std::fs::create_dir_all(parent)
        .map_err(|e| runplane_sys::Error::new("create", parent.display(), e))?;
    let pdir = Dir::open(parent)?;
    if pdir.mkdir(name, 0o755)? {
        let d = pdir.open_dir(name, Resolve::STRICT)?;
        d.set_perms(0o755, Some((0, 0)))?;
    }
    let dir = match pdir.open_dir(name, Resolve::STRICT) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(DirError::UnsafeRoot {
                path: path.to_owned(),
                why: "it is a symlink".into(),
            });
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            return Err(DirError::UnsafeRoot {
                path: path.to_owned(),
                why: "it is not a directory".into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let st = dir.stat_self()?;
    if st.st_uid != 0 || st.st_gid != 0 {
        return Err(DirError::UnsafeRoot {
            path: path.to_owned(),
            why: format!("owned by {}:{}, not root:root", st.st_uid, st.st_gid),
        });
    }
    let mode = mode_bits(&st);
    if mode & !0o755 != 0 {
        return Err(DirError::UnsafeRoot {
            path: path.to_owned(),
            why: format!("mode {mode:04o} is looser than 0755"),
        });
    }
    let mount_id = dir.mount_id()?;
    let kernel_noswap = tmpfs::kernel_has_noswap().unwrap_or(false);
    Ok(Root {
        dir,
        mount_id,
        kernel_noswap,
    })
}

impl Root {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether new tmpfs mounts can have `noswap` here.
    pub fn kernel_noswap(&self) -> bool {
        self.kernel_noswap
    }

    /// The path of `uid`'s directory.
    pub fn user_path(&self, uid: u32) -> PathBuf {
        self.dir.path().join(uid.to_string())
    }

    /// The object at `uid`'s name (the root of the topmost mount there, if any), pinned with
    /// `O_PATH`, and the mount it is on, read without asking its filesystem anything; `None`
    /// when nothing is there.
    fn pin(&self, uid: u32) -> Result<Option<(rustix::fd::OwnedFd, u64)>, DirError> {
        match self.dir.open_path(uid.to_string(), Resolve::STRICT) {
            Ok(fd) => {
                let id = runplane_sys::dir::mount_id(fd.as_fd(), &self.user_path(uid))?;
                Ok(Some((fd, id)))
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Lazily unmounts the topmost mount on `uid`'s dir, `pinned` (from [`Root::pin`], a
    /// mount root), the `stacked`-th so far (see [`Root::one_more`]).
    fn detach_top(
        &self,
        uid: u32,
        pinned: rustix::fd::OwnedFd,
        stacked: &mut usize,
    ) -> Result<(), DirError> {
        self.one_more(uid, stacked)?;
        tmpfs::unmount_pinned(pinned.as_fd(), &self.user_path(uid))?;
        Ok(())
    }

    /// Counts one more mount found over `uid`'s dir (detached, or gone before it could be):
    /// a pile of more than [`MAX_STACKED`] is refused.
    fn one_more(&self, uid: u32, stacked: &mut usize) -> Result<(), DirError> {
        *stacked += 1;
        if *stacked > MAX_STACKED {
            return Err(DirError::UnsafeRoot {
                path: self.user_path(uid),
                why: format!("more than {MAX_STACKED} mounts are stacked on it"),
            });
        }
        Ok(())
    }

    /// Makes `uid`'s directory (see the module docs for every case). Returns how it is backed
    /// and a note for the log when something was found in the way.
    pub fn create(
        &self,
        uid: u32,
        gid: u32,
        size: u64,
        inodes: u64,
        policy: &MountPolicy,
    ) -> Result<(DirInfo, Option<String>), DirError> {
        let name = uid.to_string();
        let path = self.user_path(uid);
        let mut note = None;
        // The common case first: nothing is there yet (one mkdirat, no stat before it).
        let made = self.dir.mkdir(&name, 0o700)?;
        // Something was there: mounts on it, topmost first, then what they were mounted on.
        let mut stacked = 0;
        let mut table = None;
        while !made && let Some((pinned, top)) = self.pin(uid)? {
            if top == self.mount_id {
                let st = rustix::fs::fstat(&pinned)
                    .map_err(|e| runplane_sys::Error::errno("stat", path.display(), e))?;
                if kind_of(&st) != Kind::Directory {
                    // A symlink, file, fifo, socket or device where the directory belongs:
                    // unlink it (a symlink is removed as a link, never followed).
                    note = Some(format!(
                        "replaced a {:?} at {}",
                        kind_of(&st),
                        path.display()
                    ));
                    self.dir.unlink(&name)?;
                } else if !Dir::reopen(pinned.as_fd(), &path)?.entries()?.is_empty() {
                    note = Some(format!(
                        "{} already held files; they are hidden under the new tmpfs and removed with it",
                        path.display()
                    ));
                }
                break;
            }
            // A mount: adopted if it is a 0700 tmpfs of the uid. Whether it is a tmpfs at
            // all is asked of the kernel's mount table, not of the mount (a user's FUSE
            // mount may refuse root or hang).
            let table = match &mut table {
                Some(t) => t,
                None => table.insert(runplane_sys::mountinfo::read()?),
            };
            let tmpfs = table.iter().any(|m| m.id == top && m.fstype == "tmpfs");
            if tmpfs
                && let Some(info) = self.adoptable(&Dir::reopen(pinned.as_fd(), &path)?, uid)?
            {
                return Ok((
                    info,
                    Some(format!("adopted the existing tmpfs on {}", path.display())),
                ));
            }
            self.detach_top(uid, pinned, &mut stacked)?;
            note = Some(format!(
                "detached a foreign mount on {} (not a 0700 tmpfs of uid {uid})",
                path.display()
            ));
        }
        if !made {
            self.dir.mkdir(&name, 0o700)?;
        }
        let d = self.dir.open_dir(&name, Resolve::STRICT)?;
        let mut opts = TmpfsOptions {
            size: Some(size),
            nr_inodes: Some(inodes),
            mode: 0o700,
            uid,
            gid,
            noswap: policy.noswap && self.kernel_noswap,
            huge: policy.huge.clone(),
            mpol: policy.mpol.clone(),
            nodev: true,
            nosuid: true,
            noexec: false,
        };
        match tmpfs::mount_tmpfs(d.fd(), &path, &opts) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(c) if c == rustix::io::Errno::PERM.raw_os_error() || c == rustix::io::Errno::ACCESS.raw_os_error()) =>
            {
                // Not allowed to mount here (container, LSM): a plain directory, as systemd does.
                d.set_perms(0o700, Some((uid, gid)))?;
                let why =
                    format!("mounting refused ({e}); using a plain 0700 directory without limits");
                return Ok((
                    DirInfo {
                        backend: Backend::FallbackDir,
                        mount_id: None,
                        mount_unique: None,
                        noswap: false,
                    },
                    Some(why),
                ));
            }
            Err(e)
                if opts.noswap
                    && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
            {
                opts.noswap = false;
                tmpfs::mount_tmpfs(d.fd(), &path, &opts)?;
            }
            Err(e) => {
                let _ = self.dir.rmdir(&name);
                return Err(e.into());
            }
        }
        // Verify what we made: the name now leads to a new mount's root, 0700 of uid.
        let (st, ids) = self.made(uid)?;
        if !shows_as_made_for(&st, uid) {
            return Err(DirError::UnsafeRoot {
                path,
                why: "the new mount does not show the expected owner and mode".into(),
            });
        }
        Ok((
            DirInfo {
                backend: Backend::Tmpfs,
                mount_id: NonZeroU64::new(ids.id),
                mount_unique: ids.unique.and_then(NonZeroU64::new),
                noswap: opts.noswap,
            },
            note,
        ))
    }

    /// The tmpfs just mounted at `uid`'s name: its root's type, mode and owner, and its ids.
    /// Its owner may mount over it the moment it exists (fusermount3 lets the owner of a
    /// directory mount on it), so what the name leads to is asked with `AT_STATX_DONT_SYNC`
    /// (no FUSE server is consulted; a FUSE mount that refuses root answers `EACCES`), the
    /// attributes and the unique mount id in one call, and `statmount` says whether that
    /// mount is a tmpfs right on the root's mount (whose reusable id no other live mount
    /// has). Anything mounted over it meanwhile is detached, each pinned with `O_PATH` and
    /// checked again through the pin before it goes. Without unique mount ids (before Linux
    /// 6.8) or `statmount`, the topmost mount is taken as what was made. (Public for tests of
    /// [`Root::create`], which calls it.)
    pub fn made(&self, uid: u32) -> Result<(rustix::fs::Statx, MountIds), DirError> {
        let name = uid.to_string();
        let path = &self.user_path(uid);
        // The common case, nothing over it: two calls, by name.
        let st = rustix::fs::statx(
            self.dir.fd(),
            &name,
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC,
            MADE_MASK,
        );
        let old = || {
            let st = rustix::fs::statx(
                self.dir.fd(),
                &name,
                AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC,
                StatxFlags::empty(),
            );
            st.map(|st| st.stx_mnt_id)
                .map_err(|e| runplane_sys::Error::errno("statx", path.display(), e).into())
        };
        if let Placed::Made(st, ids) = self.placed(st, path, old)? {
            return Ok((st, ids));
        }
        let mut stacked = 0;
        loop {
            let Some((pinned, top)) = self.pin(uid)? else {
                return Err(vanished(path));
            };
            let st = rustix::fs::statx(
                &pinned,
                c"",
                AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
                MADE_MASK,
            );
            match self.placed(st, path, || Ok(top))? {
                Placed::Made(st, ids) => return Ok((st, ids)),
                Placed::Over => self.detach_top(uid, pinned, &mut stacked)?,
                // Unmounted since it was pinned (its owner's own FUSE mount): look again.
                Placed::Gone => self.one_more(uid, &mut stacked)?,
            }
        }
    }

    /// What [`Root::made`] makes of one `statx` (with [`MADE_MASK`]) of the name's topmost
    /// mount; `old` reads the reusable mount id where `statmount` cannot say.
    fn placed(
        &self,
        st: rustix::io::Result<rustix::fs::Statx>,
        path: &Path,
        old: impl FnOnce() -> Result<u64, DirError>,
    ) -> Result<Placed, DirError> {
        let unique = runplane_sys::dir::STATX_MNT_ID_UNIQUE;
        let st = match st {
            Ok(st) if StatxFlags::from_bits_retain(st.stx_mask).contains(MADE_ATTRS) => st,
            Ok(_) => {
                let e = rustix::io::Errno::NOSYS;
                return Err(runplane_sys::Error::errno("statx", path.display(), e).into());
            }
            // A FUSE mount that refuses root: not the tmpfs.
            Err(rustix::io::Errno::ACCESS) => return Ok(Placed::Over),
            Err(rustix::io::Errno::NOENT) => return Err(vanished(path)),
            Err(e) => return Err(runplane_sys::Error::errno("statx", path.display(), e).into()),
        };
        if st.stx_mask & unique == 0 {
            if st.stx_mnt_id == self.mount_id {
                return Err(vanished(path));
            }
            let ids = MountIds {
                id: st.stx_mnt_id,
                unique: None,
            };
            return Ok(Placed::Made(st, ids));
        }
        let id = match runplane_sys::statmount::placement(st.stx_mnt_id, path)? {
            Placement::Of(p) if p.id == self.mount_id => return Err(vanished(path)),
            Placement::Of(p) if p.parent == self.mount_id && p.magic == TMPFS_MAGIC => p.id,
            Placement::Of(_) => return Ok(Placed::Over),
            Placement::Gone => return Ok(Placed::Gone),
            Placement::Unknown => match old()? {
                id if id == self.mount_id => return Err(vanished(path)),
                id => id,
            },
        };
        let ids = MountIds {
            id,
            unique: Some(st.stx_mnt_id),
        };
        Ok(Placed::Made(st, ids))
    }

    /// A mount root is adopted when it is a tmpfs owned by `uid` with mode 0700.
    fn adoptable(&self, d: &Dir, uid: u32) -> Result<Option<DirInfo>, DirError> {
        let fs = rustix::fs::fstatfs(d.fd())
            .map_err(|e| runplane_sys::Error::errno("statfs", d.path().display(), e))?;
        let st = d.stat_self()?;
        if fs.f_type as u64 != TMPFS_MAGIC || st.st_uid != uid || mode_bits(&st) != 0o700 {
            return Ok(None);
        }
        let (_, ids) = runplane_sys::dir::statx_own_mount(d.fd(), d.path())?;
        let noswap = runplane_sys::mountinfo::find(ids.id)?.is_some_and(|m| m.has_option("noswap"));
        Ok(Some(DirInfo {
            backend: Backend::Adopted,
            mount_id: NonZeroU64::new(ids.id),
            mount_unique: ids.unique.and_then(NonZeroU64::new),
            noswap,
        }))
    }

    /// Removes `uid`'s directory: children, lazy unmount (taking nested mounts with it), then
    /// the directory and anything a mount hid. Missing is fine. Nested mounts found on the way
    /// are reported in the result.
    ///
    /// Emptying first frees a tmpfs's memory at once, even while a process still holds it
    /// open after the unmount. When emptying fails (a writer racing it past every pass, a
    /// file the kernel will not unlink), the unmount and the removal go on all the same, so
    /// that nothing of the user's stays mounted: the failure is in [`Removed::not_emptied`].
    ///
    /// `ours` is the mount the dir was made as (its record's): anything mounted over it, or
    /// over a plain directory, is another's and is detached first without a look inside.
    pub fn remove(&self, uid: u32, ours: Option<MountIds>) -> Result<Removed, DirError> {
        let name = uid.to_string();
        let path = self.user_path(uid);
        let mut report = Report::default();
        let mut not_emptied = None;
        let mut stacked = 0;
        let pinned = loop {
            let Some((pinned, top)) = self.pin(uid)? else {
                return Ok(Removed {
                    report,
                    not_emptied,
                });
            };
            // A plain directory, or the mount recorded (by unique id where the kernel has
            // them: the reusable one may have gone to another's mount since).
            if top == self.mount_id
                || ours.map_or(Ok(false), |m| m.is(pinned.as_fd(), &path, top))?
            {
                break pinned;
            }
            self.detach_top(uid, pinned, &mut stacked)?;
            report.mounts_skipped.push(path.clone());
        };
        let st = rustix::fs::fstat(&pinned)
            .map_err(|e| runplane_sys::Error::errno("stat", path.display(), e))?;
        if kind_of(&st) != Kind::Directory {
            self.dir.unlink(&name)?;
            report.files += 1;
            return Ok(Removed {
                report,
                not_emptied,
            });
        }
        {
            // The dir as pinned: a mount the user makes over it meanwhile is not entered.
            let d = Dir::reopen(pinned.as_fd(), &path)?;
            drop(pinned);
            match remove::empty_dir(&d) {
                Ok(r) => report.merge(r),
                Err(e) => not_emptied = Some(e),
            }
        }
        // Unmount until the name is a plain directory again (stacked mounts, if any).
        for _ in 0..MAX_STACKED {
            if !tmpfs::unmount_lazy(&self.dir, &name)? {
                break;
            }
        }
        // A fallback directory may still hold nested mounts: detach each, then remove all.
        for m in report.mounts_skipped.clone() {
            if let (Some(parent), Some(leaf)) = (m.parent(), m.file_name().and_then(|n| n.to_str()))
                && let Ok(rel) = parent.strip_prefix(self.dir.path())
            {
                // Never into a mount made over the way since the walk found it.
                let pd = if rel.as_os_str().is_empty() {
                    self.dir.try_clone()?
                } else {
                    self.dir.open_dir(rel, Resolve::STRICT.no_xdev())?
                };
                let _ = tmpfs::unmount_lazy(&pd, leaf);
            }
        }
        let r = remove::remove_tree(&self.dir, &name)?;
        report.files += r.files;
        report.dirs += r.dirs;
        report.moved += r.moved;
        if let Some(m) = r.mounts_skipped.first() {
            return Err(DirError::UnsafeRoot {
                path: m.clone(),
                why: "a mount inside could not be detached".into(),
            });
        }
        Ok(Removed {
            report,
            not_emptied,
        })
    }

    /// A second handle on the same root (a duplicated fd), for reading usage without the
    /// owner's lock.
    pub fn try_clone(&self) -> Result<Root, DirError> {
        Ok(Root {
            dir: self.dir.try_clone()?,
            mount_id: self.mount_id,
            kernel_noswap: self.kernel_noswap,
        })
    }

    /// Space and inode use of `uid`'s directory (`None` when it does not exist), made as mount
    /// `ours` (`None`: a plain directory).
    pub fn usage(&self, uid: u32, ours: Option<MountIds>) -> Result<Option<Usage>, DirError> {
        Ok(self.status_of(uid, ours, false)?.map(|s| s.usage))
    }

    /// What `uid`'s directory, made as mount `ours` (`None`: a plain directory), shows: its
    /// use and, when `mount` is asked, its mount. `None` when it does not exist. While
    /// another's mount covers it (a user's FUSE mount over its own dir), nothing of it is
    /// read, and it says so.
    pub fn status_of(
        &self,
        uid: u32,
        ours: Option<MountIds>,
        mount: bool,
    ) -> Result<Option<DirStatus>, DirError> {
        let Some((pinned, top)) = self.pin(uid)? else {
            return Ok(None);
        };
        let path = self.user_path(uid);
        let ours = match ours {
            Some(_) if top == self.mount_id => {
                return Ok(Some(DirStatus {
                    unmounted: true,
                    ..DirStatus::default()
                }));
            }
            Some(m) => m.is(pinned.as_fd(), &path, top)?,
            None => top == self.mount_id,
        };
        if !ours {
            return Ok(Some(DirStatus {
                covered: true,
                ..DirStatus::default()
            }));
        }
        let usage = tmpfs::usage(&pinned, &path)?;
        let mount = if mount {
            runplane_sys::statmount::options(pinned.as_fd(), &path)?
        } else {
            None
        };
        Ok(Some(DirStatus {
            usage,
            mount,
            ..DirStatus::default()
        }))
    }

    /// Whether the name of `uid`'s dir leads to the mount `ours` records: one `statx` by
    /// name asking only the unique mount id, with `AT_STATX_DONT_SYNC`, which no filesystem is
    /// asked for (a FUSE mount that refuses root answers `EACCES`: not ours); by the reusable
    /// id where the kernel or the record has no unique one. A quick look, for logins where no
    /// mount events tell of unmounts; [`Root::lost`] decides.
    pub fn on_top(&self, uid: u32, ours: MountIds) -> bool {
        let unique = runplane_sys::dir::STATX_MNT_ID_UNIQUE;
        let Ok(st) = rustix::fs::statx(
            self.dir.fd(),
            uid.to_string(),
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC,
            StatxFlags::from_bits_retain(unique),
        ) else {
            return false;
        };
        match ours.unique {
            // Without the unique id in the mask, the kernel filled in the reusable one.
            Some(u) if st.stx_mask & unique != 0 => st.stx_mnt_id == u,
            _ if st.stx_mask & unique == 0 => st.stx_mnt_id == ours.id,
            // A record without the unique id, on a kernel with one: as asked by the fd.
            _ => self.still_mounted(uid, ours),
        }
    }

    /// Whether `uid`'s tmpfs, recorded as `ours`, is gone from its path: the name leads to
    /// the directory it was mounted on (or to nothing, or to whatever was put there), or to
    /// another's mount while the tmpfs is mounted nowhere. A tmpfs under another's mount (a
    /// user's FUSE mount over its dir) is not gone, nor is anything the path cannot be
    /// read for.
    pub fn lost(&self, uid: u32, ours: MountIds) -> bool {
        let (pinned, top) = match self.pin(uid) {
            Ok(Some(p)) => p,
            Ok(None) => return true,
            Err(_) => return false,
        };
        if top == self.mount_id {
            return true;
        }
        let path = self.user_path(uid);
        if ours.is(pinned.as_fd(), &path, top).unwrap_or(true) {
            return false;
        }
        ours.unique.is_some_and(|u| {
            matches!(
                runplane_sys::statmount::placement(u, &path),
                Ok(Placement::Gone)
            )
        })
    }

    /// Whether `uid`'s directory is still the mount recorded (after a restart), on top.
    pub fn still_mounted(&self, uid: u32, mount: MountIds) -> bool {
        self.mounted_as(uid, mount).is_some()
    }

    /// The ids of `uid`'s directory's mount when it is still the one recorded as `mount`, on
    /// top. A record without the unique id (written before the daemon kept it) names the
    /// mount by its reusable id alone, which the next mount made anywhere gets once the mount
    /// is gone: a mount with that id is taken for it only when `statmount` shows a tmpfs right
    /// on the root's mount (a FUSE mount that refuses root is not), and its unique id comes
    /// back, to be recorded.
    pub fn mounted_as(&self, uid: u32, mount: MountIds) -> Option<MountIds> {
        let (pinned, top) = self.pin(uid).ok()??;
        let path = self.user_path(uid);
        if !mount.is(pinned.as_fd(), &path, top).unwrap_or(false) {
            return None;
        }
        if mount.unique.is_some() {
            return Some(mount);
        }
        let unique = match runplane_sys::dir::unique_mount_id(pinned.as_fd()) {
            Ok(Some(u)) => u,
            Ok(None) => return Some(mount), // no unique ids here (before Linux 6.8)
            Err(_) => return None,
        };
        match runplane_sys::statmount::placement(unique, &path) {
            Ok(Placement::Of(p)) if p.parent == self.mount_id && p.magic == TMPFS_MAGIC => {}
            Ok(Placement::Unknown) => return Some(mount),
            _ => return None,
        }
        // A tmpfs (nothing else is asked of its filesystem): it must show what a dir made or
        // adopted for `uid` shows.
        let st = rustix::fs::statx(
            &pinned,
            c"",
            AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
            StatxFlags::TYPE | StatxFlags::MODE | StatxFlags::UID,
        )
        .ok()?;
        shows_as_made_for(&st, uid).then_some(MountIds {
            id: mount.id,
            unique: Some(unique),
        })
    }
}

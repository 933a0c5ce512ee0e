//! tmpfs mounts, usage through statvfs, lazy unmount.
//!
//! A tmpfs is mounted on a directory the caller holds a fd of, never on a path that could be
//! swapped for a symlink between check and mount. The fast path is one `mount(2)` on `"."`
//! with the calling thread's working directory moved to that fd for the call (see
//! [`mount_tmpfs`]); when that is not possible, one `mount(2)` on the fd's
//! `/proc/self/fd/N` magic link; when `mount(2)` rejects the options, the fd-based mount API
//! (`fsopen`, `fsconfig` per option, `fsmount`, `move_mount` onto the fd), whose per-option
//! errors name what the kernel refused. Needs `CAP_SYS_ADMIN`.

use std::path::Path;

use rustix::fd::{AsFd, BorrowedFd};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags, fsconfig_create,
    fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
};

use crate::dir::{Dir, Resolve};
use crate::error::{Context, Error, Result};

/// Options of a tmpfs mount. `None` leaves the kernel default (for `size` and `nr_inodes`
/// that is half of RAM: always set them for anything a user can write to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsOptions {
    pub size: Option<u64>,
    pub nr_inodes: Option<u64>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `noswap` (Linux >= 6.4): pages are never written to swap.
    pub noswap: bool,
    /// `huge=never|always|within_size|advise`.
    pub huge: Option<String>,
    /// `mpol=default|prefer:N|bind:NL|interleave[:NL]|local`.
    pub mpol: Option<String>,
    pub nodev: bool,
    pub nosuid: bool,
    pub noexec: bool,
}

impl Default for TmpfsOptions {
    fn default() -> Self {
        Self {
            size: None,
            nr_inodes: None,
            mode: 0o755,
            uid: 0,
            gid: 0,
            noswap: false,
            huge: None,
            mpol: None,
            nodev: true,
            nosuid: true,
            noexec: false,
        }
    }
}

impl TmpfsOptions {
    /// The `(key, value)` pairs given to `fsconfig`, in order; a `None` value is a flag.
    /// The same text as mount(8)'s `-o` (joined with `,`), so it can be logged and compared.
    pub fn params(&self) -> Vec<(&'static str, Option<String>)> {
        let mut p = vec![
            ("mode", Some(format!("{:04o}", self.mode & 0o7777))),
            ("uid", Some(self.uid.to_string())),
            ("gid", Some(self.gid.to_string())),
        ];
        if let Some(s) = self.size {
            p.push(("size", Some(s.to_string())));
        }
        if let Some(n) = self.nr_inodes {
            p.push(("nr_inodes", Some(n.to_string())));
        }
        if let Some(h) = &self.huge {
            p.push(("huge", Some(h.clone())));
        }
        if let Some(m) = &self.mpol {
            p.push(("mpol", Some(m.clone())));
        }
        if self.noswap {
            p.push(("noswap", None));
        }
        p
    }

    /// The options as one `-o` string: `mode=0700,uid=1000,gid=1000,size=...,noswap` (the
    /// pairs of [`TmpfsOptions::params`] joined with `,`). Written into one buffer: this is on
    /// the path of every first login.
    pub fn data(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(128);
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "mode={:04o},uid={},gid={}",
            self.mode & 0o7777,
            self.uid,
            self.gid
        );
        if let Some(v) = self.size {
            let _ = write!(s, ",size={v}");
        }
        if let Some(v) = self.nr_inodes {
            let _ = write!(s, ",nr_inodes={v}");
        }
        for (k, v) in [("huge", &self.huge), ("mpol", &self.mpol)] {
            if let Some(v) = v {
                let _ = write!(s, ",{k}={v}");
            }
        }
        if self.noswap {
            s.push_str(",noswap");
        }
        s
    }

    fn attrs(&self) -> MountAttrFlags {
        let mut a = MountAttrFlags::empty();
        if self.nodev {
            a |= MountAttrFlags::MOUNT_ATTR_NODEV;
        }
        if self.nosuid {
            a |= MountAttrFlags::MOUNT_ATTR_NOSUID;
        }
        if self.noexec {
            a |= MountAttrFlags::MOUNT_ATTR_NOEXEC;
        }
        a
    }
}

/// Mounts a tmpfs with `opts` on the directory behind `target` (a directory fd). `what`
/// names the target in errors.
///
/// Fast path: one `mount(2)` on `"."` while the calling thread's working directory is
/// `target` ([`in_dir`]): `"."` is the pinned directory itself, with no lookup that a
/// symlink could redirect. Naming it as `/proc/self/fd/N` instead (systemd's
/// `mount_nofollow`, the fallback when the thread cannot have a working directory of its own)
/// resolves four procfs components, about 6 µs more per mount in a woken server here
/// (BENCHMARKS.md). When `mount(2)` fails for another reason than a refusal (EPERM/EACCES),
/// the mount is redone through `fsopen`/`fsconfig`, whose per-option errors name what the
/// kernel refused (e.g. `noswap` before Linux 6.4: `EINVAL`).
pub fn mount_tmpfs(target: BorrowedFd<'_>, what: &Path, opts: &TmpfsOptions) -> Result<()> {
    let (flags, data) = mount2_args(what, opts)?;
    let mount = || rustix::mount::mount("tmpfs", ".", "tmpfs", flags, Some(data.as_c_str()));
    match in_dir(target, mount) {
        Ok(r) => finish_mount2(r, target, what, opts),
        Err(_) => mount_tmpfs_via_proc(target, what, opts),
    }
}

/// The same with `mount(2)` on the fd's `/proc/self/fd/N` magic link, which resolves to
/// exactly the pinned directory (the fallback of [`mount_tmpfs`]).
pub fn mount_tmpfs_via_proc(
    target: BorrowedFd<'_>,
    what: &Path,
    opts: &TmpfsOptions,
) -> Result<()> {
    let (flags, data) = mount2_args(what, opts)?;
    let magic = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&target));
    let r = rustix::mount::mount(
        "tmpfs",
        magic.as_str(),
        "tmpfs",
        flags,
        Some(data.as_c_str()),
    );
    finish_mount2(r, target, what, opts)
}

fn mount2_args(
    what: &Path,
    opts: &TmpfsOptions,
) -> Result<(rustix::mount::MountFlags, std::ffi::CString)> {
    let data = std::ffi::CString::new(opts.data())
        .map_err(|e| Error::new("mount tmpfs on", what.display(), std::io::Error::other(e)))?;
    let mut flags = rustix::mount::MountFlags::empty();
    if opts.nodev {
        flags |= rustix::mount::MountFlags::NODEV;
    }
    if opts.nosuid {
        flags |= rustix::mount::MountFlags::NOSUID;
    }
    if opts.noexec {
        flags |= rustix::mount::MountFlags::NOEXEC;
    }
    Ok((flags, data))
}

/// A refusal is final; any other failure of `mount(2)` is retried option by option.
fn finish_mount2(
    r: rustix::io::Result<()>,
    target: BorrowedFd<'_>,
    what: &Path,
    opts: &TmpfsOptions,
) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS => {
            Err(Error::errno("mount tmpfs on", what.display(), e))
        }
        Err(_) => mount_tmpfs_fd_api(target, what, opts),
    }
}

thread_local! {
    /// The working directory the thread had when it first called [`in_dir`], once the thread
    /// has a filesystem context (cwd, root, umask) of its own.
    static OWN_CWD: std::cell::OnceCell<rustix::fd::OwnedFd> = const { std::cell::OnceCell::new() };
}

/// Runs `f` with the calling thread's working directory at `dir`, and moves it back after.
///
/// Threads share one working directory unless they unshare it: the first call on a thread
/// gives the thread a filesystem context of its own (`unshare(CLONE_FS)`), so that no other
/// thread of the process sees its working directory move, nor moves it meanwhile. (Threads
/// this thread creates afterwards share its context, and may see `dir` as their working
/// directory while `f` runs; runplane resolves no path against the working directory.)
/// Fails, and `f` is not run, when the thread cannot have a context of its own (a seccomp
/// filter refusing `unshare`) or cannot enter `dir`.
pub fn in_dir<R>(dir: BorrowedFd<'_>, f: impl FnOnce() -> R) -> rustix::io::Result<R> {
    OWN_CWD.with(|cell| {
        let back = match cell.get() {
            Some(fd) => fd,
            None => {
                // SAFETY: CLONE_FS only gives this thread its own copy of the cwd, root and
                // umask; no fd table is unshared, so every fd stays valid on every thread.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }?;
                let here = rustix::fs::open(
                    ".",
                    rustix::fs::OFlags::PATH
                        | rustix::fs::OFlags::DIRECTORY
                        | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )?;
                cell.get_or_init(|| here)
            }
        };
        rustix::process::fchdir(dir)?;
        let r = f();
        // Back where the thread was: an O_PATH fd of a directory is always enterable (even
        // deleted). Were it not, the thread would stay in `dir`, harmless to a program that
        // resolves nothing against its working directory.
        let restored = rustix::process::fchdir(back);
        debug_assert!(restored.is_ok(), "fchdir back failed: {restored:?}");
        Ok(r)
    })
}

/// The same through the fd-based mount API, option by option.
pub fn mount_tmpfs_fd_api(target: BorrowedFd<'_>, what: &Path, opts: &TmpfsOptions) -> Result<()> {
    let fs =
        fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).ctx("create a tmpfs for", what.display())?;
    for (k, v) in opts.params() {
        let r = match &v {
            Some(v) => fsconfig_set_string(&fs, k, v.as_str()),
            None => fsconfig_set_flag(&fs, k),
        };
        r.map_err(|e| {
            Error::errno(
                "set tmpfs option",
                format_args!("{k} for {}", what.display()),
                e,
            )
        })?;
    }
    fsconfig_create(&fs).ctx("create tmpfs superblock for", what.display())?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, opts.attrs())
        .ctx("mount tmpfs on", what.display())?;
    move_mount(
        &mnt,
        c"",
        target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .ctx("mount tmpfs on", what.display())
}

/// Mounts a tmpfs on `parent/name`, which must be a directory reached without symlinks.
pub fn mount_tmpfs_on(parent: &Dir, name: &str, opts: &TmpfsOptions) -> Result<()> {
    let what = parent.path().join(name);
    let target = parent.open_dir(name, Resolve::STRICT)?;
    mount_tmpfs(target.fd(), &what, opts)
}

/// Whether the running kernel's tmpfs accepts `noswap` (asks `fsconfig`, mounts nothing).
pub fn kernel_has_noswap() -> Result<bool> {
    let fs =
        fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).ctx("create a tmpfs for", "a noswap probe")?;
    match fsconfig_set_flag(&fs, "noswap") {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(Error::errno("probe tmpfs option", "noswap", e)),
    }
}

/// Space and inode use of the filesystem behind `fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub bytes_total: u64,
    pub bytes_used: u64,
    pub inodes_total: u64,
    pub inodes_used: u64,
}

/// `fstatvfs(fd)` as byte and inode counts.
pub fn usage(fd: impl AsFd, what: &Path) -> Result<Usage> {
    let s = rustix::fs::fstatvfs(fd).ctx("read usage of", what.display())?;
    Ok(Usage {
        bytes_total: s.f_blocks * s.f_frsize,
        bytes_used: s.f_blocks.saturating_sub(s.f_bfree) * s.f_frsize,
        inodes_total: s.f_files,
        inodes_used: s.f_files.saturating_sub(s.f_ffree),
    })
}

/// Lazily unmounts (`MNT_DETACH`) the mount whose root is `parent/name`, which also drops any
/// mounts below it (FUSE mounts a user made inside). The target is pinned with an `O_PATH`
/// fd and checked to be a mount root before the unmount goes through that fd's magic link, so
/// a path swapped meanwhile cannot make it unmount something else. `Ok(false)` when
/// `parent/name` is not a mount point.
pub fn unmount_lazy(parent: &Dir, name: &str) -> Result<bool> {
    let what = parent.path().join(name);
    let pinned = parent.open_path(name, Resolve::STRICT)?;
    let mine = crate::dir::mount_id(pinned.as_fd(), &what)?;
    if mine == parent.mount_id()? {
        return Ok(false);
    }
    unmount_pinned(pinned.as_fd(), &what)?;
    Ok(true)
}

/// Lazily unmounts the mount whose root `pinned` (an `O_PATH` fd, checked by the caller to be
/// a mount root) is, through the fd's magic link: never through a path. `what` is for messages.
pub fn unmount_pinned(pinned: BorrowedFd<'_>, what: &Path) -> Result<()> {
    let magic = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&pinned));
    rustix::mount::unmount(magic.as_str(), UnmountFlags::DETACH).ctx("unmount", what.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd_of(task: &str) -> std::path::PathBuf {
        std::fs::read_link(format!("/proc/{task}/cwd")).unwrap()
    }

    #[test]
    fn in_dir_moves_only_this_threads_cwd_and_moves_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let a = std::fs::canonicalize(tmp.path()).unwrap().join("a");
        std::fs::create_dir(&a).unwrap();
        let dir = std::fs::File::open(&a).unwrap();
        let spawner = format!("self/task/{}", rustix::thread::gettid().as_raw_nonzero());
        let before = cwd_of(&spawner);
        let a2 = a.clone();
        std::thread::spawn(move || {
            let mine = cwd_of("thread-self");
            for _ in 0..2 {
                // Inside: this thread is in `a`; the thread that spawned it is not.
                let (inside, other) =
                    in_dir(dir.as_fd(), || (cwd_of("thread-self"), cwd_of(&spawner))).unwrap();
                assert_eq!(inside, a2);
                assert_eq!(other, before);
                assert_eq!(cwd_of("thread-self"), mine, "moved back");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn in_dir_into_something_not_a_directory_fails_without_running() {
        let f = tempfile::tempfile().unwrap();
        let mut ran = false;
        let e = std::thread::scope(|s| {
            s.spawn(|| in_dir(f.as_fd(), || ran = true).unwrap_err())
                .join()
                .unwrap()
        });
        assert_eq!(e, rustix::io::Errno::NOTDIR);
        assert!(!ran);
    }

    #[test]
    fn data_string_lists_options_in_mount8_form() {
        let o = TmpfsOptions {
            size: Some(1 << 20),
            nr_inodes: Some(64),
            mode: 0o700,
            uid: 1000,
            gid: 100,
            noswap: true,
            huge: Some("within_size".into()),
            mpol: None,
            ..Default::default()
        };
        assert_eq!(
            o.data(),
            "mode=0700,uid=1000,gid=100,size=1048576,nr_inodes=64,huge=within_size,noswap"
        );
        assert_eq!(TmpfsOptions::default().data(), "mode=0755,uid=0,gid=0");
    }

    #[test]
    fn data_string_is_the_params_joined() {
        let all = TmpfsOptions {
            size: Some(4096),
            nr_inodes: Some(1),
            mode: 0o1777,
            uid: u32::MAX,
            gid: 0,
            noswap: true,
            huge: Some("always".into()),
            mpol: Some("bind:0".into()),
            ..Default::default()
        };
        for o in [TmpfsOptions::default(), all] {
            let joined = o
                .params()
                .into_iter()
                .map(|(k, v)| v.map_or_else(|| k.to_owned(), |v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(o.data(), joined);
        }
    }
}

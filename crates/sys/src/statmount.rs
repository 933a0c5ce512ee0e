//! One mount's options by `statmount(2)` (Linux >= 6.11 for the options), without reading the
//! whole of `/proc/self/mountinfo`.
//!
//! mountinfo is the only older way to learn a mount's options, and it lists every mount: with
//! 10,000 users logged in, 10,000 lines for one user's `runplane status`. `statmount` asks
//! for one mount by its unique id (`statx` `STATX_MNT_ID_UNIQUE`, Linux >= 6.8) and answers
//! in one call. [`options`] writes the answer in mountinfo's form, per-mount options then
//! per-superblock ones (`rw,nosuid,nodev,relatime,rw,size=1024k,...`), exactly as
//! [`crate::mountinfo`] reads them, so that both sources show the same text (a test compares
//! them for mounts with every flag). [`placement`] says where a mount sits (its parent) and
//! what its filesystem is, from the mount tree alone: how a new user dir is told from a mount
//! its owner made over it before anything of either is read.

use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{self, AtFlags, StatxFlags};
use rustix::io::Errno;

use crate::dir::STATX_MNT_ID_UNIQUE;
use crate::error::{Context, Error, Result};

/// `__NR_statmount` (the same on every architecture: a syscall added after the unification).
const NR_STATMOUNT: libc::c_long = 457;
const STATMOUNT_SB_BASIC: u64 = 0x1;
const STATMOUNT_MNT_BASIC: u64 = 0x2;
const STATMOUNT_MNT_OPTS: u64 = 0x80;
/// `MNT_ID_REQ_SIZE_VER0`.
const MNT_ID_REQ_SIZE_VER0: u32 = 24;

/// `struct mnt_id_req`, version 0.
#[repr(C)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
}

/// The fixed part of `struct statmount` (linux/mount.h), up to the fields read here; the
/// kernel writes the whole struct (`size` says how much), strings after it at `str`.
#[repr(C)]
#[derive(Clone, Copy)]
struct StatmountHead {
    size: u32,
    mnt_opts: u32,
    mask: u64,
    sb_dev_major: u32,
    sb_dev_minor: u32,
    sb_magic: u64,
    sb_flags: u32,
    fs_type: u32,
    mnt_id: u64,
    mnt_parent_id: u64,
    mnt_id_old: u32,
    mnt_parent_id_old: u32,
    mnt_attr: u64,
}

/// Bytes before `str` in `struct statmount`: the fields above, then up to `mnt_ns_id` and
/// `__spare2[49]` (0x200 in every kernel that has `mnt_opts`).
const STR_OFFSET: usize = 0x200;

// MOUNT_ATTR_* as statmount reports them.
const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;
const ATTR_ATIME_MASK: u64 = 0x70;
const ATTR_RELATIME: u64 = 0x00;
const ATTR_NOATIME: u64 = 0x10;
const ATTR_NODIRATIME: u64 = 0x80;
const ATTR_IDMAP: u64 = 0x0010_0000;
const ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;
// SB_* as statmount reports them.
const SB_RDONLY: u64 = 1;
const SB_SYNCHRONOUS: u64 = 16;
const SB_DIRSYNC: u64 = 128;
const SB_LAZYTIME: u64 = 1 << 25;

/// A mount as `statmount` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The id mountinfo and `STATX_MNT_ID` show (reused after the mount is gone).
    pub id: u64,
    /// Per-mount options then per-superblock ones, as in mountinfo: `rw,nosuid,nodev,
    /// relatime,rw,size=1024k,nr_inodes=64,mode=700,uid=1000,gid=1000,inode64`.
    pub options: String,
}

/// The mount whose root or member `fd` is, by `statmount`. `Ok(None)` when this kernel cannot
/// say (before Linux 6.8 no unique mount ids, before 6.11 no options, or `statmount` filtered
/// by seccomp), and for a mount whose filesystem shows no options of its own (statmount then
/// reports none, as before 6.11): the caller reads mountinfo instead.
pub fn options(fd: BorrowedFd<'_>, what: &Path) -> Result<Option<Mount>> {
    let want = StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE);
    let stx = fs::statx(fd, c"", AtFlags::EMPTY_PATH, want).ctx("statx", what.display())?;
    if stx.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Ok(None);
    }
    let req = MntIdReq {
        size: MNT_ID_REQ_SIZE_VER0,
        spare: 0,
        mnt_id: stx.stx_mnt_id,
        param: STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC | STATMOUNT_MNT_OPTS,
    };
    // A tmpfs's options take about 100 bytes; grow for a filesystem with long ones.
    let mut len = 2048;
    let buf = loop {
        let mut buf = vec![0u64; len / 8];
        // SAFETY: `req` is a valid `struct mnt_id_req` of the size it declares, `buf` is
        // writable for `len` bytes and 8-aligned as `struct statmount` needs; the kernel
        // writes at most `len` bytes into it and reads nothing else of ours.
        let r = unsafe {
            libc::syscall(
                NR_STATMOUNT,
                &req as *const MntIdReq,
                buf.as_mut_ptr(),
                len as libc::size_t,
                0 as libc::c_uint,
            )
        };
        if r == 0 {
            break buf;
        }
        match Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        {
            Errno::OVERFLOW if len < 1 << 20 => len *= 4,
            Errno::NOSYS | Errno::PERM => return Ok(None),
            e => return Err(Error::errno("statmount", what.display(), e)),
        }
    };
    // SAFETY: `buf` holds at least `size_of::<StatmountHead>()` initialized bytes (it was
    // zeroed, then written by the kernel), is 8-aligned, and every bit pattern is a valid
    // `StatmountHead` (integers only).
    let head = unsafe { *buf.as_ptr().cast::<StatmountHead>() };
    let needed = STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC | STATMOUNT_MNT_OPTS;
    if head.mask & needed != needed {
        // A kernel with statmount but without options (6.8-6.10), or a filesystem with no
        // options of its own to show.
        return Ok(None);
    }
    // SAFETY: the same `len` initialized bytes of `buf`, seen as bytes (u8 has no alignment
    // and every bit pattern is valid); `buf` outlives the slice.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    let end = (head.size as usize).min(bytes.len());
    let fs_opts = string_at(&bytes[..end], head.mnt_opts as usize);
    Ok(Some(Mount {
        id: u64::from(head.mnt_id_old),
        options: mountinfo_form(head.mnt_attr, u64::from(head.sb_flags), fs_opts),
    }))
}

/// Where a mount sits and what it is, as `statmount(2)` says without asking its filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Its reusable id (mountinfo's, `STATX_MNT_ID`).
    pub id: u64,
    /// The reusable id of the mount it is mounted on.
    pub parent: u64,
    /// `f_type` of its filesystem (`TMPFS_MAGIC`, ...).
    pub magic: u64,
}

/// What [`placement`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Of(Placed),
    /// No such mount in this namespace's tree (unmounted, or detached and held only by an fd).
    Gone,
    /// The kernel has no `statmount` (before Linux 6.8, or filtered by seccomp).
    Unknown,
}

/// Where the mount whose unique id (`STATX_MNT_ID_UNIQUE`) is `unique` sits: one call, which
/// reads the kernel's mount tree and asks the filesystem nothing.
pub fn placement(unique: u64, what: &Path) -> Result<Placement> {
    let req = MntIdReq {
        size: MNT_ID_REQ_SIZE_VER0,
        spare: 0,
        mnt_id: unique,
        param: STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC,
    };
    // The fixed part of `struct statmount` and then some: no strings are asked for.
    let mut buf = [0u64; STR_OFFSET / 8 + 16];
    // SAFETY: `req` is a valid `struct mnt_id_req` of the size it declares, `buf` is
    // writable for its whole size and 8-aligned as `struct statmount` needs; the kernel
    // writes at most that many bytes into it and reads nothing else of ours.
    let r = unsafe {
        libc::syscall(
            NR_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            std::mem::size_of_val(&buf) as libc::size_t,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return match Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ) {
            Errno::NOSYS | Errno::PERM => Ok(Placement::Unknown),
            Errno::NOENT => Ok(Placement::Gone),
            e => Err(Error::errno("statmount", what.display(), e)),
        };
    }
    // SAFETY: `buf` is larger than `StatmountHead`, zeroed then written by the kernel,
    // 8-aligned, and every bit pattern is a valid `StatmountHead` (integers only).
    let head = unsafe { *buf.as_ptr().cast::<StatmountHead>() };
    let needed = STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC;
    if head.mask & needed != needed {
        return Err(Error::errno("statmount", what.display(), Errno::NOSYS));
    }
    Ok(Placement::Of(Placed {
        id: u64::from(head.mnt_id_old),
        parent: u64::from(head.mnt_parent_id_old),
        magic: head.sb_magic,
    }))
}

/// The NUL-terminated string at `off` after `str`; empty when out of range.
fn string_at(bytes: &[u8], off: usize) -> &str {
    let Some(s) = bytes.get(STR_OFFSET + off..) else {
        return "";
    };
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    std::str::from_utf8(s).unwrap_or("")
}

/// mountinfo's options fields (proc(5): fields 6 and 11, joined with `,`) from what statmount
/// reports, in the order the kernel's show_mountinfo writes them.
fn mountinfo_form(attr: u64, sb_flags: u64, fs_opts: &str) -> String {
    // Each flag set in `value` of `flags`, in their order.
    fn push_set(s: &mut String, value: u64, flags: &[(u64, &str)]) {
        for &(bit, name) in flags {
            if value & bit != 0 {
                s.push_str(name);
            }
        }
    }
    let mut s = String::with_capacity(64 + fs_opts.len());
    s.push_str(if attr & ATTR_RDONLY != 0 { "ro" } else { "rw" });
    let nosuid = [
        (ATTR_NOSUID, ",nosuid"),
        (ATTR_NODEV, ",nodev"),
        (ATTR_NOEXEC, ",noexec"),
    ];
    push_set(&mut s, attr, &nosuid);
    if attr & ATTR_ATIME_MASK == ATTR_NOATIME {
        s.push_str(",noatime");
    }
    push_set(&mut s, attr, &[(ATTR_NODIRATIME, ",nodiratime")]);
    if attr & ATTR_ATIME_MASK == ATTR_RELATIME {
        s.push_str(",relatime");
    }
    let rest = [
        (ATTR_NOSYMFOLLOW, ",nosymfollow"),
        (ATTR_IDMAP, ",idmapped"),
    ];
    push_set(&mut s, attr, &rest);
    s.push_str(if sb_flags & SB_RDONLY != 0 {
        ",ro"
    } else {
        ",rw"
    });
    let sb = [
        (SB_SYNCHRONOUS, ",sync"),
        (SB_DIRSYNC, ",dirsync"),
        (SB_LAZYTIME, ",lazytime"),
    ];
    push_set(&mut s, sb_flags, &sb);
    if !fs_opts.is_empty() {
        s.push(',');
        s.push_str(fs_opts);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_part_is_laid_out_as_linux_mount_h() {
        assert_eq!(
            std::mem::size_of::<MntIdReq>(),
            MNT_ID_REQ_SIZE_VER0 as usize
        );
        assert_eq!(std::mem::offset_of!(StatmountHead, mnt_attr), 0x40);
        assert_eq!(std::mem::offset_of!(StatmountHead, mnt_id_old), 0x38);
    }

    #[test]
    fn options_are_written_in_mountinfo_order() {
        assert_eq!(
            mountinfo_form(ATTR_NOSUID | ATTR_NODEV, 0, "size=1024k,mode=700"),
            "rw,nosuid,nodev,relatime,rw,size=1024k,mode=700"
        );
        assert_eq!(
            mountinfo_form(
                ATTR_RDONLY | ATTR_NOEXEC | ATTR_NOATIME | ATTR_NODIRATIME | ATTR_NOSYMFOLLOW,
                SB_RDONLY | SB_SYNCHRONOUS | SB_DIRSYNC | SB_LAZYTIME,
                ""
            ),
            "ro,noexec,noatime,nodiratime,nosymfollow,ro,sync,dirsync,lazytime"
        );
        // strictatime shows nothing.
        assert_eq!(mountinfo_form(0x20, 0, ""), "rw,rw");
    }
}

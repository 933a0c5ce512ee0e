//! Mount notifications: fanotify's mount events (Linux >= 6.15), which name each mount that
//! leaves the mount tree of a namespace by its unique id.
//!
//! Before them, the only way to learn that a mount went away was to poll: re-read
//! `/proc/self/mountinfo` (every mount, each time) or `poll(2)` it for `POLLPRI` and then
//! re-read it all. A fanotify group made with `FAN_REPORT_MNT` and marked on a mount
//! namespace (`FAN_MARK_MNTNS`, by an nsfs fd such as `/proc/self/ns/mnt`) is told of every
//! mount detached from that namespace (`FAN_MNT_DETACH`), unmounted or moved, with the id
//! `statx(STATX_MNT_ID_UNIQUE)` showed for it, which the kernel never gives another mount
//! during the boot. [`MountWatch`] asks for detaches only: a login's new mount makes no event,
//! and an idle machine none at all.
//!
//! The group's queue is bounded (16,384 events): past it the kernel drops events and queues
//! one overflow instead, which [`MountWatch::read`] reports as [`MountEvent::Lost`], so that
//! the caller looks at what it watches itself. Both calls need `CAP_SYS_ADMIN` (in the user
//! namespace owning the mount namespace, since Linux 6.16).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

use crate::error::{Error, Result};

// linux/fanotify.h
const FAN_CLOEXEC: libc::c_uint = 0x1;
const FAN_NONBLOCK: libc::c_uint = 0x2;
const FAN_CLASS_NOTIF: libc::c_uint = 0x0;
const FAN_REPORT_MNT: libc::c_uint = 0x4000;
const FAN_MARK_ADD: libc::c_uint = 0x1;
const FAN_MARK_MNTNS: libc::c_uint = 0x110;
/// A mount was detached (unmounted, or moved away: a move reports ATTACH | DETACH).
const FAN_MNT_DETACH: u64 = 0x0200_0000;
const FAN_Q_OVERFLOW: u64 = 0x4000;
const FANOTIFY_METADATA_VERSION: u8 = 3;
const FAN_EVENT_INFO_TYPE_MNT: u8 = 7;

/// `struct fanotify_event_metadata`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Metadata {
    event_len: u32,
    vers: u8,
    reserved: u8,
    metadata_len: u16,
    mask: u64,
    fd: i32,
    pid: i32,
}

/// `struct fanotify_event_info_mnt`: a `struct fanotify_event_info_header` (type, pad, len),
/// then the mount's unique id.
#[repr(C)]
#[derive(Clone, Copy)]
struct InfoMnt {
    info_type: u8,
    pad: u8,
    len: u16,
    mnt_id: u64,
}

/// What the kernel reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountEvent {
    /// The mount with this unique id (`STATX_MNT_ID_UNIQUE`) left the namespace's tree.
    Detached(u64),
    /// The queue overflowed: some detaches were not reported.
    Lost,
}

/// A fanotify group told of the mounts detached from one mount namespace.
#[derive(Debug)]
pub struct MountWatch {
    fd: OwnedFd,
}

impl MountWatch {
    /// Watches the calling thread's mount namespace (the process's, unless the thread
    /// unshared one of its own) for detached mounts. `Ok(None)` where the kernel has no
    /// mount events (before Linux 6.15 `fanotify_init` refuses `FAN_REPORT_MNT` with
    /// `EINVAL`; without fanotify at all, `ENOSYS`).
    pub fn detaches() -> Result<Option<MountWatch>> {
        let flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_MNT;
        // SAFETY: fanotify_init takes two integers and returns a new fd or -1.
        let raw = unsafe { libc::fanotify_init(flags, libc::O_RDONLY as libc::c_uint) };
        if raw < 0 {
            return match last_errno() {
                Errno::INVAL | Errno::NOSYS => Ok(None),
                e => Err(Error::errno(
                    "create a fanotify group for",
                    "mount events",
                    e,
                )),
            };
        }
        // SAFETY: `raw` is a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ns = rustix::fs::open(
            "/proc/thread-self/ns/mnt",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::errno("open", "/proc/thread-self/ns/mnt", e))?;
        // SAFETY: both fds are open for the duration of the call; a NULL path with
        // FAN_MARK_MNTNS names the namespace of `ns` itself.
        let r = unsafe {
            libc::fanotify_mark(
                fd.as_raw_fd(),
                FAN_MARK_ADD | FAN_MARK_MNTNS,
                FAN_MNT_DETACH,
                ns.as_raw_fd(),
                std::ptr::null(),
            )
        };
        if r < 0 {
            return match last_errno() {
                Errno::INVAL => Ok(None),
                e => Err(Error::errno(
                    "watch for mount events in",
                    "this mount namespace",
                    e,
                )),
            };
        }
        Ok(Some(MountWatch { fd }))
    }

    /// Reads what is queued without blocking, appending it to `out`: [`read`] on this
    /// watch's fd.
    pub fn read(&self, out: &mut Vec<MountEvent>) -> Result<bool> {
        read(self.fd.as_fd(), out)
    }
}

/// Reads what is queued on a [`MountWatch`]'s fd (taken from it with `OwnedFd::from`, to be
/// waited on by an event loop) without blocking, appending it to `out`. Returns whether to
/// read again before waiting: the read filled its buffer (more may be queued) or was
/// interrupted; `EAGAIN` is an empty read.
pub fn read(fd: BorrowedFd<'_>, out: &mut Vec<MountEvent>) -> Result<bool> {
    // 8-aligned, as the metadata's u64 mask needs; an event takes 40 bytes.
    let mut buf = [0u64; 512];
    let len = std::mem::size_of_val(&buf);
    // SAFETY: `buf` is writable for `len` bytes, read() writes at most that many.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len) };
    if n < 0 {
        return match last_errno() {
            Errno::AGAIN => Ok(false),
            // Interrupted before anything was read: what is queued is still there.
            Errno::INTR => Ok(true),
            e => Err(Error::errno("read mount events from", "fanotify", e)),
        };
    }
    let n = n as usize;
    // SAFETY: the first `n` bytes of `buf` were written by the kernel (the rest zeroed);
    // u8 has no alignment and every bit pattern is valid.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
    parse(bytes, out);
    Ok(n + std::mem::size_of::<Metadata>() + std::mem::size_of::<InfoMnt>() > len)
}

impl AsFd for MountWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<MountWatch> for OwnedFd {
    fn from(w: MountWatch) -> OwnedFd {
        w.fd
    }
}

fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The events in one read's bytes. An event of another metadata version, or cut short,
/// ends the parse with [`MountEvent::Lost`] (what it said is not known).
fn parse(mut bytes: &[u8], out: &mut Vec<MountEvent>) {
    let head = std::mem::size_of::<Metadata>();
    while !bytes.is_empty() {
        if bytes.len() < head {
            out.push(MountEvent::Lost);
            return;
        }
        // SAFETY: at least `size_of::<Metadata>()` bytes remain; read_unaligned copes with
        // any alignment and every bit pattern is a valid `Metadata` (integers only).
        let m = unsafe { bytes.as_ptr().cast::<Metadata>().read_unaligned() };
        let len = m.event_len as usize;
        if m.vers != FANOTIFY_METADATA_VERSION || len < head || len > bytes.len() {
            out.push(MountEvent::Lost);
            return;
        }
        if m.fd >= 0 {
            // Mount events carry no fd (FAN_NOFD); one given all the same is closed.
            // SAFETY: an fd the kernel opened for this process with the event, owned by
            // nothing else.
            drop(unsafe { OwnedFd::from_raw_fd(m.fd) });
        }
        if m.mask & FAN_Q_OVERFLOW != 0 {
            out.push(MountEvent::Lost);
        } else if m.mask & FAN_MNT_DETACH != 0 {
            let mut info = &bytes[(m.metadata_len as usize).clamp(head, len)..len];
            let mut found = false;
            while info.len() >= 4 {
                let (kind, ilen) = (info[0], u16::from_ne_bytes([info[2], info[3]]) as usize);
                if ilen < 4 || ilen > info.len() {
                    break;
                }
                if kind == FAN_EVENT_INFO_TYPE_MNT && ilen >= std::mem::size_of::<InfoMnt>() {
                    // SAFETY: `ilen >= size_of::<InfoMnt>()` bytes remain; integers only.
                    let r = unsafe { info.as_ptr().cast::<InfoMnt>().read_unaligned() };
                    out.push(MountEvent::Detached(r.mnt_id));
                    found = true;
                }
                info = &info[ilen..];
            }
            if !found {
                out.push(MountEvent::Lost);
            }
        }
        bytes = &bytes[len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(mask: u64, infos: &[(u8, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, data) in infos {
            body.push(*kind);
            body.push(0);
            body.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            body.extend_from_slice(data);
        }
        let len = (24 + body.len()) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&len.to_ne_bytes());
        e.extend_from_slice(&[FANOTIFY_METADATA_VERSION, 0]);
        e.extend_from_slice(&24u16.to_ne_bytes());
        e.extend_from_slice(&mask.to_ne_bytes());
        e.extend_from_slice(&(-1i32).to_ne_bytes());
        e.extend_from_slice(&0i32.to_ne_bytes());
        e.extend_from_slice(&body);
        e
    }

    fn mnt(id: u64) -> Vec<u8> {
        let mut d = vec![0u8; 4]; // the padding before the u64
        d.extend_from_slice(&id.to_ne_bytes());
        d
    }

    #[test]
    fn the_records_are_laid_out_as_linux_fanotify_h() {
        assert_eq!(std::mem::size_of::<Metadata>(), 24);
        assert_eq!(std::mem::size_of::<InfoMnt>(), 16);
        assert_eq!(std::mem::offset_of!(InfoMnt, mnt_id), 8);
    }

    #[test]
    fn detaches_and_overflows_are_read_and_anything_else_is_skipped() {
        let mut bytes = event(FAN_MNT_DETACH, &[(FAN_EVENT_INFO_TYPE_MNT, &mnt(7 << 32))]);
        // A move: attach and detach in one event.
        bytes.extend(event(
            FAN_MNT_DETACH | 0x0100_0000,
            &[(9, b"abcd"), (FAN_EVENT_INFO_TYPE_MNT, &mnt(42))],
        ));
        bytes.extend(event(0x0100_0000, &[(FAN_EVENT_INFO_TYPE_MNT, &mnt(5))]));
        bytes.extend(event(FAN_Q_OVERFLOW, &[]));
        let mut out = Vec::new();
        parse(&bytes, &mut out);
        assert_eq!(
            out,
            [
                MountEvent::Detached(7 << 32),
                MountEvent::Detached(42),
                MountEvent::Lost
            ]
        );
    }

    #[test]
    fn a_short_or_foreign_event_is_reported_as_lost() {
        let full = event(FAN_MNT_DETACH, &[(FAN_EVENT_INFO_TYPE_MNT, &mnt(3))]);
        for bytes in [
            full[..30].to_vec(),
            full[..10].to_vec(),
            event(FAN_MNT_DETACH, &[]),
            {
                let mut v = full.clone();
                v[4] = 2; // another metadata version
                v
            },
        ] {
            let mut out = Vec::new();
            parse(&bytes, &mut out);
            assert_eq!(out, [MountEvent::Lost], "{bytes:?}");
        }
    }
}

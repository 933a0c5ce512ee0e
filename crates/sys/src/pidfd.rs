//! Process identity that survives pid reuse: pidfds (pidfd_open(2)) and what tells one
//! process from a later one with the same pid.
//!
//! A pid alone names whatever process has that number now. A [`Process`] pins one process
//! with a pidfd and remembers its [`Identity`], so that a pid recorded in a state file can be
//! re-adopted after a restart only if it still names the same process. Where pidfds live on
//! pidfs (Linux >= 6.9, 64-bit) the identity is the pidfd's inode number, which the kernel
//! never hands to another process during the boot and which one `fstat` reads; elsewhere it
//! is the start time (field 22 of proc_pid_stat(5)), which costs an open and a read of
//! `/proc/<pid>/stat`.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use crate::error::{Context, Error, Result};

/// What tells a process from a later one that reuses its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The inode number of the process's pidfds on pidfs: unique for the lifetime of the
    /// system (Linux >= 6.9 on 64-bit architectures).
    PidfsInode(u64),
    /// The start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    StartTime(u64),
}

/// `PID_FS_MAGIC` of linux/magic.h: pidfds live on pidfs.
const PID_FS_MAGIC: u64 = 0x5049_4446;

/// Whether this kernel's pidfds carry a unique inode number, decided once from the first
/// pidfd examined (0 unknown, 1 yes, 2 no).
static PIDFS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn pidfs_inodes(fd: BorrowedFd<'_>) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    match PIDFS.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // 32-bit pidfs inode numbers wrap (they carry a generation in i_generation).
            let yes = cfg!(target_pointer_width = "64")
                && rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type as u64 == PID_FS_MAGIC);
            PIDFS.store(if yes { 1 } else { 2 }, Relaxed);
            yes
        }
    }
}

/// The identity of the process behind `fd` (a pidfd on `pid`), of the kind this kernel
/// offers: its pidfs inode where it has one, else its start time.
fn identity_of(fd: BorrowedFd<'_>, pid: i32) -> Result<Identity> {
    if pidfs_inodes(fd) {
        let st = rustix::fs::fstat(fd).ctx("stat pidfd of", format_args!("pid {pid}"))?;
        Ok(Identity::PidfsInode(st.st_ino))
    } else {
        // Read after the pidfd pins the process: if the pid was reused before pidfd_open,
        // this is the new process's time, which a caller comparing it will reject.
        start_time(pid).map(Identity::StartTime)
    }
}

/// An open pidfd on a live (or recently dead) process.
#[derive(Debug)]
pub struct Process {
    pid: i32,
    identity: Identity,
    fd: OwnedFd,
}

fn pid_of(pid: i32) -> Result<Pid> {
    // Pid::from_raw debug-asserts on negative numbers: check first, since pids come from peers.
    match Pid::from_raw(pid.max(0)) {
        Some(p) if pid > 0 => Ok(p),
        _ => Err(Error::errno(
            "open pidfd for",
            format_args!("pid {pid}"),
            rustix::io::Errno::SRCH,
        )),
    }
}

/// Reads a small /proc file in one `read` where it fits (std's `read_to_string` issues a
/// statx and a series of growing reads; this is on the path of every login).
fn read_proc(path: &str) -> Result<String> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ctx("read", path)?;
    let mut out = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = rustix::io::read(&fd, &mut buf).ctx("read", path)?;
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            break; // /proc files are produced in one go: a short read is the end
        }
    }
    String::from_utf8(out).map_err(|_| Error::errno("parse", path, rustix::io::Errno::INVAL))
}

/// The start time of `pid` in clock ticks since boot, from `/proc/<pid>/stat`.
pub fn start_time(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = read_proc(&path)?;
    parse_start_time(&text).ok_or_else(|| Error::errno("parse", &path, rustix::io::Errno::INVAL))
}

/// Field 22 of a `stat` line. The command name (field 2) may contain spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first; start time is field 22, the 20th after ")".
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`); 0 for the root of the tree.
pub fn parent_of(pid: i32) -> Result<i32> {
    let path = format!("/proc/{pid}/stat");
    let text = read_proc(&path)?;
    text.rfind(')')
        .and_then(|i| text[i + 1..].split_ascii_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::errno("parse", &path, rustix::io::Errno::INVAL))
}

/// The process (thread group) that thread `tid` belongs to: `Tgid` of `/proc/<tid>/status`,
/// which the kernel answers for any thread id, though `/proc` lists only processes.
/// Equal to `tid` for a process's main thread.
pub fn thread_group_of(tid: i32) -> Result<i32> {
    let path = format!("/proc/{tid}/status");
    let text = read_proc(&path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::errno("parse", &path, rustix::io::Errno::INVAL))
}

/// The real uid of `pid`, from `/proc/<pid>/status`.
pub fn uid_of(pid: i32) -> Result<u32> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).ctx("read", &path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::errno("parse", &path, rustix::io::Errno::INVAL))
}

impl Process {
    /// Opens a pidfd on `pid` and records its [`Identity`].
    pub fn open(pid: i32) -> Result<Process> {
        let fd = pidfd(pid)?;
        let identity = identity_of(fd.as_fd(), pid)?;
        Ok(Process { pid, identity, fd })
    }

    /// Opens `pid` only if it still runs and is the process `expected` identifies.
    /// `Ok(None)` when it is gone or the pid now names another process. An identity of the
    /// other kind than this kernel's (a record written by an older runplane) is checked in
    /// its own kind: a start time against `/proc/<pid>/stat`.
    pub fn open_checked(pid: i32, expected: Identity) -> Result<Option<Process>> {
        let gone = |e: &Error| matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENOENT));
        let fd = match pidfd(pid) {
            Ok(fd) => fd,
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let identity = match (identity_of(fd.as_fd(), pid), expected) {
            (Ok(Identity::PidfsInode(_)), Identity::StartTime(_)) => {
                start_time(pid).map(Identity::StartTime)
            }
            (r, _) => r,
        };
        match identity {
            Ok(id) if id == expected && pidfd_alive(fd.as_fd(), pid)? => Ok(Some(Process {
                pid,
                identity: id,
                fd,
            })),
            Ok(_) => Ok(None),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Wraps a pidfd the caller obtained otherwise (e.g. `CLONE_PIDFD`).
    pub fn from_pidfd(pid: i32, fd: OwnedFd) -> Result<Process> {
        let identity = identity_of(fd.as_fd(), pid)?;
        Ok(Process { pid, identity, fd })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What tells this process from a later one with the same pid.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The pidfd: readable (`POLLIN`) once the process has exited.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Whether the process is still running (its pidfd is not yet readable).
    pub fn is_alive(&self) -> Result<bool> {
        pidfd_alive(self.fd(), self.pid)
    }

    /// `pidfd_send_signal`: never reaches a process that merely reuses the pid.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        rustix::process::pidfd_send_signal(&self.fd, sig)
            .ctx("signal", format_args!("pid {}", self.pid))
    }
}

/// A bare pidfd on `pid` (`pidfd_open(2)`), for watching its exit.
pub fn pidfd(pid: i32) -> Result<OwnedFd> {
    rustix::process::pidfd_open(pid_of(pid)?, PidfdFlags::empty())
        .ctx("open pidfd for", format_args!("pid {pid}"))
}

/// Whether the process behind a pidfd is still running.
pub fn pidfd_alive(fd: BorrowedFd<'_>, pid: i32) -> Result<bool> {
    let mut p = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let n = rustix::event::poll(
        &mut p,
        Some(&rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    )
    .ctx("poll pidfd of", format_args!("pid {pid}"))?;
    Ok(n == 0)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit status {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Reaps a child of this process through its pidfd (`waitid(P_PIDFD)`); never `waitpid(-1)`,
/// which would steal other owners' children (tokio's). `block = false` returns `Ok(None)`
/// while it runs.
pub fn wait_child(fd: BorrowedFd<'_>, pid: i32, block: bool) -> Result<Option<ExitStatus>> {
    let mut opts = WaitIdOptions::EXITED;
    if !block {
        opts |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(fd), opts) {
            Ok(Some(st)) => {
                if let Some(sig) = st.terminating_signal() {
                    return Ok(Some(ExitStatus::Signaled(sig)));
                }
                return Ok(st.exit_status().map(ExitStatus::Exited));
            }
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::errno("wait for", format_args!("pid {pid}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_with_hostile_comm() {
        let line = "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 18446744073709551615";
        assert_eq!(parse_start_time(line), Some(123456));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_start_time("1 (x) S 1"), None);
    }

    #[test]
    fn a_thread_names_its_process_and_cannot_be_pinned_as_one() {
        let me = std::process::id() as i32;
        assert_eq!(thread_group_of(me).unwrap(), me);
        let tid = std::thread::spawn(|| rustix::thread::gettid().as_raw_nonzero().get())
            .join()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap();
            let _ = stop_rx.recv();
        });
        let live = rx.recv().unwrap();
        assert_eq!(thread_group_of(live).unwrap(), me);
        assert!(Process::open(live).is_err(), "a thread is not a process");
        drop(stop_tx);
        t.join().unwrap();
        // A thread that has ended is no longer there to name its process.
        assert!(thread_group_of(tid).is_err() || tid == live);
    }

    #[test]
    fn own_process_is_alive_and_identified() {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let p = Process::open(me).unwrap();
        assert!(p.is_alive().unwrap());
        assert_eq!(Process::open(me).unwrap().identity(), p.identity());
        assert!(Process::open_checked(me, p.identity()).unwrap().is_some());
        let other = match p.identity() {
            Identity::PidfsInode(i) => Identity::PidfsInode(i + 1),
            Identity::StartTime(t) => Identity::StartTime(t + 1),
        };
        assert!(Process::open_checked(me, other).unwrap().is_none());
        // A start time (as an older record holds) is checked as a start time on any kernel.
        let started = Identity::StartTime(start_time(me).unwrap());
        let q = Process::open_checked(me, started)
            .unwrap()
            .expect("same process");
        assert_eq!(q.identity(), started);
        let later = Identity::StartTime(start_time(me).unwrap() + 1);
        assert!(Process::open_checked(me, later).unwrap().is_none());
        assert_eq!(uid_of(me).unwrap(), rustix::process::getuid().as_raw());
        let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        assert_eq!(parent_of(me).unwrap(), ppid);
        assert_eq!(parent_of(1).unwrap(), 0);
    }

    #[test]
    fn a_later_process_with_another_pid_has_another_identity() {
        let ids: Vec<Identity> = (0..3)
            .map(|_| {
                let mut c = std::process::Command::new("/bin/true").spawn().unwrap();
                let id = Process::open(c.id() as i32).unwrap().identity();
                c.wait().unwrap();
                id
            })
            .collect();
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
        if rustix::fs::fstatfs(pidfd(std::process::id() as i32).unwrap())
            .is_ok_and(|s| s.f_type as u64 == PID_FS_MAGIC)
        {
            assert!(matches!(ids[0], Identity::PidfsInode(_)), "{ids:?}");
        }
    }

    #[test]
    fn dead_child_is_seen_through_its_pidfd_and_reaped() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let fd =
            rustix::process::pidfd_open(Pid::from_raw(pid).unwrap(), PidfdFlags::empty()).unwrap();
        let before = Process::from_pidfd(pid, fd.try_clone().unwrap()).unwrap();
        let st = wait_child(fd.as_fd(), pid, true).unwrap();
        assert_eq!(st, Some(ExitStatus::Exited(7)));
        assert!(!pidfd_alive(fd.as_fd(), pid).unwrap());
        // Reaped: its pid no longer names it (gone, or some later process).
        assert!(
            Process::open_checked(pid, before.identity())
                .unwrap()
                .is_none()
        );
        // Reaped through the pidfd: std's handle can no longer find it.
        assert_eq!(
            child.try_wait().unwrap_err().raw_os_error(),
            Some(libc::ECHILD)
        );
        for bad in [0, -1, -5, i32::MIN] {
            assert_eq!(
                Process::open(bad).unwrap_err().raw_os_error(),
                Some(libc::ESRCH),
                "{bad}"
            );
            assert!(
                Process::open_checked(bad, Identity::StartTime(1))
                    .unwrap()
                    .is_none()
            );
        }
        let e = Process::open(i32::MAX).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unable to open pidfd for pid 2147483647"),
            "{e}"
        );
    }
}

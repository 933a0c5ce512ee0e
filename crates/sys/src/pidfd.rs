//! Process identity that survives pid reuse: pidfds (pidfd_open(2)) and start times.
//!
//! A pid alone names whatever process has that number now. A [`Process`] pins one process
//! with a pidfd and remembers its start time (field 22 of proc_pid_stat(5), clock ticks since
//! boot), so that a pid recorded in a state file can be re-adopted after a restart only if it
//! still names the same process.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use crate::error::{Context, Error, Result};

/// An open pidfd on a live (or recently dead) process.
#[derive(Debug)]
pub struct Process {
    pid: i32,
    start_time: u64,
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
    /// Opens a pidfd on `pid` and records its start time.
    pub fn open(pid: i32) -> Result<Process> {
        let fd = rustix::process::pidfd_open(pid_of(pid)?, PidfdFlags::empty())
            .ctx("open pidfd for", format_args!("pid {pid}"))?;
        // Read the start time after the pidfd pins the process: if the pid was reused before
        // pidfd_open, we see the new process's time, which a caller comparing it will reject.
        let start_time = start_time(pid)?;
        Ok(Process {
            pid,
            start_time,
            fd,
        })
    }

    /// Opens `pid` only if it is still the process that started at `start_time`.
    /// `Ok(None)` when it is gone or the pid now names another process.
    pub fn open_checked(pid: i32, expected_start: u64) -> Result<Option<Process>> {
        match Process::open(pid) {
            Ok(p) if p.start_time == expected_start && p.is_alive()? => Ok(Some(p)),
            Ok(_) => Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::ENOENT)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Wraps a pidfd the caller obtained otherwise (e.g. `CLONE_PIDFD`).
    pub fn from_pidfd(pid: i32, fd: OwnedFd) -> Result<Process> {
        let start_time = start_time(pid)?;
        Ok(Process {
            pid,
            start_time,
            fd,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn start_time(&self) -> u64 {
        self.start_time
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
    fn own_process_is_alive_and_identified() {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let p = Process::open(me).unwrap();
        assert!(p.is_alive().unwrap());
        assert_eq!(p.start_time(), start_time(me).unwrap());
        assert!(Process::open_checked(me, p.start_time()).unwrap().is_some());
        assert!(
            Process::open_checked(me, p.start_time() + 1)
                .unwrap()
                .is_none()
        );
        assert_eq!(uid_of(me).unwrap(), rustix::process::getuid().as_raw());
        let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        assert_eq!(parent_of(me).unwrap(), ppid);
        assert_eq!(parent_of(1).unwrap(), 0);
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
        let st = wait_child(fd.as_fd(), pid, true).unwrap();
        assert_eq!(st, Some(ExitStatus::Exited(7)));
        assert!(!pidfd_alive(fd.as_fd(), pid).unwrap());
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
            assert!(Process::open_checked(bad, 1).unwrap().is_none());
        }
        let e = Process::open(i32::MAX).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unable to open pidfd for pid 2147483647"),
            "{e}"
        );
    }
}

//! Starting and stopping a real runplaned for end-to-end tests.
#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use runplane_sys::pidfd::ExitStatus;
use runplane_sys::spawn::{Child, Credentials, Spawn};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_runplaned");

pub fn cli() -> PathBuf {
    runplane_testkit::bin("runplane")
}

/// A running daemon; stopped with SIGTERM (and waited for) on drop if still running.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
}

/// Output of a finished process.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn wait_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    matches!(rustix::event::poll(&mut p, Some(&ts)), Ok(n) if n > 0)
}

/// Runs a program to completion (with a 60 s bound), optionally as another user.
pub fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    creds: Option<Credentials>,
) -> Output {
    let (or, ow) = rustix::pipe::pipe().unwrap();
    let (er, ew) = rustix::pipe::pipe().unwrap();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let mut s = Spawn::new(program)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        s = s.env(k, v);
    }
    if let Some(c) = creds {
        s = s.credentials(c);
    }
    let child = s
        .fd(devnull.as_fd(), 0)
        .fd(ow.as_fd(), 1)
        .fd(ew.as_fd(), 2)
        .spawn()
        .unwrap();
    drop((ow, ew));
    // Drain both pipes as data comes; a process still running after 60 s is killed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let mut buf = [0u8; 8192];
    while out_open || err_open {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let _ = child.signal(rustix::process::Signal::KILL);
            let _ = child.wait();
            panic!("{} {args:?} still runs after 60 s", program.display());
        }
        let mut fds = Vec::new();
        if out_open {
            fds.push(rustix::event::PollFd::new(
                &or,
                rustix::event::PollFlags::IN,
            ));
        }
        if err_open {
            fds.push(rustix::event::PollFd::new(
                &er,
                rustix::event::PollFlags::IN,
            ));
        }
        let ts = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: 0,
        };
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        for (fd, open, sink) in [
            (&or, &mut out_open, &mut out),
            (&er, &mut err_open, &mut err),
        ] {
            if !*open || !wait_readable(fd, Duration::ZERO) {
                continue;
            }
            match rustix::io::read(fd, &mut buf) {
                Ok(0) | Err(_) => *open = false,
                Ok(n) => sink.extend_from_slice(&buf[..n]),
            }
        }
    }
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    );
    let status = child.wait().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs the `runplane` CLI.
pub fn runplane(args: &[&str]) -> Output {
    run(&cli(), args, &[], None)
}

impl Daemon {
    /// Starts runplaned with `args` and waits (10 s at most) for its readiness fd.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::try_start(args, env)
            .unwrap_or_else(|(st, log)| panic!("runplaned did not become ready ({st:?}):\n{log}"))
    }

    /// Like `start`, but returns the exit status and log when it does not become ready.
    pub fn try_start(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, (Option<ExitStatus>, String)> {
        Self::try_start_via(&[], args, env)
    }

    /// Starts runplaned with an open-file limit of `nofile` that it cannot lift (as root
    /// without CAP_SYS_RESOURCE): `prlimit` sets it, `setpriv` drops the capability from the
    /// bounding set, and each execs the next, so the daemon keeps the child's pid.
    pub fn start_with_nofile(args: &[&str], nofile: u64) -> Daemon {
        let limit = format!("--nofile={nofile}:{nofile}");
        let via = [
            "/usr/bin/prlimit",
            limit.as_str(),
            "/usr/bin/setpriv",
            "--bounding-set=-sys_resource",
            "--",
        ];
        Self::try_start_via(&via, args, &[])
            .unwrap_or_else(|(st, log)| panic!("runplaned did not become ready ({st:?}):\n{log}"))
    }

    /// Starts runplaned as on a kernel without fanotify mount events (before Linux 6.15),
    /// through `no-mount-events` (runplane-testkit), whose seccomp filter answers
    /// `fanotify_init(FAN_REPORT_MNT)` with `EINVAL` as such a kernel does.
    pub fn start_without_mount_events(args: &[&str]) -> Daemon {
        let helper = runplane_testkit::bin("no-mount-events");
        Self::try_start_via(&[helper.to_str().unwrap()], args, &[])
            .unwrap_or_else(|(st, log)| panic!("runplaned did not become ready ({st:?}):\n{log}"))
    }

    /// `try_start` with the daemon's command line after `via` (programs that exec it).
    fn try_start_via(
        via: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, (Option<ExitStatus>, String)> {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("log");
        let logf = std::fs::File::create(&log).unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut s = match via.split_first() {
            Some((first, rest)) => Spawn::new(first).args(rest).arg(DAEMON),
            None => Spawn::new(DAEMON),
        }
        .args(args)
        .args(["--ready-fd", "3"])
        .env("RUNPLANE_LOG", "debug");
        for (k, v) in env {
            s = s.env(k, v);
        }
        let child = s
            .fd(devnull.as_fd(), 0)
            .fd(logf.as_fd(), 1)
            .fd(logf.as_fd(), 2)
            .fd(w.as_fd(), 3)
            .parent_death_signal(rustix::process::Signal::KILL)
            .spawn()
            .unwrap();
        drop(w);
        let ready = wait_readable(&r, Duration::from_secs(10)) && {
            let mut b = [0u8; 1];
            matches!(rustix::io::read(&r, &mut b), Ok(1)) && b[0] == b'\n'
        };
        if !ready {
            let _ = child.signal(rustix::process::Signal::KILL);
            let st = child.wait().ok();
            return Err((st, std::fs::read_to_string(&log).unwrap_or_default()));
        }
        Ok(Daemon {
            child: Some(child),
            log,
            _logdir: logdir,
        })
    }

    /// Starts runplaned inside a new user namespace that maps uids and gids 0..65536 onto
    /// themselves: root there may chown to any user, but the mount namespace still belongs to
    /// the parent user namespace, so every mount is refused (EPERM), as in a container.
    pub fn start_in_userns(args: &[&str]) -> Daemon {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("log");
        let logf = std::fs::File::create(&log).unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let (go_r, go_w) = rustix::pipe::pipe().unwrap();
        let child = Spawn::new("/usr/bin/unshare")
            .args([
                "--user",
                "--",
                "/bin/sh",
                "-c",
                "read go <&4 && exec 4<&- && exec \"$0\" \"$@\"",
                DAEMON,
            ])
            .args(args)
            .args(["--ready-fd", "3"])
            .env("RUNPLANE_LOG", "debug")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .fd(devnull.as_fd(), 0)
            .fd(logf.as_fd(), 1)
            .fd(logf.as_fd(), 2)
            .fd(w.as_fd(), 3)
            .fd(go_r.as_fd(), 4)
            .parent_death_signal(rustix::process::Signal::KILL)
            .spawn()
            .unwrap();
        drop((w, go_r));
        let pid = child.pid();
        let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|n| n == ours) {
            assert!(
                std::time::Instant::now() < deadline,
                "unshare --user did not happen"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for map in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{map}"), "0 0 65536\n").unwrap();
        }
        rustix::io::write(&go_w, b"go\n").unwrap();
        drop(go_w);
        let ready = wait_readable(&r, Duration::from_secs(10)) && {
            let mut b = [0u8; 1];
            matches!(rustix::io::read(&r, &mut b), Ok(1))
        };
        assert!(
            ready,
            "runplaned in a user namespace did not become ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Daemon {
            child: Some(child),
            log,
            _logdir: logdir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().pid()
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        self.child.as_ref().unwrap().signal(sig).unwrap();
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let c = self.child.take().unwrap();
        c.signal(rustix::process::Signal::TERM).unwrap();
        c.wait().unwrap()
    }

    /// SIGKILL and reap, as a crash would.
    pub fn kill9(mut self) {
        let c = self.child.take().unwrap();
        c.signal(rustix::process::Signal::KILL).unwrap();
        c.wait().unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            let _ = c.signal(rustix::process::Signal::TERM);
            let _ = c.wait();
        }
    }
}

/// Writes a config file in `dir` putting control and state under `dir`.
pub fn config_in(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("runplane.toml");
    std::fs::write(
        &p,
        format!(
            "[daemon]\ncontrol = \"{}\"\nstate = \"{}\"\n{extra}",
            dir.join("ctl/control").display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

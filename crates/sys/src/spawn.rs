//! Spawning a program without forking the caller.
//!
//! `fork()` copies the caller's page tables: from a daemon with 1 GiB touched it costs ~30 ms
//! (activation.md §14), and std's `Command` falls back to fork as soon as `pre_exec`, uid or
//! gid are used. [`Spawn`] instead calls `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`, as
//! glibc's `posix_spawn` does: the child borrows the caller's memory on a separate stack, the
//! caller's thread sleeps until the child has called `execve` (or died), and the cost does not
//! grow with the caller's size. Unlike `posix_spawn`, it also drops credentials with
//! supplementary groups, sets `LISTEN_PID` to the child's own pid (sd_listen_fds(3)), and
//! returns a pidfd.
//!
//! In the child, in this order (the order of systemd's `exec_child` and skalibs' `cspawn`):
//! 1. every signal disposition back to `SIG_DFL` (all signals stay blocked meanwhile, so no
//!    handler of the caller can run on its shared memory);
//! 2. `setsid()` and the parent-death signal, if asked;
//! 3. the chosen fds placed at the chosen numbers (without `FD_CLOEXEC`), everything else from
//!    3 upwards closed (`close_range`); 0, 1 and 2 are inherited unless mapped;
//! 4. `setgroups`, `setresgid`, `setresuid` (in that order), as raw syscalls: glibc's wrappers
//!    would broadcast the change to every thread of the caller, whose memory we share;
//! 5. `chdir` and `umask`, if asked (after the credential drop, so access is checked as the
//!    new user);
//! 6. `LISTEN_PID=<own pid>` written into its preallocated environment slot;
//! 7. the signal mask emptied, then `execve`.
//!
//! Only raw syscalls run in the child: no allocation, no locks, no logging. A failing step
//! records which step and the errno in memory shared with the caller and exits 127; the caller
//! reaps it and returns a [`SpawnError`] naming the program, the step and the errno.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::ptr;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::pidfd::{ExitStatus, wait_child};

/// Credentials for the child: groups, then gid, then uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the kernel's `NGROUPS_MAX` is 65536).
    pub groups: Vec<u32>,
}

/// A program to start, built up like `std::process::Command`.
///
/// The environment starts empty (a daemon should pass what it means to pass); see
/// [`Spawn::inherit_env`].
#[derive(Debug)]
pub struct Spawn<'fd> {
    program: OsString,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    fds: Vec<(BorrowedFd<'fd>, RawFd)>,
    credentials: Option<Credentials>,
    cwd: Option<PathBuf>,
    setsid: bool,
    parent_death_signal: Option<i32>,
    umask: Option<u32>,
    listen_pid: bool,
}

/// A failed spawn: the program, the step of the child setup that failed, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("unable to spawn {program}: {step}: {source}")]
pub struct SpawnError {
    pub program: String,
    pub step: &'static str,
    #[source]
    pub source: std::io::Error,
}

impl SpawnError {
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// A started child. The owner must reap it ([`Child::wait`], or through the pidfd in an event
/// loop and [`crate::pidfd::wait_child`]), or it stays a zombie, as with std.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: OwnedFd,
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's pidfd (readable once it has exited).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    pub fn into_pidfd(self) -> OwnedFd {
        self.pidfd
    }

    /// Waits for the child to exit and reaps it.
    pub fn wait(&self) -> crate::Result<ExitStatus> {
        Ok(wait_child(self.pidfd(), self.pid, true)?.expect("blocking waitid returned no status"))
    }

    /// Reaps the child if it has exited.
    pub fn try_wait(&self) -> crate::Result<Option<ExitStatus>> {
        wait_child(self.pidfd(), self.pid, false)
    }

    /// Sends `sig` through the pidfd.
    pub fn signal(&self, sig: rustix::process::Signal) -> crate::Result<()> {
        rustix::process::pidfd_send_signal(&self.pidfd, sig)
            .map_err(|e| crate::Error::errno("signal", format_args!("pid {}", self.pid), e))
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl<'fd> Spawn<'fd> {
    /// `program` is a path, or a name searched in the `PATH` of the child's environment
    /// (default `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`). `argv[0]` is
    /// `program` as given.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program = program.as_ref().to_owned();
        Spawn {
            argv: vec![program.clone()],
            program,
            env: Vec::new(),
            fds: Vec::new(),
            credentials: None,
            cwd: None,
            setsid: false,
            parent_death_signal: None,
            umask: None,
            listen_pid: false,
        }
    }

    /// Replaces `argv[0]`.
    pub fn arg0(mut self, arg0: impl AsRef<OsStr>) -> Self {
        self.argv[0] = arg0.as_ref().to_owned();
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.argv.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets `key=value`, replacing an earlier value of `key`.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        let key = key.as_ref().to_owned();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.as_ref().to_owned()));
        self
    }

    /// Copies the caller's whole environment (later [`Spawn::env`] calls override it).
    pub fn inherit_env(mut self) -> Self {
        for (k, v) in std::env::vars_os() {
            self = self.env(k, v);
        }
        self
    }

    /// Places `fd` at number `target` in the child, without `FD_CLOEXEC`. Sources and targets
    /// may overlap in any way (`3 -> 4` together with `4 -> 3` works).
    pub fn fd(mut self, fd: BorrowedFd<'fd>, target: RawFd) -> Self {
        self.fds.push((fd, target));
        self
    }

    /// Drops to `uid`/`gid` with exactly these supplementary groups.
    pub fn credentials(mut self, creds: Credentials) -> Self {
        self.credentials = Some(creds);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Starts a new session (the child leads a new process group and has no terminal).
    pub fn setsid(mut self) -> Self {
        self.setsid = true;
        self
    }

    /// `PR_SET_PDEATHSIG`: the child gets `sig` when the *thread* that spawned it exits.
    pub fn parent_death_signal(mut self, sig: rustix::process::Signal) -> Self {
        self.parent_death_signal = Some(sig.as_raw());
        self
    }

    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask & 0o777);
        self
    }

    /// Adds `LISTEN_PID=<the child's own pid>` to the environment (sd_listen_fds(3)).
    pub fn listen_pid(mut self) -> Self {
        self.listen_pid = true;
        self
    }

    fn err(&self, step: &'static str, errno: i32) -> SpawnError {
        SpawnError {
            program: self.program.to_string_lossy().into_owned(),
            step,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    fn resolve_program(&self) -> Result<CString, SpawnError> {
        let p = self.program.as_bytes();
        if p.is_empty() {
            return Err(self.err("find program", libc::ENOENT));
        }
        if p.contains(&b'/') {
            return cstring(&self.program).ok_or_else(|| self.err("find program", libc::EINVAL));
        }
        let path_var = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| DEFAULT_PATH.into());
        let mut last = libc::ENOENT;
        for dir in path_var
            .as_bytes()
            .split(|&b| b == b':')
            .filter(|d| !d.is_empty())
        {
            let mut cand = dir.to_vec();
            cand.push(b'/');
            cand.extend_from_slice(p);
            let cand = OsString::from_vec(cand);
            match rustix::fs::access(Path::new(&cand), rustix::fs::Access::EXEC_OK) {
                Ok(()) if Path::new(&cand).is_file() => {
                    return cstring(&cand).ok_or_else(|| self.err("find program", libc::EINVAL));
                }
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::ACCESS => last = libc::EACCES,
                Err(_) => {}
            }
        }
        Err(self.err("find program in PATH", last))
    }

    /// Starts the child. Returns once it has called `execve` successfully, or with the step
    /// that failed (the failed child is reaped).
    pub fn spawn(&self) -> Result<Child, SpawnError> {
        // Everything the child touches is built here, before clone.
        let path = self.resolve_program()?;
        let argv: Vec<CString> = self
            .argv
            .iter()
            .map(|a| cstring(a).ok_or_else(|| self.err("build argv", libc::EINVAL)))
            .collect::<Result<_, _>>()?;
        let mut env: Vec<CString> = Vec::with_capacity(self.env.len() + 1);
        for (k, v) in &self.env {
            if self.listen_pid && k == "LISTEN_PID" {
                continue; // replaced by the child's own pid
            }
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(self.err("build environment", libc::EINVAL));
            }
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            env.push(cstring(&kv).ok_or_else(|| self.err("build environment", libc::EINVAL))?);
        }
        // "LISTEN_PID=" + up to 10 digits + NUL; the child writes the digits.
        let mut listen_pid_buf = b"LISTEN_PID=\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        if self.listen_pid {
            envp.push(listen_pid_buf.as_ptr().cast());
        }
        envp.push(ptr::null());

        let mut fds: Vec<FdMap> = self
            .fds
            .iter()
            .map(|(src, tgt)| FdMap {
                src: src.as_raw_fd(),
                tgt: *tgt,
                tmp: -1,
            })
            .collect();
        fds.sort_by_key(|m| m.tgt);
        if fds.iter().any(|m| m.tgt < 0) || fds.windows(2).any(|w| w[0].tgt == w[1].tgt) {
            return Err(self.err("place fds (negative or duplicate target)", libc::EINVAL));
        }
        let max_target = fds.last().map(|m| m.tgt).unwrap_or(2).max(2);

        let cwd = match &self.cwd {
            Some(c) => Some(
                cstring(c.as_os_str()).ok_or_else(|| self.err("change directory", libc::EINVAL))?,
            ),
            None => None,
        };
        let groups: Vec<libc::gid_t> = self
            .credentials
            .as_ref()
            .map(|c| c.groups.clone())
            .unwrap_or_default();

        let mut ctx = ChildCtx {
            path: path.as_ptr(),
            argv: argv_ptrs.as_ptr(),
            envp: envp.as_ptr(),
            fds: fds.as_mut_ptr(),
            nfds: fds.len(),
            max_target,
            has_creds: self.credentials.is_some(),
            uid: self.credentials.as_ref().map_or(0, |c| c.uid),
            gid: self.credentials.as_ref().map_or(0, |c| c.gid),
            groups: groups.as_ptr(),
            ngroups: groups.len(),
            cwd: cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            setsid: self.setsid,
            pdeathsig: self.parent_death_signal.unwrap_or(0),
            umask: self.umask.map_or(-1, |m| m as i64),
            listen_pid: if self.listen_pid {
                // SAFETY: offset 11 is within the 23-byte buffer ("LISTEN_PID=" is 11 bytes).
                unsafe { listen_pid_buf.as_mut_ptr().add(11) }
            } else {
                ptr::null_mut()
            },
            err_step: 0,
            err_errno: 0,
        };

        let stack = Stack::new().map_err(|e| self.err("allocate child stack", e))?;
        let (pid, pidfd) = clone_vfork(&mut ctx, &stack).map_err(|e| self.err("clone", e))?;
        drop(stack);
        // SAFETY: the child has exec'd or exited (CLONE_VFORK), so nothing writes ctx anymore.
        let (step, errno) = unsafe {
            (
                ptr::read_volatile(&ctx.err_step),
                ptr::read_volatile(&ctx.err_errno),
            )
        };
        let child = Child { pid, pidfd };
        if step != 0 {
            let _ = child.wait();
            return Err(self.err(STEPS[step as usize], errno));
        }
        Ok(child)
    }
}

fn cstring(s: &OsStr) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

/// Names of the child's steps, indexed by the code it records (0 = success).
const STEPS: [&str; 12] = [
    "",
    "reset signal dispositions",
    "start a new session",
    "set the parent-death signal",
    "duplicate an fd",
    "place an fd",
    "close other fds",
    "set supplementary groups",
    "set gid",
    "set uid",
    "change directory",
    "execute",
];
const STEP_SIGNALS: i32 = 1;
const STEP_SETSID: i32 = 2;
const STEP_PDEATHSIG: i32 = 3;
const STEP_DUP: i32 = 4;
const STEP_PLACE: i32 = 5;
const STEP_CLOSE: i32 = 6;
const STEP_GROUPS: i32 = 7;
const STEP_GID: i32 = 8;
const STEP_UID: i32 = 9;
const STEP_CHDIR: i32 = 10;
const STEP_EXEC: i32 = 11;

#[repr(C)]
struct FdMap {
    src: RawFd,
    tgt: RawFd,
    tmp: RawFd,
}

/// Everything the child reads, prepared by the caller, and where it reports a failure.
#[repr(C)]
struct ChildCtx {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    fds: *mut FdMap,
    nfds: usize,
    max_target: RawFd,
    has_creds: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: *const libc::gid_t,
    ngroups: usize,
    cwd: *const libc::c_char,
    setsid: bool,
    pdeathsig: i32,
    umask: i64,
    listen_pid: *mut u8,
    err_step: i32,
    err_errno: i32,
}

const STACK_SIZE: usize = 256 * 1024;
const GUARD: usize = 4096;

/// The child's stack: an anonymous mapping with a guard page at its low end, so an overflow
/// faults in the child instead of corrupting the caller's heap.
struct Stack {
    base: *mut libc::c_void,
}

impl Stack {
    fn new() -> Result<Stack, i32> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                STACK_SIZE + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(errno());
        }
        // SAFETY: the first page lies within the mapping just created.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
            let e = errno();
            // SAFETY: unmapping exactly the mapping created above.
            unsafe { libc::munmap(base, STACK_SIZE + GUARD) };
            return Err(e);
        }
        Ok(Stack { base })
    }

    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, 16-byte aligned since mmap is page aligned;
        // the stack grows down from here on every architecture Linux/Rust supports here.
        unsafe { self.base.cast::<u8>().add(STACK_SIZE + GUARD).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` and nothing uses it after clone returned.
        unsafe { libc::munmap(self.base, STACK_SIZE + GUARD) };
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Blocks every signal in the calling thread, clones, restores the mask.
fn clone_vfork(ctx: &mut ChildCtx, stack: &Stack) -> Result<(i32, OwnedFd), i32> {
    // SAFETY: sigset_t is plain data; sigfillset initializes it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to initialized sigsets.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let mut pidfd: libc::c_int = -1;
    // SAFETY: `child_main` only reads `ctx` (valid until clone returns, because CLONE_VFORK
    // suspends this thread until the child execs or exits) and makes raw syscalls; the stack is
    // a separate mapping that outlives the child's use of it. CLONE_PIDFD stores the pidfd in
    // `pidfd` (the parent_tid argument).
    let ret = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            (ctx as *mut ChildCtx).cast(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_errno = errno();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    if ret < 0 {
        return Err(clone_errno);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new pidfd (O_CLOEXEC) owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((ret, fd))
}

/// Records a failure for the caller and returns the exit code.
///
/// # Safety
/// `ctx` must be the live context of this spawn.
unsafe fn fail(ctx: *mut ChildCtx, step: i32) -> libc::c_int {
    // SAFETY: errno is this (shared) thread's TLS slot, just set by the failing syscall;
    // ctx is valid per the contract.
    unsafe {
        let e = *libc::__errno_location();
        ptr::write_volatile(&mut (*ctx).err_errno, e);
        ptr::write_volatile(&mut (*ctx).err_step, step);
    }
    127
}

/// The child. Runs on its own stack in the caller's memory, with every signal blocked.
/// Only raw syscalls: see the module docs.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    let ctx = arg.cast::<ChildCtx>();
    // SAFETY: `arg` is the `&mut ChildCtx` passed to clone, alive while the caller sleeps. Every
    // call below is an async-signal-safe syscall wrapper on prepared, NUL-terminated data.
    unsafe {
        let c = &*ctx;
        // 1. Dispositions to default (SIGKILL and SIGSTOP cannot be changed; glibc refuses its
        //    internal 32 and 33, which exec resets anyway).
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() + 1 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, &dfl, ptr::null_mut()) != 0 && sig < 32 {
                return fail(ctx, STEP_SIGNALS);
            }
        }
        // 2. Session and parent-death signal.
        if c.setsid && libc::syscall(libc::SYS_setsid) < 0 {
            return fail(ctx, STEP_SETSID);
        }
        if c.pdeathsig != 0
            && libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_PDEATHSIG,
                c.pdeathsig as libc::c_ulong,
            ) < 0
        {
            return fail(ctx, STEP_PDEATHSIG);
        }
        // 3. fds: copy every source above all targets first, so that no placement can clobber a
        //    source still to be placed; dup3 without O_CLOEXEC then clears the flag on targets.
        let fds = std::slice::from_raw_parts_mut(c.fds, c.nfds);
        for m in fds.iter_mut() {
            let t = libc::syscall(
                libc::SYS_fcntl,
                m.src,
                libc::F_DUPFD_CLOEXEC,
                c.max_target + 1,
            );
            if t < 0 {
                return fail(ctx, STEP_DUP);
            }
            m.tmp = t as RawFd;
        }
        for m in fds.iter() {
            if libc::syscall(libc::SYS_dup3, m.tmp, m.tgt, 0) < 0 {
                return fail(ctx, STEP_PLACE);
            }
        }
        // Close every fd >= 3 that is not a target (fds are sorted by target). This also closes
        // the temporary copies, which all lie above max_target.
        let mut next: libc::c_uint = 3;
        for m in fds.iter() {
            let t = m.tgt as libc::c_uint;
            if t < next {
                continue;
            }
            if t > next && libc::syscall(libc::SYS_close_range, next, t - 1, 0) < 0 {
                return fail(ctx, STEP_CLOSE);
            }
            next = t + 1;
        }
        if libc::syscall(libc::SYS_close_range, next, libc::c_uint::MAX, 0) < 0 {
            return fail(ctx, STEP_CLOSE);
        }
        // 4. Credentials: raw syscalls change only this task (see module docs).
        if c.has_creds {
            if libc::syscall(libc::SYS_setgroups, c.ngroups, c.groups) < 0 {
                return fail(ctx, STEP_GROUPS);
            }
            if libc::syscall(libc::SYS_setresgid, c.gid, c.gid, c.gid) < 0 {
                return fail(ctx, STEP_GID);
            }
            if libc::syscall(libc::SYS_setresuid, c.uid, c.uid, c.uid) < 0 {
                return fail(ctx, STEP_UID);
            }
        }
        // 5. Working directory and umask.
        if !c.cwd.is_null() && libc::syscall(libc::SYS_chdir, c.cwd) < 0 {
            return fail(ctx, STEP_CHDIR);
        }
        if c.umask >= 0 {
            libc::syscall(libc::SYS_umask, c.umask as libc::c_uint);
        }
        // 6. LISTEN_PID: the digits of our own pid, written without allocating.
        if !c.listen_pid.is_null() {
            let mut pid = libc::syscall(libc::SYS_getpid) as u64;
            let mut digits = [0u8; 10];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for i in 0..n {
                *c.listen_pid.add(i) = digits[n - 1 - i];
            }
            *c.listen_pid.add(n) = 0;
        }
        // 7. Empty signal mask (kernel sigset: 8 bytes), then exec.
        let empty: u64 = 0;
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            ptr::null_mut::<u64>(),
            8usize,
        );
        libc::syscall(libc::SYS_execve, c.path, c.argv, c.envp);
        fail(ctx, STEP_EXEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::Signal;

    fn output_of(s: Spawn<'_>) -> (String, ExitStatus) {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let child = s.fd(w.as_fd(), 1).spawn().unwrap();
        drop(w);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = rustix::io::read(&r, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let st = child.wait().unwrap();
        (String::from_utf8(out).unwrap(), st)
    }

    #[test]
    fn runs_with_exact_args_env_and_exit_status() {
        let s = Spawn::new("sh")
            .args([
                "-c",
                "echo \"$0|$1|$FOO|${HOME-unset}\"; exit 3",
                "zero",
                "one",
            ])
            .env("FOO", "bar");
        let (out, st) = output_of(s);
        assert_eq!(out, "zero|one|bar|unset\n");
        assert_eq!(st, ExitStatus::Exited(3));
    }

    #[test]
    fn places_fds_at_chosen_numbers_with_crossed_mappings_and_closes_the_rest() {
        let (r1, w1) = rustix::pipe::pipe().unwrap();
        let (r2, w2) = rustix::pipe::pipe().unwrap();
        // A parent fd without CLOEXEC must not leak.
        let leak = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        rustix::io::fcntl_setfd(&leak, rustix::io::FdFlags::empty()).unwrap();
        let s = Spawn::new("/bin/sh")
            .args([
                "-c",
                "echo a >&3; echo b >&4; ls /proc/self/fd | sort -n | tr '\\n' ' '",
            ])
            .fd(w1.as_fd(), 4)
            .fd(w2.as_fd(), 3);
        let (out, st) = output_of(s);
        assert!(st.success());
        // 0 1 2 3 4 and the fd ls opened for the listing (which is 5, the lowest free one).
        assert_eq!(out, "0 1 2 3 4 5 ", "fd {} leaked?", leak.as_raw_fd());
        drop((w1, w2));
        let read_all = |r: &OwnedFd| {
            let mut b = [0u8; 16];
            let n = rustix::io::read(r, &mut b).unwrap();
            String::from_utf8_lossy(&b[..n]).into_owned()
        };
        assert_eq!(read_all(&r2), "a\n");
        assert_eq!(read_all(&r1), "b\n");
    }

    #[test]
    fn source_equal_to_target_loses_cloexec() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let n = w.as_raw_fd();
        // bash: dash cannot redirect to fds above 9.
        let s = Spawn::new("/bin/bash")
            .args(["-c", &format!("echo hi >&{n}")])
            .fd(w.as_fd(), n);
        let child = s.spawn().unwrap();
        drop(w);
        assert!(child.wait().unwrap().success());
        let mut b = [0u8; 8];
        assert_eq!(rustix::io::read(&r, &mut b).unwrap(), 3);
    }

    #[test]
    fn signal_mask_and_dispositions_are_reset() {
        // Block and ignore signals in this thread: the child must not inherit either.
        // SAFETY: test-only; plain libc calls on local sigsets; SIGUSR2 ignore is process-wide and
        // restored at the end.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
        }
        let (out, st) = output_of(
            Spawn::new("/bin/sh").args(["-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"]),
        );
        // SAFETY: test-only; undo the changes above.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
            libc::signal(libc::SIGUSR2, libc::SIG_DFL);
        }
        assert!(st.success());
        let blk = out.lines().find(|l| l.starts_with("SigBlk")).unwrap();
        assert!(blk.ends_with("0000000000000000"), "{out}");
        // SIGUSR2 (12) ignored would show as bit 11 (0x800); sh itself ignores nothing here.
        let ign = out.lines().find(|l| l.starts_with("SigIgn")).unwrap();
        let bits = u64::from_str_radix(ign.split_ascii_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(bits & (1 << (libc::SIGUSR2 - 1)), 0, "{out}");
    }

    #[test]
    fn listen_pid_is_the_childs_own_pid() {
        let s = Spawn::new("/bin/sh")
            .args(["-c", "echo $LISTEN_PID $$"])
            .env("LISTEN_PID", "1")
            .listen_pid();
        let (out, st) = output_of(s);
        assert!(st.success());
        let v: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(v.len(), 2, "{out}");
        assert_eq!(v[0], v[1]);
    }

    #[test]
    fn exec_failure_names_program_and_step() {
        let e = Spawn::new("/nonexistent/prog").spawn().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(
            e.to_string(),
            "unable to spawn /nonexistent/prog: execute: No such file or directory (os error 2)"
        );
        let e = Spawn::new("no-such-program-anywhere").spawn().unwrap_err();
        assert_eq!(e.step, "find program in PATH");
        let e = Spawn::new("/bin/true")
            .current_dir("/nonexistent")
            .spawn()
            .unwrap_err();
        assert_eq!(
            (e.step, e.raw_os_error()),
            ("change directory", Some(libc::ENOENT))
        );
        let (_r, w) = rustix::pipe::pipe().unwrap();
        let e = Spawn::new("/bin/true")
            .fd(w.as_fd(), 3)
            .fd(w.as_fd(), 3)
            .spawn()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn drops_credentials_with_groups_when_root() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skip: needs root (setresuid to another user)");
            return;
        }
        let s = Spawn::new("/bin/sh")
            .args(["-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status"])
            .credentials(Credentials {
                uid: 65534,
                gid: 65533,
                groups: vec![4242, 4343],
            });
        let (out, st) = output_of(s);
        assert!(st.success(), "{out}");
        let field = |k: &str| {
            out.lines()
                .find(|l| l.starts_with(k))
                .unwrap()
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(field("Uid:"), "65534 65534 65534 65534");
        assert_eq!(field("Gid:"), "65533 65533 65533 65533");
        assert_eq!(field("Groups:"), "4242 4343");
        // The caller's own credentials are untouched (raw syscalls, not glibc's broadcast).
        assert!(rustix::process::geteuid().is_root());
        assert_eq!(rustix::process::getgid().as_raw(), 0);
        let me = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert!(
            me.lines().any(|l| l.starts_with("Uid:\t0\t0\t0\t0")),
            "{me}"
        );
    }

    #[test]
    fn setsid_and_signal_through_pidfd() {
        let s = Spawn::new("/bin/sh")
            .args(["-c", "echo $$; exec sleep 30"])
            .setsid();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let child = s.fd(w.as_fd(), 1).spawn().unwrap();
        drop(w);
        let mut b = [0u8; 32];
        let n = rustix::io::read(&r, &mut b).unwrap();
        let pid: i32 = std::str::from_utf8(&b[..n])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, child.pid());
        // A new session: its sid is its own pid.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let sid: i32 = after.split(' ').nth(3).unwrap().parse().unwrap();
        assert_eq!(sid, pid);
        assert_eq!(child.try_wait().unwrap(), None);
        child.signal(Signal::TERM).unwrap();
        assert_eq!(child.wait().unwrap(), ExitStatus::Signaled(libc::SIGTERM));
    }
}

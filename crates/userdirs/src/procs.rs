//! Processes of a uid, and other managers of `/run/user`, from `/proc`.
//!
//! Processes are matched by **real** uid (`Uid:` field 1 of proc_pid_status(5)): a user's
//! tmux, nohup job or agent keeps it; a setuid program the user started keeps it too, a root
//! daemon serving the user does not.

use std::path::Path;

/// The real uid in a `status` text.
pub fn parse_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether a `status` text belongs to a kernel thread (no user memory: `VmSize` is absent).
fn is_kernel_thread(status: &str) -> bool {
    status.lines().any(|l| l.starts_with("Kthread:\t1"))
        || !status.lines().any(|l| l.starts_with("VmSize:"))
}

/// What a scan of `/proc` for one uid's processes found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Pids of live user-space processes of the uid, ascending.
    pub pids: Vec<i32>,
    /// Whether an empty `pids` means none: `false` when `/proc` could not be listed.
    pub settled: bool,
}

impl Scan {
    /// Whether the uid may still have processes: some were found, or the scan could not say.
    pub fn any(&self) -> bool {
        !self.pids.is_empty() || !self.settled
    }
}

/// How often [`pids_of`] lists `/proc`, at most.
pub const MAX_ROUNDS: usize = 8;

/// What one pid's status says, as far as a scan for `uid` cares.
enum Seen {
    /// A live user-space process of `uid`.
    Live,
    /// Of `uid` and exited (a zombie, or exiting), or exited before its status could be read:
    /// it may have started another process after the listing that showed it.
    MayHaveForked,
    /// Anything else: another uid, a kernel thread.
    Other,
}

fn look(proc_root: &Path, pid: i32, uid: u32) -> Seen {
    let Ok(status) = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")) else {
        return Seen::MayHaveForked;
    };
    if parse_real_uid(&status) != Some(uid) {
        return Seen::Other;
    }
    if status.contains("State:\tZ") || status.contains("State:\tX") || is_kernel_thread(&status) {
        // A zombie, or exiting (its memory is gone already); uid 0 also has kernel threads.
        return Seen::MayHaveForked;
    }
    Seen::Live
}

fn list(proc_root: &Path) -> Option<Vec<i32>> {
    let rd = std::fs::read_dir(proc_root).ok()?;
    Some(
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .collect(),
    )
}

/// The pid the kernel handed out last in this pid namespace (`/proc/loadavg`'s last field):
/// pids are handed out in increasing order, wrapping at `pid_max`.
fn last_pid(proc_root: &Path) -> Option<i32> {
    std::fs::read_to_string(proc_root.join("loadavg"))
        .ok()?
        .split_ascii_whitespace()
        .nth(4)?
        .parse()
        .ok()
}

/// Whether `pid` was handed out after `before` and up to `now` (`before < now`, or wrapped).
fn handed_out_between(pid: i32, before: i32, now: i32) -> bool {
    if before <= now {
        before < pid && pid <= now
    } else {
        pid > before || pid <= now
    }
}

/// The live user-space processes whose real uid is `uid`, under `proc_root` (normally
/// `/proc`). Processes that exit during the scan are left out.
///
/// A listing of `/proc` is a snapshot: a process that starts another and exits between the
/// listing and the reading of its status leaves only a child the listing does not show (the
/// kernel's directory position is at its end). A user whose processes hop from pid to pid
/// would pass for gone. So when nothing live was found, but a listed process of the uid had
/// exited (or one vanished unread), `/proc` is listed again and only the processes started
/// since the previous listing are read: those not listed before, and those whose pid was
/// handed out since (a pid reused after `pid_max` wrapped). This ends when a round finds a
/// live one, or leaves no such doubt, or no process at all was started since the previous
/// listing (the kernel's last pid is unchanged: nothing can have been missed), and after
/// [`MAX_ROUNDS`] listings at most: a later round reads only the few processes born
/// meanwhile, right after listing them, so its window for a miss is microseconds where a hop
/// takes a fork and an exec.
pub fn pids_of(proc_root: &Path, uid: u32) -> Scan {
    let mut out = Vec::new();
    let mut before: Option<(i32, std::collections::HashSet<i32>)> = None;
    for _ in 0..MAX_ROUNDS {
        let last = last_pid(proc_root);
        let Some(listed) = list(proc_root) else {
            return Scan {
                pids: out,
                settled: false,
            };
        };
        let fresh = |pid: i32| match (&before, last) {
            (None, _) => true,
            (Some((_, prev)), None) => !prev.contains(&pid),
            (Some((prev_last, prev)), Some(now)) => {
                !prev.contains(&pid) || handed_out_between(pid, *prev_last, now)
            }
        };
        let mut doubt = false;
        for &pid in listed.iter().filter(|&&p| fresh(p)) {
            match look(proc_root, pid, uid) {
                Seen::Live => out.push(pid),
                Seen::MayHaveForked => doubt = true,
                Seen::Other => {}
            }
        }
        let quiet =
            matches!((&before, last), (Some((prev_last, _)), Some(now)) if *prev_last == now);
        if !out.is_empty() || !doubt || quiet {
            break;
        }
        before = Some((last.unwrap_or(0), listed.into_iter().collect()));
    }
    out.sort_unstable();
    Scan {
        pids: out,
        settled: true,
    }
}

/// Another manager of `/run/user` that runs now: `(its name, pid)`. systemd-logind and
/// elogind mount and remove `/run/user/<uid>` themselves; two managers would fight.
pub fn other_manager(proc_root: &Path) -> Option<(String, i32)> {
    other_managers(proc_root).into_iter().next()
}

/// Every running process that manages `/run/user`, lowest pid first: named so and running as
/// root. Any user can start a program under those names (`cp /bin/sleep systemd-logind`), and
/// such a process must not keep runplaned from managing everyone's dirs; a real logind or
/// elogind runs as root, and only root can start a process as root. (A privileged container's
/// logind, root without a user namespace, counts too: `--force` overrides it.)
pub fn other_managers(proc_root: &Path) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for ent in rd.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(ent.path().join("comm")) {
            let comm = comm.trim_end();
            let as_root = || {
                std::fs::read_to_string(ent.path().join("status"))
                    .is_ok_and(|st| parse_real_uid(&st) == Some(0))
            };
            if matches!(comm, "systemd-logind" | "elogind-daemon" | "elogind") && as_root() {
                out.push((comm.to_owned(), pid));
            }
        }
    }
    out.sort_by_key(|m| m.1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_uid() {
        assert_eq!(
            parse_real_uid("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\n"),
            Some(1000)
        );
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
    }

    #[test]
    fn pids_handed_out_in_between_wrap_at_pid_max() {
        assert!(handed_out_between(11, 10, 20) && handed_out_between(20, 10, 20));
        assert!(!handed_out_between(10, 10, 20) && !handed_out_between(21, 10, 20));
        // Wrapped from 32760 to 305: above the old last or up to the new one.
        assert!(handed_out_between(32761, 32760, 305) && handed_out_between(301, 32760, 305));
        assert!(!handed_out_between(306, 32760, 305) && !handed_out_between(32760, 32760, 305));
        assert!(last_pid(Path::new("/proc")).is_some_and(|p| p > 0));
    }

    #[test]
    fn finds_own_processes_and_a_child() {
        let me = rustix::process::getuid().as_raw();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let scan = pids_of(Path::new("/proc"), me);
        assert!(scan.settled && scan.any());
        assert!(scan.pids.contains(&(std::process::id() as i32)));
        assert!(scan.pids.contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !pids_of(Path::new("/proc"), me)
                .pids
                .contains(&(child.id() as i32)),
            "zombie or dead counted"
        );
        let none = pids_of(Path::new("/proc"), 4_000_000);
        assert_eq!(
            none,
            Scan {
                pids: vec![],
                settled: true
            }
        );
        assert!(!none.any());
    }

    #[test]
    fn detects_a_process_named_like_logind() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: a manager counts only when it runs as root (see priv_procs)");
            return;
        }
        // A real process whose comm is "systemd-logind": a copy of sleep under that name.
        let t = tempfile::tempdir().unwrap();
        let fake = t.path().join("systemd-logind");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let mut child = std::process::Command::new(&fake).arg("30").spawn().unwrap();
        let found = other_managers(Path::new("/proc"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            found.contains(&("systemd-logind".to_owned(), child.id() as i32)),
            "{found:?}"
        );
        assert!(
            !other_managers(Path::new("/proc"))
                .iter()
                .any(|m| m.1 == child.id() as i32)
        );
    }
}

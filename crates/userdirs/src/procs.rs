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

/// Pids of the live user-space processes whose real uid is `uid`, under `proc_root`
/// (normally `/proc`). Processes that exit during the scan are skipped.
pub fn pids_of(proc_root: &Path, uid: u32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(ent.path().join("status")) else {
            continue;
        };
        if parse_real_uid(&status) == Some(uid)
            && !is_kernel_thread(&status)
            && !status.contains("State:\tZ")
        {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Another manager of `/run/user` that runs now: `(its name, pid)`. systemd-logind and
/// elogind mount and remove `/run/user/<uid>` themselves; two managers would fight.
pub fn other_manager(proc_root: &Path) -> Option<(String, i32)> {
    other_managers(proc_root).into_iter().next()
}

/// Every running process that manages `/run/user` by name, lowest pid first.
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
            if matches!(comm, "systemd-logind" | "elogind-daemon" | "elogind") {
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
    fn finds_own_processes_and_a_child() {
        let me = rustix::process::getuid().as_raw();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pids = pids_of(Path::new("/proc"), me);
        assert!(pids.contains(&(std::process::id() as i32)));
        assert!(pids.contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !pids_of(Path::new("/proc"), me).contains(&(child.id() as i32)),
            "zombie or dead counted"
        );
        assert!(pids_of(Path::new("/proc"), 4_000_000).is_empty());
    }

    #[test]
    fn detects_a_process_named_like_logind() {
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

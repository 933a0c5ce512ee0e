//! The state directory: created safely, locked so that only one runplaned uses it, with the
//! daemon's pid file written atomically.

use std::path::Path;

use runplane_sys::atomic::write_atomic;
use runplane_sys::dir::{Dir, mode_bits};
use runplane_sys::lock::{LockError, LockFile, try_lock};

use crate::Fatal;
use crate::config::Mode;

pub const LOCK_FILE: &str = "runplaned.lock";
pub const PID_FILE: &str = "runplaned.pid";

/// The open, locked state directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct StateDir {
    dir: Dir,
    _lock: LockFile,
}

/// Creates `path` (0755 for the system, 0700 for a user) unless it exists, then checks that
/// it is a real directory owned by us and not writable by group or others.
pub fn ensure_private_dir(path: &Path, mode: Mode) -> Result<Dir, Fatal> {
    let perms = match mode {
        Mode::System => 0o755,
        Mode::User => 0o700,
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)
        .map_err(|e| Fatal::system(format!("unable to create {}: {e}", parent.display())))?;
    let pdir = Dir::open(parent).map_err(|e| Fatal::system(e.to_string()))?;
    let name = path
        .file_name()
        .ok_or_else(|| Fatal::usage(format!("{} is not a directory path", path.display())))?;
    if pdir
        .mkdir(name, perms)
        .map_err(|e| Fatal::system(e.to_string()))?
    {
        // New: make the mode exact regardless of the umask.
        let d = Dir::open(path).map_err(|e| Fatal::system(e.to_string()))?;
        d.set_perms(perms, None)
            .map_err(|e| Fatal::system(e.to_string()))?;
    }
    let dir = Dir::open(path).map_err(|e| Fatal::system(e.to_string()))?;
    let st = dir.stat_self().map_err(|e| Fatal::system(e.to_string()))?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(Fatal::system(format!(
            "refusing to use {}: owned by uid {}, not by uid {me}",
            path.display(),
            st.st_uid
        )));
    }
    if mode_bits(&st) & 0o022 != 0 {
        return Err(Fatal::system(format!(
            "refusing to use {}: mode {:04o} lets group or others write to it",
            path.display(),
            mode_bits(&st)
        )));
    }
    Ok(dir)
}

impl StateDir {
    /// Opens and locks the state directory and writes the pid file.
    pub fn open(path: &Path, mode: Mode) -> Result<StateDir, Fatal> {
        let dir = ensure_private_dir(path, mode)?;
        let lock = match try_lock(&dir, LOCK_FILE, 0o644) {
            Ok(l) => l,
            Err(LockError::Busy { path: p, holder }) => {
                let who = holder
                    .map(|h| format!("pid {h}"))
                    .unwrap_or_else(|| "another process".into());
                return Err(Fatal::system(format!(
                    "unable to lock {p}: another runplaned ({who}) is running on the state directory {}",
                    path.display()
                )));
            }
            Err(LockError::Sys(e)) => return Err(Fatal::system(e.to_string())),
        };
        let pid = format!("{}\n", std::process::id());
        write_atomic(&dir, PID_FILE, pid.as_bytes(), 0o644)
            .map_err(|e| Fatal::system(e.to_string()))?;
        Ok(StateDir { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Removes the pid file at a clean stop (the lock goes with the process).
    pub fn close(self) {
        if let Err(e) = self.dir.unlink(PID_FILE) {
            tracing::warn!("{e}");
        }
    }
}

//! runplane-testkit: helpers for tests that need root, and that must never touch the host.
//!
//! [`run_private`] runs a closure on a fresh thread that has its own mount namespace
//! (`unshare(CLONE_NEWNS)`, everything made `MS_PRIVATE` recursively so nothing propagates
//! back), with a fresh tmpfs over `/run`, optionally a private `/etc/passwd` and `/etc/group`
//! ([`Users`]) and its own IPC namespace. Processes the closure starts inherit all of it.
//! The namespace dies with the thread and its children, taking every mount with it.
//!
//! Isolation is created, never inferred: any failure to set it up panics, so a test can never
//! go on in the host's namespace (reading `/proc/1/ns/mnt` to "check" fails open: EACCES).
//!
//! Not here: anything runplane-specific (daemon launchers live next to their tests).

use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_bind, mount_change};
use rustix::thread::UnshareFlags;

/// Whether this process runs as root (euid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Returns from the calling test with a message on stderr when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skip: {}: needs root", module_path!());
            return;
        }
    };
}

/// One account of a private user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    /// Supplementary groups: (name, gid).
    pub groups: Vec<(String, u32)>,
}

impl User {
    /// A user whose primary group has the same name and number as the user.
    pub fn new(name: &str, uid: u32) -> User {
        User {
            name: name.to_owned(),
            uid,
            gid: uid,
            home: format!("/home/{name}"),
            groups: Vec::new(),
        }
    }
}

/// The accounts of a private `/etc/passwd` and `/etc/group` (root is always included).
#[derive(Debug, Clone, Default)]
pub struct Users(pub Vec<User>);

impl Users {
    /// `count` users named `{prefix}{i}` with uids from `first_uid`.
    pub fn numbered(prefix: &str, first_uid: u32, count: u32) -> Users {
        Users(
            (0..count)
                .map(|i| User::new(&format!("{prefix}{i}"), first_uid + i))
                .collect(),
        )
    }

    /// passwd(5) text.
    pub fn passwd(&self) -> String {
        let mut s = String::from(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        );
        for u in &self.0 {
            s.push_str(&format!(
                "{}:x:{}:{}::{}:/bin/sh\n",
                u.name, u.uid, u.gid, u.home
            ));
        }
        s
    }

    /// group(5) text: each user's primary group plus supplementary groups with members.
    pub fn group(&self) -> String {
        let mut groups: Vec<(String, u32, Vec<String>)> = vec![
            ("root".into(), 0, vec![]),
            ("nogroup".into(), 65534, vec![]),
        ];
        for u in &self.0 {
            if !groups.iter().any(|g| g.1 == u.gid) {
                groups.push((u.name.clone(), u.gid, vec![]));
            }
            for (name, gid) in &u.groups {
                match groups.iter_mut().find(|g| g.1 == *gid) {
                    Some(g) => g.2.push(u.name.clone()),
                    None => groups.push((name.clone(), *gid, vec![u.name.clone()])),
                }
            }
        }
        groups
            .iter()
            .map(|(n, g, m)| format!("{n}:x:{g}:{}\n", m.join(",")))
            .collect()
    }
}

/// What to set up around the closure of [`run_private`].
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Private `/etc/passwd` and `/etc/group` with these accounts.
    pub users: Option<Users>,
    /// Own IPC namespace (SysV IPC, POSIX message queues), with a fresh `/dev/shm` tmpfs.
    pub ipc: bool,
    /// Size of the tmpfs over `/run` (default 64 MiB).
    pub run_size: Option<u64>,
}

/// The environment a private test runs in.
#[derive(Debug)]
pub struct Private {
    /// A scratch directory on the private tmpfs over `/run` (`/run/.testkit`).
    pub scratch: PathBuf,
}

fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    panic!(
        "testkit: fatal: unable to {what}: {e} (refusing to run the test outside its private namespace)"
    )
}

/// Runs `f` on a new thread in a private mount namespace with a tmpfs over `/run`, as described
/// in the crate docs, and returns its result (a panic in `f` is re-raised here).
pub fn run_private<T: Send>(setup: Setup, f: impl FnOnce(&Private) -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            enter(&setup);
            let scratch = PathBuf::from("/run/.testkit");
            std::fs::create_dir_all(&scratch).unwrap_or_else(|e| fatal("create /run/.testkit", e));
            f(&Private { scratch })
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

fn enter(setup: &Setup) {
    let mut flags = UnshareFlags::NEWNS;
    if setup.ipc {
        flags |= UnshareFlags::NEWIPC;
    }
    // SAFETY: unshare changes the namespaces of this thread only (CLONE_NEWNS implies
    // CLONE_FS, which gives the thread its own fs struct); the thread was created for this test
    // and holds no references into the old namespace's mounts that could be invalidated.
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .unwrap_or_else(|e| fatal("unshare the mount namespace", e));
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .unwrap_or_else(|e| fatal("make / private", e));
    let size = setup.run_size.unwrap_or(64 << 20);
    mount(
        "tmpfs",
        "/run",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(
            std::ffi::CString::new(format!("mode=0755,size={size}"))
                .unwrap()
                .as_c_str(),
        ),
    )
    .unwrap_or_else(|e| fatal("mount a tmpfs over /run", e));
    if setup.ipc {
        mount(
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=1777,size=16m"),
        )
        .unwrap_or_else(|e| fatal("mount a tmpfs over /dev/shm", e));
        let _ = std::fs::create_dir_all("/dev/mqueue");
        mount(
            "mqueue",
            "/dev/mqueue",
            "mqueue",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )
        .unwrap_or_else(|e| fatal("mount mqueue on /dev/mqueue", e));
    }
    if let Some(users) = &setup.users {
        let dir = Path::new("/run/.testkit-etc");
        std::fs::create_dir_all(dir).unwrap_or_else(|e| fatal("create /run/.testkit-etc", e));
        for (name, text) in [("passwd", users.passwd()), ("group", users.group())] {
            let p = dir.join(name);
            let mut f = std::fs::File::create(&p)
                .unwrap_or_else(|e| fatal("write private user database", e));
            f.write_all(text.as_bytes())
                .unwrap_or_else(|e| fatal("write private user database", e));
            mount_bind(&p, Path::new("/etc").join(name).as_path())
                .unwrap_or_else(|e| fatal(&format!("bind a private /etc/{name}"), e));
        }
    }
}

/// Mounts a tmpfs at `path` (created if missing) inside the current private namespace.
/// Only call this from within [`run_private`].
pub fn mount_tmpfs(path: &Path, options: &str) {
    std::fs::create_dir_all(path)
        .unwrap_or_else(|e| fatal(&format!("create {}", path.display()), e));
    let data = std::ffi::CString::new(options).unwrap_or_else(|e| fatal("build mount options", e));
    mount(
        "tmpfs",
        path,
        "tmpfs",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .unwrap_or_else(|e| fatal(&format!("mount a tmpfs on {}", path.display()), e));
}

/// Bind-mounts `src` on `dst` inside the current private namespace.
pub fn bind(src: &Path, dst: &Path) {
    mount_bind(src, dst)
        .unwrap_or_else(|e| fatal(&format!("bind {} on {}", src.display(), dst.display()), e));
}

/// The path of a workspace binary (`runplane`, `runplaned`) next to the running test
/// executable (`target/<profile>/`). Panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_database_text() {
        let mut u = User::new("alice", 1000);
        u.groups.push(("audio".into(), 29));
        let db = Users(vec![u, User::new("bob", 1001)]);
        assert!(
            db.passwd()
                .contains("alice:x:1000:1000::/home/alice:/bin/sh\n")
        );
        assert!(db.group().contains("audio:x:29:alice\n"));
        assert!(db.group().contains("bob:x:1001:\n"));
        assert_eq!(Users::numbered("u", 2000, 3).0[2].name, "u2");
    }

    #[test]
    fn priv_private_run_is_isolated_from_host() {
        require_root!();
        let host_run_marker = Path::new("/run/.testkit-host-probe");
        assert!(!host_run_marker.exists());
        let users = Users(vec![User::new("tk-user", 4000)]);
        run_private(
            Setup {
                users: Some(users),
                ipc: true,
                run_size: None,
            },
            |p| {
                std::fs::write(p.scratch.join("x"), b"1").unwrap();
                std::fs::write(host_run_marker, b"1").unwrap();
                let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
                assert!(passwd.contains("tk-user:x:4000"));
                // A child process sees the same private view.
                let out = std::process::Command::new("getent")
                    .args(["passwd", "tk-user"])
                    .output()
                    .unwrap();
                assert!(String::from_utf8_lossy(&out.stdout).starts_with("tk-user:x:4000:4000"));
            },
        );
        // Nothing leaked to the host's /run or /etc/passwd.
        assert!(!host_run_marker.exists());
        assert!(
            !std::fs::read_to_string("/etc/passwd")
                .unwrap()
                .contains("tk-user")
        );
    }

    #[test]
    fn priv_panics_propagate() {
        require_root!();
        let r = std::panic::catch_unwind(|| run_private(Setup::default(), |_| panic!("inner")));
        assert!(r.is_err());
    }
}

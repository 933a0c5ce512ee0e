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
    /// A private `/dev`: a tmpfs with the host's null, zero, full, random, urandom, tty, ptmx
    /// and pts bound in, its own `/dev/fuse` node with Debian's mode 0666 (so that users can
    /// mount FUSE through fusermount3 whatever the host's node allows), and a datagram socket
    /// at `/dev/log` that catches syslog(3) messages ([`Private::syslog_messages`]).
    pub private_dev: bool,
}

/// The environment a private test runs in.
#[derive(Debug)]
pub struct Private {
    /// A scratch directory on the private tmpfs over `/run` (`/run/.testkit`).
    pub scratch: PathBuf,
    /// The `/dev/log` socket when [`Setup::private_dev`] was asked for.
    pub syslog: Option<rustix::fd::OwnedFd>,
}

impl Private {
    /// Syslog messages received so far (waits up to `wait` for the first one).
    pub fn syslog_messages(&self, wait: std::time::Duration) -> Vec<String> {
        let Some(fd) = &self.syslog else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        let mut timeout = wait;
        loop {
            let mut p = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let ts = rustix::event::Timespec {
                tv_sec: timeout.as_secs() as i64,
                tv_nsec: timeout.subsec_nanos() as i64,
            };
            if !matches!(rustix::event::poll(&mut p, Some(&ts)), Ok(n) if n > 0) {
                return out;
            }
            match rustix::net::recv(fd, &mut buf, rustix::net::RecvFlags::DONTWAIT) {
                Ok((n, _)) => {
                    out.push(String::from_utf8_lossy(&buf[..n.min(buf.len())]).into_owned())
                }
                Err(_) => return out,
            }
            timeout = std::time::Duration::from_millis(50);
        }
    }
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
            let syslog = setup.private_dev.then(private_dev);
            f(&Private { scratch, syslog })
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

/// Replaces /dev with a tmpfs holding the host's basic devices, and binds a datagram socket
/// at /dev/log. Only inside the private namespace (called from `run_private`).
fn private_dev() -> rustix::fd::OwnedFd {
    let orig = Path::new("/run/.testkit-dev");
    std::fs::create_dir_all(orig).unwrap_or_else(|e| fatal("create /run/.testkit-dev", e));
    rustix::mount::mount_bind_recursive("/dev", orig)
        .unwrap_or_else(|e| fatal("bind /dev aside", e));
    mount(
        "tmpfs",
        "/dev",
        "tmpfs",
        MountFlags::NOSUID,
        Some(c"mode=0755,size=1m"),
    )
    .unwrap_or_else(|e| fatal("mount a tmpfs over /dev", e));
    for name in ["null", "zero", "full", "random", "urandom", "tty", "ptmx"] {
        let src = orig.join(name);
        if src.exists() {
            let dst = Path::new("/dev").join(name);
            std::fs::write(&dst, b"").unwrap_or_else(|e| fatal("create a device placeholder", e));
            mount_bind(&src, &dst).unwrap_or_else(|e| fatal(&format!("bind /dev/{name}"), e));
        }
    }
    for dir in ["pts", "shm"] {
        let dst = Path::new("/dev").join(dir);
        std::fs::create_dir_all(&dst).unwrap_or_else(|e| fatal("create a /dev directory", e));
        let _ = mount_bind(orig.join(dir), &dst);
    }
    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    // Our own node (the host's may be 0600): char 10,229 as the kernel's misc fuse device.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        "/dev/fuse",
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(10, 229),
    )
    .unwrap_or_else(|e| fatal("create /dev/fuse", e));
    let _ = std::fs::set_permissions(
        "/dev/fuse",
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    );
    let log = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .unwrap_or_else(|e| fatal("create the /dev/log socket", e));
    rustix::net::bind(
        &log,
        &rustix::net::SocketAddrUnix::new("/dev/log")
            .unwrap_or_else(|e| fatal("address /dev/log", e)),
    )
    .unwrap_or_else(|e| fatal("bind /dev/log", e));
    let _ = std::fs::set_permissions(
        "/dev/log",
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    );
    log
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

/// A detached tmpfs (`fsmount`, attached nowhere) with `options`, and its reusable mount id:
/// it holds the id until dropped.
fn detached_tmpfs(options: &[(&str, &str)]) -> (rustix::fd::OwnedFd, u64) {
    use rustix::fs::{AtFlags, StatxFlags, statx};
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, fsconfig_create, fsconfig_set_string, fsmount,
        fsopen,
    };
    let fs =
        fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).unwrap_or_else(|e| fatal("create a tmpfs", e));
    for (k, v) in options {
        fsconfig_set_string(&fs, *k, *v)
            .unwrap_or_else(|e| fatal(&format!("set tmpfs option {k}={v}"), e));
    }
    fsconfig_create(&fs).unwrap_or_else(|e| fatal("create a tmpfs", e));
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .unwrap_or_else(|e| fatal("make a detached tmpfs mount", e));
    let stx = statx(&mnt, c"", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)
        .unwrap_or_else(|e| fatal("read a mount id", e));
    (mnt, stx.stx_mnt_id)
}

/// Whether this kernel has fanotify mount events (Linux >= 6.15: `fanotify_init` takes
/// `FAN_REPORT_MNT`). Silent: the caller says what it leaves out without them.
pub fn mount_events() -> bool {
    const FAN_CLOEXEC: libc::c_uint = 0x1;
    const FAN_REPORT_MNT: libc::c_uint = 0x4000;
    // SAFETY: fanotify_init takes two integers and returns a new fd or -1.
    let fd = unsafe { libc::fanotify_init(FAN_CLOEXEC | FAN_REPORT_MNT, libc::O_RDONLY as u32) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` was just opened here and nothing else owns it.
    drop(unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) });
    true
}

/// The unique id (`STATX_MNT_ID_UNIQUE`, Linux >= 6.8) of the mount `path` is on, and
/// whether `path` is that mount's root.
pub fn mount_at(path: &Path) -> (u64, bool) {
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )
    .unwrap_or_else(|e| panic!("unable to statx {}: {e}", path.display()));
    assert_ne!(
        st.stx_mask & STATX_MNT_ID_UNIQUE,
        0,
        "unique mount ids (Linux >= 6.8)"
    );
    let root = rustix::fs::StatxAttributes::MOUNT_ROOT;
    (st.stx_mnt_id, st.stx_attributes.contains(root))
}

/// Makes `id` the reusable mount id (`STATX_MNT_ID`, mountinfo's) the next mount made gets,
/// as it is for the next mount made anywhere once the mount that had it is gone: the kernel
/// gives the lowest free id, so every free id below `id` is taken by a detached mount held
/// in the result (drop it once the mount is made). `None` when `id` is not free within two
/// seconds (another mount took it; an unmount frees its id only after an RCU grace period).
/// Only call this from within [`run_private`].
pub fn next_mount_id_is(id: u64) -> Option<Vec<rustix::fd::OwnedFd>> {
    let mut fillers = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let (mnt, got) = detached_tmpfs(&[]);
        if got < id {
            fillers.push(mnt);
            continue;
        }
        // `id` itself (free again once this one goes), or not free (yet).
        drop(mnt);
        if got == id {
            return Some(fillers);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}

/// Mounts a tmpfs with `options` (`key=value`) at `at` that takes the reusable mount id `id`
/// (see [`next_mount_id_is`]). Returns the new mount's root (an `O_PATH` fd, which keeps the
/// mount alive after a detach), or `None` when another mount took `id` first.
/// Only call this from within [`run_private`].
pub fn mount_tmpfs_with_id(
    id: u64,
    at: &Path,
    options: &[(&str, &str)],
) -> Option<rustix::fd::OwnedFd> {
    use rustix::fs::CWD;
    use rustix::mount::{MoveMountFlags, move_mount};
    let mut fillers = next_mount_id_is(id)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let (mnt, got) = detached_tmpfs(options);
        if got == id {
            move_mount(&mnt, c"", CWD, at, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
                .unwrap_or_else(|e| fatal(&format!("move a mount to {}", at.display()), e));
            return Some(mnt);
        }
        if got < id {
            // Someone else's mount freed a lower id meanwhile.
            fillers.push(mnt);
            continue;
        }
        drop(mnt);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}

/// A bindfs FUSE mount ([`bindfs`]); its server is killed (by pid) and reaped when dropped,
/// after which the mount answers `ENOTCONN` until it is detached.
#[derive(Debug)]
pub struct Fuse(pub std::process::Child);

impl Drop for Fuse {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mounts `src` at `at` with bindfs in the foreground: as `uid` (gid the same, through
/// setpriv and fusermount3) without `allow_other`, so that it refuses root, or as root with
/// `allow_other`. Waits until the mount is in this thread's mount table.
/// Only call this from within [`run_private`] (with `private_dev`, for /dev/fuse).
pub fn bindfs(uid: Option<u32>, src: &Path, at: &Path) -> Fuse {
    let mut c = match uid {
        Some(uid) => {
            let mut c = std::process::Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .args(["/usr/bin/bindfs", "-f", "--no-allow-other"]);
            c
        }
        None => {
            let mut c = std::process::Command::new("/usr/bin/bindfs");
            c.args(["-f", "-o", "allow_other,nonempty"]);
            c
        }
    };
    let child = c
        .arg(src)
        .arg(at)
        .env("PATH", "/usr/bin:/bin")
        .spawn()
        .unwrap_or_else(|e| fatal("start bindfs (scripts/test installs it)", e));
    let fuse = Fuse(child);
    let point = format!(" {} ", at.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(&point) && l.contains(" - fuse"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "bindfs did not mount {}",
            at.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fuse
}

/// Bind-mounts `src` on `dst` inside the current private namespace.
pub fn bind(src: &Path, dst: &Path) {
    mount_bind(src, dst)
        .unwrap_or_else(|e| fatal(&format!("bind {} on {}", src.display(), dst.display()), e));
}

/// A user whose processes hop from pid to pid: `/run/hop` (in the private `/run`) is a script
/// that, given `N STOPFILE`, pauses (if asked), starts itself again with `N - 1` and exits,
/// so no process of the chain outlives the one it started. The chain ends after its hops, or
/// at the stop file, which dropping this writes (also when the test fails). Run it as the user
/// with `args(hops)`.
#[derive(Debug)]
pub struct Hops {
    pub script: PathBuf,
    stop: PathBuf,
}

impl Hops {
    /// Writes the script; `pause` is a `sleep` argument taken before each hop.
    pub fn write(pause: Option<&str>) -> Hops {
        let script = PathBuf::from("/run/hop");
        let sleep = pause.map(|p| format!("sleep {p}\n")).unwrap_or_default();
        let text = format!(
            "#!/bin/sh\n# hop N STOPFILE: start the next hop, exit\n\
             [ \"$1\" -gt 0 ] && [ ! -e \"$2\" ] || exit 0\n\
             {sleep}\"$0\" $(($1 - 1)) \"$2\" &\n"
        );
        std::fs::write(&script, text).unwrap_or_else(|e| fatal("write /run/hop", e));
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap_or_else(|e| fatal("chmod /run/hop", e));
        Hops {
            script,
            stop: PathBuf::from("/run/hop.stop"),
        }
    }

    /// The script's arguments for a chain of `hops`.
    pub fn args(&self, hops: u32) -> [String; 2] {
        [hops.to_string(), self.stop.display().to_string()]
    }
}

impl Drop for Hops {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, b"");
    }
}

/// A daemon started for a test; stopped by pid with SIGTERM (and reaped) on drop.
#[derive(Debug)]
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `program args` with stderr to `log`, and waits (10 s at most) until `socket`
    /// accepts connections. Panics with the log if it does not.
    pub fn start(program: &Path, args: &[&str], socket: &Path, log: &Path) -> Daemon {
        let logf = std::fs::File::create(log).expect("create the daemon log");
        let child = std::process::Command::new(program)
            .args(args)
            // Everything the daemon says, sessions included (logged at debug).
            .env("RUNPLANE_LOG", "debug")
            .stdin(std::process::Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("unable to start {}: {e}", program.display()));
        let d = Daemon {
            child,
            log: log.to_owned(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() || seqpacket_connects(socket)
            {
                return d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not listen on {}:\n{}",
                program.display(),
                socket.display(),
                d.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn seqpacket_connects(path: &Path) -> bool {
    let Ok(fd) = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        None,
    ) else {
        return false;
    };
    rustix::net::SocketAddrUnix::new(path).is_ok_and(|a| rustix::net::connect(&fd, &a).is_ok())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
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
                private_dev: true,
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
                // syslog(3) of a child process lands in our /dev/log; /dev/null still works.
                let st = std::process::Command::new("logger")
                    .args(["-t", "tk", "hello from the test"])
                    .stdin(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success());
                let msgs = p.syslog_messages(std::time::Duration::from_secs(5));
                assert!(
                    msgs.iter()
                        .any(|m| m.contains("tk") && m.contains("hello from the test")),
                    "{msgs:?}"
                );
                std::fs::write("/dev/null", b"x").unwrap();
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

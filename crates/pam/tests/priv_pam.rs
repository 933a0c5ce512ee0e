//! pam_runplane.so end to end with libpam itself: in this process through
//! `pam_start_confdir` (a private pam.d directory), and through `pamtester` (a separate
//! process, with a private /etc/pam.d bound in the test's mount namespace). The daemon is the
//! real runplaned on a private /run with private users. Never the host's /etc/pam.d.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runplane_testkit::{Daemon, Setup, Users, bin, require_root, run_private};

const SOCK: &str = "/run/runplane/control";

/// Real session stacks always hold other modules (pam_unix in Debian's common-session); a
/// stack where every module says PAM_IGNORE fails as a whole, so the tests model a real one.
const STACK_HEAD: &str = "session required pam_permit.so\n";

/// The ~40 lines of FFI to libpam's application side that the tests need (test-only unsafe).
mod libpam {
    use super::*;

    #[repr(C)]
    pub struct PamConv {
        pub conv: extern "C" fn(c_int, *mut *const c_void, *mut *mut c_void, *mut c_void) -> c_int,
        pub appdata: *mut c_void,
    }

    /// Sessions never prompt: any conversation is an error.
    pub extern "C" fn no_conv(
        _: c_int,
        _: *mut *const c_void,
        _: *mut *mut c_void,
        _: *mut c_void,
    ) -> c_int {
        19 // PAM_CONV_ERR
    }

    #[link(name = "pam")]
    unsafe extern "C" {
        pub fn pam_start_confdir(
            service: *const c_char,
            user: *const c_char,
            conv: *const PamConv,
            confdir: *const c_char,
            pamh: *mut *mut c_void,
        ) -> c_int;
        pub fn pam_open_session(pamh: *mut c_void, flags: c_int) -> c_int;
        pub fn pam_close_session(pamh: *mut c_void, flags: c_int) -> c_int;
        pub fn pam_getenv(pamh: *mut c_void, name: *const c_char) -> *const c_char;
        pub fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    }
}

/// One PAM transaction for `user` with the stack in `confdir/service`.
struct Pam {
    h: *mut c_void,
    _conv: Box<libpam::PamConv>,
}

impl Pam {
    fn start(confdir: &Path, service: &str, user: &str) -> Pam {
        let conv = Box::new(libpam::PamConv {
            conv: libpam::no_conv,
            appdata: std::ptr::null_mut(),
        });
        let (s, u, d) = (
            CString::new(service).unwrap(),
            CString::new(user).unwrap(),
            CString::new(confdir.to_str().unwrap()).unwrap(),
        );
        let mut h = std::ptr::null_mut();
        // SAFETY: test-only; valid C strings and a conv struct that outlives the handle (boxed
        // in the returned value); h receives the new handle.
        let rc = unsafe {
            libpam::pam_start_confdir(s.as_ptr(), u.as_ptr(), &*conv, d.as_ptr(), &mut h)
        };
        assert_eq!(rc, 0, "pam_start_confdir failed: {rc}");
        Pam { h, _conv: conv }
    }

    fn open(&self) -> c_int {
        // SAFETY: test-only; h is a live handle from pam_start_confdir.
        unsafe { libpam::pam_open_session(self.h, 0) }
    }

    fn close(&self) -> c_int {
        // SAFETY: test-only; as above.
        unsafe { libpam::pam_close_session(self.h, 0) }
    }

    fn getenv(&self, name: &str) -> Option<String> {
        let n = CString::new(name).unwrap();
        // SAFETY: test-only; the returned pointer (if any) is a C string owned by the handle,
        // copied out before the handle can change.
        unsafe {
            let p = libpam::pam_getenv(self.h, n.as_ptr());
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }
}

impl Drop for Pam {
    fn drop(&mut self) {
        // SAFETY: test-only; ends the transaction started in `start`, once.
        unsafe { libpam::pam_end(self.h, 0) };
    }
}

fn module() -> PathBuf {
    bin("libpam_runplane.so")
}

/// A private pam.d with one service whose session stack is our module with `args`.
fn pam_d(dir: &Path, service: &str, args: &str) -> PathBuf {
    let d = dir.join("pam.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join(service),
        format!(
            "{STACK_HEAD}session optional {} {args}\n",
            module().display()
        ),
    )
    .unwrap();
    d
}

fn daemon(p: &runplane_testkit::Private, userdirs: &str) -> Daemon {
    daemon_via(p, userdirs, None)
}

/// The daemon as on a kernel without fanotify mount events (before Linux 6.15), where a
/// tmpfs unmounted behind its back stays unmounted: through `no-mount-events`
/// (runplane-testkit), whose seccomp filter answers as such a kernel does.
fn daemon_without_mount_events(p: &runplane_testkit::Private, userdirs: &str) -> Daemon {
    daemon_via(p, userdirs, Some(bin("no-mount-events")))
}

fn daemon_via(p: &runplane_testkit::Private, userdirs: &str, via: Option<PathBuf>) -> Daemon {
    let cfg = p.scratch.join("runplane.toml");
    std::fs::write(
        &cfg,
        format!("[userdirs]\nlinger_dir = \"/run/.testkit/linger\"\n{userdirs}"),
    )
    .unwrap();
    let daemon = bin("runplaned");
    let mut args = vec!["--force", "--config", cfg.to_str().unwrap()];
    let program = match &via {
        Some(v) => {
            args.insert(0, daemon.to_str().unwrap());
            v
        }
        None => &daemon,
    };
    Daemon::start(
        program,
        &args,
        Path::new(SOCK),
        &p.scratch.join("daemon.log"),
    )
}

fn setup() -> Setup {
    Setup {
        users: Some(Users::numbered("u", 2000, 3)),
        private_dev: true,
        ..Default::default()
    }
}

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The module links its unwinder statically (build.rs): it must not pull libgcc_s.so.1 into
/// the login process, and a panic inside it must still unwind to the `catch_unwind` of its
/// FFI shell, so that the login goes on without the module. The module's own std prints the
/// panic on fd 2, so the PAM transaction runs in a child (this test again, told by an
/// environment variable) whose stderr shows whether the module did panic.
#[test]
fn a_panic_in_the_module_is_caught_and_it_needs_no_libgcc_s() {
    const NAME: &str = "a_panic_in_the_module_is_caught_and_it_needs_no_libgcc_s";
    const CHILD: &str = "RUNPLANE_TEST_PANIC_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let dir = PathBuf::from(std::env::var_os(CHILD).unwrap());
        // A socket that cannot exist: whatever the build, nothing outside the test is asked.
        let confdir = pam_d(
            &dir,
            "rp-panic",
            "test_panic socket=/nonexistent/rp-test/control",
        );
        let pam = Pam::start(&confdir, "rp-panic", "root");
        // pam_permit says yes, the panicking optional module is ignored: the session opens.
        assert_eq!(pam.open(), 0, "pam_open_session through a panicking module");
        assert_eq!(pam.getenv("XDG_RUNTIME_DIR"), None);
        return;
    }
    let out = std::process::Command::new("readelf")
        .args(["-d", module().to_str().unwrap()])
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "{out:?}");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(needed.iter().any(|l| l.contains("libc.so")), "{dynamic}");
    assert!(
        !needed.iter().any(|l| l.contains("libgcc_s")),
        "the module needs libgcc_s: {needed:?}"
    );
    if !cfg!(debug_assertions) {
        eprintln!("skipping the panic half: release builds of the module ignore test_panic");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rp-pam-panic-{}", std::process::id()));
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, &dir)
        .output()
        .expect("the test runs itself");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "the child failed: {child:?}");
    assert!(
        err.contains("panicking as test_panic asks"),
        "the module did not panic: {err}"
    );
}

#[test]
fn priv_libpam_session_exports_runtime_dir_and_bus_and_close_removes() {
    require_root!();
    run_private(setup(), |p| {
        let d = daemon(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let confdir = pam_d(&p.scratch, "rp-login", "debug");
        let a = Pam::start(&confdir, "rp-login", "u0");
        assert_eq!(a.open(), 0);
        assert_eq!(
            a.getenv("XDG_RUNTIME_DIR").as_deref(),
            Some("/run/user/2000")
        );
        assert_eq!(
            a.getenv("DBUS_SESSION_BUS_ADDRESS"),
            None,
            "no bus socket yet"
        );
        let md = std::fs::metadata("/run/user/2000").unwrap();
        assert_eq!(
            (
                std::os::unix::fs::MetadataExt::uid(&md),
                std::os::unix::fs::MetadataExt::mode(&md) & 0o7777
            ),
            (2000, 0o700)
        );
        // The daemon sees this process as the leader.
        let st = runplane::Client::connect(SOCK, Duration::from_secs(5))
            .unwrap()
            .session_list()
            .unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].leader_pid, std::process::id() as i32);

        // A bus socket owned by the user: a second login also gets DBUS_SESSION_BUS_ADDRESS.
        let bus = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            None,
        )
        .unwrap();
        rustix::net::bind(
            &bus,
            &rustix::net::SocketAddrUnix::new("/run/user/2000/bus").unwrap(),
        )
        .unwrap();
        std::os::unix::fs::chown("/run/user/2000/bus", Some(2000), Some(2000)).unwrap();
        let b = Pam::start(&confdir, "rp-login", "u0");
        assert_eq!(b.open(), 0);
        assert_eq!(
            b.getenv("DBUS_SESSION_BUS_ADDRESS").as_deref(),
            Some("unix:path=/run/user/2000/bus")
        );
        // Owned by someone else: not exported.
        std::os::unix::fs::chown("/run/user/2000/bus", Some(0), Some(0)).unwrap();
        let c = Pam::start(&confdir, "rp-login", "u0");
        assert_eq!(c.open(), 0);
        assert_eq!(c.getenv("DBUS_SESSION_BUS_ADDRESS"), None);

        for s in [&a, &b, &c] {
            assert_eq!(s.close(), 0);
        }
        eventually("the last close removes the dir", || {
            !Path::new("/run/user/2000").exists()
        });
        assert!(d.log_text().contains("session closed"), "{}", d.log_text());
    });
}

#[test]
fn priv_su_inside_a_session_gets_no_runtime_dir_unless_allow_su() {
    require_root!();
    run_private(setup(), |p| {
        let _d = daemon(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let confdir = pam_d(&p.scratch, "rp-login", "");
        std::fs::write(
            confdir.join("rp-su"),
            format!("{STACK_HEAD}session optional {}\n", module().display()),
        )
        .unwrap();
        std::fs::write(
            confdir.join("rp-su-allowed"),
            format!(
                "{STACK_HEAD}session optional {} allow_su\n",
                module().display()
            ),
        )
        .unwrap();
        // u0 logs in; this process leads that session. Then "su u1" from inside it.
        let login = Pam::start(&confdir, "rp-login", "u0");
        assert_eq!(login.open(), 0);
        let su = Pam::start(&confdir, "rp-su", "u1");
        assert_eq!(su.open(), 0, "an optional module never fails the stack");
        assert_eq!(su.getenv("XDG_RUNTIME_DIR"), None);
        assert!(
            !Path::new("/run/user/2001").exists(),
            "no session, no dir for the su target"
        );
        let su2 = Pam::start(&confdir, "rp-su-allowed", "u1");
        assert_eq!(su2.open(), 0);
        assert_eq!(
            su2.getenv("XDG_RUNTIME_DIR").as_deref(),
            Some("/run/user/2001")
        );
        // su to the same user is not nested: exported.
        let same = Pam::start(&confdir, "rp-su", "u0");
        assert_eq!(same.open(), 0);
        assert_eq!(
            same.getenv("XDG_RUNTIME_DIR").as_deref(),
            Some("/run/user/2000")
        );
        for s in [&login, &su2, &same] {
            assert_eq!(s.close(), 0);
        }
        assert_eq!(su.close(), 0, "closing a session that never opened is fine");
    });
}

fn pamtester(service: &str, user: &str, ops: &[&str]) -> (std::process::Output, Duration) {
    let start = Instant::now();
    // Bounded: a module that hangs must fail the test, not hold CI up.
    let out = std::process::Command::new("timeout")
        .args(["-s", "KILL", "60", "pamtester", "-v", service, user])
        .args(ops)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("pamtester is installed (scripts/test installs it)");
    (out, start.elapsed())
}

/// A login through `service` that succeeds without the module's help: how long it took, and
/// what syslog got meanwhile (which must say why, with `why`).
fn login_goes_on(p: &runplane_testkit::Private, service: &str, user: &str, why: &str) -> Duration {
    let (out, took) = pamtester(service, user, &["open_session"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs = p.syslog_messages(Duration::from_secs(5)).join("\n");
    assert!(msgs.contains(why), "{msgs}");
    took
}

#[test]
fn priv_pamtester_opens_and_closes_through_the_module() {
    require_root!();
    run_private(setup(), |p| {
        let d = daemon(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let confdir = pam_d(&p.scratch, "rp-pamtester", "debug");
        runplane_testkit::bind(&confdir, Path::new("/etc/pam.d"));
        let (out, _) = pamtester("rp-pamtester", "u2", &["open_session", "close_session"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = d.log_text();
        assert!(
            log.contains("session opened")
                && log.contains("uid=2002")
                && log.contains("session closed"),
            "{log}"
        );
        eventually("the dir is gone after close", || {
            !Path::new("/run/user/2002").exists()
        });
        let msgs = p.syslog_messages(Duration::from_secs(5)).join("\n");
        assert!(
            msgs.contains("pam_runplane: session")
                && msgs.contains("XDG_RUNTIME_DIR=/run/user/2002"),
            "{msgs}"
        );
    });
}

#[test]
fn priv_a_daemon_that_is_down_or_hung_never_blocks_the_login() {
    require_root!();
    run_private(setup(), |p| {
        let confdir = pam_d(&p.scratch, "rp-down", "socket=/run/nothing/control");
        std::fs::write(
            confdir.join("rp-hung"),
            format!(
                "{STACK_HEAD}session optional {} socket=/run/hung.sock timeout=300\n",
                module().display()
            ),
        )
        .unwrap();
        runplane_testkit::bind(&confdir, Path::new("/etc/pam.d"));
        // Down: no socket at all.
        let took = login_goes_on(
            p,
            "rp-down",
            "u0",
            "pam_runplane: not setting XDG_RUNTIME_DIR for u0: unable to connect to /run/nothing/control: No such file or directory (os error 2) (is runplaned running?)",
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        // Hung: a socket that accepts into its backlog but never answers.
        let hung = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            None,
        )
        .unwrap();
        rustix::net::bind(
            &hung,
            &rustix::net::SocketAddrUnix::new("/run/hung.sock").unwrap(),
        )
        .unwrap();
        rustix::net::listen(&hung, 16).unwrap();
        let took = login_goes_on(
            p,
            "rp-hung",
            "u0",
            "no answer from /run/hung.sock within 0.",
        );
        // Bounded by timeout=300 ms (generous margins: machines are shared and noisy).
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
    });
}

#[test]
fn priv_a_mount_over_the_runtime_dir_is_never_looked_through() {
    require_root!();
    run_private(setup(), |p| {
        let d = daemon(p, "lifetime = \"sessions\"\ngrace = \"10m\"\n");
        let confdir = pam_d(&p.scratch, "rp-covered", "debug");
        runplane_testkit::bind(&confdir, Path::new("/etc/pam.d"));
        // A first login makes the dir; its session stays (grace), so the dir does too.
        let (out, _) = pamtester("rp-covered", "u1", &["open_session"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A FUSE mount over it that root may enter, whose server then stops answering (as
        // a user with user_allow_other can do over its own dir): once its cached attributes
        // expire, any stat through it waits for the server.
        let src = p.scratch.join("src");
        std::fs::create_dir(&src).unwrap();
        let fuse = std::process::Command::new("/usr/bin/bindfs")
            .args([
                "-f",
                "-o",
                "allow_other,nonempty,attr_timeout=0,entry_timeout=0",
            ])
            .arg(&src)
            .arg("/run/user/2001")
            .spawn()
            .expect("bindfs is installed (scripts/test installs it)");
        let fuse = Reaped(fuse);
        eventually("the FUSE mount appears", || {
            std::fs::read_to_string("/proc/thread-self/mountinfo")
                .unwrap()
                .lines()
                .any(|l| l.contains(" /run/user/2001 ") && l.contains(" fuse"))
        });
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&fuse.0),
            rustix::process::Signal::STOP,
        )
        .unwrap();
        // The next login neither hangs nor exports the covered dir, and says why.
        let took = login_goes_on(
            p,
            "rp-covered",
            "u1",
            "pam_runplane: not setting XDG_RUNTIME_DIR for u1: /run/user/2001 is covered by a mount runplaned did not make",
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        drop((fuse, d));
    });
}

/// An answer overtaken by an unmount: the daemon answered a login with its tmpfs, then
/// someone unmounted it before the module looked (a daemon that cannot watch mounts, on a
/// kernel before 6.15, so that nothing mends it meanwhile). The plain directory left is not
/// exported, nor a mount made there that took the tmpfs's reusable mount id (the next mount
/// made anywhere does), owned by the user and 0700 as the tmpfs was.
#[test]
fn priv_an_answer_overtaken_by_an_unmount_is_not_exported() {
    use pam_runplane::session::check_dir;
    require_root!();
    run_private(setup(), |p| {
        let d = daemon_without_mount_events(p, "lifetime = \"sessions\"\ngrace = \"10m\"\n");
        let leader = Reaped(
            std::process::Command::new("sleep")
                .arg("300")
                .spawn()
                .unwrap(),
        );
        let mut c = runplane::Client::connect(SOCK, Duration::from_secs(5)).unwrap();
        // Another mount made meanwhile in the machine may take the id first: the next user.
        let (answer, theirs) = (2000..2003)
            .find_map(|uid| {
                let answer = c
                    .session_open(runplane_proto::SessionOpen {
                        user: None,
                        uid: Some(uid),
                        pid: Some(leader.0.id() as i32),
                        allow_nested: None,
                        gid: None,
                    })
                    .unwrap();
                assert!(check_dir(&answer).is_ok());
                let path = Path::new(&answer.path);
                rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH).unwrap();
                // Left as the tmpfs was: the user's, 0700.
                std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
                assert_eq!(
                    check_dir(&answer).unwrap_err(),
                    format!(
                        "{} is no longer the tmpfs runplaned made: it was unmounted",
                        answer.path
                    )
                );
                let (uid_s, gid_s) = (uid.to_string(), uid.to_string());
                let theirs = runplane_testkit::mount_tmpfs_with_id(
                    answer.mount_id.unwrap(),
                    path,
                    &[("mode", "0700"), ("uid", &uid_s), ("gid", &gid_s)],
                )?;
                Some((answer, theirs))
            })
            .expect("a mount takes a runtime dir's old id within three tries");
        assert_eq!(
            check_dir(&answer).unwrap_err(),
            format!(
                "{} is covered by a mount runplaned did not make",
                answer.path
            )
        );
        drop((theirs, leader, d));
    });
}

/// The tmpfs of a logged-in user unmounted behind the daemon's back: the next login exports a
/// new one. Told by the kernel (fanotify mount events, Linux >= 6.15), the daemon mounts it at
/// once; without mount events (as before 6.15), at that login.
#[test]
fn priv_a_runtime_dir_whose_tmpfs_was_unmounted_is_mounted_again_for_the_next_login() {
    require_root!();
    for (watching, user, uid) in [(true, "u1", 2001), (false, "u2", 2002)] {
        if watching && !runplane_testkit::mount_events() {
            eprintln!(
                "this kernel has no fanotify mount events (< 6.15): only the run without them"
            );
            continue;
        }
        run_private(setup(), |p| {
            let cfg = "lifetime = \"sessions\"\ngrace = \"10m\"\n";
            let d = if watching {
                daemon(p, cfg)
            } else {
                daemon_without_mount_events(p, cfg)
            };
            let confdir = pam_d(&p.scratch, "rp-remounted", "debug");
            runplane_testkit::bind(&confdir, Path::new("/etc/pam.d"));
            let (out, _) = pamtester("rp-remounted", user, &["open_session"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = PathBuf::from(format!("/run/user/{uid}"));
            let mount = || runplane_testkit::mount_at(&path);
            let (first, _) = mount();
            rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH).unwrap();
            if watching {
                eventually("a new tmpfs is mounted", || {
                    let (now, root) = mount();
                    root && now != first
                });
            }
            let earlier = p.syslog_messages(Duration::from_secs(1)).join("\n");
            let exported = format!("XDG_RUNTIME_DIR={}", path.display());
            assert!(earlier.contains(&exported), "{earlier}");
            let (out, _) = pamtester("rp-remounted", user, &["open_session"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let msgs = p.syslog_messages(Duration::from_secs(5)).join("\n");
            assert!(
                msgs.contains(&exported) && !msgs.contains("not setting"),
                "{msgs}"
            );
            let (now, root) = mount();
            assert!(root && now != first);
            assert!(
                d.log_text()
                    .contains("was unmounted behind runplaned's back: mounted a new one"),
                "{}",
                d.log_text()
            );
            drop(d);
        });
    }
}

/// A child killed (by pid) and reaped when dropped, also on a panic.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

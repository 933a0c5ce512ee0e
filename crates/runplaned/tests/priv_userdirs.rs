//! User runtime directories through the real daemon, as root, each test in its own mount
//! namespace with a tmpfs over /run and a private passwd/group (never the host's /run/user or
//! users). Leaders are real processes; independent tools (findmnt) check the results.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Daemon, run};
use runplane::{Client, ClientError};
use runplane_proto::{Code, Linger, SessionOpen, Status};
use runplane_sys::pidfd::ExitStatus;
use runplane_sys::spawn::Credentials;
use runplane_testkit::{Hops, Setup, Users, mount_at, require_root, run_private};

const SOCK: &str = "/run/runplane/control";

fn users(n: u32) -> Setup {
    users_at(2000, n)
}

/// Users u0, u1, ... from `base`. Tests that leave processes running as a user get their own
/// range: /proc is shared by every test, so a uid must not be shared between them.
fn users_at(base: u32, n: u32) -> Setup {
    Setup {
        users: Some(Users::numbered("u", base, n)),
        ..Default::default()
    }
}

fn config(p: &runplane_testkit::Private, userdirs: &str) -> String {
    let path = p.scratch.join("runplane.toml");
    std::fs::write(
        &path,
        format!("[userdirs]\nlinger_dir = \"/run/.testkit/linger\"\n{userdirs}"),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// The daemon on a test config. `--force`: the test has its own /run, so a systemd-logind
/// of the host (or the fake one of the detection test, visible through the shared /proc)
/// manages nothing the test uses.
fn start(cfg: &str) -> Daemon {
    Daemon::start(&["--config", cfg, "--force"], &[])
}

fn client() -> Client {
    Client::connect(SOCK, Duration::from_secs(10)).unwrap()
}

fn status() -> Status {
    client().status().unwrap()
}

/// A process the test started; killed (by pid) and reaped when dropped, also on a panic.
struct Proc(Child);

impl Proc {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same for processes started with runplane-sys (e.g. as another user).
struct SysProc(runplane_sys::spawn::Child);

impl Drop for SysProc {
    fn drop(&mut self) {
        let _ = self.0.signal(rustix::process::Signal::KILL);
        let _ = self.0.wait();
    }
}

/// A `sleep 300` running as `uid` (gid the same), killed and reaped when dropped.
fn sleeper_as(uid: u32) -> SysProc {
    SysProc(
        runplane_sys::spawn::Spawn::new("/bin/sleep")
            .arg("300")
            .credentials(Credentials {
                uid,
                gid: uid,
                groups: vec![],
            })
            .spawn()
            .unwrap(),
    )
}

/// The daemon's refusal of `req`, from an open connection.
fn refused(c: &mut Client, req: SessionOpen) -> runplane_proto::ErrorReply {
    match c.session_open(req) {
        Err(ClientError::Daemon(e)) => e,
        other => panic!("not refused by the daemon: {other:?}"),
    }
}

fn sleeper() -> Proc {
    Proc(Command::new("sleep").arg("300").spawn().unwrap())
}

fn open(uid: u32, pid: u32) -> runplane_proto::SessionOpened {
    client()
        .session_open(SessionOpen {
            user: None,
            uid: Some(uid),
            pid: Some(pid as i32),
            allow_nested: None,
            gid: None,
        })
        .unwrap()
}

fn state_of(uid: u32) -> Option<String> {
    status()
        .userdirs
        .into_iter()
        .find(|u| u.uid == uid)
        .map(|u| u.state)
}

/// Polls `cond` for up to 10 s.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(p: Proc) {
    drop(p);
}

#[test]
fn priv_login_logout_lifecycle_with_session_lifetime() {
    require_root!();
    run_private(users(2), |p| {
        let cfg = config(
            p,
            "size = \"4M\"\ninodes = 100\nlifetime = \"sessions\"\ngrace = \"300ms\"\n",
        );
        let d = start(&cfg);
        let (a, b) = (sleeper(), sleeper());
        let s1 = open(2000, a.id());
        assert_eq!(
            (
                s1.path.as_str(),
                s1.backend.as_str(),
                s1.created,
                s1.user.as_str()
            ),
            ("/run/user/2000", "tmpfs", true, "u0")
        );
        let s2 = open(2000, b.id());
        assert!(!s2.created);
        // Independent check: findmnt sees the tmpfs with the exact options.
        let out = run(
            Path::new("/usr/bin/findmnt"),
            &["-n", "-o", "FSTYPE,OPTIONS", "/run/user/2000"],
            &[],
            None,
        );
        assert!(out.stdout.starts_with("tmpfs"), "{}", out.stdout);
        for opt in [
            "nosuid",
            "nodev",
            "size=4096k",
            "nr_inodes=100",
            "mode=700",
            "uid=2000",
            "gid=2000",
        ] {
            assert!(out.stdout.contains(opt), "{opt} missing: {}", out.stdout);
        }
        let st = status();
        let u = &st.userdirs[0];
        assert_eq!(
            (
                u.bytes_limit,
                u.inodes_limit,
                u.sessions.len(),
                u.state.as_str()
            ),
            (4 << 20, 100, 2, "active")
        );
        assert!(u.options.contains("mode=700"), "{}", u.options);
        // Usage is read live: a 64 KiB file and a directory show in bytes and inodes.
        let before = (u.bytes_used, u.inodes_used);
        std::fs::create_dir("/run/user/2000/d").unwrap();
        std::fs::write("/run/user/2000/d/f", vec![1u8; 64 << 10]).unwrap();
        let u = status().userdirs.remove(0);
        assert!(
            u.bytes_used >= before.0 + (64 << 10),
            "{} then {}",
            before.0,
            u.bytes_used
        );
        assert_eq!(
            u.inodes_used,
            before.1 + 2,
            "inodes {} then {}",
            before.1,
            u.inodes_used
        );
        assert!(u.bytes_used < u.bytes_limit && u.inodes_used < u.inodes_limit);
        // A leader dying ends its session; the other keeps the dir.
        kill(a);
        eventually("the dead leader's session ends", || {
            status().userdirs[0].sessions.len() == 1
        });
        // The last close starts the grace period; the dir goes when it expires.
        let closed = client().session_close(s2.id).unwrap();
        assert_eq!((closed.remaining, closed.state.as_str()), (0, "grace"));
        assert!(Path::new("/run/user/2000").exists());
        eventually("the dir is removed after the grace period", || {
            !Path::new("/run/user/2000").exists()
        });
        assert!(status().userdirs.is_empty());
        kill(b);
        assert_eq!(d.stop(), ExitStatus::Exited(0));
    });
}

#[test]
fn priv_login_in_grace_cancels_removal() {
    require_root!();
    run_private(users(1), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"1s\"\n");
        let _d = start(&cfg);
        let a = sleeper();
        let s = open(2000, a.id());
        std::fs::write("/run/user/2000/keep", b"x").unwrap();
        client().session_close(s.id).unwrap();
        assert_eq!(state_of(2000).as_deref(), Some("grace"));
        let s2 = open(2000, a.id());
        assert!(!s2.created);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            std::fs::read("/run/user/2000/keep").unwrap(),
            b"x",
            "removed despite a login in grace"
        );
        assert_eq!(state_of(2000).as_deref(), Some("active"));
        kill(a);
    });
}

#[test]
fn priv_processes_lifetime_keeps_the_dir_while_a_process_of_the_user_runs() {
    require_root!();
    run_private(users_at(2100, 2), |p| {
        let cfg = config(p, "lifetime = \"processes\"\ngrace = \"0\"\n");
        let _d = start(&cfg);
        // A "tmux" of u0 left behind after logout: a process running as uid 2100.
        let leader = sleeper();
        let s = open(2100, leader.id());
        let tmux = sleeper_as(2100);
        client().session_close(s.id).unwrap();
        eventually("the user waits for its processes", || {
            state_of(2100).as_deref() == Some("waiting-for-processes")
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            Path::new("/run/user/2100").exists(),
            "removed under a running process"
        );
        drop(tmux);
        eventually("the dir goes once the last process exited", || {
            !Path::new("/run/user/2100").exists()
        });
        kill(leader);
    });
}

/// A user whose processes hop from pid to pid (each starts the next and exits) so that the
/// set the daemon waits for keeps emptying: the daemon scans /proc again at most once a
/// second, not once per hop, and the dir still goes once the hopping stops.
#[test]
fn priv_processes_hopping_from_pid_to_pid_cost_one_scan_a_second() {
    require_root!();
    run_private(users_at(2360, 1), |p| {
        let cfg = config(p, "lifetime = \"processes\"\ngrace = \"0\"\n");
        let d = start(&cfg);
        let hops = Hops::write(Some("0.02"));
        let leader = sleeper();
        let s = open(2360, leader.id());
        let first = SysProc(
            runplane_sys::spawn::Spawn::new(&hops.script)
                .args(hops.args(500))
                .credentials(Credentials {
                    uid: 2360,
                    gid: 2360,
                    groups: vec![],
                })
                .spawn()
                .unwrap(),
        );
        client().session_close(s.id).unwrap();
        eventually("the user waits for its processes", || {
            state_of(2360).as_deref() == Some("waiting-for-processes")
        });
        let scans = || {
            d.log()
                .lines()
                .filter(|l| l.contains("uid=2360") && l.contains("waiting for processes"))
                .count()
        };
        let (t0, before) = (Instant::now(), scans());
        std::thread::sleep(Duration::from_millis(2500));
        let (secs, during) = (t0.elapsed().as_secs_f64(), scans() - before);
        assert!(
            (during as f64) <= secs.ceil() + 1.0,
            "{during} scans in {secs:.1} s"
        );
        assert!(
            Path::new("/run/user/2360").exists(),
            "removed under a running process: {}",
            d.log()
        );
        drop(hops);
        drop(first);
        eventually("the dir goes once the hopping stopped", || {
            !Path::new("/run/user/2360").exists()
        });
        eventually("no hop is left", || {
            !runplane_userdirs::procs::pids_of(Path::new("/proc"), 2360).any()
        });
        kill(leader);
    });
}

/// A user asking for sessions in a loop: it may hold only `max_sessions_per_user` that it
/// opened itself, and logins (root, as the PAM module) are not held to that. The daemon lifts
/// its open-file limit (each session pins a pidfd) to what logind gets from systemd.
#[test]
fn priv_the_open_file_limit_bounds_sessions_and_watches_give_way_to_scans() {
    require_root!();
    run_private(users_at(2420, 1), |p| {
        let cfg = config(p, "lifetime = \"processes\"\ngrace = \"0\"\n");
        // 256 control connections and 256 kept in reserve leave 3 open files: three
        // sessions' pidfds, and none for watching processes (an eighth of 3).
        let d = Daemon::start_with_nofile(&["--config", &cfg, "--force"], 256 + 256 + 3);
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
        assert!(
            limits
                .lines()
                .any(|l| l.starts_with("Max open files") && l.contains(" 515 ")),
            "{limits}"
        );
        let leaders: Vec<SysProc> = (0..4).map(|_| sleeper_as(2420)).collect();
        let ids: Vec<u64> = leaders[..3]
            .iter()
            .map(|l| open(2420, l.0.pid() as u32).id)
            .collect();
        let e = refused(
            &mut client(),
            SessionOpen {
                user: None,
                uid: Some(2420),
                pid: Some(leaders[3].0.pid()),
                allow_nested: None,
                gid: None,
            },
        );
        assert_eq!(e.code, Code::EBUSY, "{}", e.message);
        assert!(
            e.message.contains(
                "runplaned holds 3 sessions, as many as its open-file limit leaves room for"
            ),
            "{}",
            e.message
        );
        // Logged out, its processes still running: no pidfd is left to watch them with, so
        // the daemon scans /proc again each second, and removes the dir once they are gone.
        for id in ids {
            client().session_close(id).unwrap();
        }
        assert_eq!(state_of(2420).as_deref(), Some("waiting-for-processes"));
        eventually("the daemon has scanned and pinned nothing", || {
            d.log()
                .contains("waiting for processes of the uid to exit uid=2420 count=0")
        });
        drop(leaders);
        eventually("the dir is removed", || {
            !Path::new("/run/user/2420").exists()
        });
        assert_eq!(state_of(2420), None);
        assert_eq!(d.stop(), ExitStatus::Exited(0));
    });
}

#[test]
fn priv_removing_a_huge_tree_holds_up_no_other_users_login() {
    require_root!();
    run_private(users_at(2430, 2), |p| {
        let cfg = config(
            p,
            "lifetime = \"sessions\"\ngrace = \"0\"\nsize = \"64M\"\ninodes = 400000\nbudget = \"96M\"\n",
        );
        let d = start(&cfg);
        let (a, b) = (sleeper(), sleeper());
        let s = open(2430, a.id());
        // 200,000 files, as a user may leave behind: emptying them takes the remover seconds.
        let dir = Path::new("/run/user/2430");
        for i in 0..200 {
            let sub = dir.join(format!("d{i}"));
            std::fs::create_dir(&sub).unwrap();
            for j in 0..1000 {
                std::fs::File::create(sub.join(format!("f{j}"))).unwrap();
            }
        }
        client().session_close(s.id).unwrap();
        eventually("the removal has started", || {
            d.log().contains("removing /run/user/2430")
        });
        // Another user's first login is served meanwhile, not after.
        let other = open(2431, b.id());
        assert!(other.created);
        // Status shows the dir under removal, by uid among the others, with what it still
        // holds; the user sees it too, as its own only.
        let st = status();
        let rows: Vec<_> = st
            .userdirs
            .iter()
            .map(|u| (u.uid, u.user.as_str(), u.state.as_str(), u.session_count))
            .collect();
        assert_eq!(
            rows,
            [(2430, "u0", "removing", 0), (2431, "u1", "active", 1)]
        );
        let gone = &st.userdirs[0];
        assert_eq!(
            (gone.backend.as_str(), gone.bytes_limit, gone.path.as_str()),
            ("tmpfs", 64 << 20, "/run/user/2430")
        );
        assert!(gone.options.contains("size=65536k"), "{}", gone.options);
        // Its tmpfs holds its memory until it is emptied: its size stays in the budget, and
        // the other user got what was left.
        let budget_used = |st: &Status| st.userdirs_manager.as_ref().unwrap().budget_used;
        assert_eq!(st.userdirs[1].bytes_limit, 32 << 20);
        assert_eq!(budget_used(&st), 96 << 20);
        let own = as_user(2430, common::cli().to_str().unwrap(), &["status", "--json"]);
        assert_eq!(own.status, ExitStatus::Exited(0), "{}", own.stderr);
        let own: serde_json::Value = serde_json::from_str(&own.stdout).unwrap();
        let own = own["userdirs"].as_array().unwrap();
        assert_eq!(own.len(), 1, "{own:?}");
        assert_eq!(
            (own[0]["uid"].as_u64(), own[0]["state"].as_str()),
            (Some(2430), Some("removing"))
        );
        assert!(
            dir.exists() && !d.log().contains("removed /run/user/2430"),
            "the removal was over before the other login was served"
        );
        // The same user's login waits for the removal and gets a new, empty dir.
        let again = open(2430, a.id());
        assert!(again.created);
        assert!(
            d.log()
                .contains("removed /run/user/2430 uid=2430 files=200000 dirs=201")
        );
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
        let st = status();
        assert_eq!(
            (st.userdirs.iter())
                .map(|u| (u.uid, u.state.as_str(), u.bytes_limit))
                .collect::<Vec<_>>(),
            [(2430, "active", 64 << 20), (2431, "active", 32 << 20)]
        );
        assert_eq!(budget_used(&st), 96 << 20);
        assert_eq!(d.stop(), ExitStatus::Exited(0));
    });
}

#[test]
fn priv_a_user_opening_sessions_in_a_loop_is_stopped_and_logins_are_not() {
    require_root!();
    run_private(users_at(2380, 1), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\nmax_sessions_per_user = 3\n");
        let d = start(&cfg);
        let u0 = Some(Credentials {
            uid: 2380,
            gid: 2380,
            groups: vec![],
        });
        let leader = sleeper_as(2380);
        let pid = leader.0.pid().to_string();
        let cli = common::cli();
        let own = || {
            run(
                &cli,
                &["session", "open", "--user", "u0", "--pid", &pid],
                &[],
                u0.clone(),
            )
        };
        for _ in 0..3 {
            let out = own();
            assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
        }
        let out = own();
        assert_eq!(out.status, ExitStatus::Exited(1), "{}", out.stderr);
        assert!(
            out.stderr.contains(
                "uid 2380 holds 3 sessions: a user may open one for itself only while it holds fewer than 3 (userdirs.max_sessions_per_user)"
            ),
            "{}",
            out.stderr
        );
        // A login is not refused for it.
        let login = open(2380, leader.0.pid() as u32);
        assert!(!login.created);
        let st = status();
        assert_eq!(st.userdirs[0].session_count, 4);
        // ... and the user still may not add one of its own.
        assert_eq!(own().status, ExitStatus::Exited(1));
        // The login counts as one it holds: below the limit again after two closes.
        client().session_close(st.userdirs[0].sessions[0]).unwrap();
        assert_eq!(own().status, ExitStatus::Exited(1));
        client().session_close(st.userdirs[0].sessions[1]).unwrap();
        let out = own();
        assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
        // The open-file limit the sessions' pidfds count against: the hard limit lifted to
        // 524288 (or fs.nr_open) where root may (CAP_SYS_RESOURCE; some sandboxes drop it),
        // and the soft one to the hard one.
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
        let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let target = 524_288.min(nr_open);
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .unwrap_or(u64::MAX);
        let may_raise = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
            .is_some_and(|c| c & (1 << 24) != 0); // CAP_SYS_RESOURCE
        let want = if hard < target && may_raise {
            target
        } else {
            hard
        }
        .to_string();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        assert_eq!(
            line.split_whitespace().skip(3).take(2).collect::<Vec<_>>(),
            [want.as_str(), want.as_str()],
            "{line}"
        );
        drop(leader);
    });
}

/// A full state dir (its own small tmpfs here): logins are still served, status says which
/// record is not written and why, every later change writes it again, and once there is room
/// a `kill -9` and a restart lose nothing.
#[test]
fn priv_a_full_state_dir_costs_no_login_and_nothing_once_there_is_room() {
    require_root!();
    run_private(users_at(2390, 24), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"10m\"\n");
        runplane_testkit::mount_tmpfs(Path::new("/run/runplane"), "size=256k,mode=0755");
        let d = start(&cfg);
        let leader = sleeper();
        let first = open(2390, leader.id());
        // Fill it: what is left is at most the journal's last page.
        let filler = Path::new("/run/runplane/filler");
        let mut f = std::fs::File::create(filler).unwrap();
        let e = loop {
            if let Err(e) = std::io::Write::write_all(&mut f, &[0; 4096]) {
                break e;
            }
        };
        assert_eq!(e.raw_os_error(), Some(28), "{e}");
        drop(f);
        // New users log in until a record no longer fits: each login is served all the same.
        let mut opened = vec![(2390, first.id)];
        let mut error = None;
        for uid in 2391..2414 {
            let s = open(uid, leader.id());
            assert!(s.created);
            opened.push((uid, s.id));
            error = status().userdirs_manager.unwrap().journal_error;
            if error.is_some() {
                break;
            }
        }
        let error = error.expect("a record that does not fit is reported");
        let uid = opened.last().unwrap().0;
        assert_eq!(
            error,
            format!(
                "the record of uid {uid} is not written (unable to append to /run/runplane/users/records.log: No space left on device (os error 28)): a restart would lose its latest change"
            )
        );
        let out = run(&common::cli(), &["status"], &[], None);
        assert!(
            out.stdout.contains(&format!(
                "userdirs: warning: the record of uid {uid} is not written"
            )),
            "{}",
            out.stdout
        );
        assert!(
            d.log().contains("the user's latest change is not recorded"),
            "{}",
            d.log()
        );
        // Room again: the next change (another session of the first user) writes what was owed.
        std::fs::remove_file(filler).unwrap();
        let again = open(2390, leader.id());
        opened.push((2390, again.id));
        assert_eq!(status().userdirs_manager.unwrap().journal_error, None);
        d.kill9();
        let _d = start(&cfg);
        let mut restored: Vec<(u32, u64)> = status()
            .userdirs
            .iter()
            .flat_map(|u| u.sessions.iter().map(move |&s| (u.uid, s)))
            .collect();
        restored.sort_unstable();
        opened.sort_unstable();
        assert_eq!(restored, opened);
        kill(leader);
    });
}

#[test]
fn priv_unprivileged_peers_are_confined_to_themselves() {
    require_root!();
    run_private(users_at(2500, 2), |p| {
        let cfg = config(p, "");
        let d = start(&cfg);
        let u0 = Some(Credentials {
            uid: 2500,
            gid: 2500,
            groups: vec![],
        });
        let cli = common::cli();
        // u0 asking for u1: refused, clear reason, exit 1.
        let out = run(
            &cli,
            &["session", "open", "--uid", "2501", "--pid", "1"],
            &[],
            u0.clone(),
        );
        assert_eq!(out.status, ExitStatus::Exited(1), "{}", out.stderr);
        assert!(
            out.stderr
                .contains("uid 2500 may open sessions only for itself, not for uid 2501"),
            "{}",
            out.stderr
        );
        // u0 for itself but led by a root process: refused.
        let root_proc = sleeper();
        let out = run(
            &cli,
            &[
                "session",
                "open",
                "--user",
                "u0",
                "--pid",
                &root_proc.id().to_string(),
            ],
            &[],
            u0.clone(),
        );
        assert_eq!(out.status, ExitStatus::Exited(1), "{}", out.stderr);
        assert!(out.stderr.contains("belongs to uid 0"), "{}", out.stderr);
        // u0 for itself, led by its own shell: allowed; the dir appears; it sees only itself.
        let out = run(
            Path::new("/bin/sh"),
            &[
                "-c",
                &format!(
                    "{} session open --user u0 --json && {} status --json",
                    cli.display(),
                    cli.display()
                ),
            ],
            &[],
            u0.clone(),
        );
        assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
        // The shell (the leader) has exited by now, so the session ends by itself.
        let root_s = open(2501, root_proc.id());
        let out = run(&cli, &["status", "--json"], &[], u0.clone());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert!(
            v["userdirs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["uid"] == 2500),
            "u0 sees another user: {v}"
        );
        // Its own entry's options (statmount, for its mount alone) read as root's listing
        // (mountinfo) shows them.
        let root_view = status()
            .userdirs
            .into_iter()
            .find(|u| u.uid == 2500)
            .unwrap();
        assert!(
            root_view.options.contains("uid=2500"),
            "{}",
            root_view.options
        );
        assert_eq!(
            v["userdirs"][0]["options"].as_str(),
            Some(root_view.options.as_str()),
            "{v}"
        );
        let out = run(
            &cli,
            &["session", "close", &root_s.id.to_string()],
            &[],
            u0.clone(),
        );
        assert_eq!(out.status, ExitStatus::Exited(1));
        assert!(
            out.stderr.contains(&format!(
                "session {} belongs to uid 2501, not to uid 2500",
                root_s.id
            )),
            "{}",
            out.stderr
        );
        let out = run(&cli, &["linger", "enable", "u0"], &[], u0.clone());
        assert_eq!(out.status, ExitStatus::Exited(1));
        assert!(
            out.stderr.contains("userdirs.self_linger is off"),
            "{}",
            out.stderr
        );
        // Malformed and hostile arguments: clear errors, the daemon keeps serving.
        let mut c = client();
        for (bytes, code) in [
            (
                &br#"{"v":1,"id":1,"op":"session_open","args":{"uid":2500,"pid":-5}}"#[..],
                Code::ENOENT,
            ),
            (
                br#"{"v":1,"id":2,"op":"session_open","args":{"user":"nosuch"}}"#,
                Code::ENOENT,
            ),
            (
                br#"{"v":1,"id":3,"op":"session_open","args":{"user":"u0","uid":2500}}"#,
                Code::EINVAL,
            ),
            (
                br#"{"v":1,"id":4,"op":"session_close","args":{"id":99999999}}"#,
                Code::ENOENT,
            ),
            (
                br#"{"v":1,"id":5,"op":"linger","args":{"user":"u0"}}"#,
                Code::EINVAL,
            ),
        ] {
            let r = runplane_proto::decode_response(&c.call_raw(bytes).unwrap()).unwrap();
            assert_eq!(
                r.result.unwrap_err().code,
                code,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // A thread is not a process: pidfd_open refuses it, and the answer says which it is.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tid_tx
                .send(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let e = refused(
            &mut c,
            SessionOpen {
                user: None,
                uid: Some(2500),
                pid: Some(tid),
                allow_nested: None,
                gid: None,
            },
        );
        drop(done_tx);
        thread.join().unwrap();
        assert_eq!(e.code, Code::EINVAL, "{}", e.message);
        assert!(
            e.message.contains(&format!(
                "{tid} is a thread of process {}, not a process",
                std::process::id()
            )),
            "{}",
            e.message
        );
        // A name with a newline, refused (and logged at debug): it cannot start a line of
        // the daemon's log.
        let forged = "nosuch\n2026-12-02T00:00:00Z ERROR forged";
        let e = refused(
            &mut c,
            SessionOpen {
                user: Some(forged.into()),
                uid: None,
                pid: None,
                allow_nested: None,
                gid: None,
            },
        );
        assert_eq!(e.code, Code::ENOENT, "{}", e.message);
        eventually("the refusal is logged", || {
            d.log()
                .contains("nosuch\\n2026-12-02T00:00:00Z ERROR forged")
        });
        assert!(
            !d.log()
                .lines()
                .any(|l| l.starts_with("2026-12-02T00:00:00Z")),
            "{}",
            d.log()
        );
        c.ping().unwrap();
        kill(root_proc);
    });
}

#[test]
fn priv_linger_keeps_dirs_across_logout_and_daemon_restart() {
    require_root!();
    run_private(users(2), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let d = start(&cfg);
        let st = client()
            .linger(Linger {
                user: Some("u1".into()),
                uid: None,
                enable: true,
            })
            .unwrap();
        assert_eq!((st.uid, st.enabled), (Some(2001), true));
        assert!(Path::new("/run/.testkit/linger/u1").exists());
        assert!(
            Path::new("/run/user/2001").exists(),
            "linger brings the dir up at once"
        );
        assert_eq!(state_of(2001).as_deref(), Some("lingering"));
        let a = sleeper();
        let s = open(2001, a.id());
        client().session_close(s.id).unwrap();
        assert_eq!(state_of(2001).as_deref(), Some("lingering"));
        assert_eq!(
            client()
                .linger_list()
                .unwrap()
                .iter()
                .map(|l| l.user.as_str())
                .collect::<Vec<_>>(),
            ["u1"]
        );
        // A fresh daemon (after a clean stop and a wiped state dir) brings lingering users up.
        assert_eq!(d.stop(), ExitStatus::Exited(0));
        assert!(
            Path::new("/run/user/2001").exists(),
            "SIGTERM keeps every dir"
        );
        runplane_sys::remove::remove_tree(
            &runplane_sys::dir::Dir::open("/run").unwrap(),
            "runplane",
        )
        .unwrap();
        runplane_sys::remove::remove_tree(
            &runplane_sys::dir::Dir::open("/run/user").unwrap(),
            "2001",
        )
        .unwrap();
        let _d = start(&cfg);
        assert!(
            Path::new("/run/user/2001").exists(),
            "lingering user not brought up at start"
        );
        // Disabling linger without sessions lets the dir go.
        client()
            .linger(Linger {
                user: Some("u1".into()),
                uid: None,
                enable: false,
            })
            .unwrap();
        eventually("the dir goes after linger is disabled", || {
            !Path::new("/run/user/2001").exists()
        });
        assert!(!Path::new("/run/.testkit/linger/u1").exists());
        kill(a);
    });
}

#[test]
fn priv_restart_readopts_live_sessions_and_removes_dead_ones() {
    require_root!();
    run_private(users(3), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"2s\"\n");
        let d = start(&cfg);
        let (live, dies) = (sleeper(), sleeper());
        let s_live = open(2000, live.id());
        open(2001, dies.id());
        let g = sleeper();
        let s_grace = open(2002, g.id());
        client().session_close(s_grace.id).unwrap();
        d.kill9();
        kill(dies); // dies while the daemon is down
        let _d = start(&cfg);
        let st = status();
        let get = |uid: u32| st.userdirs.iter().find(|u| u.uid == uid).cloned();
        assert_eq!(
            get(2000).map(|u| (u.state, u.sessions)),
            Some(("active".into(), vec![s_live.id]))
        );
        assert_eq!(get(2001).map(|u| u.state), Some("grace".into()));
        assert_eq!(get(2002).map(|u| u.state), Some("grace".into()));
        // New session ids never repeat ones handed out before the crash.
        let s_new = open(2000, live.id());
        assert!(s_new.id > s_grace.id, "{} <= {}", s_new.id, s_grace.id);
        // The re-adopted leader is still watched.
        let closed = client().session_close(s_live.id).unwrap();
        assert_eq!(closed.remaining, 1);
        eventually("dead and grace users are removed", || {
            !Path::new("/run/user/2001").exists() && !Path::new("/run/user/2002").exists()
        });
        assert!(Path::new("/run/user/2000").exists());
        kill(live);
        eventually("the re-adopted user goes with its leader", || {
            state_of(2000).as_deref() == Some("grace")
        });
        kill(g);
    });
}

#[test]
fn priv_another_manager_makes_the_daemon_refuse_unless_forced() {
    require_root!();
    run_private(users(1), |p| {
        let fake = p.scratch.join("systemd-logind");
        std::fs::copy("/bin/sleep", &fake).unwrap();
        let logind = Proc(Command::new(&fake).arg("300").spawn().unwrap());
        let cfg = config(p, "");
        let d = Daemon::start(&["--config", &cfg], &[]);
        let a = sleeper();
        match client().session_open(SessionOpen {
            user: None,
            uid: Some(2000),
            pid: Some(a.id() as i32),
            allow_nested: None,
            gid: None,
        }) {
            Err(ClientError::Daemon(e)) => {
                assert_eq!(e.code, Code::EBUSY);
                assert!(
                    e.message.contains(&format!(
                        "systemd-logind (pid {}) manages /run/user",
                        logind.id()
                    )),
                    "{}",
                    e.message
                );
                assert!(e.message.contains("--force"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        let st = status();
        let m = st.userdirs_manager.unwrap();
        assert!(!m.managing && m.reason.unwrap().contains("systemd-logind"));
        drop(d);
        let _d = Daemon::start(&["--config", &cfg, "--force"], &[]);
        assert_eq!(open(2000, a.id()).backend, "tmpfs");
        drop(logind);
        kill(a);
    });
}

#[test]
fn priv_budget_and_limits_are_enforced() {
    require_root!();
    run_private(users(3), |p| {
        let cfg = config(p, "size = \"2M\"\nbudget = \"3M\"\nmin_size = \"1M\"\n");
        let _d = start(&cfg);
        let a = sleeper();
        open(2000, a.id());
        open(2001, a.id());
        let st = status();
        let limits: Vec<u64> = st.userdirs.iter().map(|u| u.bytes_limit).collect();
        assert_eq!(
            limits,
            [2 << 20, 1 << 20],
            "the second user gets what is left"
        );
        match client().session_open(SessionOpen {
            user: None,
            uid: Some(2002),
            pid: Some(a.id() as i32),
            allow_nested: None,
            gid: None,
        }) {
            Err(ClientError::Daemon(e)) => {
                assert_eq!(e.code, Code::ENOSPC);
                assert!(e.message.contains("budget is exhausted"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        assert!(!Path::new("/run/user/2002").exists());
        let m = status().userdirs_manager.unwrap();
        assert_eq!((m.budget, m.budget_used), (Some(3 << 20), 3 << 20));
        kill(a);
    });
}

#[test]
fn priv_churn_with_a_crash_keeps_dirs_and_sessions_consistent() {
    require_root!();
    run_private(
        Setup {
            users: Some(Users::numbered("c", 3000, 200)),
            ..Default::default()
        },
        |p| {
            let cfg = config(p, "size = \"1M\"\nlifetime = \"sessions\"\ngrace = \"0\"\n");
            let mut d = start(&cfg);
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut leaders: Vec<(Proc, u64, u32)> = Vec::new();
            let mut c = client();
            for step in 0..3000 {
                if step == 1500 {
                    // kill -9 in the middle, then restart on the same state.
                    drop(c);
                    d.kill9();
                    d = start(&cfg);
                    c = client();
                }
                match next() % 20 {
                    0..=9 => {
                        let uid = 3000 + (next() % 200) as u32;
                        // Leaders are shared among sessions sometimes, so one death ends several.
                        let pid = if !leaders.is_empty() && next() % 3 == 0 {
                            leaders[(next() as usize) % leaders.len()].0.id()
                        } else {
                            let ch = sleeper();
                            let pid = ch.id();
                            leaders.push((ch, 0, uid));
                            pid
                        };
                        let s = c
                            .session_open(SessionOpen {
                                user: None,
                                uid: Some(uid),
                                pid: Some(pid as i32),
                                allow_nested: None,
                                gid: None,
                            })
                            .unwrap();
                        if let Some(l) = leaders.iter_mut().find(|l| l.0.id() == pid) {
                            l.1 = s.id;
                            l.2 = uid;
                        }
                    }
                    10..=15 => {
                        let list = c.session_list().unwrap();
                        if !list.is_empty() {
                            let id = list[(next() as usize) % list.len()].id;
                            match c.session_close(id) {
                                Ok(_) => {}
                                Err(ClientError::Daemon(e)) if e.code == Code::ENOENT => {} // its leader just died
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    16..=18 => {
                        if !leaders.is_empty() {
                            let i = (next() as usize) % leaders.len();
                            kill(leaders.swap_remove(i).0);
                        }
                    }
                    _ => {
                        // Someone unmounts a user's tmpfs behind the daemon's back (it may be
                        // gone or going meanwhile: then there is nothing to unmount).
                        let uid = 3000 + (next() % 200) as u32;
                        let _ = rustix::mount::unmount(
                            format!("/run/user/{uid}").as_str(),
                            rustix::mount::UnmountFlags::DETACH,
                        );
                    }
                }
            }
            // Settle: every leader event processed, every zero grace timer fired, every
            // unmounted tmpfs mounted again (where the kernel says, or made again after the
            // restart where it happened while the daemon was down).
            let mounted = |uid: &u32| {
                rustix::fs::statx(
                    rustix::fs::CWD,
                    format!("/run/user/{uid}").as_str(),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    rustix::fs::StatxFlags::empty(),
                )
                .is_ok_and(|st| {
                    st.stx_attributes
                        .contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
                })
            };
            let watching = runplane_testkit::mount_events();
            if !watching {
                eprintln!(
                    "this kernel has no fanotify mount events (< 6.15): not checked that every \
                     dir unmounted in the churn is a tmpfs again"
                );
            }
            let check = || {
                let st = status();
                let sessions = client().session_list().unwrap();
                let on_disk: std::collections::BTreeSet<u32> = std::fs::read_dir("/run/user")
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
                    .collect();
                let with_sessions: std::collections::BTreeSet<u32> =
                    sessions.iter().map(|s| s.uid).collect();
                let listed: std::collections::BTreeSet<u32> =
                    st.userdirs.iter().map(|u| u.uid).collect();
                (on_disk, with_sessions, listed, sessions)
            };
            eventually("dirs match live sessions, each a tmpfs", || {
                let (on_disk, with_sessions, listed, _) = check();
                on_disk == with_sessions
                    && listed == with_sessions
                    && (!watching || on_disk.iter().all(mounted))
            });
            let log = d.log();
            assert!(
                !log.contains("unable to remove") && !log.contains("no new one could be made"),
                "{log}"
            );
            // Every live session's leader is a live process.
            let (_, _, _, sessions) = check();
            for s in &sessions {
                assert!(
                    Path::new(&format!("/proc/{}", s.leader_pid)).exists(),
                    "session {} has a dead leader",
                    s.id
                );
            }
            for (ch, _, _) in leaders {
                kill(ch);
            }
            eventually("everything goes when every leader is gone", || {
                std::fs::read_dir("/run/user").unwrap().count() == 0
            });
            assert!(client().session_list().unwrap().is_empty());
            // Thousands of changes were appended (about 1 MiB of lines): the journal was
            // compacted along the way, so it never holds much more than its 256 KiB floor.
            let journal = std::fs::metadata("/run/runplane/users/records.log").unwrap();
            assert!(journal.len() < 260 << 10, "{} bytes", journal.len());
            drop(d);
            let _d = start(&cfg);
            assert!(status().userdirs.is_empty());
        },
    );
}

fn as_user(uid: u32, program: &str, args: &[&str]) -> common::Output {
    run(
        Path::new(program),
        args,
        &[],
        Some(Credentials {
            uid,
            gid: uid,
            groups: vec![],
        }),
    )
}

#[test]
fn priv_remove_ipc_removes_only_the_users_objects_in_its_own_ipc_namespace() {
    require_root!();
    run_private(
        Setup {
            users: Some(Users::numbered("u", 2200, 2)),
            ipc: true,
            ..Default::default()
        },
        |p| {
            let cfg = config(
                p,
                "remove_ipc = true\nlifetime = \"sessions\"\ngrace = \"0\"\n",
            );
            let d = start(&cfg);
            let leader = sleeper();
            let s = open(2200, leader.id());
            for uid in [2200, 2201] {
                for kind in ["-M", "-S", "-Q"] {
                    let out = as_user(
                        uid,
                        "/usr/bin/ipcmk",
                        if kind == "-Q" {
                            &["-Q"][..]
                        } else if kind == "-M" {
                            &["-M", "4096"][..]
                        } else {
                            &["-S", "1"][..]
                        },
                    );
                    assert_eq!(
                        out.status,
                        ExitStatus::Exited(0),
                        "ipcmk {kind}: {}",
                        out.stderr
                    );
                }
                assert_eq!(
                    as_user(
                        uid,
                        "/usr/bin/touch",
                        &[
                            &format!("/dev/shm/pshm-{uid}"),
                            &format!("/dev/mqueue/mq-{uid}")
                        ]
                    )
                    .status,
                    ExitStatus::Exited(0)
                );
            }
            // A name that is not UTF-8 shows lossily, as another valid name: u0's "x\xff"
            // shows as "x\u{fffd}", which here is u1's. Removal goes by the name as it is.
            let raw = Path::new(std::ffi::OsStr::from_bytes(b"/dev/shm/x\xff"));
            let shown = Path::new("/dev/shm/x\u{fffd}");
            // A name that would write to the terminal of whoever lists it.
            let ansi = Path::new("/dev/shm/t\x1b]0;owned\x07");
            for (path, uid) in [(raw, 2200), (shown, 2201), (ansi, 2200)] {
                std::fs::write(path, "").unwrap();
                std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
            }
            // A file covered by a mount (here root's bind of a file of u0's over one of u1's;
            // a user may mount FUSE on a file it owns): nobody's object, never looked through.
            let covered = Path::new("/dev/shm/covered");
            let over = p.scratch.join("over");
            for (path, uid) in [(covered, 2201), (over.as_path(), 2200)] {
                std::fs::write(path, "").unwrap();
                std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
            }
            runplane_testkit::bind(&over, covered);
            // What would go, as the user sees it; another user may not look.
            let out = as_user(
                2200,
                common::cli().to_str().unwrap(),
                &["session", "ipc", "u0", "--json"],
            );
            assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            let mut kinds: Vec<&str> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["kind"].as_str().unwrap())
                .collect();
            kinds.sort();
            assert_eq!(
                kinds,
                [
                    "mqueue",
                    "msg",
                    "posix-shm",
                    "posix-shm",
                    "posix-shm",
                    "sem",
                    "shm"
                ],
                "{v}"
            );
            // Root's table shows the names escaped: nothing reaches its terminal raw.
            let out = as_user(
                0,
                common::cli().to_str().unwrap(),
                &["session", "ipc", "u0"],
            );
            assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
            assert!(
                out.stdout.contains("t\\x1b]0;owned\\x07") && out.stdout.contains("x\\xff"),
                "{}",
                out.stdout
            );
            assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
            let out = as_user(
                2201,
                common::cli().to_str().unwrap(),
                &["session", "ipc", "u0"],
            );
            assert_eq!(out.status, ExitStatus::Exited(1));
            assert!(
                out.stderr.contains("may list only its own IPC objects"),
                "{}",
                out.stderr
            );
            // Logout: u0's objects go with its dir, u1's stay.
            client().session_close(s.id).unwrap();
            eventually("the dir is removed", || {
                !Path::new("/run/user/2200").exists()
            });
            let left =
                |file: &str| std::fs::read_to_string(format!("/proc/sysvipc/{file}")).unwrap();
            for file in ["shm", "sem", "msg"] {
                let t = left(file);
                assert!(
                    !t.lines()
                        .skip(1)
                        .any(|l| l.split_whitespace().any(|f| f == "2200")),
                    "{file}: {t}"
                );
                assert!(
                    t.lines()
                        .skip(1)
                        .any(|l| l.split_whitespace().any(|f| f == "2201")),
                    "{file} of u1 removed: {t}"
                );
            }
            assert!(
                !Path::new("/dev/shm/pshm-2200").exists()
                    && !Path::new("/dev/mqueue/mq-2200").exists()
            );
            assert!(
                Path::new("/dev/shm/pshm-2201").exists()
                    && Path::new("/dev/mqueue/mq-2201").exists()
            );
            assert!(
                !raw.exists() && !ansi.exists(),
                "u0's x\\xff or t\\x1b... is left"
            );
            assert!(shown.exists(), "u1's x\u{fffd} was removed for u0's x\\xff");
            assert!(covered.exists() && over.exists());
            assert!(!d.log().contains("covered"), "{}", d.log());
            // With a process of the user still running, its objects are kept.
            let s = open(2201, leader.id());
            let bg = sleeper_as(2201);
            client().session_close(s.id).unwrap();
            eventually("the dir is removed", || {
                !Path::new("/run/user/2201").exists()
            });
            assert!(
                Path::new("/dev/shm/pshm-2201").exists(),
                "IPC removed under a running process"
            );
            drop(bg);
            kill(leader);
        },
    );
}

#[test]
fn priv_refused_mount_falls_back_to_a_plain_dir_and_removal_survives_links() {
    require_root!();
    run_private(users_at(2400, 1), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let _d = Daemon::start_in_userns(&["--config", &cfg, "--force"]);
        let leader = sleeper();
        let s = open(2400, leader.id());
        assert_eq!(s.backend, "fallback-dir");
        let md = std::fs::metadata("/run/user/2400").unwrap();
        assert_eq!(
            (
                std::os::unix::fs::MetadataExt::uid(&md),
                std::os::unix::fs::MetadataExt::mode(&md) & 0o7777
            ),
            (2400, 0o700)
        );
        assert!(
            !runplane_sys::mountinfo::read()
                .unwrap()
                .iter()
                .any(|m| m.mount_point == Path::new("/run/user/2400"))
        );
        let st = status();
        assert_eq!(
            (st.userdirs[0].backend.as_str(), st.userdirs[0].bytes_limit),
            ("fallback-dir", 0)
        );
        // What only a plain directory allows: a hard link to a file outside (same filesystem),
        // plus a symlink. (Mounts inside are covered with a tmpfs: a daemon that may not mount
        // may not unmount either.)
        let outside = p.scratch.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), b"keep").unwrap();
        std::os::unix::fs::chown(outside.join("f"), Some(2400), Some(2400)).unwrap();
        std::fs::hard_link(outside.join("f"), "/run/user/2400/hardlink").unwrap();
        std::os::unix::fs::symlink(&outside, "/run/user/2400/symlink").unwrap();
        client().session_close(s.id).unwrap();
        eventually("the fallback dir is removed", || {
            !Path::new("/run/user/2400").exists()
        });
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"keep");
        assert_eq!(
            std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(outside.join("f")).unwrap()),
            1
        );
        assert!(
            !runplane_sys::mountinfo::read()
                .unwrap()
                .iter()
                .any(|m| m.mount_point.starts_with("/run/user/2400"))
        );
        kill(leader);
    });
}

#[test]
fn priv_a_users_fuse_mount_inside_is_dropped_with_the_dir() {
    require_root!();
    run_private(
        Setup {
            users: Some(Users::numbered("u", 2300, 1)),
            private_dev: true,
            ..Default::default()
        },
        |p| {
            let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
            let d = start(&cfg);
            let leader = sleeper();
            let s = open(2300, leader.id());
            let src = p.scratch.join("src");
            std::fs::create_dir(&src).unwrap();
            std::fs::write(src.join("precious"), b"keep").unwrap();
            std::os::unix::fs::chown(&src, Some(2300), Some(2300)).unwrap();
            // Named by the user, with a newline: the daemon's log names the mount it detaches,
            // and that must not start a forged line.
            let at = "/run/user/2300/fuse\n2026-12-02T00:00:00Z ERROR forged";
            std::fs::create_dir(at).unwrap();
            std::os::unix::fs::chown(at, Some(2300), Some(2300)).unwrap();
            // The user mounts FUSE through the setuid fusermount3, as a desktop's portal would.
            let fuse = bindfs(Some(2300), &src, at);
            client().session_close(s.id).unwrap();
            eventually("the dir is removed", || {
                !Path::new("/run/user/2300").exists()
            });
            assert!(
                !runplane_sys::mountinfo::read()
                    .unwrap()
                    .iter()
                    .any(|m| m.mount_point.starts_with("/run/user/2300"))
            );
            assert_eq!(std::fs::read(src.join("precious")).unwrap(), b"keep");
            let log = d.log();
            assert!(
                log.contains("detached /run/user/2300/fuse\\n2026-12-02T00:00:00Z ERROR forged"),
                "{log}"
            );
            assert!(
                !log.lines().any(|l| l.starts_with("2026-12-02T00:00:00Z")),
                "{log}"
            );
            drop(fuse);
            kill(leader);
        },
    );
}

#[test]
fn priv_a_resolved_account_is_taken_from_root_only() {
    require_root!();
    run_private(users_at(2600, 2), |p| {
        let cfg = config(p, "");
        let _d = start(&cfg);
        let leader = sleeper();
        let pid = Some(leader.id() as i32);
        // Root passes the whole account: used as given (the tmpfs gets that gid).
        let s = client()
            .session_open(SessionOpen {
                user: Some("u0".into()),
                uid: Some(2600),
                pid,
                allow_nested: None,
                gid: Some(4242),
            })
            .unwrap();
        assert_eq!((s.uid, s.user.as_str()), (2600, "u0"));
        let m = runplane_sys::mountinfo::read()
            .unwrap()
            .into_iter()
            .find(|m| m.mount_point == Path::new("/run/user/2600"))
            .unwrap();
        assert_eq!(m.option("gid"), Some("4242"));
        // A partial account is an error.
        match client().session_open(SessionOpen {
            user: None,
            uid: Some(2601),
            pid,
            allow_nested: None,
            gid: Some(1),
        }) {
            Err(ClientError::Daemon(e)) => assert_eq!(e.code, Code::EINVAL, "{}", e.message),
            other => panic!("{other:?}"),
        }
        // A non-root caller may not pass one (even for itself).
        let out = run(
            Path::new("/bin/sh"),
            &[
                "-c",
                &format!(
                    "{} session open --user u1 --json; :",
                    common::cli().display()
                ),
            ],
            &[],
            Some(Credentials {
                uid: 2601,
                gid: 2601,
                groups: vec![],
            }),
        );
        assert_eq!(
            out.status,
            ExitStatus::Exited(0),
            "without gid it works: {}",
            out.stderr
        );
        // The same request with a gid, as uid 2601 through socat (an independent client): EPERM.
        let req = r#"{"v":1,"id":9,"op":"session_open","args":{"user":"u1","uid":2601,"gid":0}}"#;
        let out = run(
            Path::new("/bin/sh"),
            &[
                "-c",
                &format!(
                    "printf '%s' '{req}' | socat -t2 - UNIX-CONNECT:/run/runplane/control,type=5"
                ),
            ],
            &[],
            Some(Credentials {
                uid: 2601,
                gid: 2601,
                groups: vec![],
            }),
        );
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {:?} {}", out.stdout, out.stderr));
        assert_eq!(v["id"], 9);
        assert_eq!(v["error"]["code"], "EPERM", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only root may pass a resolved account"),
            "{v}"
        );
        kill(leader);
    });
}

#[test]
fn priv_status_and_lists_of_thousands_page_through_the_packet_limit() {
    require_root!();
    const N: u32 = 1500;
    run_private(users_at(40000, N), |p| {
        let cfg = config(p, "size = \"64K\"\ninodes = 16\nlifetime = \"sessions\"\n");
        let _d = start(&cfg);
        // One leader for every session: the test itself (root may name any live leader).
        let me = std::process::id();
        for uid in 40000..40000 + N {
            open(uid, me);
        }
        // A user with more sessions than a status entry lists.
        for _ in 0..300 {
            open(40000, me);
        }
        let mut c = client();
        for i in (0..N).step_by(3) {
            c.linger(Linger {
                user: Some(format!("u{i}")),
                uid: None,
                enable: true,
            })
            .unwrap();
        }
        // Each answer stays in one packet (about 400 bytes an entry, 64 KiB a packet): the
        // library pages through and returns everything, in order.
        let st = c.status().unwrap();
        assert!(!st.userdirs_more);
        let uids: Vec<u32> = st.userdirs.iter().map(|u| u.uid).collect();
        assert_eq!(uids, (40000..40000 + N).collect::<Vec<_>>());
        let first = &st.userdirs[0];
        assert_eq!(first.session_count, 301);
        assert_eq!(first.sessions.len(), runplane_proto::MAX_STATUS_SESSIONS);
        let sessions = c.session_list().unwrap();
        assert_eq!(sessions.len(), N as usize + 300);
        assert!(sessions.windows(2).all(|w| w[0].id < w[1].id));
        let lingering = c.linger_list().unwrap();
        assert_eq!(lingering.len(), N.div_ceil(3) as usize);
        assert!(lingering.windows(2).all(|w| w[0].user < w[1].user));
        assert!(lingering.iter().all(|l| l.uid.is_some()));
        // A single page is within the budget and says that more follow.
        let raw = c.call_raw(br#"{"v":1,"id":1,"op":"status"}"#).unwrap();
        assert!(raw.len() <= runplane_proto::MAX_MESSAGE);
        let one: Status = runplane_proto::decode_response(&raw)
            .unwrap()
            .into_result()
            .unwrap();
        assert!(one.userdirs_more && !one.userdirs.is_empty());
        assert!(one.userdirs.len() < N as usize);
        // The command line shows all of them, as one JSON object.
        let out = run(
            &runplane_testkit::bin("runplane"),
            &["status", "--json"],
            &[],
            None,
        );
        assert!(out.status.success(), "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["userdirs"].as_array().unwrap().len(), N as usize);
        assert!(v.get("userdirs_more").is_none(), "the pages were joined");
        let out = run(
            &runplane_testkit::bin("runplane"),
            &["session", "list", "--json"],
            &[],
            None,
        );
        assert!(out.status.success(), "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v.as_array().unwrap().len(), N as usize + 300);
        // An unprivileged user pages through the same lists and sees only itself.
        let cli = runplane_testkit::bin("runplane");
        let cli = cli.to_str().unwrap();
        for (args, key) in [
            (&["status", "--json"][..], "status"),
            (&["session", "list", "--json"][..], "sessions"),
        ] {
            let out = as_user(41234, cli, args);
            assert!(out.status.success(), "{}", out.stderr);
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            let list = if key == "status" { &v["userdirs"] } else { &v };
            let uids: Vec<u64> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["uid"].as_u64().unwrap())
                .collect();
            assert_eq!(uids, [41234], "{key}");
        }
    });
}

#[test]
fn priv_a_journal_torn_by_a_crash_loses_only_the_unanswered_change() {
    require_root!();
    run_private(users_at(2100, 2), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let d = start(&cfg);
        let a = sleeper();
        let s = open(2100, a.id());
        d.kill9();
        // What a kill -9 in the middle of an append leaves: a line without its end.
        let journal = "/run/runplane/users/records.log";
        let mut torn = std::fs::read(journal).unwrap();
        let fragment = br#"{"set":{"version":1,"user":{"uid":2101,"gid":21"#;
        torn.extend_from_slice(fragment);
        std::fs::write(journal, &torn).unwrap();
        let d = start(&cfg);
        let st = status();
        let uids: Vec<u32> = st.userdirs.iter().map(|u| u.uid).collect();
        assert_eq!(
            uids,
            [2100],
            "the answered session is back, the torn line is not"
        );
        assert_eq!(st.userdirs[0].sessions, [s.id]);
        let log = d.log();
        let said = format!(
            "WARN userdirs records: {journal}: dropped a torn last line of {} bytes",
            fragment.len()
        );
        assert!(log.contains(&said), "{log}");
        // The journal was put right: whole lines only, and the daemon appends after them.
        let now = std::fs::read(journal).unwrap();
        assert_eq!(now.last(), Some(&b'\n'));
        let s2 = open(2101, a.id());
        drop(d);
        let _d = start(&cfg);
        let st = status();
        assert_eq!(
            st.userdirs.iter().map(|u| u.uid).collect::<Vec<_>>(),
            [2100, 2101]
        );
        assert_eq!(st.userdirs[1].sessions, [s2.id]);
        kill(a);
    });
}

#[test]
fn priv_a_tree_deeper_than_the_remover_goes_is_removed_and_the_daemon_keeps_serving() {
    require_root!();
    run_private(users_at(2350, 1), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let d = start(&cfg);
        let leader = sleeper();
        let s = open(2350, leader.id());
        // What the user made (`mkdir d; cd d` in a loop): a tree three times deeper than the
        // remover descends (one frame per level: 256 levels must fit any thread the removal
        // runs on; deeper directories are moved up), with a file at the bottom.
        let mut path = std::path::PathBuf::from("/run/user/2350");
        for _ in 0..3 * runplane_sys::remove::MAX_DEPTH {
            path.push("d");
            std::fs::create_dir(&path).unwrap();
        }
        std::fs::write(path.join("f"), b"x").unwrap();
        let closed = client().session_close(s.id).unwrap();
        assert_eq!((closed.remaining, closed.state.as_str()), (0, "grace"));
        eventually("the deep dir is removed", || {
            !Path::new("/run/user/2350").exists()
        });
        assert!(
            runplane_sys::mountinfo::read()
                .unwrap()
                .iter()
                .all(|m| !m.mount_point.starts_with("/run/user/2350")),
            "nothing of the user's stays mounted"
        );
        assert!(state_of(2350).is_none());
        client().ping().unwrap();
        assert_eq!(d.stop(), ExitStatus::Exited(0));
    });
}

/// The leader's watch is registered after the answer is sent: a leader that has exited by
/// then (here: before the session was even asked for, a zombie not yet reaped, whose pidfd
/// opens and is readable) still ends its session at once.
#[test]
fn priv_a_leader_dead_before_its_watch_is_registered_ends_its_session() {
    require_root!();
    run_private(users(1), |p| {
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"10m\"\n");
        let d = start(&cfg);
        let alive = sleeper();
        let live = open(2000, alive.id());
        let zombie = Proc(Command::new("true").spawn().unwrap());
        let stat = format!("/proc/{}/stat", zombie.id());
        eventually("the child is a zombie", || {
            std::fs::read_to_string(&stat)
                .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        });
        let dead = open(2000, zombie.id());
        assert!(!dead.created);
        eventually("the dead leader's session ends", || {
            status().userdirs[0].sessions == vec![live.id]
        });
        // The live one is still watched: its leader's exit ends it too.
        kill(alive);
        eventually("the last session ends", || {
            state_of(2000).as_deref() == Some("grace")
        });
        kill(zombie);
        assert_eq!(d.stop(), ExitStatus::Exited(0));
    });
}

#[test]
fn priv_a_full_run_user_refuses_the_login_clearly_and_then_serves_it() {
    require_root!();
    run_private(users_at(2440, 2), |p| {
        // /run/user on a tmpfs of its own with room for one dir only.
        std::fs::create_dir("/run/user").unwrap();
        let out = run(
            Path::new("/bin/mount"),
            &[
                "-t",
                "tmpfs",
                "-o",
                "mode=755,nr_inodes=2",
                "tmpfs",
                "/run/user",
            ],
            &[],
            None,
        );
        assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
        let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
        let d = start(&cfg);
        let (a, b) = (sleeper(), sleeper());
        let first = open(2440, a.id());
        let second = SessionOpen {
            user: None,
            uid: Some(2441),
            pid: Some(b.id() as i32),
            allow_nested: None,
            gid: None,
        };
        let mut c = client();
        let e = refused(&mut c, second.clone());
        assert_eq!(e.code, Code::ENOSPC, "{e:?}");
        assert_eq!(
            e.message,
            "unable to create directory /run/user/2441: No space left on device (os error 28)"
        );
        // Nothing of the refused login stays: no session, no dir, no entry once the
        // (empty) removal is over; the connection and the other user are served as before.
        assert!(c.session_list().unwrap().iter().all(|s| s.uid != 2441));
        assert!(!Path::new("/run/user/2441").exists());
        eventually("the refused user leaves status", || {
            state_of(2441).is_none()
        });
        assert_eq!(state_of(2440).as_deref(), Some("active"));
        // Room made (the other user logs out): the same login succeeds.
        c.session_close(first.id).unwrap();
        eventually("the other dir is removed", || {
            !Path::new("/run/user/2440").exists()
        });
        let opened = c.session_open(second).unwrap();
        assert!(opened.created);
        assert_eq!(state_of(2441).as_deref(), Some("active"));
        assert_eq!(d.stop(), ExitStatus::Exited(0));
        let out = run(Path::new("/bin/umount"), &["-l", "/run/user"], &[], None);
        assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
    });
}

/// A FUSE server started by the test (as `uid`, or as root with `allow_other`), mounting
/// `src` on `at`; stopped with SIGSTOP when asked, killed (by pid) when dropped.
fn bindfs(uid: Option<u32>, src: &Path, at: &str) -> SysProc {
    let mut s = runplane_sys::spawn::Spawn::new("/usr/bin/bindfs");
    match uid {
        Some(uid) => {
            s = s
                .args(["-f", "--no-allow-other", src.to_str().unwrap(), at])
                .credentials(Credentials {
                    uid,
                    gid: uid,
                    groups: vec![],
                });
        }
        None => {
            s = s.args([
                "-f",
                "-o",
                "allow_other,nonempty",
                src.to_str().unwrap(),
                at,
            ])
        }
    }
    let p = SysProc(s.env("PATH", "/usr/bin:/bin").spawn().unwrap());
    eventually("the FUSE mount appears", || {
        runplane_sys::mountinfo::read()
            .unwrap()
            .iter()
            .any(|m| m.mount_point == Path::new(at) && m.fstype.starts_with("fuse"))
    });
    p
}

#[test]
fn priv_fuse_mounts_over_or_in_a_dir_whose_server_hangs_are_detached_untouched() {
    require_root!();
    run_private(
        Setup {
            users: Some(Users::numbered("u", 2450, 2)),
            private_dev: true,
            ..Default::default()
        },
        |p| {
            let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
            let d = start(&cfg);
            let (a, b) = (sleeper(), sleeper());
            let (sa, sb) = (open(2450, a.id()), open(2451, b.id()));
            let src = p.scratch.join("src");
            std::fs::create_dir(&src).unwrap();
            std::fs::write(src.join("precious"), b"keep").unwrap();
            std::os::unix::fs::chown(&src, Some(2450), Some(2450)).unwrap();
            std::fs::create_dir("/run/user/2451/sub").unwrap();
            // The user mounts FUSE over its own runtime dir (it owns the tmpfs root, so
            // fusermount3 lets it): the daemon, root, may not even look into it.
            let over = bindfs(Some(2450), &src, "/run/user/2450");
            // Mounts root can enter, over a dir and inside one, whose server then stops
            // answering: any look into them would hang.
            let hung_in = bindfs(None, &src, "/run/user/2451/sub");
            let hung_over = bindfs(None, &src, "/run/user/2451");
            for s in [&hung_in, &hung_over] {
                s.0.signal(rustix::process::Signal::STOP).unwrap();
            }
            // Status answers, without the usage it cannot read from mounts not its own, and
            // says the dirs are covered; so does the table.
            let st = status();
            assert_eq!(
                st.userdirs
                    .iter()
                    .map(|u| (u.uid, u.state.as_str(), u.covered, u.bytes_used))
                    .collect::<Vec<_>>(),
                [(2450, "active", true, 0), (2451, "active", true, 0)]
            );
            let table = common::runplane(&["status"]);
            assert!(table.stdout.contains("tmpfs (covered)"), "{}", table.stdout);
            // Both logouts remove their dirs, and every mount in them goes.
            client().session_close(sa.id).unwrap();
            client().session_close(sb.id).unwrap();
            // (Looked at from mountinfo first: a stat of a hung mount would hang the test.)
            eventually("every mount in the dirs is gone", || {
                !runplane_sys::mountinfo::read()
                    .unwrap()
                    .iter()
                    .any(|m| m.mount_point.starts_with("/run/user/"))
            });
            eventually("both dirs are removed", || {
                !Path::new("/run/user/2450").exists() && !Path::new("/run/user/2451").exists()
            });
            assert_eq!(std::fs::read(src.join("precious")).unwrap(), b"keep");
            let log = d.log();
            assert!(!log.contains("unable to remove"), "{log}");
            assert_eq!(state_of(2450), None);
            drop((over, hung_in, hung_over));
            kill(a);
            kill(b);
        },
    );
}

/// The superblock options of the mount `path` is on, as mountinfo shows them.
fn super_options(path: &Path) -> String {
    let id = runplane_sys::dir::Dir::open(path)
        .unwrap()
        .mount_id()
        .unwrap();
    runplane_sys::mountinfo::find(id)
        .unwrap()
        .expect("in mountinfo")
        .super_options
}

/// Someone unmounts a user's tmpfs behind the daemon's back, or moves it away: told by the
/// kernel (fanotify mount events, Linux >= 6.15), the daemon mounts a new one at once with
/// the same limits, records it (a restart finds it intact) and answers the next login with
/// it; the moved one stays where it was moved.
#[test]
fn priv_a_users_tmpfs_unmounted_or_moved_away_behind_the_daemons_back_is_mounted_again() {
    require_root!();
    run_private(
        Setup {
            users: Some(Users::numbered("u", 2465, 1)),
            ..Default::default()
        },
        |p| {
            if !runplane_testkit::mount_events() {
                eprintln!("this kernel has no fanotify mount events (< 6.15): skipped");
                return;
            }
            let cfg = config(
                p,
                "lifetime = \"sessions\"\ngrace = \"0\"\nsize = \"3M\"\ninodes = 99\n",
            );
            let d = start(&cfg);
            let (a, b) = (sleeper(), sleeper());
            let sa = open(2465, a.id());
            let u = Path::new("/run/user/2465");
            std::fs::write(u.join("f"), b"x").unwrap();
            let (first, _) = mount_at(u);
            let options = super_options(u);
            assert!(options.contains("size=3072k,nr_inodes=99"), "{options}");
            rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
            eventually("a new tmpfs is mounted", || {
                let (now, root) = mount_at(u);
                root && now != first
            });
            assert!(!u.join("f").exists(), "a fresh tmpfs");
            assert_eq!(super_options(u), options);
            let (second, _) = mount_at(u);
            let sb = open(2465, b.id());
            assert_eq!(sb.mount_unique, Some(second));
            let st = status();
            let e = st.userdirs.iter().find(|e| e.uid == 2465).unwrap();
            assert!(!e.unmounted && !e.covered && e.backend == "tmpfs", "{e:?}");
            assert!(
                d.log()
                    .contains("the tmpfs on /run/user/2465 was unmounted behind runplaned's back: mounted a new one"),
                "{}",
                d.log()
            );
            // Moved away: a new one at the path, the moved one left alone.
            let moved = p.scratch.join("moved");
            std::fs::create_dir(&moved).unwrap();
            rustix::mount::mount_move(u, &moved).unwrap();
            eventually("a new tmpfs is mounted after the move", || {
                let (now, root) = mount_at(u);
                root && now != second
            });
            let (third, _) = mount_at(u);
            assert_eq!(mount_at(&moved), (second, true));
            rustix::mount::unmount(&moved, rustix::mount::UnmountFlags::DETACH).unwrap();
            let m = status().userdirs_manager.unwrap();
            assert!(m.mount_events && m.remounted == 2, "{m:?}");
            let table = common::runplane(&["status"]);
            assert!(
                table
                    .stdout
                    .contains("unmounts mended at once, 2 remounted)"),
                "{}",
                table.stdout
            );
            // The record holds the new mount: a restart finds the dir intact.
            drop(d);
            let d = start(&cfg);
            assert_eq!(mount_at(u).0, third);
            assert!(!d.log().contains("vanished"), "{}", d.log());
            let mut c = client();
            c.session_close(sa.id).unwrap();
            c.session_close(sb.id).unwrap();
            eventually("the dir is removed", || !u.exists());
            assert!(!d.log().contains("unable to remove"), "{}", d.log());
            assert!(!d.log().contains("mounted a new one"), "{}", d.log());
            kill(a);
            kill(b);
        },
    );
}

/// A record written before the daemon kept unique mount ids names the tmpfs by its reusable
/// id alone: a restart that finds the dir intact records its unique id, so that the mount is
/// watched (an unmount then is seen and mended) and told from a later mount with its old id.
#[test]
fn priv_a_record_without_the_unique_mount_id_gets_it_at_the_restart() {
    require_root!();
    run_private(
        Setup {
            users: Some(Users::numbered("u", 2467, 1)),
            ..Default::default()
        },
        |p| {
            if !runplane_testkit::mount_events() {
                eprintln!("this kernel has no fanotify mount events (< 6.15): skipped");
                return;
            }
            let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
            let d = start(&cfg);
            let a = sleeper();
            let sa = open(2467, a.id());
            let u = Path::new("/run/user/2467");
            let (first, _) = mount_at(u);
            drop(d);
            // As an older daemon wrote it: no "mount_unique" in any line.
            let journal = "/run/runplane/users/records.log";
            let text = std::fs::read_to_string(journal).unwrap();
            let field = format!(",\"mount_unique\":{first}");
            assert!(text.contains(&field), "{text}");
            std::fs::write(journal, text.replace(&field, "")).unwrap();
            let d = start(&cfg);
            assert!(!d.log().contains("vanished"), "{}", d.log());
            assert_eq!(mount_at(u).0, first, "re-adopted, not made again");
            let text = std::fs::read_to_string(journal).unwrap();
            assert!(
                text.lines().last().is_some_and(|l| l.contains(&field)),
                "the record written again holds the unique id: {text}"
            );
            rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
            eventually("a new tmpfs is mounted", || {
                let (now, root) = mount_at(u);
                root && now != first
            });
            client().session_close(sa.id).unwrap();
            eventually("the dir is removed", || !u.exists());
            kill(a);
        },
    );
}

/// Where the kernel has no mount events (before Linux 6.15), a tmpfs someone unmounts
/// behind the daemon's back stays unmounted until the user's next login: status says so
/// (and reads no usage of the plain directory left); the login mounts a new one and is
/// answered with it; the logout removes it.
#[test]
fn priv_without_mount_events_an_unmounted_tmpfs_is_mounted_again_at_the_next_login() {
    require_root!();
    run_private(
        Setup {
            users: Some(Users::numbered("u", 2460, 1)),
            ..Default::default()
        },
        |p| {
            let cfg = config(p, "lifetime = \"sessions\"\ngrace = \"0\"\n");
            let d = Daemon::start_without_mount_events(&["--config", &cfg, "--force"]);
            assert!(
                d.log().contains("this kernel has no fanotify mount events"),
                "{}",
                d.log()
            );
            let (a, b) = (sleeper(), sleeper());
            let sa = open(2460, a.id());
            let u = Path::new("/run/user/2460");
            std::fs::write(u.join("f"), b"x").unwrap();
            let (first, _) = mount_at(u);
            rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
            std::fs::write(u.join("left"), b"y").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let st = status();
            assert_eq!(
                st.userdirs
                    .iter()
                    .map(|u| (u.uid, u.unmounted, u.covered, u.bytes_used))
                    .collect::<Vec<_>>(),
                [(2460, true, false, 0)]
            );
            let table = common::runplane(&["status"]);
            assert!(
                table.stdout.contains("tmpfs (unmounted)"),
                "{}",
                table.stdout
            );
            let sb = open(2460, b.id());
            let (now, root) = mount_at(u);
            assert!(root && now != first, "a new tmpfs at the login");
            assert_eq!(sb.mount_unique, Some(now));
            assert!(!u.join("left").exists(), "the plain directory is hidden");
            assert!(
                d.log()
                    .contains("the tmpfs on /run/user/2460 was unmounted behind runplaned's back: mounted a new one"),
                "{}",
                d.log()
            );
            let st = status();
            assert!(!st.userdirs[0].unmounted, "{:?}", st.userdirs[0]);
            let m = st.userdirs_manager.unwrap();
            assert!(!m.mount_events && m.remounted == 1, "{m:?}");
            let table = common::runplane(&["status"]);
            assert!(
                table
                    .stdout
                    .contains("unmounts mended at the next login, 1 remounted)"),
                "{}",
                table.stdout
            );
            let mut c = client();
            c.session_close(sa.id).unwrap();
            c.session_close(sb.id).unwrap();
            eventually("the dir is removed", || !u.exists());
            let log = d.log();
            assert!(!log.contains("unable to remove"), "{log}");
            assert_eq!(state_of(2460), None);
            kill(a);
            kill(b);
        },
    );
}

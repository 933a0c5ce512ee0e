//! runplaned as root on its built-in defaults, in a private mount namespace with a tmpfs over
//! /run (the README's main command, never touching the host's /run), and requests from
//! unprivileged peers.

mod common;

use std::time::Duration;

use common::{Daemon, run};
use runplane_sys::pidfd::ExitStatus;
use runplane_sys::spawn::Credentials;
use runplane_testkit::{Setup, require_root, run_private};

fn nobody() -> Option<Credentials> {
    Some(Credentials {
        uid: 65534,
        gid: 65534,
        groups: vec![],
    })
}

#[test]
fn priv_defaults_serve_root_and_unprivileged_peers() {
    require_root!();
    run_private(Setup::default(), |_| {
        let d = Daemon::start(&[], &[]);
        let md = std::fs::metadata("/run/runplane/control").unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
            0o666
        );
        let st = runplane::Client::connect("/run/runplane/control", Duration::from_secs(5))
            .unwrap()
            .status()
            .unwrap();
        assert_eq!(st.daemon.control, "/run/runplane/control");
        assert_eq!(st.daemon.state, "/run/runplane");
        assert_eq!(
            st.daemon.config.path.as_deref(),
            if std::path::Path::new("/etc/runplane/runplane.toml").exists() {
                Some("/etc/runplane/runplane.toml")
            } else {
                None
            }
        );

        // An unprivileged user may read the status through the CLI...
        let out = run(&common::cli(), &["status", "--json"], &[], nobody());
        assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["daemon"]["pid"], d.pid());
        // ...but not reload the daemon: refused (exit 1) with the reason.
        let out = run(&common::cli(), &["reload"], &[], nobody());
        assert_eq!(out.status, ExitStatus::Exited(1), "{}", out.stderr);
        assert!(
            out.stderr
                .contains("reload is for root and the daemon's own user (uid 0, 0), not uid 65534"),
            "{}",
            out.stderr
        );
        // Root may.
        let mut c =
            runplane::Client::connect("/run/runplane/control", Duration::from_secs(5)).unwrap();
        assert_eq!(c.reload().unwrap().generation, 2);
        // --json prints nothing on a refusal; the reason goes to stderr.
        let out = run(&common::cli(), &["reload", "--json"], &[], nobody());
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (ExitStatus::Exited(1), "")
        );
        assert_eq!(d.stop(), ExitStatus::Exited(0));
        assert!(!std::path::Path::new("/run/runplane/control").exists());
    });
}

#[test]
fn priv_state_dir_owned_by_someone_else_is_refused() {
    require_root!();
    run_private(Setup::default(), |_| {
        std::fs::create_dir("/run/runplane").unwrap();
        std::os::unix::fs::chown("/run/runplane", Some(65534), Some(65534)).unwrap();
        let out = run(std::path::Path::new(common::DAEMON), &[], &[], None);
        assert_eq!(out.status, ExitStatus::Exited(111));
        assert!(
            out.stderr
                .contains("refusing to use /run/runplane: owned by uid 65534, not by uid 0"),
            "{}",
            out.stderr
        );
        std::os::unix::fs::chown("/run/runplane", Some(0), Some(0)).unwrap();
        std::fs::set_permissions(
            "/run/runplane",
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let out = run(std::path::Path::new(common::DAEMON), &[], &[], None);
        assert_eq!(out.status, ExitStatus::Exited(111));
        assert!(
            out.stderr
                .contains("mode 0777 lets group or others write to it"),
            "{}",
            out.stderr
        );
        // A symlink planted at the state dir is never followed.
        std::fs::remove_dir("/run/runplane").unwrap();
        std::fs::create_dir("/run/elsewhere").unwrap();
        std::os::unix::fs::symlink("/run/elsewhere", "/run/runplane").unwrap();
        let out = run(std::path::Path::new(common::DAEMON), &[], &[], None);
        assert_eq!(out.status, ExitStatus::Exited(111), "{}", out.stderr);
        assert_eq!(std::fs::read_dir("/run/elsewhere").unwrap().count(), 0);
    });
}

#[test]
fn priv_logs_go_to_journald_when_stderr_is_the_journal() {
    require_root!();
    run_private(Setup::default(), |p| {
        // A real datagram socket where journald listens; the daemon speaks journald's native
        // protocol to it when JOURNAL_STREAM names its stderr.
        std::fs::create_dir_all("/run/systemd/journal").unwrap();
        let j = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::DGRAM,
            None,
        )
        .unwrap();
        rustix::net::bind(
            &j,
            &rustix::net::SocketAddrUnix::new("/run/systemd/journal/socket").unwrap(),
        )
        .unwrap();
        rustix::net::sockopt::set_socket_timeout(
            &j,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        // The daemon's stderr is Daemon's log file; JOURNAL_STREAM must carry its dev:ino, which
        // we learn by pre-creating a file and passing it through a wrapper shell.
        let stream = p.scratch.join("stream");
        std::fs::write(&stream, b"").unwrap();
        let md = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&stream).unwrap());
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&stream).unwrap());
        let out = p.scratch.join("out");
        let child = runplane_sys::spawn::Spawn::new("/bin/sh")
            .args([
                "-c",
                &format!("exec {} 2>>{}", common::DAEMON, stream.display()),
            ])
            .env("JOURNAL_STREAM", format!("{md}:{ino}"))
            .env("PATH", "/usr/bin:/bin")
            .fd(
                std::os::fd::AsFd::as_fd(&std::fs::File::create(&out).unwrap()),
                1,
            )
            .spawn()
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let fields = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no journal entry for the listening message"
            );
            let (n, _) = rustix::net::recv(&j, &mut buf, rustix::net::RecvFlags::empty()).unwrap();
            let f = journal_fields(&buf[..n.min(buf.len())]);
            if f.iter()
                .any(|(k, v)| k == "MESSAGE" && v.contains("listening on /run/runplane/control"))
            {
                break f;
            }
        };
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("runplaned"), "{fields:?}");
        assert_eq!(get("PRIORITY"), Some("5"), "{fields:?}"); // tracing-journald maps INFO to notice
        assert_eq!(get("F_MODE"), Some("system"), "{fields:?}");
        child.signal(rustix::process::Signal::TERM).unwrap();
        assert_eq!(child.wait().unwrap(), ExitStatus::Exited(0));
        // Nothing was written to stderr: the journal got it all.
        assert_eq!(std::fs::read_to_string(&stream).unwrap(), "");
    });
}

/// Parses one datagram of journald's native protocol: `KEY=VALUE\n`, or for binary-safe
/// values `KEY\n` + little-endian u64 length + value + `\n`.
fn journal_fields(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let nl = b
            .iter()
            .position(|&c| c == b'\n')
            .expect("field ends with a newline");
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            b = &b[nl + 1..];
        } else {
            let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &b[nl + 9..nl + 9 + len];
            out.push((
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
            b = &b[nl + 9 + len + 1..];
        }
    }
    out
}

/// Connects (and pings, so that the connection is admitted) as `uid`, from this thread with
/// its effective uid switched for the connect (SO_PEERCRED records it): thread credentials
/// are per thread in Linux, and the saved uid stays 0 to switch back.
fn connect_as(uid: u32) -> Result<runplane::Client, runplane::ClientError> {
    use rustix::process::Uid;
    use rustix::thread::set_thread_res_uid;
    set_thread_res_uid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::ROOT).unwrap();
    let c = runplane::Client::connect("/run/runplane/control", Duration::from_secs(5));
    set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).unwrap();
    let mut c = c?;
    c.ping()?;
    Ok(c)
}

fn refused(r: Result<runplane::Client, runplane::ClientError>) -> String {
    match r {
        Err(runplane::ClientError::Daemon(e)) if e.code == runplane_proto::Code::EBUSY => e.message,
        Err(e) => panic!("not refused with EBUSY: {e}"),
        Ok(_) => panic!("admitted"),
    }
}

#[test]
fn priv_one_uid_cannot_take_every_connection_and_root_keeps_a_reserve() {
    require_root!();
    run_private(Setup::default(), |p| {
        let cfg = p.scratch.join("runplane.toml");
        // 16 in all, 2 of them kept for root; 4 per uid.
        std::fs::write(
            &cfg,
            "[daemon]\nmax_clients = 16\nmax_clients_per_uid = 4\n",
        )
        .unwrap();
        let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for _ in 0..4 {
                held.push(connect_as(60001).unwrap());
            }
            let why = refused(connect_as(60001));
            assert!(
                why.contains("uid 60001 already holds 4 control connections"),
                "{why}"
            );
            // Other uids are not held back by it, up to the reserve.
            for uid in [60002, 60003] {
                for _ in 0..4 {
                    held.push(connect_as(uid).unwrap());
                }
            }
            held.push(connect_as(60004).unwrap());
            held.push(connect_as(60004).unwrap());
            assert_eq!(held.len(), 14);
            let why = refused(connect_as(60005));
            assert!(
                why.contains("limit 16, of which 2 are kept for root"),
                "{why}"
            );
            // Root (a login's PAM module) still gets in, up to the limit.
            held.push(connect_as(0).unwrap());
            held.push(connect_as(0).unwrap());
            let why = refused(connect_as(0));
            assert!(why.contains("limit 16)"), "{why}");
            // A uid's slots come back when its connections end.
            held.drain(..4);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let again = loop {
                match connect_as(60001) {
                    Ok(c) => break c,
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("slots not freed: {e}"),
                }
            };
            drop(again);
        })
        .join()
        .unwrap();
        assert!(
            d.log()
                .contains("refusing a control connection: uid 60001 already holds 4")
        );
        assert_eq!(d.stop(), ExitStatus::Exited(0));
    });
}

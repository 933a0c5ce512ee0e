//! runplaned end to end, on a config that puts control socket and state in a temp dir (no
//! root needed): readiness, status through the real CLI, reloads good and bad, hostile
//! peers, limits, restarts after a crash.

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::{Daemon, config_in, run, runplane};
use runplane::Client;
use runplane_proto::Code;
use runplane_sys::pidfd::ExitStatus;
use rustix::process::Signal;

fn json(out: &common::Output) -> serde_json::Value {
    assert_eq!(out.status, ExitStatus::Exited(0), "stderr: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn starts_answers_status_via_cli_and_stops_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let sock = t.path().join("ctl/control");
    let st = json(&runplane(&[
        "--socket",
        sock.to_str().unwrap(),
        "status",
        "--json",
    ]));
    assert_eq!(st["daemon"]["pid"], d.pid());
    assert_eq!(st["daemon"]["control"], sock.to_str().unwrap());
    assert_eq!(st["daemon"]["config"]["path"], cfg.to_str().unwrap());
    assert_eq!(st["daemon"]["config"]["generation"], 1);
    // The human view, and RUNPLANE_SOCKET instead of --socket.
    let human = run(
        &common::cli(),
        &["status"],
        &[("RUNPLANE_SOCKET", sock.to_str().unwrap())],
        None,
    );
    assert_eq!(human.status, ExitStatus::Exited(0), "{}", human.stderr);
    assert!(
        human.stdout.contains(&format!("pid {}", d.pid())),
        "{}",
        human.stdout
    );
    let ping = json(&runplane(&[
        "--socket",
        sock.to_str().unwrap(),
        "ping",
        "--json",
    ]));
    assert_eq!(ping["pid"], d.pid());
    // Pid file while running; socket and pid file gone after SIGTERM.
    let pidfile = std::fs::read_to_string(t.path().join("state/runplaned.pid")).unwrap();
    assert_eq!(pidfile.trim(), d.pid().to_string());
    assert_eq!(d.stop(), ExitStatus::Exited(0));
    assert!(!sock.exists());
    assert!(!t.path().join("state/runplaned.pid").exists());
}

#[test]
fn second_instance_on_the_same_state_dir_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let out = run(
        std::path::Path::new(common::DAEMON),
        &["--config", cfg.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(out.status, ExitStatus::Exited(111));
    assert!(
        out.stderr.contains(&format!(
            "runplaned: fatal: unable to lock {}",
            t.path().join("state/runplaned.lock").display()
        )) && out
            .stderr
            .contains(&format!("another runplaned (pid {}) is running", d.pid())),
        "{}",
        out.stderr
    );
    // The first one still serves.
    Client::connect(t.path().join("ctl/control"), Duration::from_secs(5))
        .unwrap()
        .ping()
        .unwrap();
}

#[test]
fn bad_config_at_start_exits_100_with_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "max_clinets = 3\n");
    let out = run(
        std::path::Path::new(common::DAEMON),
        &["--config", cfg.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(out.status, ExitStatus::Exited(100), "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "runplaned: fatal: {}:4:1: unknown field `max_clinets`",
            cfg.display()
        )),
        "{}",
        out.stderr
    );
    let missing = run(
        std::path::Path::new(common::DAEMON),
        &["--config", "/nonexistent.toml"],
        &[],
        None,
    );
    assert_eq!(missing.status, ExitStatus::Exited(100));
    assert!(
        missing.stderr.contains("/nonexistent.toml"),
        "{}",
        missing.stderr
    );
    let usage = run(
        std::path::Path::new(common::DAEMON),
        &["--bogus"],
        &[],
        None,
    );
    assert_eq!(usage.status, ExitStatus::Exited(100));
}

#[test]
fn reload_by_sighup_and_by_request_keeps_the_last_good_config() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "max_clients = 5\n");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let sock = t.path().join("ctl/control");
    let status = || {
        Client::connect(&sock, Duration::from_secs(5))
            .unwrap()
            .status()
            .unwrap()
    };
    assert_eq!(status().daemon.max_clients, 5);

    config_in(t.path(), "max_clients = 7\n");
    d.signal(Signal::HUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status().daemon.config.generation < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status().daemon.max_clients, 7);

    // A bad file: the running config stays, the error is reported with file:line.
    std::fs::write(&cfg, "[daemon]\nmax_clients = \"lots\"\n").unwrap();
    d.signal(Signal::HUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status().daemon.config.last_error.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "bad reload not reported:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = status();
    assert_eq!((st.daemon.max_clients, st.daemon.config.generation), (7, 2));
    assert!(
        st.daemon
            .config
            .last_error
            .unwrap()
            .starts_with(&format!("{}:2:15:", cfg.display()))
    );
    let out = runplane(&["--socket", sock.to_str().unwrap(), "reload"]);
    assert_eq!(out.status, ExitStatus::Exited(1));
    assert!(
        out.stderr
            .contains("reload failed, the running configuration stays"),
        "{}",
        out.stderr
    );

    // A good file with a restart-only change: reloaded, and the change is named.
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nstate = \"{}\"\n",
            t.path().join("other").display()
        ),
    )
    .unwrap();
    let r = json(&runplane(&[
        "--socket",
        sock.to_str().unwrap(),
        "reload",
        "--json",
    ]));
    assert_eq!(r["generation"], 3);
    assert_eq!(
        r["pending_restart"],
        serde_json::json!(["daemon.control", "daemon.state"])
    );
    assert!(status().daemon.config.last_error.is_none());
    let log = d.log();
    assert!(
        log.contains("SIGHUP: reloading the configuration")
            && log.contains("configuration reloaded generation=2"),
        "{log}"
    );
    assert!(
        log.contains("reload failed, keeping the running configuration"),
        "{log}"
    );
}

#[test]
fn hostile_peers_get_clear_errors_and_the_daemon_keeps_serving() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let _d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let sock = t.path().join("ctl/control");
    let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
    let err = |bytes: &[u8], c: &mut Client| {
        let r = runplane_proto::decode_response(&c.call_raw(bytes).unwrap()).unwrap();
        r.result.unwrap_err()
    };
    assert_eq!(err(b"\xff\xfe garbage", &mut c).code, Code::EPROTO);
    assert_eq!(
        err(br#"{"v":1,"id":2,"op":"shutdown-everything"}"#, &mut c).code,
        Code::ENOSYS
    );
    assert_eq!(
        err(br#"{"v":9,"id":3,"op":"ping"}"#, &mut c).code,
        Code::EPROTO
    );
    let big = vec![b'{'; 70_000];
    let e = err(&big, &mut c);
    assert_eq!(e.code, Code::E2BIG);
    assert!(e.message.contains("70000 bytes"), "{}", e.message);
    // fds attached to a request are refused (and closed by the daemon).
    let (r, w) = rustix::pipe::pipe().unwrap();
    let s = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        None,
    )
    .unwrap();
    rustix::net::connect(&s, &rustix::net::SocketAddrUnix::new(&sock).unwrap()).unwrap();
    runplane_sys::scm::send(
        s.as_fd(),
        br#"{"v":1,"id":4,"op":"ping"}"#,
        &[w.as_fd()],
        None,
    )
    .unwrap();
    drop(w);
    let mut buf = vec![0u8; 65536];
    let n = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty())
        .unwrap()
        .0;
    let resp = runplane_proto::decode_response(&buf[..n]).unwrap();
    assert_eq!(resp.result.unwrap_err().code, Code::EINVAL);
    let mut one = [0u8; 1];
    assert_eq!(
        rustix::io::read(&r, &mut one).unwrap(),
        0,
        "the daemon kept the fd"
    );
    // The same connection and new ones still work.
    c.ping().unwrap();
    Client::connect(&sock, Duration::from_secs(5))
        .unwrap()
        .status()
        .unwrap();
    // A client that disappears mid-request does not disturb anything.
    {
        let s = rustix::net::socket(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            None,
        )
        .unwrap();
        rustix::net::connect(&s, &rustix::net::SocketAddrUnix::new(&sock).unwrap()).unwrap();
        rustix::net::send(
            &s,
            br#"{"v":1,"id":1,"op":"status"}"#,
            rustix::net::SendFlags::empty(),
        )
        .unwrap();
    }
    c.ping().unwrap();
}

#[test]
fn client_limit_refuses_with_ebusy_and_frees_slots() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "max_clients = 2\n");
    let _d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let sock = t.path().join("ctl/control");
    let mut a = Client::connect(&sock, Duration::from_secs(5)).unwrap();
    let mut b = Client::connect(&sock, Duration::from_secs(5)).unwrap();
    a.ping().unwrap();
    b.ping().unwrap();
    let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
    match c.ping() {
        Err(runplane::ClientError::Daemon(e)) => {
            assert_eq!(e.code, Code::EBUSY);
            assert!(e.message.contains("limit 2"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
        match c.ping() {
            Ok(_) => break,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("slot not freed: {e}"),
        }
    }
}

#[test]
fn restart_after_kill_9_replaces_the_stale_socket() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    d.kill9();
    assert!(
        t.path().join("ctl/control").exists(),
        "a crash leaves the node behind"
    );
    let d2 = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let p = Client::connect(t.path().join("ctl/control"), Duration::from_secs(5))
        .unwrap()
        .ping()
        .unwrap();
    assert_eq!(p.pid, d2.pid());
}

#[test]
fn refuses_to_replace_a_non_socket_at_the_control_path() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    std::fs::create_dir_all(t.path().join("ctl")).unwrap();
    std::fs::write(t.path().join("ctl/control"), b"precious").unwrap();
    let out = run(
        std::path::Path::new(common::DAEMON),
        &["--config", cfg.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(out.status, ExitStatus::Exited(111));
    assert!(
        out.stderr.contains("refusing to replace") && out.stderr.contains("not a socket"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(t.path().join("ctl/control")).unwrap(),
        b"precious"
    );
}

#[test]
fn notify_socket_gets_ready_reloading_and_stopping() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let nsock = t.path().join("notify");
    let srv = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .unwrap();
    rustix::net::bind(&srv, &rustix::net::SocketAddrUnix::new(&nsock).unwrap()).unwrap();
    runplane_sys::scm::set_passcred(&srv).unwrap();
    rustix::net::sockopt::set_socket_timeout(
        &srv,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(10)),
    )
    .unwrap();
    let d = Daemon::start(
        &["--config", cfg.to_str().unwrap()],
        &[("NOTIFY_SOCKET", nsock.to_str().unwrap())],
    );
    let mut buf = [0u8; 4096];
    let mut next = || match runplane_sys::scm::recv(srv.as_fd(), &mut buf, 0).unwrap() {
        runplane_sys::scm::Message::Data { len, cred, .. } => (
            String::from_utf8_lossy(&buf[..len]).into_owned(),
            cred.unwrap().pid,
        ),
        other => panic!("{other:?}"),
    };
    let (ready, pid) = next();
    assert_eq!(pid, d.pid());
    assert!(
        ready.starts_with("READY=1\nSTATUS=listening on "),
        "{ready}"
    );
    assert!(ready.ends_with(&format!("MAINPID={}", d.pid())), "{ready}");
    d.signal(Signal::HUP);
    let (reloading, _) = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next().0, "READY=1");
    let pid = d.pid();
    assert_eq!(d.stop(), ExitStatus::Exited(0));
    assert_eq!(next(), ("STOPPING=1".to_owned(), pid));
}

#[test]
fn user_mode_lives_in_the_runtime_dir_and_refuses_a_bad_one() {
    let t = tempfile::tempdir().unwrap();
    let rt = t.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let env = [
        ("XDG_RUNTIME_DIR", rt.to_str().unwrap()),
        ("XDG_CONFIG_HOME", t.path().to_str().unwrap()),
    ];
    let d = Daemon::start(&["--user"], &env);
    let sock = rt.join("runplane/control");
    let md = std::fs::metadata(&sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
        0o600
    );
    let out = run(
        &common::cli(),
        &["--user-daemon", "status", "--json"],
        &env,
        None,
    );
    let st = json(&out);
    assert_eq!(st["daemon"]["mode"], "user");
    assert_eq!(st["daemon"]["config"]["path"], serde_json::Value::Null);
    drop(d);
    std::fs::set_permissions(&rt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = run(
        std::path::Path::new(common::DAEMON),
        &["--user"],
        &env,
        None,
    );
    assert_eq!(out.status, ExitStatus::Exited(111));
    assert!(
        out.stderr.contains("unable to run in user mode") && out.stderr.contains("must be 0700"),
        "{}",
        out.stderr
    );
}

/// The daemon's thread count, from /proc.
fn threads(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn concurrent_clients_are_served_at_once_and_their_threads_end_with_them() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let sock = t.path().join("ctl/control");
    Client::connect(&sock, Duration::from_secs(5))
        .unwrap()
        .ping()
        .unwrap();
    let idle = threads(d.pid());
    // 24 clients connected together, each waiting for all others to be connected before it
    // asks: every connection is served while the others stay open (no head-of-line wait).
    let n = 24;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let sock = sock.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
                c.ping().unwrap();
                barrier.wait();
                for _ in 0..50 {
                    c.ping().unwrap();
                }
                barrier.wait();
            })
        })
        .collect();
    barrier.wait();
    let busy = threads(d.pid());
    assert!(
        busy >= idle + n - 2,
        "{busy} threads serving {n} clients ({idle} idle)"
    );
    barrier.wait();
    for c in clients {
        c.join().unwrap();
    }
    let st = Client::connect(&sock, Duration::from_secs(5))
        .unwrap()
        .status()
        .unwrap();
    assert!(
        st.daemon.requests > (n * 51) as u64,
        "{}",
        st.daemon.requests
    );
    // The connections are gone: so are their threads, down to those kept waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while threads(d.pid()) > idle {
        assert!(
            std::time::Instant::now() < deadline,
            "{} threads left after the clients closed ({idle} before)",
            threads(d.pid())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(d.stop(), ExitStatus::Exited(0));
}

#[test]
fn stops_at_once_with_idle_connections_open() {
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let sock = t.path().join("ctl/control");
    let mut open: Vec<_> = (0..5)
        .map(|_| Client::connect(&sock, Duration::from_secs(5)).unwrap())
        .collect();
    for c in &mut open {
        c.ping().unwrap();
    }
    let t0 = std::time::Instant::now();
    assert_eq!(d.stop(), ExitStatus::Exited(0));
    // Well below the idle timeout (60 s) and the wait for requests in progress (5 s).
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // The connections end with the daemon: a request gets an error, not a hang.
    assert!(open[0].ping().is_err());
    assert!(!sock.exists(), "the socket node outlived the daemon");
}

#[test]
fn a_client_that_does_not_read_its_answers_is_dropped_and_others_are_served() {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
    let t = tempfile::tempdir().unwrap();
    let cfg = config_in(t.path(), "");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()], &[]);
    let sock = t.path().join("ctl/control");
    let s = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&s, &SocketAddrUnix::new(&sock).unwrap()).unwrap();
    // Requests until the kernel refuses more: the daemon stopped reading them because its
    // answers, never read, filled the connection.
    let t0 = std::time::Instant::now();
    let mut sent = 0;
    loop {
        match rustix::net::send(
            &s,
            br#"{"v":1,"id":1,"op":"ping"}"#,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(_) => sent += 1,
            Err(rustix::io::Errno::AGAIN) if t0.elapsed() > Duration::from_millis(500) => break,
            Err(rustix::io::Errno::AGAIN) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("send: {e}"),
        }
        assert!(sent < 1_000_000, "the daemon never stopped taking requests");
    }
    // Meanwhile everyone else is served.
    let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
    c.ping().unwrap();
    // After the send timeout (10 s) the connection is dropped: reading meets its end (a
    // reset, as the daemon closed it with requests unread).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !d.log().contains("it does not read its answers") {
        assert!(
            std::time::Instant::now() < deadline,
            "not dropped: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut buf = vec![0u8; 65536];
    let mut answers = 0;
    loop {
        match rustix::net::recv(&s, &mut buf, RecvFlags::empty()) {
            Ok((0, _)) | Err(rustix::io::Errno::CONNRESET) => break,
            Ok(_) => answers += 1,
            Err(e) => panic!("recv: {e}"),
        }
    }
    assert!(answers < sent, "{answers} answers to {sent} requests");
    c.ping().unwrap();
    assert_eq!(d.stop(), ExitStatus::Exited(0));
}

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

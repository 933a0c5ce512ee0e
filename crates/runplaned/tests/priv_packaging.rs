//! The service definitions and the install script: shell syntax for OpenRC and runit, the
//! s6 service directory run for real under s6-supervise (readiness through its notification
//! fd), and scripts/install staging into a directory.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::run;
use runplane_sys::pidfd::ExitStatus;
use runplane_testkit::{Setup, require_root, run_private};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn shell_service_files_parse() {
    for f in [
        "packaging/openrc/runplaned",
        "packaging/runit/runplaned/run",
        "packaging/runit/runplaned/log/run",
        "scripts/install",
        "scripts/test",
        ".ci/run",
        "bench/run",
    ] {
        let p = repo().join(f);
        let shell = if f.starts_with("packaging") {
            "/bin/sh"
        } else {
            "/bin/bash"
        };
        let out = run(Path::new(shell), &["-n", p.to_str().unwrap()], &[], None);
        assert_eq!(out.status, ExitStatus::Exited(0), "{f}: {}", out.stderr);
        assert!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o111 != 0,
            "{f} is not executable"
        );
    }
    // s6: the notification fd is the one the run script hands to --ready-fd.
    let fd =
        std::fs::read_to_string(repo().join("packaging/s6/runplaned/notification-fd")).unwrap();
    let runs = std::fs::read_to_string(repo().join("packaging/s6/runplaned/run")).unwrap();
    assert!(
        runs.contains(&format!("--ready-fd {}", fd.trim())),
        "{runs}"
    );
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn install_stages_everything_into_a_destdir() {
    let t = tempfile::tempdir().unwrap();
    let out = run(
        Path::new("/bin/bash"),
        &[
            repo().join("scripts/install").to_str().unwrap(),
            "--destdir",
            t.path().to_str().unwrap(),
            "--profile",
            "debug",
            "--no-build",
            "--init",
            "s6",
            "--pamdir",
            "/lib/security",
        ],
        &[],
        None,
    );
    assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
    for f in [
        "usr/sbin/runplaned",
        "usr/bin/runplane",
        "lib/security/pam_runplane.so",
        "usr/share/man/man1/runplane.1",
        "usr/share/man/man1/runplane-session.1",
        "usr/share/bash-completion/completions/runplane",
        "usr/share/zsh/site-functions/_runplane",
        "usr/share/fish/vendor_completions.d/runplane.fish",
        "etc/s6-rc/source/runplaned/run",
        "etc/s6-rc/source/runplaned/notification-fd",
    ] {
        assert!(t.path().join(f).exists(), "{f} missing");
    }
    let bad = run(
        Path::new("/bin/bash"),
        &[
            repo().join("scripts/install").to_str().unwrap(),
            "--init",
            "systemv",
        ],
        &[],
        None,
    );
    assert_eq!(bad.status, ExitStatus::Exited(100), "{}", bad.stderr);
}

#[test]
fn priv_s6_supervises_runplaned_with_readiness() {
    require_root!();
    run_private(Setup::default(), |p| {
        // The shipped service directory, pointing at the built daemon.
        let svc = p.scratch.join("runplaned");
        std::fs::create_dir(&svc).unwrap();
        for f in ["type", "notification-fd", "run"] {
            let text =
                std::fs::read_to_string(repo().join("packaging/s6/runplaned").join(f)).unwrap();
            std::fs::write(
                svc.join(f),
                text.replace("/usr/sbin/runplaned", common::DAEMON),
            )
            .unwrap();
        }
        std::fs::set_permissions(svc.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sup = runplane_sys::spawn::Spawn::new("/usr/bin/s6-supervise")
            .arg(&svc)
            .env("PATH", "/usr/bin:/bin")
            .parent_death_signal(rustix::process::Signal::KILL)
            .spawn()
            .unwrap();
        struct Guard(runplane_sys::spawn::Child);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.signal(rustix::process::Signal::KILL);
                let _ = self.0.wait();
            }
        }
        let sup = Guard(sup);
        // s6-svwait -U: up *and ready* (the daemon wrote its newline to the notification fd).
        let out = run(
            Path::new("/usr/bin/s6-svwait"),
            &["-U", "-t", "10000", svc.to_str().unwrap()],
            &[],
            None,
        );
        assert_eq!(
            out.status,
            ExitStatus::Exited(0),
            "not ready: {}",
            out.stderr
        );
        let st = runplane::Client::connect("/run/runplane/control", Duration::from_secs(5))
            .unwrap()
            .status()
            .unwrap();
        assert!(st.daemon.pid > 0);
        // Down: SIGTERM from s6, a clean exit, the socket removed.
        let out = run(
            Path::new("/usr/bin/s6-svc"),
            &["-wD", "-T", "10000", "-d", svc.to_str().unwrap()],
            &[],
            None,
        );
        assert_eq!(out.status, ExitStatus::Exited(0), "{}", out.stderr);
        assert!(!Path::new("/run/runplane/control").exists());
        let out = run(
            Path::new("/usr/bin/s6-svc"),
            &["-x", svc.to_str().unwrap()],
            &[],
            None,
        );
        assert_eq!(out.status, ExitStatus::Exited(0));
        assert_eq!(sup.0.wait().unwrap(), ExitStatus::Exited(0));
        std::mem::forget(sup);
    });
}

//! Other managers of /run/user (logind, elogind) against a user who names a program like one.
//! A test binary of its own: priv_procs's hop test reaps every child of its process.

use std::path::Path;

use runplane_sys::spawn::{Credentials, Spawn};
use runplane_testkit::{Setup, require_root, run_private};
use runplane_userdirs::procs::other_managers;

/// No other test runs processes as this uid.
const IMPOSTOR: u32 = 2371;

#[test]
fn priv_a_user_running_a_program_named_logind_is_not_another_manager() {
    require_root!();
    run_private(Setup::default(), |_| {
        // Any user may copy a program under logind's name; only a root one is a manager.
        let t = tempfile::tempdir().unwrap();
        for name in ["systemd-logind", "elogind-daemon"] {
            let fake = t.path().join(name);
            std::fs::copy("/bin/sleep", &fake).unwrap();
        }
        std::fs::set_permissions(
            t.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let spawn = |name: &str, uid: u32| {
            Spawn::new(t.path().join(name))
                .args(["30"])
                .credentials(Credentials {
                    uid,
                    gid: uid,
                    groups: vec![],
                })
                .spawn()
                .unwrap()
        };
        let impostor = spawn("systemd-logind", IMPOSTOR);
        let real = spawn("elogind-daemon", 0);
        let found = other_managers(Path::new("/proc"));
        let (impostor_pid, real_pid) = (impostor.pid(), real.pid());
        for c in [impostor, real] {
            c.signal(rustix::process::Signal::KILL).unwrap();
            c.wait().unwrap();
        }
        assert!(
            !found.iter().any(|m| m.1 == impostor_pid),
            "uid {IMPOSTOR}'s systemd-logind counted as a manager: {found:?}"
        );
        assert!(
            found.contains(&("elogind-daemon".to_owned(), real_pid)),
            "root's elogind-daemon not found: {found:?}"
        );
    });
}

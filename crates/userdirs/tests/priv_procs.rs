//! Scanning /proc for a uid's processes against a user who tries to look gone: processes that
//! hop from pid to pid (each starts the next and exits), as root, with a uid of its own.

use std::path::Path;
use std::time::{Duration, Instant};

use runplane_sys::spawn::{Credentials, Spawn};
use runplane_testkit::{Hops, Setup, require_root, run_private};
use runplane_userdirs::procs::pids_of;

/// No other test runs processes as this uid (/proc is shared by every test).
const UID: u32 = 2370;

#[test]
fn priv_a_user_hopping_from_pid_to_pid_is_never_scanned_as_gone() {
    require_root!();
    run_private(Setup::default(), |_| {
        // Each hop starts the next right away and exits: nothing of the uid lives for more
        // than a fork and an exec. Far more hops than the scans' three seconds take (a hop is
        // ~0.2 ms), or the scans would see the chain end.
        let hops = Hops::write(None);
        // Each hop's parent has exited, so the hops are orphans; an init reaps its orphans at
        // once, but this machine's PID 1 may let thousands pile up as zombies, which a real
        // system would not show (and every scan would read). This process reaps them, as
        // their subreaper.
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
        let reaping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reaper = {
            let reaping = reaping.clone();
            std::thread::spawn(move || {
                while reaping.load(std::sync::atomic::Ordering::Relaxed) {
                    match rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {
                        Ok(Some(_)) => {}
                        _ => std::thread::sleep(Duration::from_micros(200)),
                    }
                }
            })
        };
        let first = Spawn::new(&hops.script)
            .args(hops.args(200_000))
            .credentials(Credentials {
                uid: UID,
                gid: UID,
                groups: vec![],
            })
            .spawn()
            .unwrap();
        let (mut scans, mut missed, mut found) = (0, 0, 0);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            let s = pids_of(Path::new("/proc"), UID);
            scans += 1;
            if !s.any() {
                missed += 1;
            }
            if !s.pids.is_empty() {
                found += 1;
            }
        }
        drop(hops);
        drop(first); // reaped by the reaper
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids_of(Path::new("/proc"), UID).any() {
            assert!(Instant::now() < deadline, "the chain did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(scans > 10, "{scans} scans");
        assert_eq!(
            missed, 0,
            "{missed} of {scans} scans saw the hopping user gone"
        );
        // Not by giving up: nearly every scan found the hop that was alive.
        assert!(
            found * 10 >= scans * 9,
            "{found} of {scans} scans found a live hop"
        );
        reaping.store(false, std::sync::atomic::Ordering::Relaxed);
        reaper.join().unwrap();
        rustix::process::set_child_subreaper(None).unwrap();
        // Once the chain is over, the uid has no process, and the scan says so for sure.
        let s = pids_of(Path::new("/proc"), UID);
        assert!(s.settled && s.pids.is_empty(), "{s:?}");
    });
}

//! Telling the supervisor we are ready: sd_notify (`$NOTIFY_SOCKET`) and the s6 readiness fd.

use std::os::fd::OwnedFd;

/// sd_notify, logging (never failing on) a broken `$NOTIFY_SOCKET`.
pub fn notify(state: &str) {
    if let Err(e) = runplane::notify::notify(state) {
        tracing::warn!("unable to notify the service manager ({state:?}): {e}");
    }
}

/// Writes a newline to the readiness fd and closes it.
pub fn ready_fd(fd: OwnedFd) {
    if let Err(e) = rustix::io::write(&fd, b"\n") {
        tracing::warn!("unable to write to the readiness fd: {e}");
    }
}

/// `CLOCK_MONOTONIC` in microseconds, for `RELOADING=1` + `MONOTONIC_USEC=` (sd_notify(3)).
pub fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

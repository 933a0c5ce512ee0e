//! Safe registration of owned fds with tokio's reactor.
//!
//! tokio 1.54 deprecated `AsyncFd::new` as unsound without I/O safety and replaced it with the
//! `unsafe` `AsyncFd::register`, whose contract is that the fd stays open and refers to the
//! same open file while registered. An `OwnedFd` moved into the `AsyncFd` satisfies it: nobody
//! else can close it, and it is closed only when the `AsyncFd` is dropped (after
//! deregistration). This module is that argument, written once.

use std::io;

use rustix::fd::OwnedFd;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers `fd` for readable and writable events. The fd must be non-blocking.
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    register_with_interest(fd, Interest::READABLE | Interest::WRITABLE)
}

/// Registers `fd` for `interest` (e.g. `Interest::READABLE` for a pidfd, `PRIORITY` for PSI).
pub fn register_with_interest(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the OwnedFd is moved into the AsyncFd, which alone can close it, and only after
    // deregistering it on drop; so it stays open and unchanged while registered.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[tokio::test(flavor = "current_thread")]
    async fn pidfd_becomes_readable_on_exit() {
        let child = crate::spawn::Spawn::new("/bin/sh")
            .args(["-c", "exit 5"])
            .spawn()
            .unwrap();
        let pid = child.pid();
        let fd = child.into_pidfd();
        let afd = register_with_interest(fd, Interest::READABLE).unwrap();
        let guard = tokio::time::timeout(std::time::Duration::from_secs(10), afd.readable())
            .await
            .unwrap()
            .unwrap();
        drop(guard);
        let st = crate::pidfd::wait_child(afd.get_ref().as_fd(), pid, false).unwrap();
        assert_eq!(st, Some(crate::pidfd::ExitStatus::Exited(5)));
    }
}

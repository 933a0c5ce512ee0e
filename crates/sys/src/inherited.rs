//! Taking ownership of a file descriptor inherited by number, e.g. `--ready-fd 3` (s6's
//! notification-fd) or the fds of sd_listen_fds(3).
//!
//! Turning a number into an `OwnedFd` is `unsafe` in Rust because nothing proves that no other
//! part of the process owns that number. A number handed over on the command line or in the
//! environment is, by that protocol, for this process to consume once; [`take`] checks that it
//! is open and not one of the standard streams, marks it `FD_CLOEXEC` so that it does not leak
//! into children, and records it so that it cannot be taken twice.

use std::sync::Mutex;

use rustix::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use rustix::io::{Errno, FdFlags};

use crate::error::{Error, Result};

static TAKEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Takes ownership of the inherited fd `n` (>= 3). Fails with `EBADF` if it is not open and
/// with `EINVAL` for 0, 1, 2 or a number already taken.
pub fn take(n: RawFd, what: &str) -> Result<OwnedFd> {
    if n < 3 {
        return Err(Error::errno(
            "take over",
            format_args!("{what} fd {n} (0, 1 and 2 are the standard streams)"),
            Errno::INVAL,
        ));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    if taken.contains(&n) {
        return Err(Error::errno(
            "take over",
            format_args!("{what} fd {n} (already taken)"),
            Errno::INVAL,
        ));
    }
    // SAFETY: a borrow only for the duration of these two fcntl calls; fcntl on a closed
    // number fails with EBADF and touches nothing.
    let borrowed = unsafe { BorrowedFd::borrow_raw(n) };
    let flags = rustix::io::fcntl_getfd(borrowed)
        .map_err(|e| Error::errno("take over", format_args!("{what} fd {n}"), e))?;
    rustix::io::fcntl_setfd(borrowed, flags | FdFlags::CLOEXEC)
        .map_err(|e| Error::errno("take over", format_args!("{what} fd {n}"), e))?;
    taken.push(n);
    // SAFETY: the fd is open (checked above), was handed to this process by number to consume
    // (the protocol's contract), and the TAKEN list guarantees this happens once per number.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn takes_an_open_fd_once_and_refuses_closed_or_std() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let n = w.into_raw_fd();
        let owned = take(n, "test").unwrap();
        assert_eq!(owned.as_raw_fd(), n);
        assert!(
            rustix::io::fcntl_getfd(&owned)
                .unwrap()
                .contains(FdFlags::CLOEXEC)
        );
        assert!(
            take(n, "test")
                .unwrap_err()
                .to_string()
                .contains("already taken")
        );
        drop((owned, r));
        assert_eq!(
            take(1, "ready").unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        let e = take(100_000, "ready").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        assert_eq!(
            e.to_string(),
            "unable to take over ready fd 100000: Bad file descriptor (os error 9)"
        );
    }
}

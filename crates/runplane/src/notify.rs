//! The sd_notify(3) client: `KEY=VALUE` lines in one datagram to `$NOTIFY_SOCKET`.
//!
//! Byte for byte what libsystemd sends: a fresh `SOCK_DGRAM | SOCK_CLOEXEC` socket per
//! message, `sendto` with `MSG_NOSIGNAL`, the state as given (newline-separated assignments).
//! `NOTIFY_SOCKET` may be a path (`/run/...`) or an abstract name (`@name`, the `@` becoming a
//! NUL byte). `vsock:` addresses are refused with `EAFNOSUPPORT` (no VM support here).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use rustix::fd::{AsFd, OwnedFd};
use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

fn address(socket: &OsStr) -> io::Result<SocketAddrUnix> {
    let b = socket.as_bytes();
    match b.first() {
        Some(b'/') => Ok(SocketAddrUnix::new(socket)?),
        Some(b'@') if b.len() > 1 => Ok(SocketAddrUnix::new_abstract_name(&b[1..])?),
        _ if b.starts_with(b"vsock") => Err(io::Error::from_raw_os_error(
            rustix::io::Errno::AFNOSUPPORT.raw_os_error(),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "NOTIFY_SOCKET={} is neither an absolute path nor an @abstract name",
                socket.to_string_lossy()
            ),
        )),
    }
}

fn socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends `state` (e.g. `"READY=1\nSTATUS=listening"`) to the socket named by `socket`.
pub fn notify_to(
    socket_name: &OsStr,
    state: &str,
    fds: &[rustix::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    let addr = address(socket_name)?;
    let sock = socket()?;
    if fds.is_empty() {
        let n = rustix::net::sendto(&sock, state.as_bytes(), SendFlags::NOSIGNAL, &addr)?;
        if n != state.len() {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::IO.raw_os_error(),
            ));
        }
        return Ok(());
    }
    rustix::net::connect(&sock, &addr)?;
    runplane_sys::scm::send(sock.as_fd(), state.as_bytes(), fds, None)?;
    Ok(())
}

/// Sends `state` to `$NOTIFY_SOCKET`. `Ok(false)` when the variable is unset (no manager is
/// listening, which is not an error); `Ok(true)` when the datagram was queued (not yet
/// processed: see [`barrier`]).
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(s) if !s.is_empty() => notify_to(&s, state, &[]).map(|()| true),
        _ => Ok(false),
    }
}

/// `BARRIER=1`: sends a pipe's write end and waits until the manager closed its copy, which
/// it does after processing everything sent before. `Ok(false)` when `NOTIFY_SOCKET` is unset.
pub fn barrier(timeout: Duration) -> io::Result<bool> {
    let Some(s) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    notify_to(&s, "BARRIER=1", &[w.as_fd()])?;
    drop(w);
    let mut p = [rustix::event::PollFd::new(
        &r,
        rustix::event::PollFlags::HUP,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    match rustix::event::poll(&mut p, Some(&ts))? {
        0 => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the service manager did not close the barrier fd",
        )),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::RecvFlags;

    #[test]
    fn sends_one_datagram_to_a_path_and_an_abstract_name() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("notify");
        let srv = socket().unwrap();
        rustix::net::bind(&srv, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        notify_to(path.as_os_str(), "READY=1\nSTATUS=up", &[]).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = rustix::net::recv(&srv, &mut buf, RecvFlags::empty()).unwrap();
        assert_eq!(&buf[..n.min(64)], b"READY=1\nSTATUS=up");

        let name = format!("runplane-test-{}", std::process::id());
        let asrv = socket().unwrap();
        rustix::net::bind(
            &asrv,
            &SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap(),
        )
        .unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "STOPPING=1", &[]).unwrap();
        let (n, _) = rustix::net::recv(&asrv, &mut buf, RecvFlags::empty()).unwrap();
        assert_eq!(&buf[..n.min(64)], b"STOPPING=1");
    }

    #[test]
    fn refuses_bad_addresses_and_reports_missing_socket() {
        assert_eq!(
            notify_to(OsStr::new("vsock:2:99"), "READY=1", &[])
                .unwrap_err()
                .raw_os_error(),
            Some(libc_eafnosupport())
        );
        assert!(
            notify_to(OsStr::new("relative"), "READY=1", &[])
                .unwrap_err()
                .to_string()
                .contains("neither an absolute path")
        );
        let e = notify_to(OsStr::new("/nonexistent/notify"), "READY=1", &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    fn libc_eafnosupport() -> i32 {
        rustix::io::Errno::AFNOSUPPORT.raw_os_error()
    }
}

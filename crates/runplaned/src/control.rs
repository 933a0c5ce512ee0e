//! The control socket: an `AF_UNIX` `SOCK_SEQPACKET` listener (protocol: runplane-proto),
//! one task per connection, every request authorized by the peer's `SO_PEERCRED`.
//!
//! Bounds: at most `daemon.max_clients` connections (one more is told `EBUSY` and closed),
//! packets of at most `MAX_MESSAGE` bytes (a larger one is answered `E2BIG`, the connection
//! stays), no fds accepted (`EINVAL`), an idle connection is closed after [`IDLE_TIMEOUT`], and a
//! client that does not read its answers within [`SEND_TIMEOUT`] is dropped.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use runplane_proto::{Code, ErrorReply, MAX_MESSAGE, decode_request, encode_response};
use runplane_sys::dir::{Dir, Kind, kind_of};
use runplane_sys::scm::{self, Cred, Message};

use crate::Fatal;
use crate::config::Mode;
use crate::daemon::Daemon;

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const BACKLOG: i32 = 128;

/// A bound and listening control socket; [`Listener::remove`] unlinks its node if it is
/// still the one we bound.
#[derive(Debug)]
pub struct Listener {
    pub fd: AsyncFd<OwnedFd>,
    pub path: PathBuf,
    parent: Dir,
    name: OsString,
    ino: u64,
}

fn sys(e: impl std::fmt::Display) -> Fatal {
    Fatal::system(e.to_string())
}

/// Binds the control socket at `path`. A stale socket node (nobody accepts on it) is
/// replaced; a live one means another daemon owns it; any other file type is refused.
pub fn bind(path: &Path, mode: Mode) -> Result<Listener, Fatal> {
    let parent_path = path
        .parent()
        .ok_or_else(|| Fatal::usage(format!("{} is not a socket path", path.display())))?;
    crate::state::ensure_private_dir(parent_path, mode)?;
    let parent = Dir::open(parent_path).map_err(sys)?;
    let name = path
        .file_name()
        .ok_or_else(|| Fatal::usage(format!("{} is not a socket path", path.display())))?
        .to_owned();
    let addr = SocketAddrUnix::new(path).map_err(|e| {
        Fatal::usage(format!(
            "unable to use {} as a socket address: {e}",
            path.display()
        ))
    })?;
    if let Some(st) = parent.stat(&name).map_err(sys)? {
        if kind_of(&st) != Kind::Socket {
            return Err(Fatal::system(format!(
                "refusing to replace {}: it is a {:?}, not a socket",
                path.display(),
                kind_of(&st)
            )));
        }
        let probe = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(sys)?;
        if rustix::net::connect(&probe, &addr).is_ok() {
            return Err(Fatal::system(format!(
                "unable to bind {}: another daemon is listening on it",
                path.display()
            )));
        }
        parent.unlink(&name).map_err(sys)?;
    }
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| Fatal::system(format!("unable to create the control socket: {e}")))?;
    rustix::net::bind(&fd, &addr)
        .map_err(|e| Fatal::system(format!("unable to bind {}: {e}", path.display())))?;
    // Anyone may connect to the system socket: each request is authorized by SO_PEERCRED.
    // A user daemon's socket is for its user (and root) only.
    let perms = match mode {
        Mode::System => 0o666,
        Mode::User => 0o600,
    };
    rustix::fs::chmodat(
        parent.fd(),
        name.as_os_str(),
        rustix::fs::Mode::from_raw_mode(perms),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| Fatal::system(format!("unable to change mode of {}: {e}", path.display())))?;
    let ino = parent
        .stat(&name)
        .map_err(sys)?
        .map(|s| s.st_ino)
        .unwrap_or(0);
    rustix::net::listen(&fd, BACKLOG)
        .map_err(|e| Fatal::system(format!("unable to listen on {}: {e}", path.display())))?;
    let fd = runplane_sys::asyncfd::register_with_interest(fd, Interest::READABLE)
        .map_err(|e| Fatal::system(format!("unable to watch {}: {e}", path.display())))?;
    Ok(Listener {
        fd,
        path: path.to_owned(),
        parent,
        name,
        ino,
    })
}

impl Listener {
    /// Accepts one connection (non-blocking, close-on-exec) and returns it with its peer.
    pub async fn accept(&self) -> std::io::Result<(OwnedFd, Cred)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|l| {
                Ok(rustix::net::accept_with(
                    l.get_ref(),
                    SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                )?)
            }) {
                Ok(Ok(conn)) => {
                    let cred = scm::peer_cred(&conn).map_err(|e| e.into_io())?;
                    return Ok((conn, cred));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Unlinks the socket node if it is still ours (same inode as bound).
    pub fn remove(self) {
        match self.parent.stat(&self.name) {
            Ok(Some(st)) if st.st_ino == self.ino => {
                if let Err(e) = self.parent.unlink(&self.name) {
                    tracing::warn!("{e}");
                }
            }
            _ => tracing::warn!(
                "not removing {}: it was replaced meanwhile",
                self.path.display()
            ),
        }
    }
}

async fn recv(conn: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<Message> {
    loop {
        let mut guard = conn.readable().await?;
        match guard.try_io(|c| scm::recv(c.get_ref().as_fd(), buf, 0)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn send(conn: &AsyncFd<OwnedFd>, bytes: &[u8]) -> std::io::Result<()> {
    loop {
        let mut guard = conn.writable().await?;
        match guard.try_io(|c| scm::send(c.get_ref().as_fd(), bytes, &[], None)) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

/// Serves one connection until the peer closes it, goes idle, or stops reading.
pub async fn serve(conn: OwnedFd, cred: Cred, daemon: Arc<Daemon>) {
    let conn = match runplane_sys::asyncfd::register(conn) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "unable to watch a control connection of pid {}: {e}",
                cred.pid
            );
            return;
        }
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let msg = match tokio::time::timeout(IDLE_TIMEOUT, recv(&conn, &mut buf)).await {
            Err(_) => {
                tracing::debug!("closing idle control connection of pid {}", cred.pid);
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!("control connection of pid {}: {e}", cred.pid);
                return;
            }
            Ok(Ok(m)) => m,
        };
        let (id, result) = match msg {
            Message::Data { len: 0, .. } => return,
            Message::Data { fds, .. } if !fds.is_empty() => (
                0,
                Err(ErrorReply::new(
                    Code::EINVAL,
                    "file descriptors are not accepted on the control socket",
                )),
            ),
            Message::Data { len, .. } => match decode_request(&buf[..len]) {
                Ok((id, req)) => (id, daemon.dispatch(&req, cred).await),
                Err((id, e)) => (id, Err(e)),
            },
            Message::TooLarge { size } => (
                0,
                Err(ErrorReply::new(
                    Code::E2BIG,
                    format!("request of {size} bytes exceeds the limit of {MAX_MESSAGE}"),
                )),
            ),
            Message::TooManyFds => (
                0,
                Err(ErrorReply::new(
                    Code::EINVAL,
                    "file descriptors are not accepted on the control socket",
                )),
            ),
        };
        daemon.count_request();
        if let Err(e) = &result {
            tracing::debug!(uid = cred.uid, pid = cred.pid, code = ?e.code, "request refused: {}", e.message);
        }
        let out = encode_response(id, &result);
        match tokio::time::timeout(SEND_TIMEOUT, send(&conn, &out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!("control connection of pid {}: {e}", cred.pid);
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "dropping control connection of pid {}: it does not read its answers",
                    cred.pid
                );
                return;
            }
        }
    }
}

/// Refusals answered at once (each waits up to [`REFUSE_WAIT`] for the request it answers);
/// past this, connections over the limit are closed without an answer.
pub const MAX_REFUSING: u32 = 64;
pub const REFUSE_WAIT: Duration = Duration::from_secs(1);

/// Tells a connection over the limit why it is refused: reads its first request (so that
/// closing cannot reset the connection under the client's feet with the request unread),
/// answers `EBUSY` with that request's id, and closes.
pub async fn refuse_busy(conn: OwnedFd, max: u32) {
    let Ok(conn) = runplane_sys::asyncfd::register(conn) else {
        return;
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    let id = match tokio::time::timeout(REFUSE_WAIT, recv(&conn, &mut buf)).await {
        Ok(Ok(Message::Data { len, .. })) if len > 0 => {
            decode_request(&buf[..len]).map_or_else(|(id, _)| id, |(id, _)| id)
        }
        _ => 0,
    };
    let out = encode_response(
        id,
        &Err(ErrorReply::new(
            Code::EBUSY,
            format!("too many control connections (limit {max})"),
        )),
    );
    let _ = tokio::time::timeout(REFUSE_WAIT, send(&conn, &out)).await;
}

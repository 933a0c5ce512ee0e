//! fd passing (`SCM_RIGHTS`) and credentials (`SCM_CREDENTIALS`, `SO_PEERCRED`) on AF_UNIX
//! sockets; unix(7), cmsg(3).
//!
//! Receiving always uses `MSG_CMSG_CLOEXEC` (an fd arriving while another thread spawns must
//! not leak into the child) and `MSG_TRUNC` (so an oversized datagram or packet is reported
//! with its real size instead of being silently cut). A message whose control data was cut
//! (`MSG_CTRUNC`: more fds than the buffer had room for) is rejected whole, and every fd that
//! did arrive is closed.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, UCred,
};

use crate::error::{Context, Result};

/// The kernel's limit of fds in one `SCM_RIGHTS` message (`SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

/// Process credentials as the kernel reports them for a peer or a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl From<UCred> for Cred {
    fn from(c: UCred) -> Self {
        Cred {
            pid: c.pid.as_raw_nonzero().get(),
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
        }
    }
}

/// What one `recvmsg` returned.
#[derive(Debug)]
pub enum Message {
    /// A whole message: `len` bytes at the start of the buffer, the fds that came with it
    /// (already `FD_CLOEXEC`), and the sender's credentials if `SO_PASSCRED` is on.
    Data {
        len: usize,
        fds: Vec<OwnedFd>,
        cred: Option<Cred>,
    },
    /// The message was larger than the buffer (its real size is given); it was consumed and
    /// its fds were closed.
    TooLarge { size: usize },
    /// More fds were sent than the receiver allows; the message was consumed and the fds
    /// that arrived were closed.
    TooManyFds,
}

/// `SO_PEERCRED`: the credentials of the process that connected (or created the pair).
pub fn peer_cred(sock: impl AsFd) -> Result<Cred> {
    rustix::net::sockopt::socket_peercred(sock)
        .map(Cred::from)
        .ctx("read peer credentials of", "socket")
}

/// Turns `SO_PASSCRED` on, so that every received message carries `SCM_CREDENTIALS`.
pub fn set_passcred(sock: impl AsFd) -> Result<()> {
    rustix::net::sockopt::set_socket_passcred(sock, true).ctx("enable SO_PASSCRED on", "socket")
}

/// Receives one message into `buf` with at most `max_fds` fds (at most [`SCM_MAX_FD`]).
/// Blocking or not as the socket is; a would-block comes back as `io::ErrorKind::WouldBlock`
/// so that this composes with `tokio::io::unix::AsyncFd::try_io`.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], max_fds: usize) -> io::Result<Message> {
    let max_fds = max_fds.min(SCM_MAX_FD);
    // Room for the credentials and max_fds descriptors (stack buffer, no allocation).
    const SPACE: usize = rustix::cmsg_space!(ScmRights(SCM_MAX_FD), ScmCredentials(1));
    let mut space = [MaybeUninit::<u8>::uninit(); SPACE];
    let want = rustix::cmsg_space!(ScmRights(max_fds), ScmCredentials(1)).min(SPACE);
    let mut control = RecvAncillaryBuffer::new(&mut space[..want]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = rustix::net::recvmsg(
        sock,
        &mut iov,
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC,
    )?;
    let mut fds = Vec::new();
    let mut cred = None;
    for m in control.drain() {
        match m {
            RecvAncillaryMessage::ScmRights(rights) => fds.extend(rights),
            RecvAncillaryMessage::ScmCredentials(c) => cred = Some(Cred::from(c)),
            _ => {}
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        drop(fds);
        return Ok(Message::TooManyFds);
    }
    if msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes > buf.len() {
        drop(fds);
        return Ok(Message::TooLarge { size: msg.bytes });
    }
    Ok(Message::Data {
        len: msg.bytes,
        fds,
        cred,
    })
}

/// Sends `data` with `fds` (at most [`SCM_MAX_FD`]) and, if given, explicit credentials
/// (which the kernel checks: a process may only claim its own pid, uid and gid unless
/// privileged). `MSG_NOSIGNAL`: a closed peer is `EPIPE`, never `SIGPIPE`.
pub fn send(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    cred: Option<Cred>,
) -> io::Result<usize> {
    if fds.len() > SCM_MAX_FD {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    const SPACE: usize = rustix::cmsg_space!(ScmRights(SCM_MAX_FD), ScmCredentials(1));
    let mut space = [MaybeUninit::<u8>::uninit(); SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    if let Some(c) = cred {
        if c.pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let pid = rustix::process::Pid::from_raw(c.pid)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        control.push(SendAncillaryMessage::ScmCredentials(UCred {
            pid,
            uid: rustix::process::Uid::from_raw(c.uid),
            gid: rustix::process::Gid::from_raw(c.gid),
        }));
    }
    let iov = [IoSlice::new(data)];
    Ok(rustix::net::sendmsg(
        sock,
        &iov,
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

/// This process's own credentials, as the kernel would attach them.
pub fn own_cred() -> Cred {
    Cred {
        pid: rustix::process::getpid().as_raw_nonzero().get(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};

    fn pair(t: SocketType) -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::UNIX, t, SocketFlags::CLOEXEC, None).unwrap()
    }

    fn is_cloexec(fd: &OwnedFd) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    #[test]
    fn fds_and_credentials_round_trip_with_cloexec() {
        let (a, b) = pair(SocketType::SEQPACKET);
        set_passcred(&b).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        send(a.as_fd(), b"hello", &[w.as_fd()], Some(own_cred())).unwrap();
        drop(w);
        let mut buf = [0u8; 64];
        match recv(b.as_fd(), &mut buf, 4).unwrap() {
            Message::Data { len, fds, cred } => {
                assert_eq!(&buf[..len], b"hello");
                assert_eq!(fds.len(), 1);
                assert!(is_cloexec(&fds[0]));
                assert_eq!(cred, Some(own_cred()));
                rustix::io::write(&fds[0], b"x").unwrap();
                let mut one = [0u8; 1];
                rustix::io::read(&r, &mut one).unwrap();
                assert_eq!(&one, b"x");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(peer_cred(&a).unwrap(), own_cred());
    }

    #[test]
    fn oversized_message_is_reported_with_real_size_and_fds_closed() {
        let (a, b) = pair(SocketType::SEQPACKET);
        let (r, w) = rustix::pipe::pipe().unwrap();
        send(a.as_fd(), &[7u8; 100], &[w.as_fd()], None).unwrap();
        drop(w);
        let mut buf = [0u8; 10];
        match recv(b.as_fd(), &mut buf, 4).unwrap() {
            Message::TooLarge { size } => assert_eq!(size, 100),
            other => panic!("{other:?}"),
        }
        // The received copy of the write end was closed: the read end sees EOF.
        let mut one = [0u8; 1];
        assert_eq!(rustix::io::read(&r, &mut one).unwrap(), 0);
    }

    #[test]
    fn too_many_fds_is_rejected_whole() {
        for ty in [SocketType::SEQPACKET, SocketType::DGRAM, SocketType::STREAM] {
            let (a, b) = pair(ty);
            let (r, w) = rustix::pipe::pipe().unwrap();
            let many: Vec<_> = (0..5).map(|_| w.as_fd()).collect();
            send(a.as_fd(), b"m", &many, None).unwrap();
            drop(w);
            let mut buf = [0u8; 10];
            assert!(
                matches!(recv(b.as_fd(), &mut buf, 2).unwrap(), Message::TooManyFds),
                "{ty:?}"
            );
            let mut one = [0u8; 1];
            assert_eq!(
                rustix::io::read(&r, &mut one).unwrap(),
                0,
                "{ty:?}: fds leaked"
            );
        }
    }

    #[test]
    fn forged_credentials_are_refused_by_the_kernel_for_non_root() {
        // As root the kernel accepts any pid that exists; as a user it refuses foreign ids.
        let (a, _b) = pair(SocketType::DGRAM);
        let forged = Cred {
            pid: 1,
            ..own_cred()
        };
        let r = send(a.as_fd(), b"x", &[], Some(forged));
        if rustix::process::geteuid().is_root() {
            assert!(r.is_ok());
        } else {
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM));
        }
    }

    #[test]
    fn nonblocking_empty_socket_would_block() {
        let (_a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        let mut buf = [0u8; 4];
        let e = recv(b.as_fd(), &mut buf, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(send(_a.as_fd(), b"x", &vec![_a.as_fd(); 254], None).is_err());
    }
}

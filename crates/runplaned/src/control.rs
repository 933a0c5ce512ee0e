//! The control socket: an `AF_UNIX` `SOCK_SEQPACKET` listener (protocol: runplane-proto),
//! every request authorized by the peer's `SO_PEERCRED`.
//!
//! Each connection is served on a thread of its own with blocking receives, not on the event
//! loop. A thread asleep in `recvmsg` is woken by the kernel straight into the receive, and
//! only for data: an event loop pays for the `epoll_wait` return and a receive that finds
//! nothing, and tokio registers an `AsyncFd` for writability too, so each time a client read
//! an answer its freed send buffer made the daemon's socket writable and the kernel woke the
//! loop from inside the client's `recvmsg` (a cross-CPU wakeup on the client's path, and one
//! for nothing in the daemon). `bench/c/readiness.c` measures the three ways of waiting; on
//! the machines bench/run measures, the event loop made a ping 1.46x a C server's round trip,
//! these threads 1.08x (BENCHMARKS.md). The requests run on these threads
//! ([`Daemon::dispatch`], whose async parts such as NSS lookups run through the runtime's
//! handle); the event loop keeps signals, timers, leader exits and refusals. [`KEEP_IDLE`]
//! threads wait in `accept` (waking for nothing while idle); a thread that takes a
//! connection while it is the last one waiting starts another first, and one that ends a
//! connection with enough others waiting exits. A connection costs its thread about 18 KiB.
//!
//! Bounds: at most `daemon.max_clients` connections, each on one thread, of which one uid
//! (but root and the daemon's own) holds at most `daemon.max_clients_per_uid` and none of the
//! last eighth (kept for root: logins); one more is told `EBUSY` and closed, by the event
//! loop. Packets of at most `MAX_MESSAGE` bytes (a larger one is answered `E2BIG`, the
//! connection stays), no fds accepted (`EINVAL`), an idle connection is closed after
//! [`IDLE_TIMEOUT`], and a client that does not read its answers within [`SEND_TIMEOUT`] is
//! dropped. Stopping waits up to [`STOP_WAIT`] for requests in progress to
//! finish and lets none start after.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
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

/// A bound and listening control socket (blocking: [`Server`]'s threads wait in `accept`);
/// [`Listener::remove`] unlinks its node if it is still the one we bound.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
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
        SocketFlags::CLOEXEC,
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
    Ok(Listener {
        fd,
        path: path.to_owned(),
        parent,
        name,
        ino,
    })
}

impl Listener {
    /// Unlinks the socket node if it is still ours (same inode as bound).
    pub fn remove(&self) {
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

/// Refusals answered at once (each waits up to [`REFUSE_WAIT`] for the request it answers);
/// past this, connections over the limit are closed without an answer.
pub const MAX_REFUSING: u32 = 64;
pub const REFUSE_WAIT: Duration = Duration::from_secs(1);

/// Tells a connection over the limit why it is refused: reads its first request (so that
/// closing cannot reset the connection under the client's feet with the request unread),
/// answers `EBUSY` with that request's id, and closes.
pub async fn refuse_busy(conn: OwnedFd, why: String) {
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
    let out = encode_response(id, &Err(ErrorReply::new(Code::EBUSY, why)));
    let _ = tokio::time::timeout(REFUSE_WAIT, send(&conn, &out)).await;
}

/// Threads kept waiting in `accept` (see the module's documentation).
pub const KEEP_IDLE: usize = 2;
/// How long stopping waits for requests in progress.
pub const STOP_WAIT: Duration = Duration::from_secs(5);
/// A serving thread's stack (address space: only the pages touched are resident), as large
/// as the runtime's own threads'. Removing a user's tree takes a frame per level, 256 levels
/// at most (`remove::MAX_DEPTH`): up to 256 KiB in a release build, 1 MiB in a debug one.
/// Removals run on the event loop (grace expiry), but a request that fails to create a dir
/// removes what it made on this thread.
const STACK_SIZE: usize = 2 << 20;

thread_local! {
    static SERVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of the control socket's. Such a thread serves one
/// connection, so a request may block on it (an NSS lookup through LDAP) and hold up nothing
/// but itself: what would be handed to the runtime's blocking pool elsewhere runs inline,
/// without two cross-thread wakeups on the request's path.
pub fn may_block() -> bool {
    SERVING.get()
}

#[derive(Debug, Default)]
struct Pool {
    /// Threads waiting in `accept`.
    idle: usize,
    /// All serving threads.
    threads: usize,
    /// Connections held by each uid that the per-uid limit applies to.
    per_uid: std::collections::HashMap<u32, u32>,
}

/// The serving threads of the control socket.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    daemon: Arc<Daemon>,
    rt: tokio::runtime::Handle,
    pool: Mutex<Pool>,
    stopping: AtomicBool,
    /// Held shared by every request in progress; taken exclusively to stop.
    gate: RwLock<()>,
}

/// One connection's share of `daemon.clients` (and of its uid's, if limited), released when
/// dropped (also on a panic).
struct ClientSlot<'a> {
    server: &'a Server,
    limited_uid: Option<u32>,
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        let mut p = self.server.pool();
        self.server.daemon.clients.fetch_sub(1, Ordering::Relaxed);
        if let Some(uid) = self.limited_uid
            && let std::collections::hash_map::Entry::Occupied(mut e) = p.per_uid.entry(uid)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// The part of `max_clients` kept for root and the daemon's own uid: other uids are refused
/// once only this many connections are left.
pub fn root_reserve(max_clients: u32) -> u32 {
    max_clients / 8
}

impl Server {
    /// Starts serving `listener` with [`KEEP_IDLE`] threads waiting for connections. Must be
    /// called inside the runtime whose handle the requests' async parts use.
    pub fn start(listener: Listener, daemon: Arc<Daemon>) -> Result<Arc<Server>, Fatal> {
        let server = Arc::new(Server {
            listener,
            daemon,
            rt: tokio::runtime::Handle::current(),
            pool: Mutex::new(Pool::default()),
            stopping: AtomicBool::new(false),
            gate: RwLock::new(()),
        });
        for _ in 0..KEEP_IDLE {
            server.add_thread().map_err(|e| {
                Fatal::system(format!(
                    "unable to start a thread serving {}: {e}",
                    server.listener.path.display()
                ))
            })?;
        }
        Ok(server)
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts one more thread waiting in `accept`.
    fn add_thread(self: &Arc<Self>) -> std::io::Result<()> {
        {
            let mut p = self.pool();
            p.idle += 1;
            p.threads += 1;
        }
        let me = self.clone();
        let r = std::thread::Builder::new()
            .name("control".into())
            .stack_size(STACK_SIZE)
            .spawn(move || me.run());
        if r.is_err() {
            let mut p = self.pool();
            p.idle -= 1;
            p.threads -= 1;
        }
        r.map(drop)
    }

    /// A serving thread: takes connections and serves each to its end, until stopped or no
    /// longer needed.
    fn run(self: Arc<Self>) {
        SERVING.set(true);
        // Pages of its own: a request touches only the first one or two.
        let mut buf = match runplane_sys::mem::PageBuffer::new(MAX_MESSAGE) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("unable to make a receive buffer for a control thread: {e}");
                let mut p = self.pool();
                p.idle -= 1;
                p.threads -= 1;
                return;
            }
        };
        loop {
            let r = rustix::net::accept_with(&self.listener.fd, SocketFlags::CLOEXEC);
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let conn = match r {
                Ok(c) => c,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // EMFILE and friends: log, back off briefly, keep serving.
                    tracing::warn!("unable to accept on {}: {e}", self.listener.path.display());
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            // Busy now: if nobody else waits for connections, start one who does.
            let last = {
                let mut p = self.pool();
                p.idle -= 1;
                p.idle == 0
            };
            if last && let Err(e) = self.add_thread() {
                tracing::warn!("unable to start another thread serving the control socket: {e}");
            }
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.connection(conn, &mut buf)
            }));
            if served.is_err() {
                tracing::error!("a control connection's thread panicked; the connection is closed");
            }
            let mut p = self.pool();
            if p.idle >= KEEP_IDLE || self.stopping.load(Ordering::Acquire) {
                p.threads -= 1;
                let last_of_a_burst = p.threads == KEEP_IDLE;
                drop(p);
                // Each thread allocated in a malloc arena of its own, which glibc keeps: when
                // a burst of connections is over, that memory goes back.
                if last_of_a_burst {
                    drop(buf);
                    runplane_sys::mem::return_free_memory();
                }
                return;
            }
            p.idle += 1;
        }
    }

    /// Admits a connection (or has the event loop refuse it) and serves it.
    fn connection(&self, conn: OwnedFd, buf: &mut [u8]) {
        let cred = match scm::peer_cred(&conn) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("unable to read the credentials of a control connection: {e}");
                return;
            }
        };
        let slot = match self.admit(cred) {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(
                    pid = cred.pid,
                    uid = cred.uid,
                    "refusing a control connection: {why}"
                );
                let d = &self.daemon;
                if d.refusing.fetch_add(1, Ordering::Relaxed) < MAX_REFUSING
                    && rustix::io::ioctl_fionbio(&conn, true).is_ok()
                {
                    let d = d.clone();
                    self.rt.spawn(async move {
                        refuse_busy(conn, why).await;
                        d.refusing.fetch_sub(1, Ordering::Relaxed);
                    });
                } else {
                    d.refusing.fetch_sub(1, Ordering::Relaxed);
                }
                return;
            }
        };
        self.serve(&conn, cred, buf);
        drop(slot);
    }

    /// Counts a connection of `cred` in, or says why it is refused: `daemon.max_clients` in
    /// all; for uids other than root and the daemon's own, at most `max_clients_per_uid` each
    /// and none of the last [`root_reserve`] slots, so that no user can keep logins (root's
    /// PAM module) out.
    fn admit(&self, cred: Cred) -> Result<ClientSlot<'_>, String> {
        let d = &self.daemon;
        let (max, per_uid) = d.client_limits();
        let limited = cred.uid != 0 && cred.uid != d.uid();
        let mut p = self.pool();
        let clients = d.clients.load(Ordering::Relaxed);
        if clients >= max {
            return Err(format!("too many control connections (limit {max})"));
        }
        if limited {
            let reserve = root_reserve(max);
            if clients >= max - reserve {
                return Err(format!(
                    "too many control connections (limit {max}, of which {reserve} are kept for root)"
                ));
            }
            let held = p.per_uid.entry(cred.uid).or_insert(0);
            if *held >= per_uid {
                return Err(format!(
                    "uid {} already holds {per_uid} control connections (daemon.max_clients_per_uid)",
                    cred.uid
                ));
            }
            *held += 1;
        }
        d.clients.fetch_add(1, Ordering::Relaxed);
        drop(p);
        Ok(ClientSlot {
            server: self,
            limited_uid: limited.then_some(cred.uid),
        })
    }

    /// Serves one connection until the peer closes it, goes idle, stops reading, or the
    /// daemon stops.
    fn serve(&self, conn: &OwnedFd, cred: Cred, buf: &mut [u8]) {
        use rustix::net::sockopt::{Timeout, set_socket_timeout};
        for (kind, t) in [(Timeout::Recv, IDLE_TIMEOUT), (Timeout::Send, SEND_TIMEOUT)] {
            if let Err(e) = set_socket_timeout(conn, kind, Some(t)) {
                tracing::warn!(
                    "unable to bound the control connection of pid {}: {e}",
                    cred.pid
                );
                return;
            }
        }
        loop {
            let msg = match scm::recv(conn.as_fd(), buf, 0) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tracing::debug!("closing idle control connection of pid {}", cred.pid);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("control connection of pid {}: {e}", cred.pid);
                    return;
                }
            };
            // What the request logs waits until its answer is sent.
            let held = crate::after::hold();
            let Some(out) = self.answer(msg, buf, cred) else {
                return;
            };
            // A signal (SIGHUP) interrupts a send waiting for room: a packet goes whole or
            // not at all, so it is sent again.
            let sent = loop {
                match scm::send(conn.as_fd(), &out, &[], None) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            drop(held);
            match sent {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tracing::warn!(
                        "dropping control connection of pid {}: it does not read its answers",
                        cred.pid
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!("control connection of pid {}: {e}", cred.pid);
                    return;
                }
            }
        }
    }

    /// The answer to one received packet; `None` when the connection is to end (the peer
    /// closed it, or the daemon is stopping).
    fn answer(&self, msg: Message, buf: &[u8], cred: Cred) -> Option<Vec<u8>> {
        let (id, result) = match msg {
            Message::Data { len: 0, .. } => return None,
            Message::Data { fds, .. } if !fds.is_empty() => (
                0,
                Err(ErrorReply::new(
                    Code::EINVAL,
                    "file descriptors are not accepted on the control socket",
                )),
            ),
            Message::Data { len, .. } => match decode_request(&buf[..len]) {
                Ok((id, req)) => {
                    let _running = self.gate.read().unwrap_or_else(|p| p.into_inner());
                    if self.stopping.load(Ordering::Acquire) {
                        return None;
                    }
                    (id, self.rt.block_on(self.daemon.dispatch(&req, cred)))
                }
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
        self.daemon.count_request();
        if let Err(e) = &result {
            tracing::debug!(uid = cred.uid, pid = cred.pid, code = ?e.code, "request refused: {}", e.message);
        }
        Some(encode_response(id, &result))
    }

    /// Stops serving: no connection is accepted and no request starts after this; requests
    /// in progress are waited for up to [`STOP_WAIT`]. Then unlinks the socket node.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // Wakes every thread waiting in accept (EINVAL), which then sees `stopping`.
        if let Err(e) = rustix::net::shutdown(&self.listener.fd, rustix::net::Shutdown::Read) {
            tracing::warn!("unable to shut {} down: {e}", self.listener.path.display());
        }
        let deadline = std::time::Instant::now() + STOP_WAIT;
        loop {
            if self.gate.try_write().is_ok() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    "stopping with requests still in progress after {}s",
                    STOP_WAIT.as_secs()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.listener.remove();
    }
}

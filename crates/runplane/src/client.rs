//! Synchronous client of runplaned's control socket (protocol: `runplane-proto`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fd::{AsFd, OwnedFd};
use rustix::net::sockopt::Timeout;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use runplane_proto::{
    After, ConfigStatus, ErrorReply, MAX_MESSAGE, Pong, Request, Status, UserdirStatus,
    decode_response_as, encode_request,
};
use runplane_sys::scm::{self, Message};

/// How long a request may take before the client gives up (send and receive each).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The control socket of the system daemon, or (with `user`) of the calling user's daemon
/// under `$XDG_RUNTIME_DIR` (falling back to `/run/user/<uid>` when the variable is unset).
pub fn default_socket(user: bool) -> PathBuf {
    if !user {
        return PathBuf::from("/run/runplane/control");
    }
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!("/run/user/{}", rustix::process::geteuid().as_raw()))
        });
    base.join("runplane/control")
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unable to connect to {}: {source}{}", path.display(), hint(source))]
    Connect { path: PathBuf, source: io::Error },
    #[error("unable to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no answer from {} within {}s", path.display(), timeout.as_secs_f32())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("runplaned refused: {0}")]
    Daemon(ErrorReply),
    #[error("protocol error on {}: {message}", path.display())]
    Protocol { path: PathBuf, message: String },
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(c)
            if c == rustix::io::Errno::NOENT.raw_os_error()
                || c == rustix::io::Errno::CONNREFUSED.raw_os_error() =>
        {
            " (is runplaned running?)"
        }
        _ => "",
    }
}

impl ClientError {
    /// The command line's exit code for this error: 1 when the daemon refused the request,
    /// 111 when the system failed (no daemon, I/O error, timeout, protocol error).
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Daemon(e) if e.code.is_refusal() => 1,
            _ => 111,
        }
    }
}

/// A connection to runplaned. Requests are sent one at a time.
#[derive(Debug)]
pub struct Client {
    fd: OwnedFd,
    path: PathBuf,
    next_id: u64,
    timeout: Duration,
    /// The receive buffer, made on the first request and kept for the next ones.
    buf: Vec<u8>,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Client {
    /// Connects to the control socket at `path`; `timeout` bounds the connect (when the
    /// daemon's backlog is full) and every send and receive.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Client, ClientError> {
        let path = path.as_ref().to_owned();
        let conn = |source: io::Error| ClientError::Connect {
            path: path.clone(),
            source,
        };
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| conn(e.into()))?;
        let t = Some(timeout.max(Duration::from_millis(1)));
        rustix::net::sockopt::set_socket_timeout(&fd, Timeout::Send, t)
            .map_err(|e| conn(e.into()))?;
        rustix::net::sockopt::set_socket_timeout(&fd, Timeout::Recv, t)
            .map_err(|e| conn(e.into()))?;
        let addr = SocketAddrUnix::new(&path).map_err(|e| conn(e.into()))?;
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::AGAIN => {
                return Err(ClientError::Timeout { path, timeout });
            }
            Err(e) => return Err(conn(e.into())),
        }
        Ok(Client {
            fd,
            path,
            next_id: 1,
            timeout,
            buf: Vec::new(),
        })
    }

    /// Sets the send and receive timeout for the following requests (at least 1 ms; a zero
    /// budget becomes 1 ms and times out at once).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let t = Some(timeout.max(Duration::from_millis(1)));
        for kind in [Timeout::Send, Timeout::Recv] {
            rustix::net::sockopt::set_socket_timeout(&self.fd, kind, t).map_err(|e| {
                ClientError::Io {
                    op: "set a timeout on",
                    path: self.path.clone(),
                    source: e.into(),
                }
            })?;
        }
        self.timeout = timeout;
        Ok(())
    }

    /// The socket path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends raw bytes as one packet and returns the raw answer: for tests of the daemon's
    /// handling of malformed input.
    pub fn call_raw(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.exchange(bytes).map(<[u8]>::to_vec)
    }

    /// Sends one packet and receives the answer into the client's buffer.
    fn exchange(&mut self, bytes: &[u8]) -> Result<&[u8], ClientError> {
        match scm::send(self.fd.as_fd(), bytes, &[], None) {
            Ok(_) => {}
            Err(e) if would_block(&e) => {
                return Err(ClientError::Timeout {
                    path: self.path.clone(),
                    timeout: self.timeout,
                });
            }
            Err(source) => {
                return Err(ClientError::Io {
                    op: "send to",
                    path: self.path.clone(),
                    source,
                });
            }
        }
        if self.buf.len() < MAX_MESSAGE {
            self.buf = vec![0u8; MAX_MESSAGE];
        }
        match scm::recv(self.fd.as_fd(), &mut self.buf, 0) {
            Ok(Message::Data { len: 0, .. }) => Err(ClientError::Protocol {
                path: self.path.clone(),
                message: "the daemon closed the connection".into(),
            }),
            Ok(Message::Data { len, .. }) => Ok(&self.buf[..len]),
            Ok(Message::TooLarge { size }) => Err(ClientError::Protocol {
                path: self.path.clone(),
                message: format!("answer of {size} bytes exceeds the limit of {MAX_MESSAGE}"),
            }),
            Ok(Message::TooManyFds) => Err(ClientError::Protocol {
                path: self.path.clone(),
                message: "the daemon sent unexpected file descriptors".into(),
            }),
            Err(e) if would_block(&e) => Err(ClientError::Timeout {
                path: self.path.clone(),
                timeout: self.timeout,
            }),
            Err(source) => Err(ClientError::Io {
                op: "receive from",
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Sends `req` and returns the `ok` value of the answer.
    pub fn call(&mut self, req: &Request) -> Result<serde_json::Value, ClientError> {
        self.typed(req)
    }

    /// Sends `req` and decodes the `ok` value of the answer as a `T`, in one pass.
    fn typed<T: serde::de::DeserializeOwned>(&mut self, req: &Request) -> Result<T, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let decoded = decode_response_as::<T>(self.exchange(&encode_request(id, req))?);
        let (got, result) = decoded.map_err(|e| ClientError::Protocol {
            path: self.path.clone(),
            message: match e.message.strip_prefix("malformed reply from the daemon: ") {
                Some(why) => format!("malformed answer to '{}': {why}", req.op()),
                None => e.message,
            },
        })?;
        if got != id && got != 0 {
            return Err(ClientError::Protocol {
                path: self.path.clone(),
                message: format!("answer to request {got} arrived for request {id}"),
            });
        }
        result.map_err(ClientError::Daemon)
    }

    /// `ping`: the daemon's version and pid.
    pub fn ping(&mut self) -> Result<Pong, ClientError> {
        self.typed(&Request::Ping)
    }

    /// `status`: the whole plane, with every page of `userdirs` (see [`Client::userdirs`]).
    pub fn status(&mut self) -> Result<Status, ClientError> {
        let mut st: Status = self.typed(&Request::Status)?;
        if st.userdirs_more {
            let rest = self.userdirs(st.userdirs.last().map(|u| u.uid))?;
            st.userdirs.extend(rest);
            st.userdirs_more = false;
        }
        Ok(st)
    }

    /// `userdirs`: the entries of `status.userdirs` above uid `after` (all when `None`), page
    /// by page.
    pub fn userdirs(&mut self, after: Option<u32>) -> Result<Vec<UserdirStatus>, ClientError> {
        self.pages(after, Request::Userdirs, |u: &UserdirStatus| u.uid)
    }

    /// Asks for the pages of a list after `after`, each after the last key of the one before,
    /// until one comes back empty (the protocol's paging, see runplane_proto).
    fn pages<T, K>(
        &mut self,
        mut after: Option<K>,
        ask: impl Fn(After<K>) -> Request,
        key: impl Fn(&T) -> K,
    ) -> Result<Vec<T>, ClientError>
    where
        T: serde::de::DeserializeOwned,
        K: PartialOrd + Clone,
    {
        let mut out = Vec::new();
        loop {
            let req = ask(After {
                after: after.clone(),
            });
            let page: Vec<T> = self.typed(&req)?;
            let Some(last) = page.last().map(&key) else {
                return Ok(out);
            };
            // Keys only ascend: anything else would never end.
            if after.as_ref().is_some_and(|a| *a >= last) {
                return Err(ClientError::Protocol {
                    path: self.path.clone(),
                    message: format!("'{}' answered a page that does not advance", req.op()),
                });
            }
            out.extend(page);
            after = Some(last);
        }
    }

    /// `reload`: re-read the configuration (root or the daemon's own user).
    pub fn reload(&mut self) -> Result<ConfigStatus, ClientError> {
        self.typed(&Request::Reload)
    }
}

impl Client {
    /// `session_open`: a login of `user` (name or uid) led by `pid` (default: this process).
    pub fn session_open(
        &mut self,
        args: runplane_proto::SessionOpen,
    ) -> Result<runplane_proto::SessionOpened, ClientError> {
        self.typed(&Request::SessionOpen(args))
    }

    /// `session_close`: the end of session `id`.
    pub fn session_close(&mut self, id: u64) -> Result<runplane_proto::SessionClosed, ClientError> {
        self.typed(&Request::SessionClose(runplane_proto::SessionClose { id }))
    }

    /// `session_list`: open sessions (a non-root caller sees its own), every page.
    pub fn session_list(&mut self) -> Result<Vec<runplane_proto::SessionInfo>, ClientError> {
        self.pages(
            None,
            Request::SessionList,
            |s: &runplane_proto::SessionInfo| s.id,
        )
    }

    /// `linger`: turn linger on or off for a user.
    pub fn linger(
        &mut self,
        args: runplane_proto::Linger,
    ) -> Result<runplane_proto::LingerState, ClientError> {
        self.typed(&Request::Linger(args))
    }

    /// `linger_list`: users with linger on, every page.
    pub fn linger_list(&mut self) -> Result<Vec<runplane_proto::LingerState>, ClientError> {
        self.pages(
            None,
            Request::LingerList,
            |l: &runplane_proto::LingerState| l.user.clone(),
        )
    }

    /// `session_ipc`: what RemoveIPC would remove for a user.
    pub fn session_ipc(
        &mut self,
        user: runplane_proto::UserRef,
    ) -> Result<Vec<runplane_proto::IpcObject>, ClientError> {
        self.typed(&Request::SessionIpc(user))
    }
}

impl From<ErrorReply> for ClientError {
    fn from(e: ErrorReply) -> Self {
        ClientError::Daemon(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runplane_proto::Code;

    #[test]
    fn connect_errors_name_the_socket_and_hint() {
        let e = Client::connect("/nonexistent/control", Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to connect to /nonexistent/control: No such file or directory (os error 2) (is runplaned running?)"
        );
        assert_eq!(e.exit_code(), 111);
        let refused = ClientError::Daemon(ErrorReply::new(Code::EPERM, "no"));
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(
            ClientError::Daemon(ErrorReply::new(Code::EIO, "x")).exit_code(),
            111
        );
    }

    /// A fake daemon on a real SEQPACKET socket: answers each request with the next of
    /// `answers` (its `{id}` replaced by the request's id), then closes.
    fn fake_daemon(answers: Vec<&'static str>) -> (tempfile::TempDir, PathBuf) {
        use rustix::net::{RecvFlags, SendFlags};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let l = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        rustix::net::bind(&l, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        rustix::net::listen(&l, 1).unwrap();
        std::thread::spawn(move || {
            let c = rustix::net::accept(&l).unwrap();
            let mut buf = vec![0u8; 4096];
            for a in answers {
                let (n, _) = rustix::net::recv(&c, &mut buf, RecvFlags::empty()).unwrap();
                let req: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
                let out = a.replace("{id}", &req["id"].to_string());
                rustix::net::send(&c, out.as_bytes(), SendFlags::NOSIGNAL).unwrap();
            }
        });
        (dir, path)
    }

    #[test]
    fn answers_are_decoded_into_their_type_and_bad_ones_named() {
        let (_d, path) = fake_daemon(vec![
            r#"{"v":1,"id":{id},"ok":{"version":"9.9","pid":7}}"#,
            r#"{"v":1,"id":{id},"ok":{"version":5}}"#,
            r#"{"v":1,"id":{id},"error":{"code":"EPERM","errno":1,"message":"not you"}}"#,
            r#"{"v":1,"id":4242,"ok":{"version":"9.9","pid":7}}"#,
            r#"{"v":1,"id":{id},"ok":{"version":"9.9","pid":7}}"#,
        ]);
        let mut c = Client::connect(&path, Duration::from_secs(5)).unwrap();
        let p = c.ping().unwrap();
        assert_eq!((p.version.as_str(), p.pid), ("9.9", 7));
        let e = c.ping().unwrap_err().to_string();
        assert!(
            e.contains("malformed answer to 'ping': invalid type"),
            "{e}"
        );
        match c.ping().unwrap_err() {
            ClientError::Daemon(e) => {
                assert_eq!((e.code, e.message.as_str()), (Code::EPERM, "not you"))
            }
            e => panic!("{e}"),
        }
        let e = c.ping().unwrap_err().to_string();
        assert!(
            e.contains("answer to request 4242 arrived for request 4"),
            "{e}"
        );
        // The raw view of the same kind of answer, as the command line prints it.
        let v = c.call(&Request::Ping).unwrap();
        assert_eq!(v, serde_json::json!({"version":"9.9","pid":7}));
    }

    #[test]
    fn default_sockets() {
        assert_eq!(
            default_socket(false),
            PathBuf::from("/run/runplane/control")
        );
        assert!(default_socket(true).ends_with("runplane/control"));
    }
}

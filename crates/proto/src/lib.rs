//! runplane-proto: the control protocol between runplaned and its clients (the `runplane`
//! command, the `runplane` library, `pam_runplane.so`). Pure: types and codec, no I/O.
//!
//! # Wire format (version 1)
//!
//! - Transport: an `AF_UNIX` `SOCK_SEQPACKET` socket (default `/run/runplane/control`; user
//!   mode `$XDG_RUNTIME_DIR/runplane/control`). Packets keep their boundaries, so one packet
//!   is one message and there is no framing of our own.
//! - A packet is at most [`MAX_MESSAGE`] (65536) bytes of UTF-8 JSON holding one object. The
//!   daemon answers a larger packet with `E2BIG` and keeps the connection.
//! - The client sends requests; the daemon answers each with exactly one response, in order.
//!   A client may pipeline; responses echo the request's `id`.
//! - Request: `{"v":1,"id":<u64>,"op":"<name>","args":{...}}`. `args` may be omitted when the
//!   operation takes none. Unknown top-level fields are ignored (forward compatibility);
//!   unknown fields inside `args` are an error (`EINVAL`).
//! - Response: `{"v":1,"id":<u64>,"ok":<value>}` or
//!   `{"v":1,"id":<u64>,"error":{"code":"EPERM","errno":1,"message":"..."}}`. When the request
//!   was too malformed to carry an id, `id` is 0.
//! - A request with `v` other than 1 is answered with `EPROTO` (in a version-1 response).
//!
//! - Lists are paged so that no answer outgrows a packet: `session_list`, `linger_list` and
//!   `userdirs` take an optional `{"after": KEY}` and answer the entries after that key in
//!   ascending key order, as many as fit in [`PAGE_BUDGET`] bytes; a client asks again with
//!   the last key it got until a page comes back empty. `status` carries the first page of
//!   `userdirs` and `userdirs_more: true` when more follow.
//!
//! Every request is authorized by the peer's `SO_PEERCRED` credentials (uid, gid, pid as of
//! `connect`); see each [`Request`] variant for who may ask.
//!
//! Example exchange (bytes on the wire, one packet each):
//!
//! ```text
//! -> {"v":1,"id":1,"op":"ping"}
//! <- {"v":1,"id":1,"ok":{"version":"0.1.0","pid":4242}}
//! -> {"v":1,"id":2,"op":"reload"}
//! <- {"v":1,"id":2,"error":{"code":"EPERM","errno":1,"message":"reload is for root and the daemon's own user (uid 0, 1000), not uid 1001"}}
//! ```

mod codec;
mod error;
mod status;
mod userdirs;

pub use codec::{
    Answer, MAX_MESSAGE, PAGE_BUDGET, VERSION, answer, decode_request, decode_response,
    decode_response_as, encode_request, encode_response,
};
pub use error::{Code, ErrorReply};
pub use status::{ConfigStatus, DaemonStatus, Mode, Pong, Status};
pub use userdirs::{
    IpcObject, Linger, LingerState, MAX_STATUS_SESSIONS, SessionClose, SessionClosed, SessionInfo,
    SessionOpen, SessionOpened, UserRef, UserdirStatus, UserdirsManager,
};

/// Arguments of a paged list: the entries after `after` (all when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct After<K> {
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub after: Option<K>,
}

impl<K> Default for After<K> {
    fn default() -> Self {
        After { after: None }
    }
}

use serde::{Deserialize, Serialize};

/// A request, as the daemon sees it after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ping`: liveness and version. Anyone may ask. Answer: [`Pong`].
    Ping,
    /// `status`: the whole plane as the daemon sees it. Anyone may ask; a non-root caller sees
    /// only its own user's entries in per-user sections. Answer: [`Status`].
    Status,
    /// `reload`: re-read the configuration file, as on SIGHUP. Root and the daemon's own uid
    /// only. Answer: [`ConfigStatus`] after the reload; a bad file is an `EINVAL` error and the
    /// last good configuration stays.
    Reload,
    /// `session_open`: a login of a user, led by a process (default: the caller). Root may open
    /// for anyone; another caller only for its own uid with a leader of its own uid. Answer:
    /// [`SessionOpened`].
    SessionOpen(SessionOpen),
    /// `session_close`: the end of a login. Root, or the session's own user. Answer:
    /// [`SessionClosed`].
    SessionClose(SessionClose),
    /// `session_list`: open sessions (a non-root caller sees its own), by id, paged after
    /// `after` (an id). Answer: `[SessionInfo]`.
    SessionList(After<u64>),
    /// `linger`: keep a user's directory without sessions (`enable`), or stop. Root; a user for
    /// itself when `userdirs.self_linger` is on. Answer: [`LingerState`].
    Linger(Linger),
    /// `linger_list`: users with linger on, by name, paged after `after` (a name). Anyone.
    /// Answer: `[LingerState]`.
    LingerList(After<String>),
    /// `userdirs`: the entries of `status.userdirs`, by uid, paged after `after` (a uid). Anyone
    /// (a non-root caller sees its own). Answer: `[UserdirStatus]`.
    Userdirs(After<u32>),
    /// `session_ipc`: the IPC objects RemoveIPC would remove for a user. Root or that user.
    /// Answer: `[IpcObject]`.
    SessionIpc(UserRef),
}

impl Request {
    /// The `op` string on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Status => "status",
            Request::Reload => "reload",
            Request::SessionOpen(_) => "session_open",
            Request::SessionClose(_) => "session_close",
            Request::SessionList(_) => "session_list",
            Request::Linger(_) => "linger",
            Request::LingerList(_) => "linger_list",
            Request::Userdirs(_) => "userdirs",
            Request::SessionIpc(_) => "session_ipc",
        }
    }

    /// The `args` object on the wire, if the operation takes arguments: serialized straight
    /// from the request's own fields (no `Value` tree on the way).
    pub fn args(&self) -> Option<Args<'_>> {
        Some(match self {
            Request::SessionOpen(a) => Args::SessionOpen(a),
            Request::SessionClose(a) => Args::SessionClose(a),
            Request::Linger(a) => Args::Linger(a),
            Request::SessionIpc(a) => Args::UserRef(a),
            Request::SessionList(a) if a.after.is_some() => Args::AfterId(a),
            Request::LingerList(a) if a.after.is_some() => Args::AfterName(a),
            Request::Userdirs(a) if a.after.is_some() => Args::AfterUid(a),
            Request::Ping
            | Request::Status
            | Request::Reload
            | Request::SessionList(_)
            | Request::LingerList(_)
            | Request::Userdirs(_) => return None,
        })
    }
}

/// A request's `args`, borrowed from it, as [`Request::args`] gives them to be serialized.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Args<'a> {
    SessionOpen(&'a SessionOpen),
    SessionClose(&'a SessionClose),
    Linger(&'a Linger),
    UserRef(&'a UserRef),
    AfterId(&'a After<u64>),
    AfterName(&'a After<String>),
    AfterUid(&'a After<u32>),
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Pong(Pong),
    Status(Box<Status>),
    Config(ConfigStatus),
}

/// A response: the echoed id and either a reply or an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: u64,
    pub result: Result<serde_json::Value, ErrorReply>,
}

impl Response {
    /// Decodes the `ok` value as `T`.
    pub fn into_result<T: serde::de::DeserializeOwned>(self) -> Result<T, ErrorReply> {
        let v = self.result?;
        serde_json::from_value(v).map_err(|e| {
            ErrorReply::new(
                Code::EPROTO,
                format!("malformed reply from the daemon: {e}"),
            )
        })
    }
}

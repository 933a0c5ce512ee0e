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

pub use codec::{
    MAX_MESSAGE, VERSION, decode_request, decode_response, encode_request, encode_response,
};
pub use error::{Code, ErrorReply};
pub use status::{ConfigStatus, DaemonStatus, Mode, Pong, Status};

use serde::{Deserialize, Serialize};

/// A request, as the daemon sees it after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ping`: liveness and version. Anyone may ask. Answer: [`Pong`].
    Ping,
    /// `status`: the whole plane as the daemon sees it. Anyone may ask (it holds no secrets;
    /// per-user details added by later capabilities are filtered by uid). Answer: [`Status`].
    Status,
    /// `reload`: re-read the configuration file, as on SIGHUP. Root and the daemon's own uid
    /// only. Answer: [`ConfigStatus`] after the reload; a bad file is an `EINVAL` error and the
    /// last good configuration stays.
    Reload,
}

impl Request {
    /// The `op` string on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Status => "status",
            Request::Reload => "reload",
        }
    }
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

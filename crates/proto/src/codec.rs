//! Encoding and decoding of version-1 messages (see the crate docs for the format).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::{Code, ErrorReply, Request, Response};

/// Largest message in either direction, in bytes.
pub const MAX_MESSAGE: usize = 65536;
/// What the entries of one page of a list may take, in bytes: the rest of [`MAX_MESSAGE`] is
/// room for the envelope and for an entry that crosses the budget (every entry is far below
/// 8 KiB: `status.userdirs` lists at most [`crate::MAX_STATUS_SESSIONS`] session ids).
pub const PAGE_BUDGET: usize = 48 << 10;
/// The protocol version spoken here.
pub const VERSION: u32 = 1;

/// A request as it arrives: `op` and `args` borrowed from the packet, `args` parsed only by
/// the operation that takes them (no intermediate `Value` tree).
#[derive(Deserialize)]
struct RawRequest<'a> {
    v: Option<u32>,
    id: Option<u64>,
    #[serde(borrow)]
    op: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct OutRequest<'a> {
    v: u32,
    id: u64,
    op: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<crate::Args<'a>>,
}

/// A response as written: borrowing the answer, so that encoding never copies it.
#[derive(Serialize)]
struct RawResponseRef<'a> {
    v: u32,
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorReply>,
}

/// Whether `args` are absent: omitted, `null` or `{}`.
fn absent(args: Option<&RawValue>) -> bool {
    match args {
        None => true,
        Some(a) => {
            let t = a.get().trim();
            t == "null"
                || serde_json::from_str::<serde_json::Map<String, Value>>(t)
                    .is_ok_and(|m| m.is_empty())
        }
    }
}

fn no_args(op: &str, args: Option<&RawValue>) -> Result<(), ErrorReply> {
    if absent(args) {
        Ok(())
    } else {
        Err(ErrorReply::new(
            Code::EINVAL,
            format!("operation '{op}' takes no arguments"),
        ))
    }
}

fn args<T: serde::de::DeserializeOwned>(
    op: &str,
    args: Option<&RawValue>,
) -> Result<T, ErrorReply> {
    serde_json::from_str(args.map_or("{}", RawValue::get))
        .map_err(|e| ErrorReply::new(Code::EINVAL, format!("invalid arguments to '{op}': {e}")))
}

/// Arguments that may be omitted entirely (then `T::default()`).
fn opt_args<T: serde::de::DeserializeOwned + Default>(
    op: &str,
    a: Option<&RawValue>,
) -> Result<T, ErrorReply> {
    match a {
        Some(a) if a.get().trim() != "null" => args(op, Some(a)),
        _ => Ok(T::default()),
    }
}

/// Decodes a request packet. On error, returns the request id if one could be read (else 0)
/// with the error to send back.
pub fn decode_request(bytes: &[u8]) -> Result<(u64, Request), (u64, ErrorReply)> {
    if bytes.len() > MAX_MESSAGE {
        return Err((
            0,
            ErrorReply::new(
                Code::E2BIG,
                format!(
                    "request of {} bytes exceeds the limit of {MAX_MESSAGE}",
                    bytes.len()
                ),
            ),
        ));
    }
    let raw: RawRequest<'_> = serde_json::from_slice(bytes).map_err(|e| {
        (
            0,
            ErrorReply::new(Code::EPROTO, format!("malformed request: {e}")),
        )
    })?;
    let id = raw.id.unwrap_or(0);
    match raw.v {
        Some(VERSION) => {}
        Some(v) => {
            return Err((
                id,
                ErrorReply::new(
                    Code::EPROTO,
                    format!("unsupported protocol version {v} (this daemon speaks {VERSION})"),
                ),
            ));
        }
        None => {
            return Err((
                id,
                ErrorReply::new(Code::EPROTO, "malformed request: missing field `v`"),
            ));
        }
    }
    if raw.id.is_none() {
        return Err((
            0,
            ErrorReply::new(Code::EPROTO, "malformed request: missing field `id`"),
        ));
    }
    let op = raw.op.ok_or_else(|| {
        (
            id,
            ErrorReply::new(Code::EPROTO, "malformed request: missing field `op`"),
        )
    })?;
    let none = |req: Request| no_args(&op, raw.args).map(|()| req);
    let req = match &*op {
        "ping" => none(Request::Ping),
        "status" => none(Request::Status),
        "reload" => none(Request::Reload),
        "session_list" => opt_args(&op, raw.args).map(Request::SessionList),
        "linger_list" => opt_args(&op, raw.args).map(Request::LingerList),
        "userdirs" => opt_args(&op, raw.args).map(Request::Userdirs),
        "session_open" => args(&op, raw.args).map(Request::SessionOpen),
        "session_close" => args(&op, raw.args).map(Request::SessionClose),
        "linger" => args(&op, raw.args).map(Request::Linger),
        "session_ipc" => args(&op, raw.args).map(Request::SessionIpc),
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err((
                id,
                ErrorReply::new(Code::ENOSYS, format!("unknown operation '{shown}'")),
            ));
        }
    };
    req.map(|r| (id, r)).map_err(|e| (id, e))
}

/// Encodes a request packet.
pub fn encode_request(id: u64, req: &Request) -> Vec<u8> {
    serde_json::to_vec(&OutRequest {
        v: VERSION,
        id,
        op: req.op(),
        args: req.args(),
    })
    .expect("request serializes")
}

/// An answer encoded once, as the daemon sends it: [`answer`] makes one from any typed value
/// without building a [`Value`] tree on the way.
pub type Answer = Box<RawValue>;

/// Encodes a typed answer for [`encode_response`].
pub fn answer<T: Serialize>(value: &T) -> Result<Answer, ErrorReply> {
    serde_json::value::to_raw_value(value)
        .map_err(|e| ErrorReply::new(Code::EIO, format!("unable to encode the answer: {e}")))
}

/// Encodes a response packet. An `ok` value that would exceed [`MAX_MESSAGE`] is replaced by
/// an `E2BIG` error, so that the daemon never sends what a client cannot receive.
pub fn encode_response(id: u64, result: &Result<Answer, ErrorReply>) -> Vec<u8> {
    let raw = RawResponseRef {
        v: VERSION,
        id,
        ok: result.as_ref().ok().map(|a| &**a),
        error: result.as_ref().err(),
    };
    let out = serde_json::to_vec(&raw).expect("response serializes");
    if out.len() > MAX_MESSAGE {
        let e = ErrorReply::new(
            Code::E2BIG,
            format!(
                "response of {} bytes exceeds the limit of {MAX_MESSAGE}",
                out.len()
            ),
        );
        return encode_response(id, &Err(e));
    }
    out
}

/// A response as it arrives, `ok` borrowed from the packet.
#[derive(Deserialize)]
struct RawResponseIn<'a> {
    v: u32,
    id: u64,
    #[serde(default, borrow)]
    ok: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorReply>,
}

/// Decodes a response packet.
pub fn decode_response(bytes: &[u8]) -> Result<Response, ErrorReply> {
    let (id, result) = decode_response_as::<Value>(bytes)?;
    Ok(Response { id, result })
}

/// Decodes a response packet whose `ok` value is a `T`, parsing it once from the packet: the
/// request id, and the answer or the daemon's error.
pub fn decode_response_as<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<(u64, Result<T, ErrorReply>), ErrorReply> {
    let malformed = |e: serde_json::Error| {
        ErrorReply::new(
            Code::EPROTO,
            format!("malformed response from the daemon: {e}"),
        )
    };
    let raw: RawResponseIn<'_> = serde_json::from_slice(bytes).map_err(malformed)?;
    if raw.v != VERSION {
        return Err(ErrorReply::new(
            Code::EPROTO,
            format!(
                "the daemon speaks protocol version {}, not {VERSION}",
                raw.v
            ),
        ));
    }
    let result = match (raw.ok, raw.error) {
        (Some(v), None) => Ok(serde_json::from_str(v.get()).map_err(|e| {
            ErrorReply::new(
                Code::EPROTO,
                format!("malformed reply from the daemon: {e}"),
            )
        })?),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(serde_json::from_str("null").map_err(malformed)?),
        (Some(_), Some(_)) => {
            return Err(ErrorReply::new(
                Code::EPROTO,
                "malformed response from the daemon: both `ok` and `error`",
            ));
        }
    };
    Ok((raw.id, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_bytes_are_exactly_as_documented() {
        assert_eq!(
            encode_request(1, &Request::Ping),
            br#"{"v":1,"id":1,"op":"ping"}"#
        );
        assert_eq!(
            decode_request(br#"{"v":1,"id":7,"op":"status"}"#).unwrap(),
            (7, Request::Status)
        );
        assert_eq!(
            decode_request(br#"{"v":1,"id":7,"op":"reload","args":{}}"#).unwrap(),
            (7, Request::Reload)
        );
        // Unknown top-level fields are ignored.
        assert_eq!(
            decode_request(br#"{"v":1,"id":3,"op":"ping","trace":"x"}"#).unwrap(),
            (3, Request::Ping)
        );
        // Absent arguments in every spelling; an op spelled with an escape is the same op.
        for bytes in [
            &br#"{"v":1,"id":8,"op":"ping","args":null}"#[..],
            br#"{"v":1,"id":8,"op":"ping","args": { } }"#,
            br#"{"v":1,"id":8,"op":"p\u0069ng"}"#,
        ] {
            assert_eq!(decode_request(bytes).unwrap(), (8, Request::Ping));
        }
        assert_eq!(
            decode_request(br#"{"v":1,"id":9,"op":"session_list","args":null}"#).unwrap(),
            (9, Request::SessionList(crate::After::default()))
        );
        for bad in [
            &br#"{"v":1,"id":4,"op":"ping","args":[]}"#[..],
            br#"{"v":1,"id":4,"op":"ping","args":7}"#,
            br#"{"v":1,"id":4,"op":"session_close","args":"x"}"#,
            br#"{"v":1,"id":4,"op":"session_close"}"#,
        ] {
            let (id, e) = decode_request(bad).unwrap_err();
            assert_eq!((id, e.code), (4, Code::EINVAL), "{e:?}");
        }
    }

    #[test]
    fn response_bytes_are_exactly_as_documented() {
        let ok = encode_response(
            1,
            &answer(&serde_json::json!({"version":"0.1.0","pid":4242})),
        );
        assert_eq!(ok, br#"{"v":1,"id":1,"ok":{"version":"0.1.0","pid":4242}}"#);
        let err = encode_response(2, &Err(ErrorReply::new(Code::EPERM, "no")));
        assert_eq!(
            err,
            br#"{"v":1,"id":2,"error":{"code":"EPERM","errno":1,"message":"no"}}"#
        );
        let r = decode_response(&err).unwrap();
        assert_eq!(r.id, 2);
        assert_eq!(r.result.unwrap_err().code, Code::EPERM);
    }

    #[test]
    fn bad_requests_get_clear_errors_with_the_id_when_known() {
        let cases: &[(&[u8], u64, Code, &str)] = &[
            (b"not json", 0, Code::EPROTO, "malformed request"),
            (
                br#"{"v":2,"id":5,"op":"ping"}"#,
                5,
                Code::EPROTO,
                "unsupported protocol version 2",
            ),
            (
                br#"{"id":5,"op":"ping"}"#,
                5,
                Code::EPROTO,
                "missing field `v`",
            ),
            (
                br#"{"v":1,"op":"ping"}"#,
                0,
                Code::EPROTO,
                "missing field `id`",
            ),
            (br#"{"v":1,"id":6}"#, 6, Code::EPROTO, "missing field `op`"),
            (
                br#"{"v":1,"id":6,"op":"frobnicate"}"#,
                6,
                Code::ENOSYS,
                "unknown operation 'frobnicate'",
            ),
            (
                br#"{"v":1,"id":6,"op":"ping","args":{"x":1}}"#,
                6,
                Code::EINVAL,
                "takes no arguments",
            ),
            (br#"[1,2]"#, 0, Code::EPROTO, "malformed"),
            (
                br#"{"v":1,"id":-1,"op":"ping"}"#,
                0,
                Code::EPROTO,
                "malformed",
            ),
        ];
        for (bytes, id, code, text) in cases {
            let (gid, e) = decode_request(bytes).unwrap_err();
            assert_eq!(
                (gid, e.code),
                (*id, *code),
                "{}",
                String::from_utf8_lossy(bytes)
            );
            assert!(
                e.message.contains(text),
                "{}: {}",
                String::from_utf8_lossy(bytes),
                e.message
            );
        }
        // Arguments are typed and strict.
        let (id, e) =
            decode_request(br#"{"v":1,"id":8,"op":"session_open","args":{"uid":"root"}}"#)
                .unwrap_err();
        assert_eq!((id, e.code), (8, Code::EINVAL));
        assert!(
            e.message.starts_with("invalid arguments to 'session_open'"),
            "{}",
            e.message
        );
        let (_, e) =
            decode_request(br#"{"v":1,"id":8,"op":"session_close","args":{"id":1,"force":true}}"#)
                .unwrap_err();
        assert!(e.message.contains("unknown field `force`"), "{}", e.message);
        let (_, e) = decode_request(br#"{"v":1,"id":8,"op":"session_close"}"#).unwrap_err();
        assert!(e.message.contains("missing field `id`"), "{}", e.message);
        let big = vec![b' '; MAX_MESSAGE + 1];
        assert_eq!(decode_request(&big).unwrap_err().1.code, Code::E2BIG);
    }

    #[test]
    fn list_pages_take_an_optional_cursor_and_nothing_else() {
        assert_eq!(
            decode_request(br#"{"v":1,"id":1,"op":"session_list"}"#).unwrap(),
            (1, Request::SessionList(crate::After { after: None }))
        );
        assert_eq!(
            decode_request(br#"{"v":1,"id":2,"op":"userdirs","args":{"after":1000}}"#).unwrap(),
            (2, Request::Userdirs(crate::After { after: Some(1000) }))
        );
        assert_eq!(
            decode_request(br#"{"v":1,"id":3,"op":"linger_list","args":{"after":"bob"}}"#).unwrap(),
            (
                3,
                Request::LingerList(crate::After {
                    after: Some("bob".into())
                })
            )
        );
        for bad in [
            &br#"{"v":1,"id":4,"op":"userdirs","args":{"after":"x"}}"#[..],
            br#"{"v":1,"id":4,"op":"session_list","args":{"after":1,"limit":5}}"#,
            br#"{"v":1,"id":4,"op":"userdirs","args":{"after":-1}}"#,
        ] {
            let (id, e) = decode_request(bad).unwrap_err();
            assert_eq!((id, e.code), (4, Code::EINVAL), "{e:?}");
        }
        // A cursor-less request carries no args at all: what older daemons accept.
        let bytes = encode_request(5, &Request::SessionList(crate::After::default()));
        assert_eq!(bytes, br#"{"v":1,"id":5,"op":"session_list"}"#);
    }

    #[test]
    fn oversized_response_becomes_e2big() {
        let huge = serde_json::Value::String("x".repeat(MAX_MESSAGE));
        let out = encode_response(9, &answer(&huge));
        assert!(out.len() <= MAX_MESSAGE);
        let r = decode_response(&out).unwrap();
        assert_eq!((r.id, r.result.unwrap_err().code), (9, Code::E2BIG));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn requests_round_trip(id in any::<u64>(), which in 0..13u8, uid in any::<u32>(), pid in any::<i32>(), name in "[a-z_][a-z0-9_-]{0,30}", on in any::<bool>()) {
            let req = [
                Request::Ping,
                Request::Status,
                Request::Reload,
                Request::SessionList(crate::After::default()),
                Request::LingerList(crate::After::default()),
                Request::SessionList(crate::After { after: Some(id) }),
                Request::LingerList(crate::After { after: Some(name.clone()) }),
                Request::Userdirs(crate::After::default()),
                Request::Userdirs(crate::After { after: Some(uid) }),
                Request::SessionOpen(crate::SessionOpen { user: Some(name.clone()), uid: None, pid: Some(pid), allow_nested: Some(on), gid: None }),
                Request::SessionClose(crate::SessionClose { id }),
                Request::Linger(crate::Linger { user: None, uid: Some(uid), enable: on }),
                Request::SessionIpc(crate::UserRef { user: Some(name), uid: None }),
            ][which as usize].clone();
            prop_assert_eq!(decode_request(&encode_request(id, &req)).unwrap(), (id, req));
        }

        #[test]
        fn error_replies_round_trip(id in any::<u64>(), msg in ".{0,200}") {
            let e = ErrorReply::new(Code::EBUSY, msg);
            let r = decode_response(&encode_response(id, &Err(e.clone()))).unwrap();
            prop_assert_eq!(r.id, id);
            prop_assert_eq!(r.result.unwrap_err(), e);
        }
    }
}

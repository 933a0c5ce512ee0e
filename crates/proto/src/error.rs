//! Errors on the wire: an errno-like code plus a message for humans.

use serde::{Deserialize, Serialize};

/// Error codes, named and numbered as the Linux errno of the same meaning.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    /// The peer may not do this (authorization by `SO_PEERCRED`).
    EPERM,
    /// The named object does not exist.
    ENOENT,
    /// The daemon failed to carry out a valid request (a system call failed).
    EIO,
    /// The request is larger than [`crate::MAX_MESSAGE`].
    E2BIG,
    /// The object is in use, or a limit of concurrent clients was reached.
    EBUSY,
    /// The request's arguments are invalid.
    EINVAL,
    /// Out of space (a budget or a tmpfs limit).
    ENOSPC,
    /// Unknown operation.
    ENOSYS,
    /// Not a valid protocol message (bad JSON, wrong version, missing fields).
    EPROTO,
    /// The operation timed out.
    ETIMEDOUT,
}

impl Code {
    /// The Linux errno number of this code.
    pub fn errno(self) -> i32 {
        match self {
            Code::EPERM => 1,
            Code::ENOENT => 2,
            Code::EIO => 5,
            Code::E2BIG => 7,
            Code::EBUSY => 16,
            Code::EINVAL => 22,
            Code::ENOSPC => 28,
            Code::ENOSYS => 38,
            Code::EPROTO => 71,
            Code::ETIMEDOUT => 110,
        }
    }

    /// Whether this is a refusal of the request (as opposed to a failure of the system):
    /// the command line exits 1 for refusals and 111 for failures.
    pub fn is_refusal(self) -> bool {
        !matches!(self, Code::EIO | Code::ETIMEDOUT)
    }
}

/// `{"code":"EPERM","errno":1,"message":"..."}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorReply {
    pub code: Code,
    pub errno: i32,
    pub message: String,
}

impl ErrorReply {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ErrorReply {
            code,
            errno: code.errno(),
            message: message.into(),
        }
    }
}

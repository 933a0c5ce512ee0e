//! Answers of `ping`, `status` and `reload`.
//!
//! [`Status`] is one JSON object for the whole plane. Each capability adds its own section as
//! an optional field (e.g. `userdirs`) so that older clients keep decoding newer daemons.

use serde::{Deserialize, Serialize};

/// Answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub version: String,
    pub pid: i32,
}

/// System (root, manages `/run`) or user (one user's `$XDG_RUNTIME_DIR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    System,
    User,
}

/// The configuration as loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// The file read, or `None` when running on built-in defaults.
    pub path: Option<String>,
    /// Successful loads since start (1 after start).
    pub generation: u64,
    /// Unix time (seconds) of the last successful load.
    pub loaded_at: u64,
    /// The error of the last failed reload, cleared by the next successful one.
    pub last_error: Option<String>,
    /// Settings that changed in the file but take effect only at the next start.
    pub pending_restart: Vec<String>,
}

/// The daemon's own state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: i32,
    pub uid: u32,
    pub mode: Mode,
    /// Unix time (seconds) the daemon started.
    pub started_at: u64,
    pub uptime_secs: u64,
    pub control: String,
    pub state: String,
    /// Connected control clients now, and the limit.
    pub clients: u32,
    pub max_clients: u32,
    /// Requests served since start.
    pub requests: u64,
    pub config: ConfigStatus,
}

/// Answer to `status`: the whole plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub daemon: DaemonStatus,
    /// Whether and how `/run/user` is managed (absent from daemons without the capability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userdirs_manager: Option<crate::UserdirsManager>,
    /// One entry per user directory, by uid: the first page (see `userdirs_more`).
    #[serde(default)]
    pub userdirs: Vec<crate::UserdirStatus>,
    /// More entries follow `userdirs`: ask `userdirs` with `after` the last uid. The library's
    /// `Client::status` does, and returns them all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub userdirs_more: bool,
}

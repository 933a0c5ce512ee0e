//! Requests and answers of the userdirs capability (`session_*`, `linger*`) and its `status`
//! sections.

use serde::{Deserialize, Serialize};

/// Who a request is about: a user name or a numeric uid (exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

/// `session_open` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionOpen {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The session leader; default: the caller itself (`SO_PEERCRED` pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// `false`: refuse (`EBUSY`) when the leader runs inside a session of another uid (it or
    /// an ancestor leads one: `su`/`sudo` from a logged-in user). Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_nested: Option<bool>,
    /// The account already resolved by the caller: with `user`, `uid` and `gid` all given, the
    /// daemon uses them instead of looking the user up (root callers only; the PAM module does
    /// this, since the login process has resolved the user already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// `session_open` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOpened {
    pub id: u64,
    pub uid: u32,
    pub user: String,
    /// `/run/user/<uid>`: the value for `XDG_RUNTIME_DIR`.
    pub path: String,
    pub backend: String,
    /// Whether this login created the directory.
    pub created: bool,
    /// The mount the directory is (`STATX_MNT_ID`), when it is one runplaned made or adopted:
    /// what the PAM module checks the path against before it looks at anything there (a
    /// user may mount over its own dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_id: Option<u64>,
    /// That mount's unique id (`STATX_MNT_ID_UNIQUE`, Linux >= 6.8), which no later mount
    /// takes where `mount_id` may be reused: checked too when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_unique: Option<u64>,
}

/// `session_close` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionClose {
    pub id: u64,
}

/// `session_close` answer: what the user's directory does now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClosed {
    pub id: u64,
    pub uid: u32,
    /// Sessions of the user still open.
    pub remaining: u32,
    /// The user's state after the close (`active`, `lingering`, `waiting-for-processes`,
    /// `grace`), or `removed`.
    pub state: String,
}

/// One session in `session_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: u64,
    pub uid: u32,
    pub user: String,
    pub leader_pid: i32,
    /// Unix milliseconds.
    pub opened_at: u64,
}

/// `linger` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    pub enable: bool,
}

/// A user's linger setting (`linger` answer, `linger_list` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LingerState {
    pub user: String,
    pub uid: Option<u32>,
    pub enabled: bool,
}

/// One IPC object of a user (`session_ipc` answer entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcObject {
    /// `shm`, `sem`, `msg` (SysV), `posix-shm`, `mqueue`.
    pub kind: String,
    /// SysV id or file name.
    pub id: String,
    pub bytes: Option<u64>,
}

/// The most session ids one `status.userdirs` entry lists (`session_count` has them all;
/// `session_list` names every one): an entry stays far below a page.
pub const MAX_STATUS_SESSIONS: usize = 256;

/// One user's directory in `status.userdirs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserdirStatus {
    pub user: String,
    pub uid: u32,
    pub path: String,
    /// `tmpfs`, `adopted`, `fallback-dir`, `creating`, or `none` (being removed, never made).
    pub backend: String,
    /// The mount's options as the kernel shows them (empty for a plain directory).
    pub options: String,
    pub bytes_used: u64,
    pub bytes_limit: u64,
    pub inodes_used: u64,
    pub inodes_limit: u64,
    /// The user's open sessions: the lowest [`MAX_STATUS_SESSIONS`] ids.
    pub sessions: Vec<u64>,
    /// How many sessions the user has open.
    #[serde(default)]
    pub session_count: u32,
    pub linger: bool,
    /// `active`, `lingering`, `grace`, `waiting-for-processes`, or `removing` (queued for
    /// removal or under way; no sessions).
    pub state: String,
    /// For `grace`: Unix milliseconds of the removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_at: Option<u64>,
    /// Another's mount covers the dir (a user's FUSE mount over its own dir): its usage was
    /// not read (zero), and it is detached at removal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub covered: bool,
    /// The tmpfs the dir was made as is no longer mounted (someone unmounted it behind the
    /// daemon's back): a plain directory is left, its usage not read (zero).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmounted: bool,
}

/// `status.userdirs_manager`: whether and how this daemon manages `/run/user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserdirsManager {
    pub root: String,
    pub managing: bool,
    /// Why not, when not managing (another manager, user mode, an unsafe root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the kernel's tmpfs has `noswap`.
    pub kernel_noswap: bool,
    pub lifetime: String,
    pub grace_ms: u64,
    pub size_per_user: u64,
    pub inodes_per_user: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    pub budget_used: u64,
    /// Set while a change could not be written to the records journal (a full state dir):
    /// what, and why. Cleared once it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_error: Option<String>,
    /// Whether the kernel tells the daemon of unmounts (fanotify mount events, Linux >= 6.15):
    /// a user's tmpfs unmounted behind its back is then mounted again at once, else at the
    /// user's next login.
    #[serde(default)]
    pub mount_events: bool,
    /// How many users' tmpfs were mounted again since the daemon started, after someone
    /// unmounted them behind its back.
    #[serde(default)]
    pub remounted: u64,
}

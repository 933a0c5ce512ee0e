//! runplane-userdirs: per-user runtime directories (`/run/user/<uid>`), the capability that
//! takes over from systemd-logind's user-runtime-dir, elogind, turnstile, pam_rundir and
//! dumb_runtime_dir.
//!
//! - [`accounts`]: user lookups (NSS), run off the event loop by the daemon.
//! - [`config`]: `[userdirs]` of runplane.toml, validated.
//! - [`size`]: size specs (`"10%"`, `"64M"`) and limit arithmetic, container-aware.
//! - [`lifecycle`]: the pure state machine: sessions, linger, lifetime policy, grace periods,
//!   budget; requests in, actions out.
//! - [`store`]: per-user records in the state directory, re-read after a restart; its lines
//!   are written by `line` (serde_json's bytes, without serde on the path of each login).
//! - [`procs`]: processes of a uid; other managers of `/run/user` (logind, elogind).
//! - [`ipc`]: RemoveIPC: a user's SysV and POSIX IPC objects, listed and removed.
//! - [`dirs`]: the effects on `/run/user` through runplane-sys (create, adopt, fall back, remove).
//!
//! Not here: the event loop, timers and pidfd watching (runplaned), the wire protocol
//! (runplane-proto), PAM (pam_runplane).

pub mod accounts;
pub mod config;
pub mod dirs;
pub mod ipc;
pub mod lifecycle;
mod line;
pub mod procs;
pub mod size;
pub mod store;

//! runplane-sys: the syscall layer of runplane, and the home of its `unsafe`.
//!
//! Everything here is a thin, typed wrapper over one kernel facility, built on rustix (and
//! raw `libc` syscalls where rustix has no wrapper). Every fd is an `OwnedFd`/`BorrowedFd`;
//! every path operation is relative to a directory fd and refuses symlinks unless the caller
//! asks otherwise. Errors name what could not be done and to what ([`Error`]).
//!
//! What this crate does not do: policy. It does not know about users, sessions, tmpfiles.d or
//! services; the capability crates decide, this crate carries out.
//!
//! | module | facility |
//! |---|---|
//! | [`dir`] | fd-relative directory operations (`openat2` with `RESOLVE_*`, `O_PATH`, `O_NOFOLLOW`) |
//! | [`remove`] | recursive removal that never follows symlinks and never crosses mounts |
//! | [`atomic`] | atomic state files (`.new` + fsync + rename + fsync of the directory) |
//! | [`journal`] | append-only journals: one `write` per change, torn tails dropped, atomic compaction |
//! | [`tmpfs`] | tmpfs mounts on a pinned directory fd (`mount(2)`, or the fd-based API), usage via statvfs, unmount |
//! | [`mountinfo`] | `/proc/self/mountinfo` parsing |
//! | [`statmount`] | one mount's options by `statmount(2)`, in mountinfo's form; where a mount sits |
//! | [`mountwatch`] | mounts detached from this namespace, as fanotify reports them (Linux >= 6.15) |
//! | [`scm`] | `SCM_RIGHTS` and `SCM_CREDENTIALS` send/receive, `SO_PEERCRED` |
//! | [`pidfd`] | pidfds and process identity across pid reuse (pidfs inode or start time) |
//! | [`spawn`] | process spawn without forking the caller (`clone(CLONE_VM|CLONE_VFORK)`) |
//! | [`inherited`] | taking ownership of fds inherited by number (`--ready-fd N`) |
//! | [`ipc`] | removing System V IPC objects (`IPC_RMID`) |
//! | [`lock`] | `flock` lock files with holder pids |
//! | [`mem`] | handing the allocator's free memory back (`malloc_trim`) |
//! | `asyncfd` | safe registration of owned fds with tokio (feature `tokio`) |

#![deny(unsafe_op_in_unsafe_fn)]

pub mod atomic;
pub mod dir;
mod error;
pub mod inherited;
pub mod ipc;
pub mod journal;
pub mod lock;
pub mod mem;
pub mod mountinfo;
pub mod mountwatch;
pub mod pidfd;
pub mod remove;
pub mod scm;
pub mod spawn;
pub mod statmount;
pub mod tmpfs;

#[cfg(feature = "tokio")]
pub mod asyncfd;

pub use error::{Error, Result};

/// Re-exported so that callers name the same fd and id types as this crate.
pub use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
pub use rustix::process::{Gid, Pid, Uid};

//! runplane: what applications link to live in the runtime plane.
//!
//! - [`runtime_dir`]: `$XDG_RUNTIME_DIR`, validated as the XDG Base Directory specification
//!   requires (absolute, a directory and not a symlink, owned by the user, mode 0700).
//! - [`notify`]: the sd_notify(3) client (`NOTIFY_SOCKET`, path or abstract address).
//! - [`Client`]: a synchronous client of runplaned's control socket.
//!
//! Synchronous, small, no async runtime and no threads: this is loaded into sshd, login and
//! arbitrary services. What it does not do: decide policy (that is the daemon's), or fall back
//! silently (a missing or unsafe runtime dir is an error naming what is wrong).

mod client;
pub mod notify;
mod xdg;

pub use client::{Client, ClientError, DEFAULT_TIMEOUT, default_socket};
pub use runplane_proto as proto;
pub use xdg::{
    RuntimeDirError, check_runtime_dir, pin_runtime_dir, runtime_dir, validate_runtime_dir,
};

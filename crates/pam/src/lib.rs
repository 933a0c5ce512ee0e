//! pam_runplane.so: a thin PAM session module. `pam_sm_open_session` asks runplaned to open a
//! session for the user (the calling process leads it), validates the runtime directory it
//! gets back and exports `XDG_RUNTIME_DIR` (and `DBUS_SESSION_BUS_ADDRESS` when the user's bus
//! socket exists); `pam_sm_close_session` tells the daemon the session ended.
//!
//! ```text
//! session optional pam_runplane.so [socket=PATH] [timeout=MS] [allow_su] [debug]
//! ```
//!
//! No policy of its own: the daemon decides. It never blocks a login: a daemon that is down,
//! refuses, or does not answer within `timeout` (default 3000 ms) makes the module return
//! `PAM_IGNORE` with a syslog line saying why. It runs inside someone else's process (sshd,
//! login, a display manager): no threads, no async runtime, every fd close-on-exec, and no
//! panic ever crosses into C (each entry point is wrapped in `catch_unwind`; a panic returns
//! `PAM_IGNORE`).
//!
//! This file is the FFI shell, the crate's only `unsafe` code; the logic is in [`session`].

pub mod options;
pub mod session;

use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use nonstick::constants::{RawFlags, ReturnCode};

/// `PAM_IGNORE` (Linux-PAM): "ignore this module", used when anything goes wrong inside.
const PAM_IGNORE: c_int = 25;

/// Exports one `pam_sm_*` entry point that forwards to nonstick's adapter for
/// [`session::Module`], catching any panic.
macro_rules! hook {
    ($name:ident) => {
        /// PAM entry point (see pam_sm_open_session(3) and siblings).
        ///
        /// # Safety
        /// Called by libpam with a valid `pam_handle_t` and `argc` NUL-terminated arguments.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            pamh: *mut c_void,
            flags: c_int,
            argc: c_int,
            argv: *const *const c_char,
        ) -> c_int {
            let r = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: libpam passes a valid handle and argv of argc C strings, exactly what
                // nonstick's adapter requires; nonstick only borrows them for this call.
                let res = unsafe {
                    nonstick::libpam::module::$name::<session::Module>(
                        pamh,
                        RawFlags::from(flags),
                        argc,
                        argv,
                    )
                };
                c_int::from(ReturnCode::from(res))
            }));
            r.unwrap_or(PAM_IGNORE)
        }
    };
}

hook!(pam_sm_open_session);
hook!(pam_sm_close_session);
hook!(pam_sm_authenticate);
hook!(pam_sm_acct_mgmt);
hook!(pam_sm_setcred);
hook!(pam_sm_chauthtok);

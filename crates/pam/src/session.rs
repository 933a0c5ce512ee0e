//! What the module does on open and close (the FFI shell in lib.rs calls in here).

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use nonstick::EnvironMapMut;
use nonstick::constants::{BaseFlags, ErrorCode, Result};
use nonstick::handle::ModuleClient;
use nonstick::module::PamModule;

use runplane::{Client, ClientError};
use runplane_proto::{Code, SessionOpen, SessionOpened};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxFlags};

use crate::options::Options;

/// The key under which the session id is kept between open and close.
const DATA_KEY: &str = "runplane_session_id";

/// The module, as nonstick sees it.
#[derive(Debug)]
pub struct Module;

fn options<T: ModuleClient>(handle: &T, args: &[&CStr]) -> Options {
    let strs: Vec<&str> = args.iter().filter_map(|a| a.to_str().ok()).collect();
    let (o, problems) = Options::parse(strs);
    for p in problems {
        nonstick::warn!(handle, "pam_runplane: {p}");
    }
    o
}

/// Connects with `opts.timeout` as the budget for the whole exchange.
fn connect(opts: &Options) -> std::result::Result<(Client, Instant), ClientError> {
    let start = Instant::now();
    let c = Client::connect(&opts.socket, opts.timeout)?;
    Ok((c, start))
}

/// The runtime dir, pinned, or why it must not be exported. Nothing is looked at through a
/// mount runplaned did not make: the path is pinned with `O_PATH` and its mount id read with an
/// empty `statx` mask (the filesystem is not asked) and compared with the daemon's (and its
/// unique id after that) before the owner and mode are read, since a user may mount FUSE over
/// its own dir, and such a mount may refuse root or never answer.
pub fn check_dir(opened: &SessionOpened) -> std::result::Result<OwnedFd, String> {
    let (path, pinned) =
        runplane::pin_runtime_dir(Some(OsStr::new(&opened.path))).map_err(|e| e.to_string())?;
    let stx = rustix::fs::statx(
        &pinned,
        c"",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::empty(),
    )
    .map_err(|e| format!("unable to read the mount of {}: {e}", path.display()))?;
    let mount_root = stx
        .stx_attributes
        .contains(rustix::fs::StatxAttributes::MOUNT_ROOT);
    let ours = match opened.mount_id {
        // By unique id too where the daemon sent one: the reusable id of a tmpfs unmounted
        // behind its back goes to the next mount made anywhere, maybe on this path.
        Some(id) => runplane_sys::dir::MountIds {
            id,
            unique: opened.mount_unique,
        }
        .is(pinned.as_fd(), &path, stx.stx_mnt_id)
        .map_err(|e| e.to_string())?,
        // A plain directory (fallback-dir): nothing may be mounted on it.
        None if opened.backend == "fallback-dir" => !mount_root,
        // A daemon from before answers carried the mount: nothing to check against.
        None => true,
    };
    if !ours {
        // Nothing mounted where the daemon's tmpfs was: the plain directory below is left.
        let why = if opened.mount_id.is_some() && !mount_root {
            "is no longer the tmpfs runplaned made: it was unmounted"
        } else {
            "is covered by a mount runplaned did not make"
        };
        return Err(format!("{} {why}", path.display()));
    }
    runplane::check_runtime_dir(&path, pinned.as_fd(), opened.uid).map_err(|e| e.to_string())?;
    Ok(pinned)
}

/// `unix:path=$XDG_RUNTIME_DIR/bus` if that is a socket owned by `uid` in the pinned `dir`
/// (not followed if a symlink, not looked at through a mount).
pub fn bus_address(dir: BorrowedFd<'_>, path: &str, uid: u32) -> Option<String> {
    let bus = rustix::fs::openat2(
        dir,
        "bus",
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
    )
    .ok()?;
    let st = rustix::fs::fstat(&bus).ok()?;
    (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
        && st.st_uid == uid)
        .then(|| format!("unix:path={}", Path::new(path).join("bus").display()))
}

impl<T: ModuleClient> PamModule<T> for Module {
    fn open_session(handle: &mut T, args: Vec<&CStr>, _flags: BaseFlags) -> Result<()> {
        let opts = options(handle, &args);
        if opts.test_panic {
            panic!("pam_runplane: panicking as test_panic asks");
        }
        let user = handle.username(None)?;
        let Some(user) = user.to_str().map(str::to_owned) else {
            nonstick::error!(
                handle,
                "pam_runplane: the user name is not UTF-8: not setting XDG_RUNTIME_DIR"
            );
            return Err(ErrorCode::Ignore);
        };
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        // The login process resolved the user already; resolve it here too (same NSS, same
        // process) and hand the daemon the whole account, so that it never waits on NSS.
        let resolved = nix::unistd::User::from_name(&user).ok().flatten();
        let req = SessionOpen {
            user: Some(user.clone()),
            uid: resolved.as_ref().map(|u| u.uid.as_raw()),
            pid: Some(pid),
            allow_nested: Some(opts.allow_su),
            gid: resolved.as_ref().map(|u| u.gid.as_raw()),
        };
        let opened = connect(&opts).and_then(|(mut c, start)| {
            // The budget is for the whole exchange, not per step.
            c.set_timeout(opts.timeout.saturating_sub(start.elapsed()))?;
            c.session_open(req)
        });
        let opened = match opened {
            Ok(o) => o,
            Err(ClientError::Daemon(e))
                if e.code == Code::EBUSY && e.message.contains("inside session") =>
            {
                if opts.debug {
                    nonstick::info!(
                        handle,
                        "pam_runplane: not setting XDG_RUNTIME_DIR for {user}: {} (allow_su would)",
                        e.message
                    );
                }
                // su/sudo from a logged-in user: nothing is wrong, there is just no runtime dir
                // for this context (as pam_systemd's SESSION_BUSY).
                return Ok(());
            }
            Err(e) => {
                nonstick::error!(
                    handle,
                    "pam_runplane: not setting XDG_RUNTIME_DIR for {user}: {e}"
                );
                return Err(ErrorCode::Ignore);
            }
        };
        // Kept for close; a failure here only means close cannot tell the daemon (the leader's
        // exit still ends the session).
        let _ = handle.set_module_data(DATA_KEY, opened.id);
        let pinned = match check_dir(&opened) {
            Ok(p) => p,
            Err(why) => {
                nonstick::error!(
                    handle,
                    "pam_runplane: not setting XDG_RUNTIME_DIR for {user}: {why}"
                );
                return Err(ErrorCode::Ignore);
            }
        };
        let mut env = handle.environ_mut();
        env.insert("XDG_RUNTIME_DIR", &opened.path);
        let bus = bus_address(pinned.as_fd(), &opened.path, opened.uid);
        if let Some(b) = &bus {
            env.insert("DBUS_SESSION_BUS_ADDRESS", b);
        }
        drop(env);
        if opts.debug {
            nonstick::info!(
                handle,
                "pam_runplane: session {} for {user} (uid {}): XDG_RUNTIME_DIR={} ({}{}){}",
                opened.id,
                opened.uid,
                opened.path,
                opened.backend,
                if opened.created { ", created" } else { "" },
                bus.map(|b| format!(", DBUS_SESSION_BUS_ADDRESS={b}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    fn close_session(handle: &mut T, args: Vec<&CStr>, _flags: BaseFlags) -> Result<()> {
        let opts = options(handle, &args);
        let Some(&id) = handle.get_module_data::<u64>(DATA_KEY) else {
            return Err(ErrorCode::Ignore); // open did not get a session
        };
        let r = connect(&opts).and_then(|(mut c, start)| {
            c.set_timeout(opts.timeout.saturating_sub(start.elapsed()))?;
            c.session_close(id)
        });
        match r {
            Ok(c) => {
                if opts.debug {
                    nonstick::info!(
                        handle,
                        "pam_runplane: session {id} closed; uid {} runtime dir is {}",
                        c.uid,
                        c.state
                    );
                }
                Ok(())
            }
            Err(e) => {
                nonstick::error!(handle, "pam_runplane: unable to close session {id}: {e}");
                Err(ErrorCode::Ignore)
            }
        }
    }
}

//! runplaned: the runtime-state plane daemon.
//!
//! The table of contents: parse the command line, load the configuration, set up logging,
//! then run the event loop ([`daemon::run`]): state directory and its lock, the control socket,
//! readiness, and signals (SIGTERM/SIGINT stop, SIGHUP reloads).
//!
//! Exit codes: 0 after a clean stop, 100 for usage and configuration errors, 111 for system
//! failures (including another runplaned on the same state directory).

mod after;
mod args;
mod config;
mod control;
mod daemon;
mod logging;
mod page;
mod readiness;
mod state;
mod userdirs;

use std::process::ExitCode;

/// A reason to stop, with its exit code: `runplaned: fatal: <message>`.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    /// A usage or configuration error (exit 100).
    pub fn usage(message: impl Into<String>) -> Fatal {
        Fatal {
            code: 100,
            message: message.into(),
        }
    }

    /// A system failure (exit 111).
    pub fn system(message: impl Into<String>) -> Fatal {
        Fatal {
            code: 111,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if logging::to_journal() {
                tracing::error!("fatal: {}", f.message);
            }
            eprintln!("runplaned: fatal: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Every live session holds a pidfd: lift the open-file limit so that thousands of logins fit.
/// As root, the hard limit too, to 524288 or the kernel's `fs.nr_open` if lower (what systemd
/// gives logind; off systemd the hard limit is often the kernel's default of 4096); else the
/// soft limit to the hard one. The daemon starts no services yet; when it does, it must hand
/// them the usual soft limit back (select() breaks above 1024).
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    const WANTED: u64 = 524_288;
    let l = getrlimit(Resource::Nofile);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(WANTED);
    let hard = l.maximum.unwrap_or(u64::MAX);
    let target = WANTED.min(nr_open);
    let raised = target > hard
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: Some(target),
            },
        )
        .is_ok();
    if !raised
        && l.current < l.maximum
        && let Err(e) = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: l.maximum,
                maximum: l.maximum,
            },
        )
    {
        tracing::warn!(
            "unable to raise the open-file limit to {:?}: {e}",
            l.maximum
        );
    }
}

fn run() -> Result<(), Fatal> {
    let args = args::parse()?;
    let setup = args.setup()?;
    let (config, config_path) =
        config::load(&setup.source, &setup.defaults).map_err(|e| Fatal::usage(e.to_string()))?;
    logging::init();
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal::system(format!("unable to start the event loop: {e}")))?;
    runtime.block_on(daemon::run(setup, config, config_path))
}

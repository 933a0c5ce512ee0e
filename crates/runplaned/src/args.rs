//! The command line of runplaned.

use std::path::PathBuf;

use clap::Parser;

use crate::Fatal;
use crate::config::{Defaults, Mode, SYSTEM_CONFIG, Source};

/// runplaned: the runtime-state plane daemon (/run and $XDG_RUNTIME_DIR).
#[derive(Debug, Parser)]
#[command(name = "runplaned", version, about, long_about = None)]
pub struct Args {
    /// Configuration file (default: /etc/runplane/runplane.toml, or
    /// $XDG_CONFIG_HOME/runplane/runplane.toml with --user; built-in defaults when absent).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Run for the calling user: control socket and state under $XDG_RUNTIME_DIR/runplane.
    #[arg(long)]
    pub user: bool,

    /// Write a newline to this inherited fd and close it once the control socket listens
    /// (s6 readiness notification). NOTIFY_SOCKET (sd_notify) is honoured as well.
    #[arg(long, value_name = "N")]
    pub ready_fd: Option<i32>,

    /// Manage /run/user even though systemd-logind or elogind runs (they would fight over it).
    #[arg(long)]
    pub force: bool,
}

/// What the command line resolves to.
#[derive(Debug, Clone)]
pub struct Setup {
    pub mode: Mode,
    pub source: Source,
    pub defaults: Defaults,
    pub ready_fd: Option<i32>,
    pub force: bool,
}

/// Parses the command line; `--help` and `--version` print and exit 0, errors exit 100.
pub fn parse() -> Result<Args, Fatal> {
    match Args::try_parse() {
        Ok(a) => Ok(a),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let _ = e.print();
            std::process::exit(100);
        }
    }
}

impl Args {
    pub fn setup(&self) -> Result<Setup, Fatal> {
        let mode = if self.user { Mode::User } else { Mode::System };
        let runtime_dir = match mode {
            Mode::User => Some(
                runplane::runtime_dir()
                    .map_err(|e| Fatal::system(format!("unable to run in user mode: {e}")))?,
            ),
            Mode::System => None,
        };
        let defaults = Defaults::for_mode(mode, runtime_dir.as_deref());
        let source = match (&self.config, mode) {
            (Some(p), _) => Source::Explicit(p.clone()),
            (None, Mode::System) => Source::Default(SYSTEM_CONFIG.into()),
            (None, Mode::User) => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .unwrap_or_else(|| PathBuf::from("/nonexistent"));
                Source::Default(base.join("runplane/runplane.toml"))
            }
        };
        Ok(Setup {
            mode,
            source,
            defaults,
            ready_fd: self.ready_fd,
            force: self.force,
        })
    }
}

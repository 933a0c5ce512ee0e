//! The command-line definition: pure clap, no system lookups (the layer above does those).
//! Completions and man pages are generated from this definition (`runplane generate`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// runplane: the runtime-state plane (/run and $XDG_RUNTIME_DIR) of this machine.
///
/// Talks to runplaned over its control socket. Exit codes: 0 success, 1 the daemon refused the
/// request, 100 usage error, 111 system failure (no daemon, I/O error, timeout).
#[derive(Debug, Parser)]
#[command(name = "runplane", version, about, long_about)]
pub struct Cli {
    /// Control socket of the daemon [default: /run/runplane/control, or
    /// $XDG_RUNTIME_DIR/runplane/control with --user-daemon].
    #[arg(long, global = true, env = "RUNPLANE_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Talk to the calling user's daemon (runplaned --user) instead of the system one.
    #[arg(long, global = true)]
    pub user_daemon: bool,

    /// Give up on the daemon after this many seconds.
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECONDS")]
    pub timeout: f64,

    #[command(subcommand)]
    pub command: Command,
}

/// Output format of verbs that print.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print JSON (one object) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the whole runtime plane (for now: the daemon and its configuration).
    Status(Output),
    /// Check that the daemon answers; print its version and pid.
    Ping(Output),
    /// Make the daemon re-read its configuration (root or the daemon's user).
    Reload(Output),
    /// Logins and their runtime directories (/run/user/UID).
    Session {
        #[command(subcommand)]
        what: Session,
    },
    /// Keep a user's runtime directory without logins (and bring it up at daemon start).
    Linger {
        #[command(subcommand)]
        what: LingerCmd,
    },
    /// Generate shell completions or man pages from this command's definition.
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

/// A user, by name or by number.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct UserArg {
    /// User name.
    #[arg(long)]
    pub user: Option<String>,
    /// Numeric uid.
    #[arg(long)]
    pub uid: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum Session {
    /// List open sessions (all as root, your own otherwise).
    List(Output),
    /// Open a session: the user's runtime dir exists until the session ends (close, or the
    /// leader process exits). Prints the directory (the value for XDG_RUNTIME_DIR).
    Open {
        #[command(flatten)]
        who: UserArg,
        /// The process that leads the session [default: this command's parent, the shell].
        #[arg(long)]
        pid: Option<i32>,
        #[command(flatten)]
        out: Output,
    },
    /// Close a session by its id.
    Close {
        id: u64,
        #[command(flatten)]
        out: Output,
    },
    /// List the IPC objects (SysV shm, semaphores, message queues; POSIX shm and message
    /// queues) that RemoveIPC would remove for USER.
    Ipc {
        #[arg(value_name = "USER")]
        user: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum LingerCmd {
    /// Keep USER's runtime dir without logins.
    Enable {
        #[arg(value_name = "USER")]
        user: String,
        #[command(flatten)]
        out: Output,
    },
    /// Let USER's runtime dir go with the last login again.
    Disable {
        #[arg(value_name = "USER")]
        user: String,
        #[command(flatten)]
        out: Output,
    },
    /// List lingering users.
    List(Output),
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Print a completion script for SHELL on standard output.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write runplane.1 and one page per verb (runplane-status.1, ...) into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let c = Cli::try_parse_from(["runplane", "status", "--json", "--socket", "/x"]).unwrap();
        assert_eq!(c.socket, Some(PathBuf::from("/x")));
        assert!(matches!(c.command, Command::Status(Output { json: true })));
    }
}

//! runplane: the command line of the runtime plane. One file per verb; this file parses,
//! connects and maps failures to exit codes (0 ok, 1 refused, 100 usage, 111 system failure)
//! and messages of the form `runplane: fatal: unable to ...`.

mod args;
mod generate;
mod linger;
mod ping;
mod reload;
mod session;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use args::{Cli, Command};
use runplane::{Client, ClientError};

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure {
            code: e.exit_code() as u8,
            message: e.to_string(),
        }
    }
}

impl Failure {
    pub fn system(message: impl Into<String>) -> Failure {
        Failure {
            code: 111,
            message: message.into(),
        }
    }
}

/// Opens the client for the chosen socket.
pub fn connect(cli: &Cli) -> Result<Client, Failure> {
    let path = cli
        .socket
        .clone()
        .unwrap_or_else(|| runplane::default_socket(cli.user_daemon));
    let timeout = Duration::try_from_secs_f64(cli.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| Failure {
            code: 100,
            message: format!(
                "--timeout must be a positive number of seconds, not {}",
                cli.timeout
            ),
        })?;
    Ok(Client::connect(path, timeout)?)
}

/// Prints `value` as pretty JSON followed by a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::system(format!("unable to encode JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 100 } else { 0 });
        }
    };
    let r = match &cli.command {
        Command::Status(o) => status::run(&cli, *o),
        Command::Ping(o) => ping::run(&cli, *o),
        Command::Reload(o) => reload::run(&cli, *o),
        Command::Session { what } => session::run(&cli, what),
        Command::Linger { what } => linger::run(&cli, what),
        Command::Generate { what } => generate::run(what),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("runplane: fatal: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

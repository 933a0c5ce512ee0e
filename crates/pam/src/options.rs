//! The module's arguments in a pam.d line: `socket=PATH timeout=MS allow_su debug`.

use std::path::PathBuf;
use std::time::Duration;

/// Parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub socket: PathBuf,
    pub timeout: Duration,
    /// Export the runtime dir even when the login runs inside another uid's session (su/sudo).
    pub allow_su: bool,
    pub debug: bool,
    /// `test_panic`, known to debug builds only (release builds report it as unknown): the
    /// module panics on open, so that a test can see the panic caught at the FFI boundary.
    pub test_panic: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket: PathBuf::from("/run/runplane/control"),
            timeout: Duration::from_millis(3000),
            allow_su: false,
            debug: false,
            test_panic: false,
        }
    }
}

impl Options {
    /// Parses the arguments; returns the options and a message for each argument that was
    /// ignored (unknown, or with a bad value), for the log.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> (Options, Vec<String>) {
        let mut o = Options::default();
        let mut problems = Vec::new();
        for a in args {
            match a.split_once('=') {
                Some(("socket", p)) if p.starts_with('/') => o.socket = PathBuf::from(p),
                Some(("socket", p)) => {
                    problems.push(format!("ignoring socket={p}: not an absolute path"))
                }
                Some(("timeout", ms)) => match ms.parse::<u64>() {
                    Ok(ms) if (1..=60_000).contains(&ms) => o.timeout = Duration::from_millis(ms),
                    _ => problems.push(format!(
                        "ignoring timeout={ms}: not a number of milliseconds from 1 to 60000"
                    )),
                },
                None if a == "allow_su" => o.allow_su = true,
                None if a == "debug" => o.debug = true,
                None if cfg!(debug_assertions) && a == "test_panic" => o.test_panic = true,
                _ => problems.push(format!("ignoring unknown argument {a:?}")),
            }
        }
        (o, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_option_and_reports_the_rest() {
        let (o, p) = Options::parse(["socket=/tmp/c", "timeout=250", "allow_su", "debug"]);
        assert_eq!(
            o,
            Options {
                socket: "/tmp/c".into(),
                timeout: Duration::from_millis(250),
                allow_su: true,
                debug: true,
                test_panic: false,
            }
        );
        assert!(p.is_empty());
        let (o, p) = Options::parse([
            "socket=rel",
            "timeout=0",
            "timeout=x",
            "bogus",
            "allow_su=1",
        ]);
        assert_eq!(o, Options::default());
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p[0].contains("not an absolute path") && p[3].contains("unknown argument \"bogus\"")
        );
    }
}

//! `runplane.toml`: parsing is pure (text in, [`Config`] or a [`ConfigError`] with
//! `file:line:col` out); reading the file is [`load`]'s one line of I/O.
//!
//! ```toml
//! [daemon]
//! control = "/run/runplane/control"   # the control socket
//! state = "/run/runplane"             # volatile state: lock, pid file, per-capability state
//! max_clients = 256                   # concurrent control connections (1..=4096)
//! max_clients_per_uid = 32            # of them, held by one uid but root's and the daemon's
//! ```
//!
//! Unknown sections and keys are errors: a typo must not silently mean "default".

use std::path::{Path, PathBuf};

use serde::Deserialize;

use runplane_userdirs::config::{RawUserdirs, UserdirsConfig};

/// System daemon (root, `/run`) or one user's (`$XDG_RUNTIME_DIR`).
pub use runplane_proto::Mode;

/// The built-in system config file.
pub const SYSTEM_CONFIG: &str = "/etc/runplane/runplane.toml";

/// The whole configuration, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub userdirs: UserdirsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub control: PathBuf,
    pub state: PathBuf,
    pub max_clients: u32,
    pub max_clients_per_uid: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    userdirs: RawUserdirs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    control: Option<PathBuf>,
    state: Option<PathBuf>,
    max_clients: Option<u32>,
    max_clients_per_uid: Option<u32>,
}

/// Where things live by default in each mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub control: PathBuf,
    pub state: PathBuf,
}

impl Defaults {
    /// `/run/runplane` for the system; `$XDG_RUNTIME_DIR/runplane` for a user.
    pub fn for_mode(mode: Mode, runtime_dir: Option<&Path>) -> Defaults {
        let base = match (mode, runtime_dir) {
            (Mode::User, Some(rt)) => rt.join("runplane"),
            _ => PathBuf::from("/run/runplane"),
        };
        Defaults {
            control: base.join("control"),
            state: base,
        }
    }
}

/// A configuration error, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Finds where `[section] key` is set, for errors about values that parse but are invalid.
fn locate_key(text: &str, section: &str, key: &str) -> (usize, usize) {
    let mut current = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        } else if current == section && t.split('=').next().map(str::trim) == Some(key) {
            return (i + 1, l.find(key).unwrap_or(0) + 1);
        }
    }
    (1, 1)
}

impl Config {
    /// The built-in defaults.
    pub fn defaults(d: &Defaults) -> Config {
        Config {
            daemon: DaemonConfig {
                control: d.control.clone(),
                state: d.state.clone(),
                max_clients: 256,
                max_clients_per_uid: 32,
            },
            userdirs: UserdirsConfig::default(),
        }
    }

    /// Parses `text` (named `file` in errors) over `defaults`.
    pub fn parse(text: &str, file: &str, defaults: &Defaults) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError {
                file: file.to_owned(),
                line,
                col,
                message: e.message().trim_end().to_owned(),
            }
        })?;
        let err = |key: &str, message: String| {
            let (line, col) = locate_key(text, "daemon", key);
            ConfigError {
                file: file.to_owned(),
                line,
                col,
                message,
            }
        };
        let mut c = Config::defaults(defaults);
        for (key, value, slot) in [
            ("control", raw.daemon.control, &mut c.daemon.control),
            ("state", raw.daemon.state, &mut c.daemon.state),
        ] {
            if let Some(p) = value {
                if !p.is_absolute() {
                    return Err(err(
                        key,
                        format!(
                            "daemon.{key} must be an absolute path, not {:?}",
                            p.display().to_string()
                        ),
                    ));
                }
                *slot = p;
            }
        }
        c.userdirs = UserdirsConfig::from_raw(raw.userdirs).map_err(|(key, message)| {
            let (line, col) = locate_key(text, "userdirs", key);
            ConfigError {
                file: file.to_owned(),
                line,
                col,
                message,
            }
        })?;
        for (key, value, slot) in [
            (
                "max_clients",
                raw.daemon.max_clients,
                &mut c.daemon.max_clients,
            ),
            (
                "max_clients_per_uid",
                raw.daemon.max_clients_per_uid,
                &mut c.daemon.max_clients_per_uid,
            ),
        ] {
            if let Some(n) = value {
                if !(1..=4096).contains(&n) {
                    return Err(err(
                        key,
                        format!("daemon.{key} must be between 1 and 4096, not {n}"),
                    ));
                }
                *slot = n;
            }
        }
        Ok(c)
    }

    /// Settings that differ from `new` and only take effect at the next start.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<String> {
        let mut v = Vec::new();
        if self.daemon.control != new.daemon.control {
            v.push("daemon.control".to_owned());
        }
        if self.daemon.state != new.daemon.state {
            v.push("daemon.state".to_owned());
        }
        if self.userdirs.root != new.userdirs.root {
            v.push("userdirs.root".to_owned());
        }
        if self.userdirs.linger_dir != new.userdirs.linger_dir {
            v.push("userdirs.linger_dir".to_owned());
        }
        v
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--config FILE`: must exist.
    Explicit(PathBuf),
    /// The mode's default file: used if it exists, built-in defaults otherwise.
    Default(PathBuf),
}

/// Reads the configuration: `Ok((config, Some(path)))` when a file was read, `(defaults,
/// None)` when the default file does not exist.
pub fn load(
    source: &Source,
    defaults: &Defaults,
) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let (path, required) = match source {
        Source::Explicit(p) => (p, true),
        Source::Default(p) => (p, false),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Config::parse(&text, &path.display().to_string(), defaults)
            .map(|c| (c, Some(path.clone()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok((Config::defaults(defaults), None))
        }
        Err(e) => Err(ConfigError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            message: format!("unable to read: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys() -> Defaults {
        Defaults::for_mode(Mode::System, None)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("", "f", &sys()).unwrap();
        assert_eq!(c.daemon.control, PathBuf::from("/run/runplane/control"));
        assert_eq!(c.daemon.state, PathBuf::from("/run/runplane"));
        assert_eq!(c.daemon.max_clients, 256);
        assert_eq!(c.daemon.max_clients_per_uid, 32);
        let u = Defaults::for_mode(Mode::User, Some(Path::new("/run/user/1000")));
        assert_eq!(u.control, PathBuf::from("/run/user/1000/runplane/control"));
    }

    #[test]
    fn userdirs_section_is_read() {
        let c = Config::parse(
            "[userdirs]\nsize = \"64M\"\nlifetime = \"sessions\"\ngrace = \"0\"\n",
            "f",
            &sys(),
        )
        .unwrap();
        assert_eq!(
            c.userdirs.size,
            runplane_userdirs::size::SizeSpec::Bytes(64 << 20)
        );
        assert_eq!(
            c.userdirs.lifetime,
            runplane_userdirs::config::Lifetime::Sessions
        );
        assert_eq!(c.userdirs.grace, std::time::Duration::ZERO);
    }

    #[test]
    fn values_are_read() {
        let c = Config::parse(
            "[daemon]\ncontrol = \"/x/c\"\nstate = \"/x\"\nmax_clients = 3\nmax_clients_per_uid = 2\n",
            "f",
            &sys(),
        )
        .unwrap();
        assert_eq!(
            (
                c.daemon.control.to_str(),
                c.daemon.state.to_str(),
                c.daemon.max_clients,
                c.daemon.max_clients_per_uid
            ),
            (Some("/x/c"), Some("/x"), 3, 2)
        );
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let cases = [
            (
                "[daemon]\ncontrl = \"/x\"\n",
                "f.toml:2:1: unknown field `contrl`",
            ),
            ("[deamon]\n", "f.toml:1:2: unknown field `deamon`"),
            (
                "[daemon]\n\nmax_clients = \"many\"\n",
                "f.toml:3:15: invalid type: string \"many\", expected u32",
            ),
            (
                "[daemon]\nmax_clients = 0\n",
                "f.toml:2:1: daemon.max_clients must be between 1 and 4096, not 0",
            ),
            (
                "[daemon]\nmax_clients = 9\nmax_clients_per_uid = 5000\n",
                "f.toml:3:1: daemon.max_clients_per_uid must be between 1 and 4096, not 5000",
            ),
            (
                "[daemon]\nstate = \"run/x\"\n",
                "f.toml:2:1: daemon.state must be an absolute path, not \"run/x\"",
            ),
            ("[daemon\n", "f.toml:1:8:"),
            (
                "[userdirs]\nsize = \"10%\"\ngrace = \"soon\"\n",
                "f.toml:3:1: userdirs.grace: \"soon\" is not a duration",
            ),
            (
                "[userdirs]\nlifetime = \"forever\"\n",
                "f.toml:2:12: unknown variant `forever`",
            ),
            (
                "[userdirs]\nnoswapp = true\n",
                "f.toml:2:1: unknown field `noswapp`",
            ),
        ];
        for (text, want) in cases {
            let e = Config::parse(text, "f.toml", &sys())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn load_distinguishes_missing_default_from_missing_explicit() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("none.toml");
        let (c, p) = load(&Source::Default(missing.clone()), &sys()).unwrap();
        assert_eq!((c, p), (Config::defaults(&sys()), None));
        let e = load(&Source::Explicit(missing), &sys()).unwrap_err();
        assert!(
            e.to_string().contains("unable to read: No such file"),
            "{e}"
        );
    }

    #[test]
    fn restart_only_changes_are_listed() {
        let a = Config::defaults(&sys());
        let mut b = a.clone();
        b.daemon.state = "/elsewhere".into();
        b.daemon.max_clients = 9;
        assert_eq!(a.restart_only_changes(&b), vec!["daemon.state".to_owned()]);
    }
}

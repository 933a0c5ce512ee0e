//! `[userdirs]` in runplane.toml. The raw form is deserialized by the daemon as part of the
//! whole file (so that errors carry `file:line:col`); [`UserdirsConfig::from_raw`] validates it
//! and fills in defaults. Names are the interface (issue 3, `docs/configuration.md`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::size::{SizeSpec, parse_size};

/// When a user's directory may go after the last session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    /// Keep it while any process of the uid runs (tmux, nohup, agents); then the grace period.
    Processes,
    /// Start the grace period when the last session ends.
    Sessions,
}

/// `[userdirs]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserdirs {
    pub root: Option<PathBuf>,
    pub size: Option<String>,
    pub inodes: Option<u64>,
    pub noswap: Option<bool>,
    pub huge: Option<String>,
    pub mpol: Option<String>,
    pub budget: Option<String>,
    pub min_size: Option<String>,
    pub grace: Option<String>,
    pub lifetime: Option<Lifetime>,
    pub self_linger: Option<bool>,
    pub linger_dir: Option<PathBuf>,
    pub remove_ipc: Option<bool>,
    pub max_sessions_per_user: Option<u32>,
}

/// `[userdirs]` validated, with defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdirsConfig {
    pub root: PathBuf,
    pub size: SizeSpec,
    /// `None`: size / 4096.
    pub inodes: Option<u64>,
    pub noswap: bool,
    pub huge: Option<String>,
    pub mpol: Option<String>,
    /// `None`: no global budget ("off").
    pub budget: Option<SizeSpec>,
    pub min_size: u64,
    pub grace: Duration,
    pub lifetime: Lifetime,
    pub self_linger: bool,
    pub linger_dir: PathBuf,
    pub remove_ipc: bool,
    /// A non-root caller may open a session for itself only while its uid holds fewer.
    pub max_sessions_per_user: u32,
}

/// The largest `max_sessions_per_user`.
pub const MAX_SESSIONS_PER_USER: u32 = 65536;

impl Default for UserdirsConfig {
    fn default() -> Self {
        UserdirsConfig {
            root: PathBuf::from("/run/user"),
            size: SizeSpec::Permille(100),
            inodes: None,
            noswap: true,
            huge: None,
            mpol: None,
            budget: None,
            min_size: 1 << 20,
            grace: Duration::from_secs(10),
            lifetime: Lifetime::Processes,
            self_linger: false,
            linger_dir: PathBuf::from("/var/lib/runplane/linger"),
            remove_ipc: false,
            max_sessions_per_user: 256,
        }
    }
}

/// Parses `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"0"` (seconds without a unit too).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. \"10s\", \"500ms\", \"2m\")"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{s:?} is not a duration (units: ms, s, m, h)")),
    };
    let ms = ms
        .filter(|&m| m <= 7 * 24 * 3_600_000)
        .ok_or_else(|| format!("{s:?} is longer than a week"))?;
    Ok(Duration::from_millis(ms))
}

fn valid_mpol(m: &str) -> bool {
    let (mode, nodes) = m.split_once(':').unwrap_or((m, ""));
    let nodes_ok = nodes
        .chars()
        .all(|c| c.is_ascii_digit() || c == ',' || c == '-');
    match mode {
        "default" | "local" => nodes.is_empty(),
        "interleave" => nodes_ok,
        "prefer" | "bind" => !nodes.is_empty() && nodes_ok,
        _ => false,
    }
}

impl UserdirsConfig {
    /// Validates `raw`; an error names the key and what is wrong with its value.
    pub fn from_raw(raw: RawUserdirs) -> Result<UserdirsConfig, (&'static str, String)> {
        let mut c = UserdirsConfig::default();
        if let Some(r) = raw.root {
            if !r.is_absolute() {
                return Err((
                    "root",
                    format!(
                        "userdirs.root must be an absolute path, not {:?}",
                        r.display().to_string()
                    ),
                ));
            }
            c.root = r;
        }
        if let Some(s) = raw.size {
            c.size = parse_size(&s).map_err(|e| ("size", format!("userdirs.size: {e}")))?;
        }
        if let Some(n) = raw.inodes {
            if n == 0 {
                return Err(("inodes", "userdirs.inodes must be above 0".into()));
            }
            c.inodes = Some(n);
        }
        if let Some(b) = raw.noswap {
            c.noswap = b;
        }
        if let Some(h) = raw.huge {
            if !["never", "always", "within_size", "advise"].contains(&h.as_str()) {
                return Err((
                    "huge",
                    format!(
                        "userdirs.huge must be never, always, within_size or advise, not {h:?}"
                    ),
                ));
            }
            c.huge = Some(h);
        }
        if let Some(m) = raw.mpol {
            if !valid_mpol(&m) {
                return Err((
                    "mpol",
                    format!(
                        "userdirs.mpol must be default, local, prefer:N, bind:NODES or interleave[:NODES], not {m:?}"
                    ),
                ));
            }
            c.mpol = Some(m);
        }
        if let Some(b) = raw.budget {
            c.budget = if b.trim() == "off" {
                None
            } else {
                Some(
                    parse_size(&b)
                        .map_err(|e| ("budget", format!("userdirs.budget: {e} (or \"off\")")))?,
                )
            };
        }
        if let Some(m) = raw.min_size {
            c.min_size = match parse_size(&m)
                .map_err(|e| ("min_size", format!("userdirs.min_size: {e}")))?
            {
                SizeSpec::Bytes(b) => b,
                SizeSpec::Permille(_) => {
                    return Err((
                        "min_size",
                        "userdirs.min_size must be a size in bytes, not a percentage".into(),
                    ));
                }
            };
        }
        if let Some(g) = raw.grace {
            c.grace = parse_duration(&g).map_err(|e| ("grace", format!("userdirs.grace: {e}")))?;
        }
        if let Some(l) = raw.lifetime {
            c.lifetime = l;
        }
        if let Some(b) = raw.self_linger {
            c.self_linger = b;
        }
        if let Some(d) = raw.linger_dir {
            if !d.is_absolute() {
                return Err((
                    "linger_dir",
                    format!(
                        "userdirs.linger_dir must be an absolute path, not {:?}",
                        d.display().to_string()
                    ),
                ));
            }
            c.linger_dir = d;
        }
        if let Some(b) = raw.remove_ipc {
            c.remove_ipc = b;
        }
        if let Some(n) = raw.max_sessions_per_user {
            if !(1..=MAX_SESSIONS_PER_USER).contains(&n) {
                return Err((
                    "max_sessions_per_user",
                    format!(
                        "userdirs.max_sessions_per_user must be 1..={MAX_SESSIONS_PER_USER}, not {n}"
                    ),
                ));
            }
            c.max_sessions_per_user = n;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_issue() {
        let c = UserdirsConfig::from_raw(RawUserdirs::default()).unwrap();
        assert_eq!(c, UserdirsConfig::default());
        assert_eq!(c.root, PathBuf::from("/run/user"));
        assert_eq!(c.size, SizeSpec::Permille(100));
        assert!(c.noswap && !c.self_linger && !c.remove_ipc);
        assert_eq!(
            (c.grace, c.lifetime, c.min_size),
            (Duration::from_secs(10), Lifetime::Processes, 1 << 20)
        );
        assert_eq!(c.budget, None);
    }

    #[test]
    fn every_key_is_read_and_validated() {
        let raw = RawUserdirs {
            root: Some("/run/u".into()),
            size: Some("64M".into()),
            inodes: Some(100),
            noswap: Some(false),
            huge: Some("within_size".into()),
            mpol: Some("interleave:0-1".into()),
            budget: Some("1G".into()),
            min_size: Some("2M".into()),
            grace: Some("500ms".into()),
            lifetime: Some(Lifetime::Sessions),
            self_linger: Some(true),
            linger_dir: Some("/var/lib/x".into()),
            remove_ipc: Some(true),
            max_sessions_per_user: Some(8),
        };
        let c = UserdirsConfig::from_raw(raw).unwrap();
        assert_eq!(c.max_sessions_per_user, 8);
        assert_eq!(c.size, SizeSpec::Bytes(64 << 20));
        assert_eq!(
            (c.inodes, c.budget, c.min_size),
            (Some(100), Some(SizeSpec::Bytes(1 << 30)), 2 << 20)
        );
        assert_eq!(c.grace, Duration::from_millis(500));
        let bad = |f: fn(&mut RawUserdirs)| {
            let mut r = RawUserdirs::default();
            f(&mut r);
            UserdirsConfig::from_raw(r).unwrap_err()
        };
        assert_eq!(bad(|r| r.root = Some("run/user".into())).0, "root");
        assert_eq!(bad(|r| r.size = Some("lots".into())).0, "size");
        assert_eq!(bad(|r| r.inodes = Some(0)).0, "inodes");
        assert_eq!(bad(|r| r.huge = Some("sometimes".into())).0, "huge");
        assert_eq!(bad(|r| r.mpol = Some("bind:".into())).0, "mpol");
        assert_eq!(bad(|r| r.budget = Some("of".into())).0, "budget");
        assert_eq!(bad(|r| r.min_size = Some("5%".into())).0, "min_size");
        assert_eq!(bad(|r| r.grace = Some("10 parsecs".into())).0, "grace");
        assert_eq!(bad(|r| r.linger_dir = Some("x".into())).0, "linger_dir");
        assert_eq!(
            bad(|r| r.max_sessions_per_user = Some(0)).0,
            "max_sessions_per_user"
        );
        assert_eq!(
            bad(|r| r.max_sessions_per_user = Some(MAX_SESSIONS_PER_USER + 1)).0,
            "max_sessions_per_user"
        );
        let off = UserdirsConfig::from_raw(RawUserdirs {
            budget: Some("off".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.budget, None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("8d").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("999999999h").is_err());
        assert!(
            valid_mpol("prefer:1")
                && valid_mpol("default")
                && !valid_mpol("bind")
                && !valid_mpol("x:1")
        );
    }
}

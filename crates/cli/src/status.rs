//! `runplane status`: the whole plane in one view. `--json` prints the daemon's `status`
//! object unchanged (later capabilities add sections such as `userdirs` to it).

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};

use runplane_proto::{Mode, Status};

use crate::args::{Cli, Output};
use crate::{Failure, connect, print_json};

/// Bytes in IEC units with one decimal.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn render_userdirs(st: &Status) -> String {
    let Some(m) = &st.userdirs_manager else {
        return String::new();
    };
    let mut out = String::from("\n");
    if !m.managing {
        out.push_str(&format!(
            "userdirs: not managing {}: {}\n",
            m.root,
            m.reason.as_deref().unwrap_or("disabled")
        ));
        return out;
    }
    let budget = m.budget.map_or(String::new(), |b| {
        format!(
            ", budget {} of {} used",
            human_bytes(m.budget_used),
            human_bytes(b)
        )
    });
    let remounted = match m.remounted {
        0 => String::new(),
        n => format!(", {n} remounted"),
    };
    out.push_str(&format!(
        "userdirs: {} ({} per user, {} inodes, lifetime {}, grace {}s, noswap {}{budget}, unmounts mended {}{remounted})\n",
        m.root,
        human_bytes(m.size_per_user),
        m.inodes_per_user,
        m.lifetime,
        m.grace_ms as f64 / 1000.0,
        if m.kernel_noswap {
            "yes"
        } else {
            "unsupported by this kernel"
        },
        if m.mount_events {
            "at once"
        } else {
            "at the next login"
        },
    ));
    if let Some(e) = &m.journal_error {
        out.push_str(&format!("userdirs: warning: {e}\n"));
    }
    if st.userdirs.is_empty() {
        out.push_str("no user runtime dirs\n");
        return out;
    }
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_header(vec![
        "USER", "UID", "STATE", "SESSIONS", "BACKEND", "USED", "LIMIT", "INODES", "LINGER",
    ]);
    for u in &st.userdirs {
        let limit = if u.bytes_limit == 0 {
            "-".to_owned()
        } else {
            human_bytes(u.bytes_limit)
        };
        let inodes = if u.inodes_limit == 0 {
            u.inodes_used.to_string()
        } else {
            format!("{}/{}", u.inodes_used, u.inodes_limit)
        };
        t.add_row(vec![
            u.user.clone(),
            u.uid.to_string(),
            u.state.clone(),
            // session_count: what a daemon that lists at most MAX_STATUS_SESSIONS ids says.
            u.session_count.max(u.sessions.len() as u32).to_string(),
            if u.covered {
                format!("{} (covered)", u.backend)
            } else if u.unmounted {
                format!("{} (unmounted)", u.backend)
            } else {
                u.backend.clone()
            },
            human_bytes(u.bytes_used),
            limit,
            inodes,
            if u.linger { "yes".into() } else { "no".into() },
        ]);
    }
    out.extend(t.to_string().lines().map(|l| l.trim().to_owned() + "\n"));
    out
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The human rendering: a key/value table (pure, for tests).
pub fn render(st: &Status) -> String {
    let d = &st.daemon;
    let mut t = Table::new();
    t.load_style(NOTHING);
    let mode = match d.mode {
        Mode::System => "system",
        Mode::User => "user",
    };
    let config = match &d.config.path {
        Some(p) => format!("{p} (generation {})", d.config.generation),
        None => format!("built-in defaults (generation {})", d.config.generation),
    };
    let rows: Vec<(&str, String)> = vec![
        (
            "daemon",
            format!(
                "runplaned {} pid {} uid {} ({mode} mode)",
                d.version, d.pid, d.uid
            ),
        ),
        ("uptime", duration(d.uptime_secs)),
        ("control", d.control.clone()),
        ("state", d.state.clone()),
        ("clients", format!("{} of {}", d.clients, d.max_clients)),
        ("requests", d.requests.to_string()),
        ("config", config),
    ];
    for (k, v) in rows {
        t.add_row(vec![Cell::new(k), Cell::new(v)]);
    }
    if let Some(e) = &d.config.last_error {
        t.add_row(vec![Cell::new("reload error"), Cell::new(e)]);
    }
    if !d.config.pending_restart.is_empty() {
        t.add_row(vec![
            Cell::new("at next start"),
            Cell::new(d.config.pending_restart.join(", ")),
        ]);
    }
    let mut out: String = t
        .to_string()
        .lines()
        .map(|l| l.trim().to_owned() + "\n")
        .collect();
    out.push_str(&render_userdirs(st));
    out
}

/// Appends the pages after the first to `status.userdirs` when the daemon says more follow.
fn join_userdirs_pages(c: &mut runplane::Client, v: &mut serde_json::Value) -> Result<(), Failure> {
    use serde_json::Value;
    let Some(obj) = v.as_object_mut() else {
        return Ok(());
    };
    if obj.remove("userdirs_more") != Some(Value::Bool(true)) {
        return Ok(());
    }
    let Some(Value::Array(list)) = obj.get_mut("userdirs") else {
        return Ok(());
    };
    let last = list
        .last()
        .and_then(|u| u["uid"].as_u64())
        .and_then(|u| u32::try_from(u).ok());
    for u in c.userdirs(last)? {
        list.push(serde_json::to_value(u).expect("an entry serializes"));
    }
    Ok(())
}

pub fn run(cli: &Cli, out: Output) -> Result<(), Failure> {
    let mut c = connect(cli)?;
    if out.json {
        // Print exactly what the daemon sent, including sections this client does not know,
        // with the pages of `userdirs` joined.
        let mut v = c.call(&runplane_proto::Request::Status)?;
        join_userdirs_pages(&mut c, &mut v)?;
        return print_json(&v);
    }
    let st = c.status()?;
    print!("{}", render(&st));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runplane_proto::{ConfigStatus, DaemonStatus};

    #[test]
    fn renders_every_field() {
        let st = Status {
            daemon: DaemonStatus {
                version: "0.1.0".into(),
                pid: 42,
                uid: 0,
                mode: Mode::System,
                started_at: 0,
                uptime_secs: 3725,
                control: "/run/runplane/control".into(),
                state: "/run/runplane".into(),
                clients: 1,
                max_clients: 256,
                requests: 9,
                config: ConfigStatus {
                    path: None,
                    generation: 2,
                    loaded_at: 0,
                    last_error: Some("f:1:1: bad".into()),
                    pending_restart: vec!["daemon.state".into()],
                },
            },
            userdirs_manager: None,
            userdirs: vec![],
            userdirs_more: false,
        };
        let out = render(&st);
        let rows: Vec<(String, String)> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once("  ").unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        for (k, v) in [
            ("daemon", "runplaned 0.1.0 pid 42 uid 0 (system mode)"),
            ("uptime", "1h 2m"),
            ("control", "/run/runplane/control"),
            ("clients", "1 of 256"),
            ("requests", "9"),
            ("config", "built-in defaults (generation 2)"),
            ("reload error", "f:1:1: bad"),
            ("at next start", "daemon.state"),
        ] {
            assert!(
                rows.contains(&(k.to_owned(), v.to_owned())),
                "missing {k}: {v} in\n{out}"
            );
        }
        // Values line up in one column.
        let col: Vec<usize> = out
            .lines()
            .map(|l| l.len() - l[l.find("  ").unwrap()..].trim_start().len())
            .collect();
        assert!(col.windows(2).all(|w| w[0] == w[1]), "{out}");
        assert_eq!(duration(59), "59s");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(duration(90000), "1d 1h");
    }
}

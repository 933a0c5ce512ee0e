//! `runplane status`: the whole plane in one view. `--json` prints the daemon's `status`
//! object unchanged (later capabilities add sections such as `userdirs` to it).

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};

use runplane_proto::{Mode, Status};

use crate::args::{Cli, Output};
use crate::{Failure, connect, print_json};

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
    t.to_string()
        .lines()
        .map(|l| l.trim().to_owned() + "\n")
        .collect()
}

pub fn run(cli: &Cli, out: Output) -> Result<(), Failure> {
    let mut c = connect(cli)?;
    if out.json {
        // Print exactly what the daemon sent, including sections this client does not know.
        let v = c.call(&runplane_proto::Request::Status)?;
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
        };
        let out = render(&st);
        let rows: Vec<(String, String)> = out
            .lines()
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
        assert_eq!(duration(90000), "1d 1h");
    }
}

//! `runplane session list|open|close|ipc`.

use comfy_table::Table;
use comfy_table::presets::NOTHING;

use runplane_proto::{SessionOpen, UserRef};

use crate::args::{Cli, Session};
use crate::{Failure, connect, print_json};

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
        .lines()
        .map(|l| l.trim().to_owned() + "\n")
        .collect()
}

/// Unix milliseconds as seconds ago.
pub fn ago(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!("{}s ago", now.saturating_sub(ms) / 1000)
}

pub fn run(cli: &Cli, what: &Session) -> Result<(), Failure> {
    let mut c = connect(cli)?;
    match what {
        Session::List(out) => {
            let list = c.session_list()?;
            if out.json {
                return print_json(&list);
            }
            let rows = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        s.user.clone(),
                        s.uid.to_string(),
                        s.leader_pid.to_string(),
                        ago(s.opened_at),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["ID", "USER", "UID", "LEADER", "OPENED"], rows)
            );
        }
        Session::Open { who, pid, out } => {
            // Default leader: our parent (the shell that ran us), which outlives this command.
            let pid = pid.or_else(|| {
                Some(rustix::process::getppid().map_or(1, |p| p.as_raw_nonzero().get()))
            });
            let s = c.session_open(SessionOpen {
                user: who.user.clone(),
                uid: who.uid,
                pid,
                allow_nested: None,
                gid: None,
            })?;
            if out.json {
                return print_json(&s);
            }
            println!(
                "session {} for {} (uid {}): {} ({}{})",
                s.id,
                s.user,
                s.uid,
                s.path,
                s.backend,
                if s.created { ", created" } else { "" }
            );
        }
        Session::Close { id, out } => {
            let r = c.session_close(*id)?;
            if out.json {
                return print_json(&r);
            }
            println!(
                "session {} closed; uid {} has {} more, its runtime dir is {}",
                r.id, r.uid, r.remaining, r.state
            );
        }
        Session::Ipc { user, out } => {
            let list = c.session_ipc(UserRef {
                user: Some(user.clone()),
                uid: None,
            })?;
            if out.json {
                return print_json(&list);
            }
            let rows = list
                .iter()
                .map(|o| {
                    vec![
                        o.kind.clone(),
                        o.id.clone(),
                        o.bytes.map_or("-".into(), |b| b.to_string()),
                    ]
                })
                .collect();
            print!("{}", table(&["KIND", "ID", "BYTES"], rows));
        }
    }
    Ok(())
}

//! The journal's lines as written: the same bytes `serde_json::to_writer` makes of the store's
//! line types, written directly into one buffer.
//!
//! Every change of a user (each login and logout) appends one line, and on that path
//! serde_json cost about 6,000 instructions a line here (callgrind: the internally tagged
//! `phase`, and a call through `io::Write` for each key, quote and value), two thirds of all
//! the daemon does for a logout. This writes the same text in a tenth of that. The records
//! are read back with serde (`store.rs`), and a property test checks that these bytes are
//! exactly serde_json's for any record, so the two cannot drift: a field added to the types
//! fails that test until it is written here too.

use crate::lifecycle::{Backend, DirInfo, Leader, Phase, Session, User};

/// `{"set":{"version":V,"user":{...},"sessions":[...]}}`, without the newline.
pub fn set<'a>(
    version: u32,
    user: &User,
    sessions: impl IntoIterator<Item = &'a Session>,
) -> Vec<u8> {
    // Room for a user with a few sessions and the newline, without growing on the way.
    let mut w = Vec::with_capacity(512);
    w.extend_from_slice(b"{\"set\":{\"version\":");
    num(&mut w, version);
    w.extend_from_slice(b",\"user\":");
    self::user(&mut w, user);
    w.extend_from_slice(b",\"sessions\":[");
    for (i, s) in sessions.into_iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        session(&mut w, s);
    }
    w.extend_from_slice(b"]}}");
    w
}

/// `{"delete":UID}`.
pub fn delete(uid: u32) -> Vec<u8> {
    let mut w = Vec::with_capacity(24);
    w.extend_from_slice(b"{\"delete\":");
    num(&mut w, uid);
    w.push(b'}');
    w
}

fn user(w: &mut Vec<u8>, u: &User) {
    w.extend_from_slice(b"{\"uid\":");
    num(w, u.uid);
    w.extend_from_slice(b",\"gid\":");
    num(w, u.gid);
    w.extend_from_slice(b",\"name\":");
    string(w, &u.name);
    w.extend_from_slice(b",\"size\":");
    num(w, u.size);
    w.extend_from_slice(b",\"inodes\":");
    num(w, u.inodes);
    w.extend_from_slice(if u.linger {
        b",\"linger\":true"
    } else {
        b",\"linger\":false"
    });
    w.extend_from_slice(b",\"phase\":");
    match u.phase {
        Phase::Active => w.extend_from_slice(b"{\"phase\":\"active\"}"),
        Phase::Lingering => w.extend_from_slice(b"{\"phase\":\"lingering\"}"),
        Phase::WaitingForProcesses => w.extend_from_slice(b"{\"phase\":\"waiting-for-processes\"}"),
        Phase::Grace { deadline } => {
            w.extend_from_slice(b"{\"phase\":\"grace\",\"deadline\":");
            num(w, deadline);
            w.push(b'}');
        }
    }
    w.extend_from_slice(b",\"generation\":");
    num(w, u.generation);
    w.extend_from_slice(b",\"dir\":");
    match &u.dir {
        None => w.extend_from_slice(b"null"),
        Some(d) => dir(w, d),
    }
    w.extend_from_slice(b",\"sessions\":[");
    for (i, id) in u.sessions.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        num(w, *id);
    }
    w.extend_from_slice(b"]}");
}

fn dir(w: &mut Vec<u8>, d: &DirInfo) {
    w.extend_from_slice(match d.backend {
        Backend::Tmpfs => b"{\"backend\":\"tmpfs\"".as_slice(),
        Backend::Adopted => b"{\"backend\":\"adopted\"",
        Backend::FallbackDir => b"{\"backend\":\"fallback-dir\"",
    });
    w.extend_from_slice(b",\"mount_id\":");
    match d.mount_id {
        None => w.extend_from_slice(b"null"),
        Some(m) => num(w, m.get()),
    }
    if let Some(m) = d.mount_unique {
        w.extend_from_slice(b",\"mount_unique\":");
        num(w, m.get());
    }
    w.extend_from_slice(if d.noswap {
        b",\"noswap\":true}"
    } else {
        b",\"noswap\":false}"
    });
}

fn session(w: &mut Vec<u8>, s: &Session) {
    w.extend_from_slice(b"{\"id\":");
    num(w, s.id);
    w.extend_from_slice(b",\"uid\":");
    num(w, s.uid);
    w.extend_from_slice(b",\"leader\":");
    leader(w, &s.leader);
    w.extend_from_slice(b",\"opened_at\":");
    num(w, s.opened_at);
    w.push(b'}');
}

fn leader(w: &mut Vec<u8>, l: &Leader) {
    w.extend_from_slice(b"{\"pid\":");
    num(w, l.pid);
    if let Some(i) = l.pidfs_ino {
        w.extend_from_slice(b",\"pidfs_ino\":");
        num(w, i);
    }
    if let Some(t) = l.start_time {
        w.extend_from_slice(b",\"start_time\":");
        num(w, t);
    }
    w.push(b'}');
}

fn num(w: &mut Vec<u8>, n: impl itoa::Integer) {
    w.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control characters as `\b`,
/// `\t`, `\n`, `\f`, `\r` or `\u00XX` (so a line never holds a newline), all else as is.
fn string(w: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    w.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..0x20 => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ],
            _ => continue,
        };
        w.extend_from_slice(&bytes[start..i]);
        w.extend_from_slice(esc);
        start = i + 1;
    }
    w.extend_from_slice(&bytes[start..]);
    w.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;

    /// The store's line as serde sees it (store.rs reads this shape back).
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum LineOut<'a> {
        Set {
            version: u32,
            user: &'a User,
            sessions: &'a [Session],
        },
        Delete(u32),
    }

    fn phase() -> impl Strategy<Value = Phase> {
        prop_oneof![
            Just(Phase::Active),
            Just(Phase::Lingering),
            Just(Phase::WaitingForProcesses),
            any::<u64>().prop_map(|deadline| Phase::Grace { deadline }),
        ]
    }

    fn dir_info() -> impl Strategy<Value = Option<DirInfo>> {
        let backend = prop_oneof![
            Just(Backend::Tmpfs),
            Just(Backend::Adopted),
            Just(Backend::FallbackDir)
        ];
        let ids = (any::<Option<u64>>(), any::<Option<u64>>());
        proptest::option::of((backend, ids, any::<bool>()).prop_map(
            |(backend, (mount_id, mount_unique), noswap)| DirInfo {
                backend,
                mount_id: mount_id.and_then(std::num::NonZeroU64::new),
                mount_unique: mount_unique.and_then(std::num::NonZeroU64::new),
                noswap,
            },
        ))
    }

    fn user() -> impl Strategy<Value = User> {
        (
            (any::<u32>(), any::<u32>(), any::<String>(), any::<u64>()),
            (any::<u64>(), any::<bool>(), phase(), any::<u64>()),
            dir_info(),
            proptest::collection::btree_set(any::<u64>(), 0..5),
        )
            .prop_map(
                |((uid, gid, name, size), (inodes, linger, phase, generation), dir, sessions)| {
                    User {
                        uid,
                        gid,
                        name,
                        size,
                        inodes,
                        linger,
                        phase,
                        generation,
                        dir,
                        sessions: sessions.into_iter().collect(),
                    }
                },
            )
    }

    fn session() -> impl Strategy<Value = Session> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<i32>(),
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            any::<u64>(),
        )
            .prop_map(|(id, uid, pid, pidfs_ino, start_time, opened_at)| Session {
                id,
                uid,
                leader: Leader {
                    pid,
                    pidfs_ino,
                    start_time,
                },
                opened_at,
            })
    }

    fn serde_bytes(line: &LineOut<'_>) -> Vec<u8> {
        serde_json::to_vec(line).unwrap()
    }

    proptest! {
        #[test]
        fn set_lines_are_serde_jsons_bytes(
            version in any::<u32>(),
            u in user(),
            sessions in proptest::collection::vec(session(), 0..4),
        ) {
            let ours = set(version, &u, &sessions);
            let theirs = serde_bytes(&LineOut::Set { version, user: &u, sessions: &sessions });
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
            prop_assert!(!ours.contains(&b'\n'));
        }

        #[test]
        fn delete_lines_are_serde_jsons_bytes(uid in any::<u32>()) {
            prop_assert_eq!(delete(uid), serde_bytes(&LineOut::Delete(uid)));
        }
    }

    #[test]
    fn names_with_every_escape_are_serde_jsons_bytes() {
        let mut name: String = (0u8..0x80).map(char::from).collect();
        name.push_str("\u{7f}é\u{2028}😀\"\\");
        let u = User {
            uid: 1,
            gid: 2,
            name,
            size: 3,
            inodes: 4,
            linger: true,
            phase: Phase::Grace { deadline: 5 },
            generation: 6,
            dir: None,
            sessions: [7, 8].into(),
        };
        let ours = set(1, &u, &[]);
        let theirs = serde_bytes(&LineOut::Set {
            version: 1,
            user: &u,
            sessions: &[],
        });
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
    }
}

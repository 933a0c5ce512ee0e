//! The userdirs state on disk: a journal `<state>/users/records.log` with one line per change
//! (the user's whole record after the change, or its deletion), appended with one `write`
//! before the change is answered, and compacted to one line per user when it has grown to
//! twice what is live. Read back after a restart: the last line of a user wins.
//!
//! One append per change keeps a login O(1) in the number of users and costs one syscall,
//! where a file per user (`.new` + rename) cost four and two allocations in the kernel. A line
//! torn by a `kill -9` in the middle of its write was never answered; it is dropped at load.
//! Records of the older layout (`<state>/users/<uid>.json`) are read once and folded in.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use runplane_sys::atomic::{Durability, is_volatile, read_file, write_atomic_with};
use runplane_sys::dir::{Dir, Resolve};
use runplane_sys::journal::Journal;

use crate::lifecycle::{Session, User};

/// Largest journal read back at start (10,000 users with a session each take about 4 MiB).
const MAX_JOURNAL: usize = 64 << 20;

/// Largest record of the older per-user layout read back.
const MAX_RECORD: usize = 4 << 20;

/// The journal's name in the `users` directory.
pub const JOURNAL: &str = "records.log";

/// Where the session-id reservation is kept.
const ID_FILE: &str = "next-session-id";

/// How many ids one reservation covers: one write per this many sessions.
pub const ID_BLOCK: u64 = 1024;

/// The journal is compacted once it is larger than this and twice what is live.
const COMPACT_MIN: u64 = 256 << 10;

/// A user and its sessions, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub user: User,
    pub sessions: Vec<Session>,
}

/// One line of the journal, as read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    /// The user's record as it is now.
    Set(Record),
    /// The user is gone (its dir removed).
    Delete(u32),
}

/// What [`Store::open`] read back: the live records by uid, what could not be read (each
/// problem names the file and line, and where a copy was kept), and a torn last line dropped
/// (expected after a `kill -9` in the middle of an append: a warning, not a problem).
#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<Record>,
    pub problems: Vec<String>,
    pub torn: Option<String>,
}

/// The `users` directory of the state directory and its journal.
#[derive(Debug)]
pub struct Store {
    dir: Dir,
    journal: Journal,
    /// No fsync on a tmpfs (the normal place: under /run): it cannot add durability there.
    durability: Durability,
    /// Bytes of each user's last line, and their sum: what a compaction would write.
    live: HashMap<u32, u64>,
    live_bytes: u64,
}

/// The line that sets `user`'s record (written by hand, byte for byte serde_json's: line.rs).
fn set_line<'a>(user: &User, sessions: impl IntoIterator<Item = &'a Session>) -> Vec<u8> {
    crate::line::set(1, user, sessions)
}

impl Store {
    /// Opens (creating 0700) `<state>/users` and its journal, reads the records back and
    /// compacts the journal to one line per live user.
    pub fn open(state: &Dir) -> runplane_sys::Result<(Store, Loaded)> {
        if state.mkdir("users", 0o700)? {
            state
                .open_dir("users", Resolve::STRICT)?
                .set_perms(0o700, None)?;
        }
        let dir = state.open_dir("users", Resolve::STRICT)?;
        let durability = if is_volatile(&dir) {
            Durability::Volatile
        } else {
            Durability::Sync
        };
        let (journal, contents) = Journal::open(&dir, JOURNAL, 0o600, durability, MAX_JOURNAL)?;
        let mut store = Store {
            dir,
            journal,
            durability,
            live: HashMap::new(),
            live_bytes: 0,
        };
        let mut problems = Vec::new();
        let (mut by_uid, legacy) = store.load_legacy(&mut problems)?;
        let mut bad = 0;
        for (n, raw) in contents.lines().enumerate() {
            match serde_json::from_slice::<Line>(raw) {
                Ok(Line::Set(r)) => {
                    by_uid.insert(r.user.uid, r);
                }
                Ok(Line::Delete(uid)) => {
                    by_uid.remove(&uid);
                }
                Err(e) => {
                    bad += 1;
                    problems.push(format!("{}:{}: {e}", store.journal.path().display(), n + 1));
                }
            }
        }
        if bad > 0 {
            // The unreadable lines are kept for inspection before the compaction drops them.
            let aside = format!("{JOURNAL}.corrupt");
            match write_atomic_with(&store.dir, &aside, &contents.data, 0o600, durability) {
                Ok(()) => problems.push(format!(
                    "{bad} unreadable line(s) skipped; the journal as it was is kept as {}",
                    store.dir.path().join(&aside).display()
                )),
                Err(e) => problems.push(format!("{bad} unreadable line(s) skipped, and {e}")),
            }
        }
        let torn = (contents.torn > 0).then(|| {
            format!(
                "{}: dropped a torn last line of {} bytes (a write cut short; it was never answered)",
                store.journal.path().display(),
                contents.torn
            )
        });
        let records: Vec<Record> = by_uid.into_values().collect();
        store.compact(records.iter().map(|r| (&r.user, &r.sessions)))?;
        // Folded into the journal: the older files can go.
        for name in legacy {
            let _ = store.dir.unlink(&name);
        }
        Ok((
            store,
            Loaded {
                records,
                problems,
                torn,
            },
        ))
    }

    /// Records of the older layout, one `<uid>.json` per user; an unreadable one is renamed
    /// `<name>.corrupt` and reported. Returns them by uid and the names to remove once folded.
    fn load_legacy(
        &self,
        problems: &mut Vec<String>,
    ) -> runplane_sys::Result<(BTreeMap<u32, Record>, Vec<String>)> {
        let mut records = BTreeMap::new();
        let mut names = Vec::new();
        for e in self.dir.entries()? {
            let Some(name) = e.name.to_str().map(str::to_owned) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let parsed = read_file(&self.dir, &name, MAX_RECORD)
                .map_err(|e| e.to_string())
                .and_then(|d| d.ok_or_else(|| "vanished".to_owned()))
                .and_then(|d| serde_json::from_slice::<Record>(&d).map_err(|e| e.to_string()))
                .and_then(|r| {
                    if r.user.uid.to_string() == stem {
                        Ok(r)
                    } else {
                        Err(format!("holds uid {}", r.user.uid))
                    }
                });
            match parsed {
                Ok(r) => {
                    records.insert(r.user.uid, r);
                    names.push(name);
                }
                Err(why) => {
                    let aside = format!("{name}.corrupt");
                    let _ = self.dir.rename(&name, &aside);
                    problems.push(format!(
                        "{}: {why} (kept as {aside})",
                        self.dir.path().join(&name).display()
                    ));
                }
            }
        }
        Ok((records, names))
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The session-id reservation: every id below it may have been handed out already.
    pub fn id_reservation(&self) -> runplane_sys::Result<u64> {
        let d = read_file(&self.dir, ID_FILE, 64)?.unwrap_or_default();
        Ok(std::str::from_utf8(&d)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1))
    }

    /// Records that ids below `until` may be handed out (written before any of them is).
    pub fn reserve_ids(&self, until: u64) -> runplane_sys::Result<()> {
        write_atomic_with(
            &self.dir,
            ID_FILE,
            format!("{until}\n").as_bytes(),
            0o600,
            self.durability,
        )
    }

    /// Appends the user's record as it is now.
    pub fn save<'a>(
        &mut self,
        user: &User,
        sessions: impl IntoIterator<Item = &'a Session>,
    ) -> runplane_sys::Result<()> {
        let line = set_line(user, sessions);
        let n = line.len() as u64 + 1;
        self.journal.append(line)?;
        let old = self.live.insert(user.uid, n).unwrap_or(0);
        self.live_bytes = self.live_bytes - old + n;
        Ok(())
    }

    /// Appends the user's deletion (nothing when the journal holds no record of it).
    pub fn delete(&mut self, uid: u32) -> runplane_sys::Result<()> {
        let Some(old) = self.live.get(&uid).copied() else {
            return Ok(());
        };
        self.journal.append(crate::line::delete(uid))?;
        self.live.remove(&uid);
        self.live_bytes -= old;
        Ok(())
    }

    /// Whether the journal has grown enough that [`Store::compact`] should run.
    pub fn wants_compaction(&self) -> bool {
        let len = self.journal.len();
        len > COMPACT_MIN && len > 2 * self.live_bytes
    }

    /// Replaces the journal with one line per user of `records` (all live users), atomically.
    pub fn compact<'a, I, S>(&mut self, records: I) -> runplane_sys::Result<()>
    where
        I: IntoIterator<Item = (&'a User, S)>,
        S: IntoIterator<Item = &'a Session>,
    {
        let mut live = HashMap::new();
        let mut live_bytes = 0;
        let lines = records.into_iter().map(|(user, sessions)| {
            let line = set_line(user, sessions);
            let n = line.len() as u64 + 1;
            live.insert(user.uid, n);
            live_bytes += n;
            line
        });
        self.journal.rewrite(lines)?;
        self.live = live;
        self.live_bytes = live_bytes;
        Ok(())
    }

    /// The journal's length in bytes.
    pub fn journal_len(&self) -> u64 {
        self.journal.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Leader, Phase, SessionIds};
    use runplane_sys::pidfd::Identity;

    fn user(uid: u32) -> User {
        User {
            uid,
            gid: uid,
            name: format!("u{uid}"),
            size: 1 << 20,
            inodes: 256,
            linger: false,
            phase: Phase::Active,
            generation: 0,
            dir: None,
            sessions: SessionIds::from([7]),
        }
    }

    fn session(id: u64, uid: u32) -> Session {
        Session {
            id,
            uid,
            leader: Leader::new(5, Identity::StartTime(9)),
            opened_at: 1,
        }
    }

    fn uids(l: &Loaded) -> Vec<u32> {
        let mut u: Vec<u32> = l.records.iter().map(|r| r.user.uid).collect();
        u.sort();
        u
    }

    #[test]
    fn the_last_line_of_a_user_wins_across_reopen() {
        let t = tempfile::tempdir().unwrap();
        let state = Dir::open(t.path()).unwrap();
        let (mut s, l) = Store::open(&state).unwrap();
        assert!(l.records.is_empty() && l.problems.is_empty());
        s.save(&user(1000), &[session(7, 1000)]).unwrap();
        s.save(&user(1001), &[]).unwrap();
        let mut later = user(1000);
        later.phase = Phase::Lingering;
        s.save(&later, &[]).unwrap();
        s.delete(1001).unwrap();
        s.delete(1001).unwrap(); // nothing to delete: no line
        s.delete(4242).unwrap();
        let lines = std::fs::read_to_string(t.path().join("users/records.log")).unwrap();
        assert_eq!(lines.lines().count(), 4, "{lines}");
        drop(s);
        let (s, l) = Store::open(&state).unwrap();
        assert_eq!(uids(&l), [1000]);
        assert_eq!(l.records[0].user.phase, Phase::Lingering);
        assert!(l.records[0].sessions.is_empty());
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        // Opening compacted the journal to one line per live user.
        let lines = std::fs::read_to_string(t.path().join("users/records.log")).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert_eq!(s.journal_len(), lines.len() as u64);
        let md = std::fs::metadata(t.path().join("users/records.log")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
            0o600
        );
    }

    #[test]
    fn compaction_is_asked_for_when_the_journal_doubles_what_is_live() {
        let t = tempfile::tempdir().unwrap();
        let state = Dir::open(t.path()).unwrap();
        let (mut s, _) = Store::open(&state).unwrap();
        for uid in 0..10 {
            s.save(&user(uid), &[session(1, uid)]).unwrap();
        }
        let mut changes = 0;
        while !s.wants_compaction() {
            s.save(&user(changes % 10), &[session(2, changes % 10)])
                .unwrap();
            changes += 1;
            assert!(changes < 100_000);
        }
        assert!(s.journal_len() > COMPACT_MIN);
        let users: Vec<(User, [Session; 1])> =
            (0..10).map(|uid| (user(uid), [session(3, uid)])).collect();
        s.compact(users.iter().map(|(u, s)| (u, s))).unwrap();
        assert!(!s.wants_compaction());
        assert!(s.journal_len() < 4096, "{}", s.journal_len());
        s.delete(3).unwrap();
        let (_, l) = Store::open(&state).unwrap();
        assert_eq!(uids(&l), [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert!(
            l.records
                .iter()
                .all(|r| r.sessions == vec![session(3, r.user.uid)])
        );
    }

    #[test]
    fn torn_and_unreadable_lines_are_reported_and_kept_aside() {
        let t = tempfile::tempdir().unwrap();
        let state = Dir::open(t.path()).unwrap();
        let (mut s, _) = Store::open(&state).unwrap();
        s.save(&user(1000), &[session(7, 1000)]).unwrap();
        drop(s);
        let log = t.path().join("users/records.log");
        let mut text = std::fs::read(&log).unwrap();
        text.extend_from_slice(b"{\"set\": not json}\n{\"delete\":1000,\"set\"");
        std::fs::write(&log, &text).unwrap();
        let (_, l) = Store::open(&state).unwrap();
        assert_eq!(
            uids(&l),
            [1000],
            "the bad line and the torn tail change nothing"
        );
        assert_eq!(l.problems.len(), 2, "{:?}", l.problems);
        assert!(l.problems[0].contains("records.log:2:"), "{:?}", l.problems);
        assert!(
            l.problems[1].contains("records.log.corrupt"),
            "{:?}",
            l.problems
        );
        let torn = l.torn.unwrap();
        assert!(torn.contains("torn last line of 20 bytes"), "{torn}");
        let kept = std::fs::read_to_string(t.path().join("users/records.log.corrupt")).unwrap();
        assert!(kept.contains("not json"), "{kept}");
        // Compacted: the next start reads cleanly.
        let (_, l) = Store::open(&state).unwrap();
        assert!(l.problems.is_empty() && l.torn.is_none(), "{l:?}");
        assert_eq!(uids(&l), [1000]);
    }

    #[test]
    fn records_of_the_older_layout_are_folded_in_once() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("users")).unwrap();
        let rec = |uid: u32| {
            serde_json::to_vec(&Record {
                version: 1,
                user: user(uid),
                sessions: vec![session(7, uid)],
            })
            .unwrap()
        };
        std::fs::write(t.path().join("users/1000.json"), rec(1000)).unwrap();
        std::fs::write(t.path().join("users/1001.json"), rec(1001)).unwrap();
        std::fs::write(t.path().join("users/1002.json"), b"{ half a rec").unwrap();
        std::fs::write(t.path().join("users/1003.json"), rec(9)).unwrap();
        std::fs::write(t.path().join("users/next-session-id"), b"2048\n").unwrap();
        let state = Dir::open(t.path()).unwrap();
        let (s, l) = Store::open(&state).unwrap();
        assert_eq!(uids(&l), [1000, 1001]);
        assert_eq!(l.records[0].sessions, vec![session(7, 1000)]);
        assert_eq!(l.problems.len(), 2, "{:?}", l.problems);
        assert!(
            l.problems
                .iter()
                .any(|p| p.contains("1002.json") && p.contains("kept as 1002.json.corrupt"))
        );
        assert!(
            l.problems
                .iter()
                .any(|p| p.contains("1003.json: holds uid 9"))
        );
        assert!(t.path().join("users/1002.json.corrupt").exists());
        assert!(
            !t.path().join("users/1000.json").exists(),
            "folded into the journal"
        );
        assert_eq!(s.id_reservation().unwrap(), 2048);
        drop(s);
        let (s, l) = Store::open(&state).unwrap();
        assert_eq!(uids(&l), [1000, 1001]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        s.reserve_ids(4096).unwrap();
        assert_eq!(s.id_reservation().unwrap(), 4096);
    }

    #[test]
    fn a_symlink_planted_at_the_journal_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("users")).unwrap();
        std::fs::write(outside.path().join("victim"), b"keep").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("victim"),
            t.path().join("users/records.log"),
        )
        .unwrap();
        let state = Dir::open(t.path()).unwrap();
        let e = Store::open(&state).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error()),
            "{e}"
        );
        assert!(e.to_string().contains("users/records.log"), "{e}");
        assert_eq!(
            std::fs::read(outside.path().join("victim")).unwrap(),
            b"keep"
        );
    }
}

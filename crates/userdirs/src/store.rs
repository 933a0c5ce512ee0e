//! The userdirs state on disk: one record per user in `<state>/users/<uid>.json`, written
//! atomically on every change, read back after a restart. Per-user files keep a change to one
//! user O(1) whatever the number of users.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use runplane_sys::atomic::{Durability, is_volatile, read_file, write_atomic_with};
use runplane_sys::dir::{Dir, Resolve};

use crate::lifecycle::{Session, User};

/// Largest record read back (a user with thousands of sessions fits easily).
const MAX_RECORD: usize = 4 << 20;

/// Where the session-id reservation is kept (not a `.json` record).
const ID_FILE: &str = "next-session-id";

/// How many ids one reservation covers: one write per this many sessions.
pub const ID_BLOCK: u64 = 1024;

/// A user and its sessions, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub user: User,
    pub sessions: Vec<Session>,
}

/// The `users` directory of the state directory.
#[derive(Debug)]
pub struct Store {
    dir: Dir,
    /// No fsync on a tmpfs (the normal place: under /run): it cannot add durability there.
    durability: Durability,
}

impl Store {
    /// Opens (creating 0700) `<state>/users`.
    pub fn open(state: &Dir) -> runplane_sys::Result<Store> {
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
        Ok(Store { dir, durability })
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

    pub fn save(&self, user: &User, sessions: Vec<Session>) -> runplane_sys::Result<()> {
        let rec = Record {
            version: 1,
            user: user.clone(),
            sessions,
        };
        let data = serde_json::to_vec(&rec).expect("record serializes");
        write_atomic_with(
            &self.dir,
            format!("{}.json", user.uid),
            &data,
            0o600,
            self.durability,
        )
    }

    pub fn delete(&self, uid: u32) -> runplane_sys::Result<()> {
        match self.dir.unlink(format!("{uid}.json")) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => Ok(()),
            r => r,
        }
    }

    /// Reads every record. A record that cannot be read is renamed `<name>.corrupt` (kept for
    /// inspection, never silently lost) and reported.
    pub fn load(&self) -> runplane_sys::Result<(Vec<Record>, Vec<String>)> {
        let mut records = Vec::new();
        let mut problems = Vec::new();
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
                Ok(r) => records.push(r),
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
        records.sort_by_key(|r| r.user.uid);
        Ok((records, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Leader, Phase};
    use std::collections::BTreeSet;

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
            sessions: BTreeSet::from([7]),
        }
    }

    #[test]
    fn round_trips_and_sets_corrupt_records_aside() {
        let t = tempfile::tempdir().unwrap();
        let state = Dir::open(t.path()).unwrap();
        let s = Store::open(&state).unwrap();
        let sess = Session {
            id: 7,
            uid: 1000,
            leader: Leader {
                pid: 5,
                start_time: 9,
            },
            opened_at: 1,
        };
        s.save(&user(1000), vec![sess.clone()]).unwrap();
        s.save(&user(1001), vec![]).unwrap();
        std::fs::write(t.path().join("users/1002.json"), b"{ half a rec").unwrap();
        std::fs::write(
            t.path().join("users/1003.json"),
            serde_json::to_vec(&Record {
                version: 1,
                user: user(9),
                sessions: vec![],
            })
            .unwrap(),
        )
        .unwrap();
        let (recs, problems) = s.load().unwrap();
        assert_eq!(
            recs.iter().map(|r| r.user.uid).collect::<Vec<_>>(),
            [1000, 1001]
        );
        assert_eq!(recs[0].sessions, vec![sess]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("1002.json") && p.contains("kept as 1002.json.corrupt"))
        );
        assert!(t.path().join("users/1002.json.corrupt").exists());
        assert_eq!(s.id_reservation().unwrap(), 1);
        s.reserve_ids(2048).unwrap();
        assert_eq!(s.id_reservation().unwrap(), 2048);
        assert_eq!(
            s.load().unwrap().0.len(),
            2,
            "the reservation is not a record"
        );
        s.delete(1000).unwrap();
        s.delete(1000).unwrap();
        assert_eq!(s.load().unwrap().0.len(), 1);
        let md = std::fs::metadata(t.path().join("users/1001.json")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
            0o600
        );
    }
}

//! The lifecycle of user runtime directories, as a pure state machine: requests and
//! observations go in, [`Action`]s for the daemon to carry out come out. No I/O, no clock:
//! `now` is passed in (Unix milliseconds), so every rule is tested without sleeping.
//!
//! A user's directory exists while any of these holds:
//! - the user has a session (a login: opened by PAM, ended by close or by the leader's death);
//! - the user lingers;
//! - `lifetime = "processes"` and processes of the uid still run after the last session;
//! - the grace period after that has not expired (a login in it cancels the removal).
//!
//! Phases of a user: `Active` (sessions) → after the last session: `Lingering` (linger on),
//! `WaitingForProcesses` (lifetime = processes) or `Grace` → removal. A generation number,
//! bumped whenever a grace period starts or is cancelled, makes a stale timer harmless.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use runplane_sys::pidfd::Identity;
use serde::{Deserialize, Serialize};

use crate::config::Lifetime;

/// A session id, unique for the daemon's state directory (never reused after a restart).
pub type SessionId = u64;

/// The process a session belongs to, identified across pid reuse: exactly one of
/// `pidfs_ino` (Linux >= 6.9) and `start_time` is set (see `runplane_sys::pidfd::Identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub pid: i32,
    /// The inode number of the leader's pidfds on pidfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidfs_ino: Option<u64>,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
}

impl Leader {
    pub fn new(pid: i32, identity: Identity) -> Leader {
        let (pidfs_ino, start_time) = match identity {
            Identity::PidfsInode(i) => (Some(i), None),
            Identity::StartTime(t) => (None, Some(t)),
        };
        Leader {
            pid,
            pidfs_ino,
            start_time,
        }
    }

    /// `None` for a record that names no identity (never written so; read as dead).
    pub fn identity(&self) -> Option<Identity> {
        match (self.pidfs_ino, self.start_time) {
            (Some(i), _) => Some(Identity::PidfsInode(i)),
            (None, Some(t)) => Some(Identity::StartTime(t)),
            (None, None) => None,
        }
    }
}

/// One login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub uid: u32,
    pub leader: Leader,
    /// Unix milliseconds.
    pub opened_at: u64,
}

/// Where a user's directory is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// At least one session.
    Active,
    /// No session, kept by linger.
    Lingering,
    /// No session; processes of the uid still run (lifetime = processes).
    WaitingForProcesses,
    /// No session and nothing else keeps it: removed at `deadline` (Unix ms) unless a login
    /// comes first.
    Grace { deadline: u64 },
}

impl Phase {
    /// The name used in status output.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Active => "active",
            Phase::Lingering => "lingering",
            Phase::WaitingForProcesses => "waiting-for-processes",
            Phase::Grace { .. } => "grace",
        }
    }
}

/// How the directory is backed, recorded once it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A tmpfs runplane mounted.
    Tmpfs,
    /// A tmpfs found in place with the right type, owner and mode, and kept.
    Adopted,
    /// A plain 0700 directory: mounting was refused (EPERM/EACCES, e.g. in a container).
    FallbackDir,
}

/// What the effects recorded about the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirInfo {
    pub backend: Backend,
    /// Mount id (`statx` `STATX_MNT_ID`, mountinfo's) of the tmpfs, to find it in the mount
    /// table and recognise it after a restart.
    pub mount_id: Option<NonZeroU64>,
    /// Its unique id (`STATX_MNT_ID_UNIQUE`, Linux >= 6.8), which no later mount takes: with
    /// it, a mount made where the tmpfs was after someone unmounted it is not taken for it
    /// though it got the same `mount_id`. `None` on older kernels (and in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_unique: Option<NonZeroU64>,
    /// Whether `noswap` is in effect.
    pub noswap: bool,
}

impl DirInfo {
    /// The mount the directory was made as; `None` for a plain directory.
    pub fn mount(&self) -> Option<runplane_sys::dir::MountIds> {
        self.mount_id.map(|id| runplane_sys::dir::MountIds {
            id: id.get(),
            unique: self.mount_unique.map(NonZeroU64::get),
        })
    }
}

/// A user with a directory (or one being created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    /// Size and inode limits the directory was created with.
    pub size: u64,
    pub inodes: u64,
    pub linger: bool,
    pub phase: Phase,
    pub generation: u64,
    /// `None` until the directory exists.
    pub dir: Option<DirInfo>,
    pub sessions: SessionIds,
}

/// A set of session ids, ascending: a user's sessions, a leader's. Nearly always one, which
/// it holds without an allocation (a `BTreeSet` allocated a node of 11 for it: about 100 bytes
/// for every user and every leader); ids are handed out ascending, so an insert appends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<SessionId>", into = "Vec<SessionId>")]
pub struct SessionIds(smallvec::SmallVec<[SessionId; 1]>);

impl SessionIds {
    /// Adds `id`; false if it was there.
    pub fn insert(&mut self, id: SessionId) -> bool {
        if self.0.last().is_some_and(|&l| l < id) {
            self.0.push(id);
            return true;
        }
        match self.0.binary_search(&id) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, id);
                true
            }
        }
    }

    /// Takes `id` out; false if it was not there.
    pub fn remove(&mut self, id: &SessionId) -> bool {
        let Ok(at) = self.0.binary_search(id) else {
            return false;
        };
        self.0.remove(at);
        // What a user's many sessions took goes back once most have ended.
        if self.0.spilled() && self.0.len() < self.0.capacity() / 4 {
            self.0.shrink_to_fit();
        }
        true
    }

    pub fn contains(&self, id: &SessionId) -> bool {
        self.0.binary_search(id).is_ok()
    }

    pub fn clear(&mut self) {
        self.0 = smallvec::SmallVec::new();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids, ascending.
    pub fn iter(&self) -> std::slice::Iter<'_, SessionId> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a SessionIds {
    type Item = &'a SessionId;
    type IntoIter = std::slice::Iter<'a, SessionId>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<SessionId> for SessionIds {
    fn from_iter<I: IntoIterator<Item = SessionId>>(ids: I) -> Self {
        let mut v: smallvec::SmallVec<[SessionId; 1]> = ids.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        SessionIds(v)
    }
}

impl From<Vec<SessionId>> for SessionIds {
    fn from(ids: Vec<SessionId>) -> Self {
        ids.into_iter().collect()
    }
}

impl From<SessionIds> for Vec<SessionId> {
    fn from(ids: SessionIds) -> Self {
        ids.0.into_vec()
    }
}

impl<const N: usize> From<[SessionId; N]> for SessionIds {
    fn from(ids: [SessionId; N]) -> Self {
        ids.into_iter().collect()
    }
}

/// Limits and timing the machine is run with (the configuration, sizes resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub lifetime: Lifetime,
    pub grace_ms: u64,
    /// Per-user size and inodes in bytes.
    pub size: u64,
    pub inodes: u64,
    /// Sum of all users' sizes, if limited.
    pub budget: Option<u64>,
    pub min_size: u64,
}

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make `/run/user/<uid>` with these limits, then report [`Lifecycle::created`] or
    /// [`Lifecycle::create_failed`].
    Create {
        uid: u32,
        gid: u32,
        size: u64,
        inodes: u64,
    },
    /// Write the user's record (atomically).
    Persist { uid: u32 },
    /// Watch the uid's processes; report [`Lifecycle::processes_gone`] when none remain.
    WatchProcesses { uid: u32 },
    /// Stop watching the uid's processes.
    UnwatchProcesses { uid: u32 },
    /// Call [`Lifecycle::grace_expired`] with this generation at `deadline` (Unix ms).
    ArmGrace {
        uid: u32,
        generation: u64,
        deadline: u64,
    },
    /// Empty, unmount and remove the directory (by uid: the account may be gone), then
    /// delete the user's record. The user is no longer in the table: its name and limits
    /// come along, for status to show the removal (empty and 0 if it was never in it).
    Remove {
        uid: u32,
        dir: Option<DirInfo>,
        name: String,
        size: u64,
        inodes: u64,
    },
}

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the runtime-dir budget is exhausted: {left} bytes left for uid {uid}, less than userdirs.min_size ({min})"
    )]
    Budget { uid: u32, left: u64, min: u64 },
    #[error("no session {0}")]
    NoSuchSession(SessionId),
}

/// The table of users and sessions.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    policy: Policy,
    users: BTreeMap<u32, User>,
    sessions: BTreeMap<SessionId, Session>,
    next_id: SessionId,
    /// Sum of all users' sizes and of those being removed, kept as users come and go (the
    /// budget check is O(1)).
    used: u64,
    /// Sizes of users removed from the table whose dirs are still being removed: a tmpfs
    /// holds its memory until it is emptied, so its size stays in the budget until
    /// [`Lifecycle::removed`].
    releasing: std::collections::HashMap<u32, u64>,
    /// Sessions by leader pid (the nesting check is O(1) per ancestor).
    by_leader: std::collections::HashMap<i32, SessionIds>,
}

impl Lifecycle {
    /// A table whose session ids start at `id_floor`. The daemon persists a reservation above
    /// every id it hands out (see `store::IdReservation`), so that ids stay unique across
    /// restarts: a stale close from before a restart can never end a newer session.
    pub fn new(policy: Policy, id_floor: SessionId) -> Lifecycle {
        Lifecycle {
            policy,
            users: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_id: id_floor.max(1),
            used: 0,
            releasing: std::collections::HashMap::new(),
            by_leader: std::collections::HashMap::new(),
        }
    }

    /// The id the next session will get.
    pub fn next_id(&self) -> SessionId {
        self.next_id
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Changes limits and timing (on reload); existing directories keep their sizes.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn user(&self, uid: u32) -> Option<&User> {
        self.users.get(&uid)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// The users above `after` (all when `None`), by uid.
    pub fn users_after(&self, after: Option<u32>) -> impl Iterator<Item = &User> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.users.range((from, Unbounded)).map(|(_, u)| u)
    }

    /// The sessions above `after` (all when `None`), by id.
    pub fn sessions_after(&self, after: Option<SessionId>) -> impl Iterator<Item = &Session> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.sessions.range((from, Unbounded)).map(|(_, s)| s)
    }

    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// How many sessions are open, over all users.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// The sessions of `uid`, for its record.
    pub fn sessions_of(&self, uid: u32) -> impl Iterator<Item = &Session> + Clone {
        (self.users.get(&uid).into_iter())
            .flat_map(|u| u.sessions.iter())
            .filter_map(|id| self.sessions.get(id))
    }

    /// Bytes of the budget still free (`None` without a budget).
    pub fn budget_left(&self) -> Option<u64> {
        self.policy.budget.map(|b| b.saturating_sub(self.used))
    }

    /// Sum of the sizes of all users' directories, those being removed included.
    pub fn budget_used(&self) -> u64 {
        self.used
    }

    /// The removal of `uid`'s dir (after [`Action::Remove`]) is over: its size leaves the
    /// budget.
    pub fn removed(&mut self, uid: u32) {
        if let Some(size) = self.releasing.remove(&uid) {
            self.used -= size;
        }
    }

    /// The sessions whose leader is `pid`.
    pub fn sessions_led_by(&self, pid: i32) -> impl Iterator<Item = &Session> {
        self.by_leader
            .get(&pid)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
    }

    fn insert_session(&mut self, s: Session) {
        self.by_leader.entry(s.leader.pid).or_default().insert(s.id);
        self.sessions.insert(s.id, s);
    }

    fn remove_session(&mut self, id: SessionId) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        if let Some(set) = self.by_leader.get_mut(&s.leader.pid) {
            set.remove(&id);
            if set.is_empty() {
                self.by_leader.remove(&s.leader.pid);
            }
        }
        Some(s)
    }

    fn insert_user(&mut self, u: User) {
        self.used += u.size;
        if let Some(old) = self.users.insert(u.uid, u) {
            self.used -= old.size;
        }
    }

    /// Takes `uid` out of the table for its removal: its size stays in the budget until
    /// [`Lifecycle::removed`].
    fn remove_user(&mut self, uid: u32) -> Option<User> {
        let u = self.users.remove(&uid)?;
        *self.releasing.entry(uid).or_default() += u.size;
        Some(u)
    }

    fn new_user(
        &mut self,
        uid: u32,
        gid: u32,
        name: &str,
        phase: Phase,
    ) -> Result<Vec<Action>, Refusal> {
        let size = match self.budget_left() {
            None => self.policy.size,
            Some(left) if left >= self.policy.min_size => self.policy.size.min(left / 4096 * 4096),
            Some(left) => {
                return Err(Refusal::Budget {
                    uid,
                    left,
                    min: self.policy.min_size,
                });
            }
        };
        // A budget-shrunk directory gets proportionally fewer inodes.
        let inodes = if size == self.policy.size {
            self.policy.inodes
        } else {
            (self.policy.inodes as u128 * size as u128 / self.policy.size.max(1) as u128).max(1)
                as u64
        };
        self.insert_user(User {
            uid,
            gid,
            name: name.to_owned(),
            size,
            inodes,
            linger: matches!(phase, Phase::Lingering),
            phase,
            generation: 0,
            dir: None,
            sessions: SessionIds::default(),
        });
        Ok(vec![
            Action::Create {
                uid,
                gid,
                size,
                inodes,
            },
            Action::Persist { uid },
        ])
    }

    /// Opens a session for `uid` led by `leader`. Creates the user (and asks for the
    /// directory) on the first login; cancels a pending removal.
    pub fn open(
        &mut self,
        uid: u32,
        gid: u32,
        name: &str,
        leader: Leader,
        now: u64,
    ) -> Result<(SessionId, Vec<Action>), Refusal> {
        let mut actions = match self.users.get_mut(&uid) {
            Some(u) => {
                let mut a = Vec::new();
                match u.phase {
                    Phase::WaitingForProcesses => {
                        a.push(Action::UnwatchProcesses { uid });
                        u.generation += 1;
                    }
                    Phase::Grace { .. } => u.generation += 1,
                    Phase::Active | Phase::Lingering => {}
                }
                u.phase = Phase::Active;
                a.push(Action::Persist { uid });
                a
            }
            None => self.new_user(uid, gid, name, Phase::Active)?,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.insert_session(Session {
            id,
            uid,
            leader,
            opened_at: now,
        });
        self.users
            .get_mut(&uid)
            .expect("user just ensured")
            .sessions
            .insert(id);
        actions.dedup();
        Ok((id, actions))
    }

    /// The directory was made as asked.
    pub fn created(&mut self, uid: u32, info: DirInfo) -> Vec<Action> {
        match self.users.get_mut(&uid) {
            Some(u) => {
                u.dir = Some(info);
                vec![Action::Persist { uid }]
            }
            None => vec![],
        }
    }

    /// The directory could not be made: the user and every session of it are dropped.
    pub fn create_failed(&mut self, uid: u32) -> Vec<Action> {
        let (mut name, mut size, mut inodes) = (String::new(), 0, 0);
        if let Some(u) = self.remove_user(uid) {
            for &id in &u.sessions {
                self.remove_session(id);
            }
            (name, size, inodes) = (u.name, u.size, u.inodes);
        }
        vec![Action::Remove {
            uid,
            dir: None,
            name,
            size,
            inodes,
        }]
    }

    /// Ends a session (closed by PAM, or its leader died).
    pub fn close(&mut self, id: SessionId, now: u64) -> Result<Vec<Action>, Refusal> {
        let s = self.remove_session(id).ok_or(Refusal::NoSuchSession(id))?;
        let Some(u) = self.users.get_mut(&s.uid) else {
            return Ok(vec![]);
        };
        u.sessions.remove(&id);
        if !u.sessions.is_empty() {
            return Ok(vec![Action::Persist { uid: s.uid }]);
        }
        Ok(self.unpinned(s.uid, now))
    }

    /// The user has no session: decide what keeps the directory, if anything.
    fn unpinned(&mut self, uid: u32, now: u64) -> Vec<Action> {
        let (lifetime, grace) = (self.policy.lifetime, self.policy.grace_ms);
        let Some(u) = self.users.get_mut(&uid) else {
            return vec![];
        };
        if u.linger {
            u.phase = Phase::Lingering;
            return vec![Action::Persist { uid }];
        }
        match lifetime {
            Lifetime::Processes => {
                u.phase = Phase::WaitingForProcesses;
                vec![Action::Persist { uid }, Action::WatchProcesses { uid }]
            }
            Lifetime::Sessions => Self::start_grace(u, now, grace),
        }
    }

    fn start_grace(u: &mut User, now: u64, grace: u64) -> Vec<Action> {
        u.generation += 1;
        let deadline = now.saturating_add(grace);
        u.phase = Phase::Grace { deadline };
        vec![
            Action::Persist { uid: u.uid },
            Action::ArmGrace {
                uid: u.uid,
                generation: u.generation,
                deadline,
            },
        ]
    }

    /// No process of `uid` runs any more (after [`Action::WatchProcesses`]).
    pub fn processes_gone(&mut self, uid: u32, now: u64) -> Vec<Action> {
        let grace = self.policy.grace_ms;
        match self.users.get_mut(&uid) {
            Some(u) if u.phase == Phase::WaitingForProcesses => Self::start_grace(u, now, grace),
            _ => vec![],
        }
    }

    /// A grace timer fired. Removes the user if it is still in that grace period (each grace
    /// period has a generation of its own). The timer, not the wall clock, says the period is
    /// over: it runs on the monotonic clock, while the deadline is recorded in wall-clock time,
    /// which NTP or `date -s` may step back or slew while the timer runs; a timer that fired
    /// with the wall clock short of the deadline must still remove, or the dir would stay.
    pub fn grace_expired(&mut self, uid: u32, generation: u64) -> Vec<Action> {
        match self.users.get(&uid) {
            Some(u)
                if u.generation == generation
                    && u.sessions.is_empty()
                    && !u.linger
                    && matches!(u.phase, Phase::Grace { .. }) =>
            {
                let u = self.remove_user(uid).expect("present");
                vec![Action::Remove {
                    uid,
                    dir: u.dir,
                    name: u.name,
                    size: u.size,
                    inodes: u.inodes,
                }]
            }
            _ => vec![],
        }
    }

    /// Turns linger on or off for `uid`. On: the directory is made if missing and kept
    /// without sessions. Off: a user without sessions goes the way of a last logout.
    pub fn set_linger(
        &mut self,
        uid: u32,
        gid: u32,
        name: &str,
        on: bool,
        now: u64,
    ) -> Result<Vec<Action>, Refusal> {
        let Some(u) = self.users.get_mut(&uid) else {
            return if on {
                self.new_user(uid, gid, name, Phase::Lingering)
            } else {
                Ok(vec![])
            };
        };
        if u.linger == on {
            return Ok(vec![]);
        }
        u.linger = on;
        if !u.sessions.is_empty() {
            return Ok(vec![Action::Persist { uid }]);
        }
        if on {
            let mut a = Vec::new();
            if u.phase == Phase::WaitingForProcesses {
                a.push(Action::UnwatchProcesses { uid });
            }
            u.generation += 1;
            u.phase = Phase::Lingering;
            a.push(Action::Persist { uid });
            return Ok(a);
        }
        Ok(self.unpinned(uid, now))
    }

    /// Rebuilds the table from records written before a restart. `alive` says whether a
    /// session's leader is still the same live process. Dead sessions are dropped; a user left
    /// without sessions goes the way of a last logout (its grace period, if it was in one,
    /// resumes with its original deadline, but ends within the configured grace from `now`:
    /// a wall clock stepped back since, or a record from a longer grace, must not keep a dir
    /// for longer than that).
    pub fn restore(
        &mut self,
        records: Vec<(User, Vec<Session>)>,
        alive: impl Fn(&Session) -> bool,
        now: u64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for (mut user, sessions) in records {
            let uid = user.uid;
            user.sessions.clear();
            for s in sessions {
                self.next_id = self.next_id.max(s.id + 1);
                if s.uid == uid && alive(&s) {
                    user.sessions.insert(s.id);
                    self.insert_session(s);
                }
            }
            let phase = user.phase;
            let has_sessions = !user.sessions.is_empty();
            self.insert_user(user);
            let u = self.users.get_mut(&uid).expect("inserted");
            if has_sessions {
                u.phase = Phase::Active;
                actions.push(Action::Persist { uid });
                continue;
            }
            match phase {
                Phase::Grace { deadline } if !u.linger => {
                    let latest = now.saturating_add(self.policy.grace_ms);
                    if deadline > latest {
                        u.phase = Phase::Grace { deadline: latest };
                        actions.push(Action::Persist { uid });
                    }
                    actions.push(Action::ArmGrace {
                        uid,
                        generation: u.generation,
                        deadline: deadline.min(latest),
                    });
                }
                _ => actions.extend(self.unpinned(uid, now)),
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn session_ids_are_a_set_in_ascending_order_whatever_order_they_come_in() {
        let mut s = SessionIds::default();
        assert!(s.is_empty());
        for id in [5, 9, 7, 1, 9, 5] {
            s.insert(id);
        }
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [1, 5, 7, 9]);
        assert!(!s.insert(7), "a second insert of an id");
        assert!(s.remove(&5) && !s.remove(&5) && !s.remove(&4));
        assert!(s.contains(&9) && !s.contains(&5));
        assert_eq!(s.len(), 3);
        // Read back from a record out of order and with repeats: the same set.
        let read: SessionIds = serde_json::from_str("[9, 1, 7, 1]").unwrap();
        assert_eq!(read, s);
        assert_eq!(serde_json::to_string(&s).unwrap(), "[1,7,9]");
        s.clear();
        assert!(s.is_empty() && s == SessionIds::default());
    }

    #[test]
    fn session_ids_give_back_what_many_sessions_took() {
        let mut s: SessionIds = (0..1000).collect();
        for id in 0..990 {
            s.remove(&id);
        }
        assert_eq!(s.len(), 10);
        assert!(s.0.capacity() < 1000 / 4, "capacity {}", s.0.capacity());
        for id in 990..999 {
            s.remove(&id);
        }
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [999]);
    }

    fn policy(lifetime: Lifetime) -> Policy {
        Policy {
            lifetime,
            grace_ms: 10_000,
            size: 1 << 20,
            inodes: 256,
            budget: None,
            min_size: 1 << 18,
        }
    }

    fn leader(pid: i32) -> Leader {
        Leader::new(pid, Identity::PidfsInode(100 + pid as u64))
    }

    /// The removal of alice's dir (uid 1000, with `policy`'s limits).
    fn alice_removed(dir: Option<DirInfo>) -> Action {
        Action::Remove {
            uid: 1000,
            dir,
            name: "alice".into(),
            size: 1 << 20,
            inodes: 256,
        }
    }

    const INFO: DirInfo = DirInfo {
        backend: Backend::Tmpfs,
        mount_id: NonZeroU64::new(7),
        mount_unique: NonZeroU64::new((1 << 31) + 7),
        noswap: true,
    };

    #[test]
    fn leader_records_name_one_identity_and_read_older_ones() {
        let ino = Leader::new(7, Identity::PidfsInode(42));
        let text = serde_json::to_string(&ino).unwrap();
        assert_eq!(text, r#"{"pid":7,"pidfs_ino":42}"#);
        assert_eq!(serde_json::from_str::<Leader>(&text).unwrap(), ino);
        // The shape records had before pidfs identities: a start time.
        let old: Leader = serde_json::from_str(r#"{"pid":7,"start_time":900}"#).unwrap();
        assert_eq!(old.identity(), Some(Identity::StartTime(900)));
        assert_eq!(old, Leader::new(7, Identity::StartTime(900)));
        let none: Leader = serde_json::from_str(r#"{"pid":7}"#).unwrap();
        assert_eq!(none.identity(), None);
    }

    #[test]
    fn first_login_creates_second_shares_last_logout_starts_grace() {
        let mut l = Lifecycle::new(policy(Lifetime::Sessions), 1);
        let (a, acts) = l.open(1000, 100, "alice", leader(10), 0).unwrap();
        assert_eq!(
            acts,
            vec![
                Action::Create {
                    uid: 1000,
                    gid: 100,
                    size: 1 << 20,
                    inodes: 256
                },
                Action::Persist { uid: 1000 }
            ]
        );
        assert_eq!(l.created(1000, INFO), vec![Action::Persist { uid: 1000 }]);
        let (b, acts) = l.open(1000, 100, "alice", leader(11), 5).unwrap();
        assert_eq!(acts, vec![Action::Persist { uid: 1000 }]);
        assert_ne!(a, b);
        assert_eq!(l.close(a, 6).unwrap(), vec![Action::Persist { uid: 1000 }]);
        assert_eq!(l.user(1000).unwrap().phase, Phase::Active);
        let acts = l.close(b, 7).unwrap();
        assert_eq!(
            acts,
            vec![
                Action::Persist { uid: 1000 },
                Action::ArmGrace {
                    uid: 1000,
                    generation: 1,
                    deadline: 10_007
                }
            ]
        );
        assert_eq!(l.user(1000).unwrap().phase.name(), "grace");
        // The wrong generation (a timer of an earlier grace period): nothing.
        assert_eq!(l.grace_expired(1000, 0), vec![]);
        assert_eq!(l.grace_expired(1000, 1), vec![alice_removed(Some(INFO))]);
        assert!(l.user(1000).is_none());
        assert_eq!(l.close(a, 8), Err(Refusal::NoSuchSession(a)));
    }

    #[test]
    fn login_during_grace_cancels_removal() {
        let mut l = Lifecycle::new(policy(Lifetime::Sessions), 1);
        let (a, _) = l.open(1000, 100, "alice", leader(10), 0).unwrap();
        l.created(1000, INFO);
        l.close(a, 1).unwrap();
        let (_b, acts) = l.open(1000, 100, "alice", leader(12), 2).unwrap();
        assert_eq!(
            acts,
            vec![Action::Persist { uid: 1000 }],
            "no new Create: the dir is kept"
        );
        assert_eq!(l.grace_expired(1000, 1), vec![], "the old timer is stale");
        assert_eq!(l.user(1000).unwrap().phase, Phase::Active);
    }

    #[test]
    fn processes_lifetime_waits_for_processes_then_grace() {
        let mut l = Lifecycle::new(policy(Lifetime::Processes), 1);
        let (a, _) = l.open(1000, 100, "alice", leader(10), 0).unwrap();
        assert_eq!(
            l.close(a, 1).unwrap(),
            vec![
                Action::Persist { uid: 1000 },
                Action::WatchProcesses { uid: 1000 }
            ]
        );
        assert_eq!(l.user(1000).unwrap().phase.name(), "waiting-for-processes");
        // A login while tmux still runs: stop watching, active again.
        let (b, acts) = l.open(1000, 100, "alice", leader(11), 2).unwrap();
        assert_eq!(
            acts,
            vec![
                Action::UnwatchProcesses { uid: 1000 },
                Action::Persist { uid: 1000 }
            ]
        );
        l.close(b, 3).unwrap();
        let acts = l.processes_gone(1000, 50);
        assert_eq!(
            acts[1],
            Action::ArmGrace {
                uid: 1000,
                generation: 2,
                deadline: 10_050
            }
        );
        assert_eq!(l.processes_gone(1000, 60), vec![], "only from waiting");
        assert_eq!(l.grace_expired(1000, 2).len(), 1);
    }

    #[test]
    fn linger_keeps_the_dir_and_off_lets_it_go() {
        let mut l = Lifecycle::new(policy(Lifetime::Sessions), 1);
        let acts = l.set_linger(1000, 100, "alice", true, 0).unwrap();
        assert!(matches!(acts[0], Action::Create { uid: 1000, .. }));
        assert_eq!(l.user(1000).unwrap().phase, Phase::Lingering);
        let (a, acts) = l.open(1000, 100, "alice", leader(10), 1).unwrap();
        assert_eq!(acts, vec![Action::Persist { uid: 1000 }]);
        assert_eq!(l.close(a, 2).unwrap(), vec![Action::Persist { uid: 1000 }]);
        assert_eq!(l.user(1000).unwrap().phase, Phase::Lingering);
        let acts = l.set_linger(1000, 100, "alice", false, 3).unwrap();
        assert!(matches!(
            acts[1],
            Action::ArmGrace {
                uid: 1000,
                deadline: 10_003,
                ..
            }
        ));
        // Linger on during grace cancels it.
        assert_eq!(
            l.set_linger(1000, 100, "alice", true, 4).unwrap(),
            vec![Action::Persist { uid: 1000 }]
        );
        assert_eq!(l.grace_expired(1000, 1), vec![]);
        assert_eq!(l.set_linger(2000, 200, "bob", false, 5).unwrap(), vec![]);
    }

    #[test]
    fn budget_shrinks_new_dirs_and_refuses_below_min_size() {
        let mut p = policy(Lifetime::Sessions);
        p.budget = Some((1 << 20) + (1 << 19) + 100);
        let mut l = Lifecycle::new(p, 1);
        l.open(1, 1, "a", leader(1), 0).unwrap();
        let (_, acts) = l.open(2, 2, "b", leader(2), 0).unwrap();
        assert_eq!(
            acts[0],
            Action::Create {
                uid: 2,
                gid: 2,
                size: 1 << 19,
                inodes: 128
            }
        );
        assert_eq!(l.budget_left(), Some(100));
        let e = l.open(3, 3, "c", leader(3), 0).unwrap_err();
        assert_eq!(
            e,
            Refusal::Budget {
                uid: 3,
                left: 100,
                min: 1 << 18
            }
        );
        assert!(e.to_string().contains("budget is exhausted"));
        assert!(l.user(3).is_none() && l.sessions().count() == 2);
        // A further login of an existing user costs nothing.
        assert!(l.open(2, 2, "b", leader(4), 0).is_ok());
    }

    #[test]
    fn a_removed_dirs_size_stays_in_the_budget_until_its_removal_is_over() {
        let mut p = policy(Lifetime::Sessions);
        p.budget = Some((1 << 20) + (1 << 18));
        let mut l = Lifecycle::new(p, 1);
        let (a, _) = l.open(1, 1, "a", leader(1), 0).unwrap();
        l.close(a, 0).unwrap();
        assert!(matches!(
            l.grace_expired(1, 1)[..],
            [Action::Remove { uid: 1, .. }]
        ));
        assert!(l.user(1).is_none());
        // Its tmpfs still holds what it held: a new user gets only what the budget has left.
        assert_eq!(l.budget_used(), 1 << 20);
        let (_, acts) = l.open(2, 2, "b", leader(2), 0).unwrap();
        assert!(
            matches!(acts[0], Action::Create { uid: 2, size, .. } if size == 1 << 18),
            "{acts:?}"
        );
        assert_eq!(l.budget_left(), Some(0));
        assert!(matches!(
            l.open(3, 3, "c", leader(3), 0),
            Err(Refusal::Budget {
                uid: 3,
                left: 0,
                ..
            })
        ));
        // Once it is gone, its size is free again (once: a second report changes nothing).
        l.removed(1);
        l.removed(1);
        assert_eq!(l.budget_used(), 1 << 18);
        let (_, acts) = l.open(3, 3, "c", leader(3), 0).unwrap();
        assert!(matches!(acts[0], Action::Create { uid: 3, size, .. } if size == 1 << 20));
    }

    #[test]
    fn failed_creation_drops_user_and_sessions() {
        let mut l = Lifecycle::new(policy(Lifetime::Sessions), 1);
        let (a, _) = l.open(1000, 100, "alice", leader(10), 0).unwrap();
        assert_eq!(l.create_failed(1000), vec![alice_removed(None)]);
        assert!(l.user(1000).is_none() && l.session(a).is_none());
    }

    #[test]
    fn restore_readopts_live_sessions_resumes_grace_and_unpins_dead() {
        let mut l = Lifecycle::new(policy(Lifetime::Sessions), 1);
        let (a, _) = l.open(1, 1, "live", leader(10), 0).unwrap();
        let (_b, _) = l.open(2, 2, "dead", leader(20), 0).unwrap();
        let (c, _) = l.open(3, 3, "grace", leader(30), 0).unwrap();
        l.close(c, 1_000).unwrap(); // grace until 11_000
        let records: Vec<_> = l
            .users()
            .map(|u| (u.clone(), l.sessions_of(u.uid).cloned().collect()))
            .collect();

        // The daemon starts the new table at its on-disk reservation, which is above every id
        // handed out (here: the old table's next id).
        let mut r = Lifecycle::new(policy(Lifetime::Sessions), l.next_id());
        let acts = r.restore(records, |s| s.leader.pid == 10, 5_000);
        assert_eq!(r.user(1).unwrap().phase, Phase::Active);
        assert!(r.session(a).is_some());
        assert!(
            acts.contains(&Action::ArmGrace {
                uid: 3,
                generation: 1,
                deadline: 11_000
            }),
            "{acts:?}"
        );
        assert!(
            acts.contains(&Action::ArmGrace {
                uid: 2,
                generation: 1,
                deadline: 15_000
            }),
            "{acts:?}"
        );
        // New ids never collide with restored ones.
        let (d, _) = r.open(1, 1, "live", leader(11), 6_000).unwrap();
        assert!(d > c);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Open(u32),
        Close(usize),
        Gone(u32),
        Expire(u32),
        Linger(u32, bool),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..6).prop_map(Op::Open),
            (0usize..16).prop_map(Op::Close),
            (0u32..6).prop_map(Op::Gone),
            (0u32..6).prop_map(Op::Expire),
            ((0u32..6), any::<bool>()).prop_map(|(u, b)| Op::Linger(u, b)),
            (0u64..30_000).prop_map(Op::Tick),
        ]
    }

    #[test]
    fn a_grace_period_ends_when_its_timer_fires_whatever_the_wall_clock_says() {
        let mut l = Lifecycle::new(policy(Lifetime::Sessions), 1);
        let (a, _) = l.open(1000, 100, "alice", leader(10), 50_000).unwrap();
        l.created(1000, INFO);
        let acts = l.close(a, 50_000).unwrap();
        assert!(acts.contains(&Action::ArmGrace {
            uid: 1000,
            generation: 1,
            deadline: 60_000
        }));
        // The timer (monotonic) fires ten seconds later, but the wall clock was stepped back
        // an hour meanwhile and reads before the deadline: the period is over all the same.
        assert_eq!(l.grace_expired(1000, 1), vec![alice_removed(Some(INFO))]);
    }

    #[test]
    fn a_restored_grace_period_ends_within_the_configured_grace() {
        let mut l = Lifecycle::new(policy(Lifetime::Sessions), 1);
        let (a, _) = l.open(1000, 100, "alice", leader(10), 0).unwrap();
        l.created(1000, INFO);
        let (b, _) = l.open(2000, 200, "bob", leader(20), 0).unwrap();
        l.created(2000, INFO);
        // alice's record was written when the wall clock read a year ahead (since corrected);
        // bob's is an ordinary one, 4 s left of 10.
        let year = 365 * 24 * 3_600_000;
        l.close(a, year).unwrap();
        l.close(b, 6_000).unwrap();
        let records: Vec<_> = l
            .users()
            .map(|u| (u.clone(), l.sessions_of(u.uid).cloned().collect()))
            .collect();
        let mut r = Lifecycle::new(policy(Lifetime::Sessions), l.next_id());
        let acts = r.restore(records, |_| false, 12_000);
        assert!(
            acts.contains(&Action::ArmGrace {
                uid: 1000,
                generation: 1,
                deadline: 22_000
            }) && acts.contains(&Action::Persist { uid: 1000 }),
            "{acts:?}"
        );
        assert_eq!(
            r.user(1000).unwrap().phase,
            Phase::Grace { deadline: 22_000 }
        );
        assert!(
            acts.contains(&Action::ArmGrace {
                uid: 2000,
                generation: 1,
                deadline: 16_000
            }) && !acts.contains(&Action::Persist { uid: 2000 }),
            "{acts:?}"
        );
    }

    proptest! {
        #[test]
        fn session_ids_match_a_btree_set(ops in proptest::collection::vec((any::<bool>(), 0u64..40), 0..200)) {
            let mut model = std::collections::BTreeSet::new();
            let mut s = SessionIds::default();
            for (add, id) in ops {
                if add {
                    prop_assert_eq!(s.insert(id), model.insert(id));
                } else {
                    prop_assert_eq!(s.remove(&id), model.remove(&id));
                }
                prop_assert_eq!(s.len(), model.len());
                prop_assert!(s.iter().copied().eq(model.iter().copied()));
                prop_assert!((0..40).all(|i| s.contains(&i) == model.contains(&i)));
            }
        }
    }

    proptest! {
        /// Whatever happens, the table stays consistent, and once every session is closed, every
        /// process is gone and every timer has fired, only lingering users remain.
        #[test]
        fn invariants_hold_under_any_interleaving(ops in proptest::collection::vec(op(), 0..200), processes in any::<bool>()) {
            let mut l = Lifecycle::new(policy(if processes { Lifetime::Processes } else { Lifetime::Sessions }), 1);
            let mut now = 0u64;
            let mut timers: Vec<(u32, u64, u64)> = Vec::new();
            // Removals under way (uid, size): a tick lets them end.
            let removing = std::cell::RefCell::new(Vec::<(u32, u64)>::new());
            let apply = |acts: Vec<Action>, timers: &mut Vec<(u32, u64, u64)>| {
                for a in acts {
                    match a {
                        Action::ArmGrace { uid, generation, deadline } => timers.push((uid, generation, deadline)),
                        Action::Remove { uid, size, .. } => removing.borrow_mut().push((uid, size)),
                        _ => {}
                    }
                }
            };
            for op in ops {
                match op {
                    Op::Open(u) => { if let Ok((_, a)) = l.open(u, u, "u", leader(u as i32), now) { apply(a, &mut timers) } }
                    Op::Close(i) => {
                        let ids: Vec<_> = l.sessions().map(|s| s.id).collect();
                        if let Some(&id) = ids.get(i % ids.len().max(1)) { apply(l.close(id, now).unwrap(), &mut timers) }
                    }
                    Op::Gone(u) => apply(l.processes_gone(u, now), &mut timers),
                    Op::Expire(u) => {
                        let g = l.user(u).map_or(0, |x| x.generation);
                        apply(l.grace_expired(u, g), &mut timers)
                    }
                    Op::Linger(u, on) => apply(l.set_linger(u, u, "u", on, now).unwrap(), &mut timers),
                    Op::Tick(d) => {
                        now += d;
                        for (uid, _) in removing.borrow_mut().drain(..) {
                            l.removed(uid);
                        }
                    }
                }
                for s in l.sessions() {
                    let u = l.user(s.uid).expect("a session's user exists");
                    prop_assert!(u.sessions.contains(&s.id));
                    prop_assert_eq!(u.phase, Phase::Active);
                }
                let releasing: u64 = removing.borrow().iter().map(|(_, s)| s).sum();
                prop_assert_eq!(l.budget_used(), l.users().map(|u| u.size).sum::<u64>() + releasing);
                for s in l.sessions() {
                    prop_assert!(l.sessions_led_by(s.leader.pid).any(|x| x.id == s.id));
                }
                for u in l.users() {
                    prop_assert_eq!(u.sessions.is_empty(), u.phase != Phase::Active, "{:?}", u);
                    if u.linger && u.sessions.is_empty() { prop_assert_eq!(u.phase, Phase::Lingering); }
                }
            }
            // Wind down: close everything, processes gone, fire every timer.
            let ids: Vec<_> = l.sessions().map(|s| s.id).collect();
            for id in ids { apply(l.close(id, now).unwrap(), &mut timers); }
            let uids: Vec<_> = l.users().map(|u| u.uid).collect();
            for u in uids { apply(l.processes_gone(u, now), &mut timers); }
            for (uid, g, _) in timers.clone() { l.grace_expired(uid, g); }
            for u in l.users() { prop_assert!(u.linger, "{:?} survived without linger", u); }
        }
    }
}

//! Wiring of the userdirs capability into the daemon: requests are authorized here, the pure
//! [`Lifecycle`] decides, and its actions are carried out here (effects through
//! `runplane_userdirs::dirs`, records through `store`, watchers and timers as tokio tasks that
//! report back through [`Event`]s).
//!
//! Watching: each session's leader by its pidfd (readable when it exits); after the last
//! session with `lifetime = "processes"`, every process of the uid by pidfd, re-scanning
//! `/proc` when the last one exits; grace periods by a timer per user. uid 0 always has
//! processes (this daemon among them), so for root `processes` behaves as `sessions`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::after::{Deferred, spawn_later};
use tokio::io::Interest;
use tokio::sync::mpsc::UnboundedSender;

use runplane_proto::{
    Code, ErrorReply, Linger, LingerState, SessionClosed, SessionInfo, SessionOpen, SessionOpened,
    UserdirStatus, UserdirsManager,
};
use runplane_sys::dir::Dir;
use runplane_sys::pidfd::Process;
use runplane_sys::scm::Cred;
use runplane_userdirs::accounts::{self, Account, LookupError};
use runplane_userdirs::config::{Lifetime, UserdirsConfig};
use runplane_userdirs::dirs::{DirError, MountPolicy, Root};
use runplane_userdirs::lifecycle::{
    Action, Backend, DirInfo, Leader, Lifecycle, Phase, Policy, Refusal, SessionId,
};
use runplane_userdirs::size;
use runplane_userdirs::store::Store;

/// What watchers and timers report.
#[derive(Debug)]
pub enum Event {
    /// The leaders of these sessions exited (one report per drain of the epoll set, so that
    /// thousands of leaders dying at once queue as a few dozen events, not thousands).
    LeadersExited(Vec<SessionId>),
    ProcessesGone(u32),
    GraceExpired {
        uid: u32,
        generation: u64,
    },
    /// Mounts were detached from the daemon's mount namespace (fanotify, Linux >= 6.15).
    Mounts(Vec<runplane_sys::mountwatch::MountEvent>),
    /// The removal of a user's dir, on the remover thread, is done.
    Removed {
        uid: u32,
        existed: bool,
        outcome: Result<runplane_userdirs::dirs::Removed, String>,
    },
}

/// A removal for the remover thread.
struct Removal {
    uid: u32,
    /// The dir as made (`None`: it never was): any mount over it but this one is detached
    /// without a look inside.
    dir: Option<DirInfo>,
    remove_ipc: bool,
}

impl Removal {
    fn carry_out(&self, root: &Root) -> Result<runplane_userdirs::dirs::Removed, String> {
        if self.remove_ipc {
            remove_ipc_of(self.uid);
        }
        root.remove(self.uid, self.dir.and_then(|d| d.mount()))
            .map_err(|e| e.to_string())
    }
}

/// Starts the thread that removes users' dirs, one at a time: a removal holds up to one fd
/// per level of the tree (256), which `FD_RESERVE` has room for once, not for many at once.
/// Each reports `Event::Removed`, also when it panicked.
fn spawn_remover(
    root: std::sync::Arc<Root>,
    events: UnboundedSender<Event>,
) -> std::io::Result<std::sync::mpsc::Sender<Removal>> {
    let (tx, rx) = std::sync::mpsc::channel::<Removal>();
    std::thread::Builder::new()
        .name("remover".into())
        // Emptying a 256-level tree takes up to 1 MiB of stack in debug builds.
        .stack_size(2 << 20)
        .spawn(move || {
            for job in rx {
                let outcome = std::panic::catch_unwind(|| job.carry_out(&root))
                    .unwrap_or_else(|_| Err("the remover panicked".into()));
                let _ = events.send(Event::Removed {
                    uid: job.uid,
                    existed: job.dir.is_some(),
                    outcome,
                });
            }
        })?;
    Ok(tx)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn err(code: Code, msg: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, msg)
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Tmpfs => "tmpfs",
        Backend::Adopted => "adopted",
        Backend::FallbackDir => "fallback-dir",
    }
}

/// Limits and timing from the configuration, sizes resolved against this machine's memory.
pub fn policy_of(cfg: &UserdirsConfig) -> Policy {
    let mem = size::system_memory().unwrap_or(1 << 30);
    let per_user = size::resolve(cfg.size, mem);
    Policy {
        lifetime: cfg.lifetime,
        grace_ms: cfg.grace.as_millis() as u64,
        size: per_user,
        inodes: cfg.inodes.unwrap_or_else(|| size::default_inodes(per_user)),
        budget: cfg.budget.map(|b| size::resolve(b, mem)),
        min_size: cfg.min_size,
    }
}

fn mount_policy(cfg: &UserdirsConfig) -> MountPolicy {
    MountPolicy {
        noswap: cfg.noswap,
        huge: cfg.huge.clone(),
        mpol: cfg.mpol.clone(),
    }
}

struct Inner {
    /// Session ids below this are reserved on disk.
    reserved: u64,
    /// User name -> uid of the users in the table.
    names: HashMap<String, u32>,
    cfg: UserdirsConfig,
    mount: MountPolicy,
    /// Shared with the remover thread.
    root: std::sync::Arc<Root>,
    store: Store,
    lc: Lifecycle,
    leaders: std::sync::Arc<Leaders>,
    /// Started after the answer of the request that asked for them (see crate::after).
    watchers: HashMap<u32, std::sync::Arc<Deferred>>,
    timers: HashMap<u32, std::sync::Arc<Deferred>>,
    events: UnboundedSender<Event>,
    /// Users whose latest record could not be written (or whose deletion could not), with
    /// why: written again with every later change until it succeeds, and shown in status.
    unsaved: std::collections::BTreeMap<u32, String>,
    /// The most sessions the daemon holds at once: each pins its leader with a pidfd, and
    /// the open-file limit must leave room for the control connections (see [`FdBudget`]).
    max_sessions: usize,
    /// The pidfds watchers of logged-out users' processes may hold (see [`FdBudget`]).
    watch_permits: std::sync::Arc<WatchPermits>,
    /// Users whose dir is being removed (or queued for it) on the remover thread, so that a
    /// tree of a million files costs no one else's login a wait; by uid, as status lists them.
    removing: std::collections::BTreeMap<u32, Removing>,
    /// The remover thread's queue (`None`: it could not be started; removals run in line).
    remover: Option<std::sync::mpsc::Sender<Removal>>,
    /// The users' mount options while a paged listing of `status.userdirs` goes on: read
    /// from mountinfo for its first page and kept until its last, or until the mount table
    /// changes (10,000 users take about 80 pages; mountinfo then has 10,000 lines).
    listing: Option<(runplane_sys::mountinfo::Table, HashMap<u64, String>)>,
    /// Whether the kernel tells of unmounted tmpfs (mount events, Linux >= 6.15); without,
    /// a login of a user whose dir exists looks whether its tmpfs is still there.
    /// Cleared by the watch's task should it stop (a failed read).
    watching: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Users' tmpfs mounted again since the start (see `Inner::remount`).
    remounted: u64,
}

/// A user whose dir is queued for removal or being removed on the remover thread. It has left
/// the lifecycle table; status shows it as `removing` until the removal is over.
struct Removing {
    /// Dropped when the removal is over: a login or linger of the uid waits for that (see
    /// `Userdirs::inner_for`), since a dir made meanwhile would be taken by the removal.
    done: tokio::sync::watch::Sender<()>,
    name: String,
    dir: Option<DirInfo>,
    size: u64,
    inodes: u64,
}

/// Each live session's leader pidfd, registered (edge-triggered) in one epoll set that one
/// task waits on: a session costs a map entry, not a task. Dropping a pidfd (closing it)
/// ends its watch. Shared with the registrations left for after a request's answer; its
/// lock is taken after `Inner`'s, never before.
struct Leaders {
    epoll: rustix::fd::OwnedFd,
    fds: Mutex<HashMap<SessionId, rustix::fd::OwnedFd>>,
}

impl Leaders {
    fn fds(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, rustix::fd::OwnedFd>> {
        self.fds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops watching the session's leader (closing its pidfd leaves the epoll set). On a
    /// control thread the pidfd is closed after the answer is sent: closing an fd in an epoll
    /// set unlinks it there, about 3 us of a logout here (BENCHMARKS.md). Meanwhile the session
    /// is no longer in the set's map, so an exit reported for it finds no session.
    fn forget(&self, id: SessionId) {
        if let Some(fd) = self.fds().remove(&id) {
            crate::after::later(move || drop(fd));
        }
    }

    /// Adds the session's pidfd to the set, if the session has not ended meanwhile (its fd
    /// is looked up under the lock: a number closed and reused since cannot be added).
    fn watch(&self, id: SessionId, pid: i32, events: &UnboundedSender<Event>) {
        use rustix::event::epoll;
        let fds = self.fds();
        let Some(fd) = fds.get(&id) else { return };
        // Edge-triggered: one event when the leader exits (a pidfd stays readable after). An
        // already exited leader is reported at once (epoll_ctl checks readiness on ADD).
        if let Err(e) = epoll::add(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(id),
            epoll::EventFlags::IN | epoll::EventFlags::ET,
        ) {
            tracing::error!(session = id, pid, "unable to watch the session leader: {e}");
            let _ = events.send(Event::LeadersExited(vec![id]));
        }
    }
}

/// A listing's mount options to be read again (see `Inner::stale_listing`).
struct StaleListing {
    table: Option<runplane_sys::mountinfo::Table>,
    ours: std::collections::HashSet<u64>,
}

impl StaleListing {
    /// Reads the mount table (opening it if need be): what `Inner::listing` then holds.
    fn read(self) -> Option<(runplane_sys::mountinfo::Table, HashMap<u64, String>)> {
        let table = match self.table {
            Some(t) => t,
            None => match runplane_sys::mountinfo::Table::open() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("{e}");
                    return None;
                }
            },
        };
        let _ = table.changed(); // what follows is read after this point
        let opts = table
            .read()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| self.ours.contains(&m.id))
            .map(|m| (m.id, format!("{},{}", m.mount_options, m.super_options)))
            .collect();
        Some((table, opts))
    }
}

/// The capability as the daemon runs it: managing `/run/user`, or not (and why not).
pub struct Userdirs {
    root_path: PathBuf,
    reason: Option<String>,
    inner: Option<Mutex<Inner>>,
    /// A handle on the root for status listings' usage reads, which need not the lock.
    usage_root: Option<Root>,
}

impl std::fmt::Debug for Userdirs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Userdirs")
            .field("root", &self.root_path)
            .field("reason", &self.reason)
            .finish()
    }
}

impl Userdirs {
    /// A daemon that does not manage user dirs, with the reason shown in status and errors.
    pub fn disabled(root: PathBuf, reason: String) -> Userdirs {
        Userdirs {
            root_path: root,
            reason: Some(reason),
            inner: None,
            usage_root: None,
        }
    }

    /// Opens `/run/user` and the records, restores sessions that are still alive, resumes
    /// grace periods, and brings up lingering users. Must run inside the tokio runtime.
    pub fn start(
        cfg: UserdirsConfig,
        max_clients: u32,
        state: &Dir,
        events: UnboundedSender<Event>,
    ) -> Result<Userdirs, String> {
        let root = runplane_userdirs::dirs::open_root(&cfg.root).map_err(|e| e.to_string())?;
        let (store, loaded) = Store::open(state).map_err(|e| e.to_string())?;
        // Ids below the reservation may have been handed out before a crash: start above it.
        let floor = store.id_reservation().map_err(|e| e.to_string())?;
        let lc = Lifecycle::new(policy_of(&cfg), floor);
        let leaders = std::sync::Arc::new(Leaders {
            epoll: spawn_leader_set(events.clone())?,
            fds: Mutex::new(HashMap::new()),
        });
        // Watched before the records are checked: a tmpfs unmounted from then on is seen.
        let watching = spawn_mount_watch(events.clone());
        let budget = FdBudget::of_this_process(max_clients);
        let root = std::sync::Arc::new(root);
        let remover = spawn_remover(root.clone(), events.clone())
            .inspect_err(|e| {
                tracing::warn!("unable to start the remover thread: {e}; removing in line")
            })
            .ok();
        let mut inner = Inner {
            reserved: floor,
            names: HashMap::new(),
            mount: mount_policy(&cfg),
            cfg,
            root,
            store,
            lc,
            leaders,
            watchers: HashMap::new(),
            timers: HashMap::new(),
            events,
            max_sessions: budget.sessions,
            watch_permits: WatchPermits::new(budget.watched),
            removing: std::collections::BTreeMap::new(),
            remover,
            unsaved: std::collections::BTreeMap::new(),
            listing: None,
            watching,
            remounted: 0,
        };
        if !inner.root.kernel_noswap() && inner.cfg.noswap {
            tracing::warn!(
                "this kernel's tmpfs has no noswap (Linux >= 6.4): user dirs may be swapped out"
            );
        }
        inner.restore(loaded);
        // Restored ids may lie above the stored reservation (records are written last).
        inner.reserve_id()?;
        inner.bring_up_lingering();
        let root_path = inner.cfg.root.clone();
        let usage_root = inner.root.try_clone().map_err(|e| e.to_string())?;
        Ok(Userdirs {
            root_path,
            reason: None,
            inner: Some(Mutex::new(inner)),
            usage_root: Some(usage_root),
        })
    }

    fn inner(&self) -> Result<std::sync::MutexGuard<'_, Inner>, ErrorReply> {
        match &self.inner {
            Some(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner())),
            None => Err(err(
                Code::EBUSY,
                format!(
                    "runplaned does not manage {}: {}",
                    self.root_path.display(),
                    self.reason.as_deref().unwrap_or("disabled")
                ),
            )),
        }
    }

    /// Applies a reloaded configuration: limits and timing now, root and linger dir at restart.
    pub fn reconfigure(&self, cfg: &UserdirsConfig, max_clients: u32) -> Vec<String> {
        let Ok(mut i) = self.inner() else {
            return vec![];
        };
        let budget = FdBudget::of_this_process(max_clients);
        i.max_sessions = budget.sessions;
        i.watch_permits.set_limit(budget.watched);
        let mut pending = Vec::new();
        if cfg.root != i.cfg.root {
            pending.push("userdirs.root".to_owned());
        }
        i.lc.set_policy(policy_of(cfg));
        i.mount = mount_policy(cfg);
        let (root, linger_dir) = (i.cfg.root.clone(), i.cfg.linger_dir.clone());
        i.cfg = cfg.clone();
        i.cfg.root = root;
        if cfg.linger_dir != linger_dir {
            pending.push("userdirs.linger_dir".to_owned());
            i.cfg.linger_dir = linger_dir;
        }
        pending
    }

    /// Handles a report of a watcher or a timer.
    pub fn handle(&self, ev: Event) {
        let Ok(mut i) = self.inner() else { return };
        let now = now_ms();
        let actions = match ev {
            Event::LeadersExited(ids) => {
                // Each as if reported alone: its session's actions are carried out before the
                // next one closes.
                for id in ids {
                    i.leaders.forget(id);
                    // An error: closed meanwhile.
                    if let Ok(a) = i.lc.close(id, now) {
                        tracing::debug!(session = id, "session ended: its leader exited");
                        let _ = i.execute(a);
                    }
                }
                vec![]
            }
            Event::ProcessesGone(uid) => {
                i.watchers.remove(&uid);
                i.lc.processes_gone(uid, now)
            }
            Event::GraceExpired { uid, generation } => {
                i.timers.remove(&uid);
                i.lc.grace_expired(uid, generation)
            }
            Event::Mounts(seen) => {
                i.mounts_detached(&seen);
                vec![]
            }
            Event::Removed {
                uid,
                existed,
                outcome,
            } => {
                i.removed(uid, existed, outcome);
                vec![]
            }
        };
        let _ = i.execute(actions);
    }

    /// The lock, once no removal of `uid`'s dir is under way: a login or linger waits for
    /// one to end, since a dir made meanwhile would be taken by it (or adopt a tree being
    /// emptied). Logins of other users never wait for a removal.
    async fn inner_for(&self, uid: u32) -> Result<std::sync::MutexGuard<'_, Inner>, ErrorReply> {
        loop {
            let mut done = {
                let i = self.inner()?;
                match i.removing.get(&uid) {
                    None => return Ok(i),
                    Some(r) => r.done.subscribe(),
                }
            };
            // Err once the removal is over: its sender is dropped then.
            let _ = done.changed().await;
        }
    }

    /// `session_open`.
    pub async fn open(&self, req: SessionOpen, cred: Cred) -> Result<SessionOpened, ErrorReply> {
        // A user who already has a directory is served from the table (the account data of its
        // first login, which its tmpfs was made with): no NSS round on the hot path.
        // A root caller that resolved the account already (the PAM module, inside the login
        // process that looked the user up) may pass it whole: no lookup in the daemon at all.
        let given = match (req.gid, &req.user, req.uid) {
            (None, _, _) => None,
            (Some(_), _, _) if cred.uid != 0 => {
                return Err(err(
                    Code::EPERM,
                    format!(
                        "only root may pass a resolved account (gid), not uid {}",
                        cred.uid
                    ),
                ));
            }
            (Some(gid), Some(name), Some(uid)) => Some(Account {
                uid,
                gid,
                name: name.clone(),
            }),
            (Some(_), _, _) => {
                return Err(err(
                    Code::EINVAL,
                    "a resolved account needs user, uid and gid together",
                ));
            }
        };
        let known = match given {
            Some(a) => Some(a),
            None => self.inner()?.known_account(req.user.as_deref(), req.uid),
        };
        let account = match known {
            Some(a) => a,
            None => lookup(req.user.clone(), req.uid).await?,
        };
        let pid = req.pid.unwrap_or(cred.pid);
        let leader = Process::open(pid).map_err(|e| {
            let code = e.raw_os_error();
            let gone = [libc_esrch(), rustix::io::Errno::NOENT.raw_os_error()];
            // pidfd_open refuses a thread other than its process's main thread (EINVAL, or
            // ENOENT since Linux 6.9): say so, rather than that there is no such process.
            match runplane_sys::pidfd::thread_group_of(pid) {
                Ok(tgid) if tgid != pid && code != Some(libc_esrch()) => err(
                    Code::EINVAL,
                    format!(
                        "{pid} is a thread of process {tgid}, not a process: a session is led by a process"
                    ),
                ),
                _ if code.is_some_and(|c| gone.contains(&c)) => err(
                    Code::ENOENT,
                    format!("no process {pid} to lead the session"),
                ),
                _ => err(Code::EIO, e.to_string()),
            }
        })?;
        if cred.uid != 0 {
            if account.uid != cred.uid {
                return Err(err(
                    Code::EPERM,
                    format!(
                        "uid {} may open sessions only for itself, not for uid {}",
                        cred.uid, account.uid
                    ),
                ));
            }
            let owner =
                runplane_sys::pidfd::uid_of(pid).map_err(|e| err(Code::ENOENT, e.to_string()))?;
            if owner != cred.uid {
                return Err(err(
                    Code::EPERM,
                    format!(
                        "process {pid} belongs to uid {owner}: uid {} may only lead its sessions with its own processes",
                        cred.uid
                    ),
                ));
            }
        }
        // The leader's ancestry is read from /proc before the lock is taken (a few reads per
        // level, up to pid 1 for a login that is not nested): logins do not queue behind it.
        let ancestry = match req.allow_nested {
            Some(false) => ancestry(pid),
            _ => Vec::new(),
        };
        let mut i = self.inner_for(account.uid).await?;
        i.session_room(account.uid, cred.uid)?;
        if let Some((sid, suid)) = i.enclosing_session(&ancestry, account.uid) {
            return Err(err(
                Code::EBUSY,
                format!(
                    "process {pid} runs inside session {sid} of uid {suid}: not opening a nested session for uid {}",
                    account.uid
                ),
            ));
        }
        let existed = i.lc.user(account.uid).is_some_and(|u| u.dir.is_some());
        i.reserve_id().map_err(|e| err(Code::EIO, e))?;
        let lead = Leader::new(pid, leader.identity());
        let (id, actions) =
            i.lc.open(account.uid, account.gid, &account.name, lead, now_ms())
                .map_err(|r| match r {
                    Refusal::Budget { .. } => err(Code::ENOSPC, r.to_string()),
                    Refusal::NoSuchSession(_) => err(Code::EIO, r.to_string()),
                })?;
        i.execute(actions)?;
        if existed && !i.watching.load(std::sync::atomic::Ordering::Relaxed) {
            i.check_mounted(account.uid);
        }
        let Some(u) = i.lc.user(account.uid) else {
            return Err(err(
                Code::EIO,
                format!(
                    "unable to create the runtime directory of uid {}",
                    account.uid
                ),
            ));
        };
        let backend = u
            .dir
            .map_or("creating", |d| backend_name(d.backend))
            .to_owned();
        let mount = u.dir.and_then(|d| d.mount());
        let path = i.root.user_path(account.uid).display().to_string();
        i.watch_leader(id, leader);
        // Sessions are logged at debug: the PAM stack that opens them logs every login
        // already (pam_unix, sshd); what this daemon alone knows, that a runtime dir was
        // made, adopted, kept or removed, is logged at info.
        tracing::debug!(session = id, uid = account.uid, pid, "session opened");
        Ok(SessionOpened {
            id,
            uid: account.uid,
            user: account.name,
            path,
            backend,
            created: !existed,
            mount_id: mount.map(|m| m.id),
            mount_unique: mount.and_then(|m| m.unique),
        })
    }

    /// `session_close`.
    pub fn close(&self, id: SessionId, cred: Cred) -> Result<SessionClosed, ErrorReply> {
        let mut i = self.inner()?;
        let s =
            i.lc.session(id)
                .cloned()
                .ok_or_else(|| err(Code::ENOENT, format!("no session {id}")))?;
        if cred.uid != 0 && cred.uid != s.uid {
            return Err(err(
                Code::EPERM,
                format!(
                    "session {id} belongs to uid {}, not to uid {}",
                    s.uid, cred.uid
                ),
            ));
        }
        i.leaders.forget(id);
        let actions =
            i.lc.close(id, now_ms())
                .map_err(|e| err(Code::ENOENT, e.to_string()))?;
        // Persisted before answering: a close lost in a crash would revive the session.
        let _ = i.execute(actions);
        tracing::debug!(session = id, uid = s.uid, "session closed");
        let (remaining, state) = match i.lc.user(s.uid) {
            Some(u) => (u.sessions.len() as u32, u.phase.name().to_owned()),
            None => (0, "removed".to_owned()),
        };
        Ok(SessionClosed {
            id,
            uid: s.uid,
            remaining,
            state,
        })
    }

    /// `session_list`: one page of the caller's sessions (root: all) above `after`.
    pub fn list(&self, cred: Cred, after: Option<u64>) -> Result<Vec<SessionInfo>, ErrorReply> {
        let i = self.inner()?;
        let entries =
            i.lc.sessions_after(after)
                .filter(|s| cred.uid == 0 || s.uid == cred.uid)
                .map(|s| SessionInfo {
                    id: s.id,
                    uid: s.uid,
                    user: i.lc.user(s.uid).map(|u| u.name.clone()).unwrap_or_default(),
                    leader_pid: s.leader.pid,
                    opened_at: s.opened_at,
                });
        Ok(crate::page::page(entries).0)
    }

    /// `linger`.
    pub async fn linger(&self, req: Linger, cred: Cred) -> Result<LingerState, ErrorReply> {
        let self_linger = self.inner()?.cfg.self_linger;
        let account = lookup(req.user.clone(), req.uid).await?;
        if cred.uid != 0 && !(self_linger && cred.uid == account.uid) {
            let why = if self_linger {
                "only for itself"
            } else {
                "not at all (userdirs.self_linger is off)"
            };
            return Err(err(
                Code::EPERM,
                format!("uid {} may change linger {why}", cred.uid),
            ));
        }
        if !accounts::valid_user_name(&account.name) {
            return Err(err(
                Code::EINVAL,
                format!("{:?} cannot be a linger file name", account.name),
            ));
        }
        let mut i = self.inner_for(account.uid).await?;
        i.write_linger_file(&account.name, req.enable)
            .map_err(|e| err(Code::EIO, e))?;
        let actions =
            i.lc.set_linger(
                account.uid,
                account.gid,
                &account.name,
                req.enable,
                now_ms(),
            )
            .map_err(|r| err(Code::ENOSPC, r.to_string()))?;
        i.execute(actions)?;
        tracing::info!(uid = account.uid, enabled = req.enable, "linger changed");
        Ok(LingerState {
            user: account.name,
            uid: Some(account.uid),
            enabled: req.enable,
        })
    }

    /// `session_ipc`: what RemoveIPC would remove for a user (root or that user).
    pub async fn ipc(
        &self,
        who: runplane_proto::UserRef,
        cred: Cred,
    ) -> Result<Vec<runplane_proto::IpcObject>, ErrorReply> {
        drop(self.inner()?);
        let account = lookup(who.user, who.uid).await?;
        if cred.uid != 0 && cred.uid != account.uid {
            return Err(err(
                Code::EPERM,
                format!(
                    "uid {} may list only its own IPC objects, not uid {}'s",
                    cred.uid, account.uid
                ),
            ));
        }
        let uid = account.uid;
        // Reads /proc/sysvipc and /dev/shm: blocking, inline only on a control thread.
        let list = if crate::control::may_block() {
            runplane_userdirs::ipc::list(uid)
        } else {
            tokio::task::spawn_blocking(move || runplane_userdirs::ipc::list(uid))
                .await
                .map_err(|e| err(Code::EIO, e.to_string()))?
        };
        Ok(list
            .into_iter()
            .map(|o| runplane_proto::IpcObject {
                kind: o.kind.to_owned(),
                id: o.id,
                bytes: o.bytes,
            })
            .collect())
    }

    /// `linger_list`: one page of the names in the linger directory above `after`.
    pub fn linger_list(&self, after: Option<&str>) -> Result<Vec<LingerState>, ErrorReply> {
        let i = self.inner()?;
        let names = i.linger_names().map_err(|e| err(Code::EIO, e))?;
        let uids: HashMap<&str, u32> = i.lc.users().map(|u| (u.name.as_str(), u.uid)).collect();
        let entries = names
            .into_iter()
            .filter(|n| after.is_none_or(|a| n.as_str() > a))
            .map(|name| LingerState {
                uid: uids.get(name.as_str()).copied(),
                user: name,
                enabled: true,
            });
        Ok(crate::page::page(entries).0)
    }

    /// `userdirs`: one page of `status.userdirs` above uid `after`.
    pub fn page(&self, cred: Cred, after: Option<u32>) -> Vec<UserdirStatus> {
        match &self.inner {
            Some(m) => {
                self.entries(m, m.lock().unwrap_or_else(|p| p.into_inner()), cred, after)
                    .0
            }
            None => vec![],
        }
    }

    /// A page of `status.userdirs` (see `Inner::entries`) with each entry's usage (and, for
    /// a user's own status, mount options) filled in, starting under the lock `i` of `m`.
    /// The lock is not held while the mount table is read (all of mountinfo: 10,000 lines
    /// with 10,000 users) nor while each entry's usage is read (an open and a statvfs each):
    /// a login waits for neither. A user's own status (its one entry) asks statmount(2) for
    /// its mount alone, where the kernel can say, instead of reading the whole table: no
    /// local user can make the daemon parse every mount per request.
    fn entries<'m>(
        &self,
        m: &'m Mutex<Inner>,
        mut i: std::sync::MutexGuard<'m, Inner>,
        cred: Cred,
        after: Option<u32>,
    ) -> (Vec<UserdirStatus>, bool) {
        let one_by_one = cred.uid != 0;
        if !one_by_one && let Some(stale) = i.stale_listing(after.is_none()) {
            // A dir mounted while the table is read shows no options on this page; the table
            // then reads as changed, and the next page reads it again.
            drop(i);
            let fresh = stale.read();
            i = m.lock().unwrap_or_else(|p| p.into_inner());
            i.listing = fresh;
        }
        let (mut page, more) = i.entries(cred, after);
        // The mount each entry's dir was made on: its usage is read only from that, and a
        // user's own status shows its options.
        let ours: Vec<_> = page.iter().map(|e| i.dir_of(e.uid)?.mount()).collect();
        drop(i);
        for (e, ours) in page.iter_mut().zip(ours) {
            let st = self
                .usage_root
                .as_ref()
                .and_then(|r| r.status_of(e.uid, ours, one_by_one).ok().flatten())
                .unwrap_or_default();
            e.bytes_used = st.usage.bytes_used;
            e.inodes_used = st.usage.inodes_used;
            e.covered = st.covered;
            e.unmounted = st.unmounted;
            let Some(id) = ours
                .map(|m| m.id)
                .filter(|_| one_by_one && !st.covered && !st.unmounted)
            else {
                continue;
            };
            e.options = match st.mount {
                Some(m) if m.id == id => m.options,
                Some(_) => String::new(),
                // This kernel cannot say: the table, this once.
                None => runplane_sys::mountinfo::find(id)
                    .ok()
                    .flatten()
                    .map(|mi| format!("{},{}", mi.mount_options, mi.super_options))
                    .unwrap_or_default(),
            };
        }
        (page, more)
    }

    /// The manager section of `status` and the first page of its `userdirs`, and whether more
    /// follow.
    pub fn status(&self, cred: Cred) -> (UserdirsManager, Vec<UserdirStatus>, bool) {
        let Some(m) = &self.inner else {
            let mgr = UserdirsManager {
                root: self.root_path.display().to_string(),
                managing: false,
                reason: self.reason.clone(),
                kernel_noswap: runplane_sys::tmpfs::kernel_has_noswap().unwrap_or(false),
                lifetime: String::new(),
                grace_ms: 0,
                size_per_user: 0,
                inodes_per_user: 0,
                budget: None,
                budget_used: 0,
                journal_error: None,
                mount_events: false,
                remounted: 0,
            };
            return (mgr, vec![], false);
        };
        let i = m.lock().unwrap_or_else(|p| p.into_inner());
        let p = i.lc.policy();
        let mgr = UserdirsManager {
            root: i.cfg.root.display().to_string(),
            managing: true,
            reason: None,
            kernel_noswap: i.root.kernel_noswap(),
            lifetime: match p.lifetime {
                Lifetime::Processes => "processes".into(),
                Lifetime::Sessions => "sessions".into(),
            },
            grace_ms: p.grace_ms,
            size_per_user: p.size,
            inodes_per_user: p.inodes,
            budget: p.budget,
            budget_used: i.lc.budget_used(),
            journal_error: i.journal_error(),
            mount_events: i.watching.load(std::sync::atomic::Ordering::Relaxed),
            remounted: i.remounted,
        };
        let (users, more) = self.entries(m, i, cred, None);
        (mgr, users, more)
    }
}

/// Two runs of entries, each ascending by uid, as one.
fn by_uid(
    a: impl Iterator<Item = UserdirStatus>,
    b: impl Iterator<Item = UserdirStatus>,
) -> impl Iterator<Item = UserdirStatus> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.uid < x.uid => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

fn libc_esrch() -> i32 {
    rustix::io::Errno::SRCH.raw_os_error()
}

/// Whether NSS is local files only (read once at start): then lookups run inline.
static NSS_LOCAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// How many records owed to the journal (see `Inner::unsaved`) a change writes again besides
/// its own.
pub const RETRIES_PER_CHANGE: usize = 16;

/// The shortest time between two scans of /proc for one uid's processes.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// The most processes of one uid watched at once (a pidfd each): when they have all exited,
/// /proc is scanned again, so watching a few is as good as watching all, and a user with
/// 100,000 processes costs the daemon no more open files than one with 64.
pub const MAX_WATCHED: usize = 64;
/// Open files kept for what is neither a session nor a control connection (the listener,
/// epoll sets, the journal, reading /proc and the linger dir).
pub const FD_RESERVE: u64 = 256;

/// The most pidfds watched for the processes of users who logged out, all users together
/// (an eighth of the open files left for pidfds, at most this many).
pub const MAX_WATCHED_TOTAL: u64 = 4096;

/// How the open files that this process's limit leaves after `max_clients` control
/// connections and [`FD_RESERVE`] are shared between pidfds: watched processes get an eighth
/// (at most [`MAX_WATCHED_TOTAL`]), sessions the rest, and at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    pub sessions: usize,
    pub watched: usize,
}

impl FdBudget {
    pub fn of_this_process(max_clients: u32) -> FdBudget {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        FdBudget::of(nofile.unwrap_or(u64::MAX), max_clients)
    }

    fn of(nofile: u64, max_clients: u32) -> FdBudget {
        let left = nofile.saturating_sub(u64::from(max_clients) + FD_RESERVE);
        let watched = (left / 8).min(MAX_WATCHED_TOTAL);
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        FdBudget {
            sessions: n(left - watched).max(1),
            watched: n(watched),
        }
    }
}

/// Pidfds that watchers of logged-out users' processes may hold, all together: a watcher
/// that gets none scans again after [`RESCAN_INTERVAL`] instead, so that watching never takes
/// the open files that logins need.
#[derive(Debug, Default)]
pub struct WatchPermits {
    held: std::sync::atomic::AtomicUsize,
    limit: std::sync::atomic::AtomicUsize,
}

/// Permits taken from [`WatchPermits`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    n: usize,
    from: std::sync::Arc<WatchPermits>,
}

impl WatchPermits {
    pub fn new(limit: usize) -> std::sync::Arc<WatchPermits> {
        let p = WatchPermits::default();
        p.set_limit(limit);
        std::sync::Arc::new(p)
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit
            .store(limit, std::sync::atomic::Ordering::Relaxed);
    }

    /// Up to `want` permits, as many as are free (possibly none).
    pub fn take(self: &std::sync::Arc<Self>, want: usize) -> Held {
        use std::sync::atomic::Ordering::Relaxed;
        let limit = self.limit.load(Relaxed);
        let mut got = 0;
        let _ = self.held.fetch_update(Relaxed, Relaxed, |held| {
            got = want.min(limit.saturating_sub(held));
            Some(held + got)
        });
        Held {
            n: got,
            from: self.clone(),
        }
    }

    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Held {
    pub fn count(&self) -> usize {
        self.n
    }

    /// Keeps `n` of these permits and gives the rest back.
    pub fn keep(&mut self, n: usize) {
        let back = self.n.saturating_sub(n);
        self.from
            .held
            .fetch_sub(back, std::sync::atomic::Ordering::Relaxed);
        self.n -= back;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.keep(0);
    }
}

/// Creates the epoll set of leader pidfds and the one task that reports its events as
/// `LeadersExited`. Returns a second handle on the set, for adding pidfds.
fn spawn_leader_set(tx: UnboundedSender<Event>) -> Result<rustix::fd::OwnedFd, String> {
    use rustix::event::epoll;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)
        .map_err(|e| format!("unable to create an epoll set: {e}"))?;
    let adder = rustix::io::fcntl_dupfd_cloexec(&ep, 0)
        .map_err(|e| format!("unable to duplicate the epoll fd: {e}"))?;
    let afd = runplane_sys::asyncfd::register_with_interest(ep, Interest::READABLE)
        .map_err(|e| format!("unable to watch the epoll set: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = afd.readable().await else {
                break;
            };
            // The event buffer lives only between awaits (epoll events are not Send).
            let drained = {
                let mut buf = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 64];
                let zero = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                epoll::wait(afd.get_ref(), &mut buf[..], Some(&zero))
                    .map(|(events, _)| events.iter().map(|e| e.data.u64()).collect::<Vec<_>>())
            };
            match drained {
                Ok(ids) => {
                    let n = ids.len();
                    if n > 0 {
                        let _ = tx.send(Event::LeadersExited(ids));
                    }
                    if n < 64 {
                        guard.clear_ready();
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::error!("waiting on session leaders failed: {e}");
                    break;
                }
            }
        }
    });
    Ok(adder)
}

/// The least time between two reports of detached mounts (see [`spawn_mount_watch`]).
const MOUNT_REPORT_INTERVAL: Duration = Duration::from_millis(50);

/// Starts the task that reports mounts detached from the daemon's namespace as
/// `Event::Mounts`, where the kernel has mount events (Linux >= 6.15): how a user's tmpfs
/// that someone unmounts is noticed and mounted again at once. Returns whether it watches
/// (cleared should the task stop). Without them, such a dir is shown as `unmounted` in status
/// until its user's next login, which mounts it again.
fn spawn_mount_watch(tx: UnboundedSender<Event>) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    use runplane_sys::AsFd;
    use runplane_sys::mountwatch::MountWatch;
    let watch = match MountWatch::detaches() {
        Ok(Some(w)) => w,
        Ok(None) => {
            tracing::info!(
                "this kernel has no fanotify mount events (Linux >= 6.15): a user's tmpfs unmounted behind runplaned's back is mounted again only at the user's next login"
            );
            return watching;
        }
        Err(e) => {
            let why = "a user's tmpfs unmounted behind runplaned's back is mounted again only at the user's next login";
            // Not allowed (a container's user namespace, a seccomp profile): as expected
            // there as mounts being refused.
            if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) {
                tracing::info!("{e}: {why}");
            } else {
                tracing::warn!("{e}: {why}");
            }
            return watching;
        }
    };
    let afd = match runplane_sys::asyncfd::register_with_interest(watch.into(), Interest::READABLE)
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("unable to wait for mount events: {e}");
            return watching;
        }
    };
    watching.store(true, std::sync::atomic::Ordering::Relaxed);
    let flag = watching.clone();
    tokio::spawn(async move {
        let fd = || afd.get_ref().as_fd();
        // What is queued, into `seen` (read until a read leaves nothing behind).
        let drain = |seen: &mut Vec<_>| loop {
            match runplane_sys::mountwatch::read(fd(), seen) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        // Each report costs a look at every user in the table: one per
        // MOUNT_REPORT_INTERVAL at most (another mount churning in the namespace, the
        // remover's own unmounts), what arrives meanwhile going with the next.
        let mut next_report = tokio::time::Instant::now();
        let mut seen = Vec::new();
        let failed = loop {
            let Ok(mut guard) = afd.readable().await else {
                break None;
            };
            if let Err(e) = drain(&mut seen) {
                break Some(e);
            }
            guard.clear_ready();
            if seen.is_empty() {
                continue;
            }
            if tokio::time::Instant::now() < next_report {
                tokio::time::sleep_until(next_report).await;
                if let Err(e) = drain(&mut seen) {
                    break Some(e);
                }
            }
            next_report = tokio::time::Instant::now() + MOUNT_REPORT_INTERVAL;
            if tx.send(Event::Mounts(std::mem::take(&mut seen))).is_err() {
                break None;
            }
        };
        if let Some(e) = failed {
            tracing::error!(
                "{e}: no longer watching for unmounted user dirs (mended at the next login)"
            );
        }
        flag.store(false, std::sync::atomic::Ordering::Relaxed);
    });
    watching
}

/// `pid` and its ancestors, innermost first, up to the root of the tree (4096 at most), as
/// `/proc/<pid>/stat` says: what [`Inner::enclosing_session`] looks for session leaders in.
fn ancestry(pid: i32) -> Vec<i32> {
    let mut chain = vec![pid];
    let mut p = pid;
    while chain.len() < 4096 {
        match runplane_sys::pidfd::parent_of(p) {
            Ok(pp) if pp > 0 => {
                chain.push(pp);
                p = pp;
            }
            _ => break,
        }
    }
    chain
}

/// NSS lookups may block (LDAP, sssd): off the event loop, unless the databases are local
/// files or the caller is a control thread (which serves one connection and may block).
async fn lookup(user: Option<String>, uid: Option<u32>) -> Result<Account, ErrorReply> {
    let local = *NSS_LOCAL.get_or_init(|| {
        accounts::nss_is_local(
            std::fs::read_to_string("/etc/nsswitch.conf")
                .ok()
                .as_deref(),
        )
    });
    let r = if local || crate::control::may_block() {
        accounts::lookup(user.as_deref(), uid)
    } else {
        tokio::task::spawn_blocking(move || accounts::lookup(user.as_deref(), uid))
            .await
            .map_err(|e| err(Code::EIO, format!("user lookup failed: {e}")))?
    };
    r.map_err(|e| match e {
        LookupError::Ambiguous => err(Code::EINVAL, e.to_string()),
        LookupError::Nss { .. } => err(Code::EIO, e.to_string()),
        _ => err(Code::ENOENT, e.to_string()),
    })
}

impl Inner {
    /// What must be read to know the mount options of the users' dirs, as the kernel shows
    /// them: nothing while a listing goes on and the mount table did not change since its
    /// first page; else the table (taken out, to be read without the lock) and the mounts
    /// that are ours.
    fn stale_listing(&mut self, first_page: bool) -> Option<StaleListing> {
        let fresh = match &self.listing {
            Some((t, _)) if !first_page => t.changed().unwrap_or(true),
            _ => true,
        };
        if !fresh {
            return None;
        }
        Some(StaleListing {
            table: self.listing.take().map(|(t, _)| t),
            ours: (self.lc.users().filter_map(|u| Some(u.dir?.mount()?.id)))
                .chain(
                    self.removing
                        .values()
                        .filter_map(|r| Some(r.dir?.mount()?.id)),
                )
                .collect(),
        })
    }

    /// One page of `status.userdirs`: the caller's users (root: all) above uid `after`, those
    /// in the table and those whose dir is being removed, by uid. Usage is left at
    /// `u64::MAX`, its widest, so that the page's size is counted for any usage the caller
    /// fills in after.
    fn entries(&mut self, cred: Cred, after: Option<u32>) -> (Vec<UserdirStatus>, bool) {
        use std::ops::Bound::{Excluded, Unbounded};
        let mine = |uid: u32| cred.uid == 0 || uid == cred.uid;
        let in_table = self.lc.users_after(after).filter(|u| mine(u.uid)).map(|u| {
            let mut e = self.entry(u.uid, &u.name, u.dir, u.size, u.inodes);
            e.sessions = (u.sessions.iter().copied())
                .take(runplane_proto::MAX_STATUS_SESSIONS)
                .collect();
            e.session_count = u.sessions.len() as u32;
            e.linger = u.linger;
            e.state = u.phase.name().to_owned();
            e.remove_at = match u.phase {
                Phase::Grace { deadline } => Some(deadline),
                _ => None,
            };
            e
        });
        let from = after.map_or(Unbounded, Excluded);
        let removing = (self.removing.range((from, Unbounded)))
            .filter(|(uid, _)| mine(**uid))
            .map(|(&uid, r)| {
                let mut e = self.entry(uid, &r.name, r.dir, r.size, r.inodes);
                e.state = "removing".to_owned();
                if r.dir.is_none() {
                    e.backend = "none".to_owned();
                }
                e
            });
        let (page, more) = crate::page::page(by_uid(in_table, removing));
        if !more {
            self.listing = None; // the listing is over: keep nothing
        }
        (page, more)
    }

    /// A `status.userdirs` entry of a dir with these limits, without sessions, linger or state.
    fn entry(
        &self,
        uid: u32,
        name: &str,
        dir: Option<DirInfo>,
        size: u64,
        inodes: u64,
    ) -> UserdirStatus {
        let by_id = self.listing.as_ref().map(|(_, o)| o);
        let options = dir
            .and_then(|d| Some(d.mount()?.id))
            .and_then(|id| by_id?.get(&id).cloned())
            .unwrap_or_default();
        let limited = !dir.is_some_and(|d| d.backend == Backend::FallbackDir);
        UserdirStatus {
            user: name.to_owned(),
            uid,
            path: self.root.user_path(uid).display().to_string(),
            backend: dir
                .map_or("creating", |d| backend_name(d.backend))
                .to_owned(),
            options,
            bytes_used: u64::MAX,
            bytes_limit: if limited { size } else { 0 },
            inodes_used: u64::MAX,
            inodes_limit: if limited { inodes } else { 0 },
            ..UserdirStatus::default()
        }
    }

    /// The dir of `uid`, in the table or being removed.
    fn dir_of(&self, uid: u32) -> Option<DirInfo> {
        match self.lc.user(uid) {
            Some(u) => u.dir,
            None => self.removing.get(&uid)?.dir,
        }
    }

    /// The account of a user in the table, by name or uid (exactly one given).
    fn known_account(&self, name: Option<&str>, uid: Option<u32>) -> Option<Account> {
        let u = match (name, uid) {
            (None, Some(uid)) => self.lc.user(uid)?,
            (Some(n), None) => self.lc.user(*self.names.get(n)?)?,
            _ => return None,
        };
        u.dir?;
        Some(Account {
            uid: u.uid,
            gid: u.gid,
            name: u.name.clone(),
        })
    }

    /// A live session of another uid that a process runs in, given its `ancestry` (itself
    /// first, see [`ancestry`]): the innermost of them that leads sessions leads none of `uid`
    /// (how `su` and `sudo` from a logged-in user look). `None` when not nested (or not asked:
    /// an empty ancestry), or nested in a session of `uid` itself.
    fn enclosing_session(&self, ancestry: &[i32], uid: u32) -> Option<(SessionId, u32)> {
        for &p in ancestry {
            let mut led = self.lc.sessions_led_by(p).peekable();
            if led.peek().is_some() {
                let sessions: Vec<(SessionId, u32)> = led.map(|s| (s.id, s.uid)).collect();
                return if sessions.iter().any(|&(_, u)| u == uid) {
                    None
                } else {
                    sessions.first().copied()
                };
            }
        }
        None
    }

    /// Whether one more session of `uid`, asked for by `caller`, fits the limits: the
    /// daemon's (`max_sessions`, for everyone) and, for a user opening a session for itself,
    /// `userdirs.max_sessions_per_user` (logins through PAM, opened by root, are not held to
    /// it: no user can take the table or the daemon's open files by asking in a loop, and a
    /// busy account's logins still get their dirs).
    fn session_room(&self, uid: u32, caller: u32) -> Result<(), ErrorReply> {
        let total = self.lc.session_count();
        if total >= self.max_sessions {
            return Err(err(
                Code::EBUSY,
                format!(
                    "runplaned holds {total} sessions, as many as its open-file limit leaves room for (each pins its leader with a pidfd): not opening one for uid {uid}"
                ),
            ));
        }
        let held = self.lc.user(uid).map_or(0, |u| u.sessions.len());
        let limit = self.cfg.max_sessions_per_user as usize;
        if caller != 0 && held >= limit {
            return Err(err(
                Code::EBUSY,
                format!(
                    "uid {uid} holds {held} sessions: a user may open one for itself only while it holds fewer than {limit} (userdirs.max_sessions_per_user)"
                ),
            ));
        }
        Ok(())
    }

    /// Persists a new block of session ids before the next one is handed out.
    fn reserve_id(&mut self) -> Result<(), String> {
        if self.lc.next_id() < self.reserved {
            return Ok(());
        }
        let until = self.lc.next_id() + runplane_userdirs::store::ID_BLOCK;
        self.store.reserve_ids(until).map_err(|e| e.to_string())?;
        self.reserved = until;
        Ok(())
    }

    /// Carries out actions, feeding results back into the lifecycle. Returns the first error
    /// of a directory creation (the lifecycle has then dropped the user): `ENOSPC` when
    /// `/run/user` itself is full, else `EIO`.
    fn execute(&mut self, actions: Vec<Action>) -> Result<(), ErrorReply> {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        let mut failure = None;
        // One record write per user per request, after everything else changed the table.
        let mut persist = std::collections::BTreeSet::new();
        while let Some(a) = queue.pop_front() {
            match a {
                Action::Create {
                    uid,
                    gid,
                    size,
                    inodes,
                } => match self.root.create(uid, gid, size, inodes, &self.mount) {
                    Ok((info, note)) => {
                        if let Some(n) = note {
                            tracing::warn!(uid, "{n}");
                        }
                        let (backend, path) =
                            (backend_name(info.backend), self.root.user_path(uid));
                        crate::after::later(move || {
                            tracing::info!(
                                uid,
                                backend,
                                size,
                                inodes,
                                "created {}",
                                path.display()
                            );
                        });
                        queue.extend(self.lc.created(uid, info));
                    }
                    Err(e) => {
                        tracing::error!(uid, "{e}");
                        let full = [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT]
                            .map(|e| Some(e.raw_os_error()));
                        let code = match &e {
                            DirError::Sys(s) if full.contains(&s.raw_os_error()) => Code::ENOSPC,
                            _ => Code::EIO,
                        };
                        failure.get_or_insert(err(code, e.to_string()));
                        for &id in &self
                            .lc
                            .user(uid)
                            .map(|u| u.sessions.clone())
                            .unwrap_or_default()
                        {
                            self.leaders.forget(id);
                        }
                        queue.extend(self.lc.create_failed(uid));
                    }
                },
                Action::Persist { uid } => {
                    persist.insert(uid);
                }
                Action::WatchProcesses { uid } => self.watch_processes(uid),
                Action::UnwatchProcesses { uid } => {
                    if let Some(h) = self.watchers.remove(&uid) {
                        h.abort();
                    }
                }
                Action::ArmGrace {
                    uid,
                    generation,
                    deadline,
                } => self.arm(uid, generation, deadline),
                Action::Remove {
                    uid,
                    dir,
                    name,
                    size,
                    inodes,
                } => self.remove(
                    uid,
                    Removing {
                        done: tokio::sync::watch::channel(()).0,
                        name,
                        dir,
                        size,
                        inodes,
                    },
                ),
            }
        }
        // Records that could not be written before (a full state dir) go again with this one,
        // a few at a time: a request never pays for thousands of failing writes.
        persist.extend(self.unsaved.keys().copied().take(RETRIES_PER_CHANGE));
        for uid in persist {
            let written = match self.lc.user(uid) {
                Some(u) => {
                    if !self.names.contains_key(&u.name) {
                        self.names.insert(u.name.clone(), uid);
                    }
                    self.store.save(u, self.lc.sessions_of(uid))
                }
                // Removed meanwhile: its deletion is what is owed.
                None => self.store.delete(uid),
            };
            self.note_written(uid, written);
        }
        if self.store.wants_compaction() {
            let lc = &self.lc;
            let all = lc.users().map(|u| (u, lc.sessions_of(u.uid)));
            match self.store.compact(all) {
                Ok(()) => tracing::debug!(
                    bytes = self.store.journal_len(),
                    "compacted the userdirs journal"
                ),
                Err(e) => tracing::error!("unable to compact the userdirs journal: {e}"),
            }
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Removes a user's dir (and, with `remove_ipc`, its IPC objects) on the remover thread;
    /// `Event::Removed` reports the end, and only then is the user's record deleted (a restart
    /// meanwhile finds it and removes again).
    fn remove(&mut self, uid: u32, gone: Removing) {
        self.names.retain(|_, u| *u != uid);
        for m in [&mut self.watchers, &mut self.timers] {
            if let Some(h) = m.remove(&uid) {
                h.abort();
            }
        }
        let job = Removal {
            uid,
            dir: gone.dir,
            remove_ipc: self.cfg.remove_ipc,
        };
        let job = match &self.remover {
            Some(tx) => match tx.send(job) {
                Ok(()) => {
                    tracing::debug!(uid, "removing {}", self.root.user_path(uid).display());
                    self.removing.insert(uid, gone);
                    return;
                }
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        // No remover thread (or it is gone): remove here, holding everyone up this once.
        let outcome = job.carry_out(&self.root);
        self.removed(uid, job.dir.is_some(), outcome);
    }

    /// A removal is over: says how it went, deletes the record and lets waiting logins on.
    fn removed(
        &mut self,
        uid: u32,
        existed: bool,
        outcome: Result<runplane_userdirs::dirs::Removed, String>,
    ) {
        match outcome {
            Ok(runplane_userdirs::dirs::Removed {
                report: r,
                not_emptied,
            }) => {
                if let Some(e) = not_emptied {
                    tracing::warn!(
                        uid,
                        "{e}; detached and removed {} with what it held",
                        self.root.user_path(uid).display()
                    );
                }
                if existed {
                    for m in &r.mounts_skipped {
                        tracing::info!(uid, "detached {} with the runtime dir", m.display());
                    }
                    tracing::info!(
                        uid,
                        files = r.files,
                        dirs = r.dirs,
                        moved_up = r.moved,
                        "removed {}",
                        self.root.user_path(uid).display()
                    );
                }
            }
            Err(e) => tracing::error!(
                uid,
                "unable to remove {}: {e}",
                self.root.user_path(uid).display()
            ),
        }
        let deleted = self.store.delete(uid);
        self.note_written(uid, deleted);
        self.lc.removed(uid);
        self.removing.remove(&uid);
    }

    /// Keeps track of what the journal lacks: a failed write is logged (once per user until
    /// one succeeds) and retried with every later change; a success clears it.
    fn note_written(&mut self, uid: u32, r: runplane_sys::Result<()>) {
        match r {
            Ok(()) => {
                if self.unsaved.remove(&uid).is_some() {
                    tracing::info!(uid, "the user's record is written again");
                }
            }
            Err(e) => {
                let why = e.to_string();
                if self.unsaved.insert(uid, why.clone()).is_none() {
                    tracing::error!(
                        uid,
                        "{why}: the user's latest change is not recorded (a restart would lose it); retried with every change"
                    );
                }
            }
        }
    }

    /// What status says of records not written, if any.
    fn journal_error(&self) -> Option<String> {
        let (uid, why) = self.unsaved.iter().next()?;
        Some(match self.unsaved.len() {
            1 => format!(
                "the record of uid {uid} is not written ({why}): a restart would lose its latest change"
            ),
            n => format!(
                "the records of {n} users are not written (uid {uid}: {why}): a restart would lose their latest changes"
            ),
        })
    }

    /// Pins the session's leader (its pidfd, kept until the session ends) and watches it
    /// for its exit. The epoll registration waits until the answer is sent (crate::after): it
    /// costs a login about 4 us here (BENCHMARKS.md), and nothing is missed meanwhile, since
    /// adding a pidfd whose process has exited already reports the exit at once.
    fn watch_leader(&mut self, id: SessionId, leader: Process) {
        let pid = leader.pid();
        self.leaders.fds().insert(id, leader.into_fd());
        let (leaders, events) = (self.leaders.clone(), self.events.clone());
        crate::after::later(move || leaders.watch(id, pid, &events));
    }

    /// Watches every process of `uid` until none is left, then reports `ProcessesGone`. The
    /// scan of /proc is repeated when all the processes it found have exited (others may have
    /// started meanwhile), at most once per [`RESCAN_INTERVAL`]: a user whose processes hop
    /// from one pid to the next (each starting the next and exiting) would otherwise make the
    /// daemon read every process's status as fast as the user can fork.
    fn watch_processes(&mut self, uid: u32) {
        let tx = self.events.clone();
        let permits = self.watch_permits.clone();
        let h = spawn_later(async move {
            let mut last_scan: Option<tokio::time::Instant> = None;
            loop {
                if uid == 0 {
                    break;
                }
                if let Some(t) = last_scan {
                    tokio::time::sleep_until(t + RESCAN_INTERVAL).await;
                }
                last_scan = Some(tokio::time::Instant::now());
                // Each found pid is pinned, then checked again: one reused between the scan
                // and its pidfd (by another uid's process) is not waited for. Processes found
                // but gone before they were pinned may have started others: scan again.
                let permits = permits.clone();
                let (any, pinned, _held) = tokio::task::spawn_blocking(move || {
                    let scan = runplane_userdirs::procs::pids_of(Path::new("/proc"), uid);
                    // None free (other users' watchers hold them all): this user's processes
                    // are then seen to end by the next scan, a RESCAN_INTERVAL later.
                    let mut held = permits.take(scan.pids.len().min(MAX_WATCHED));
                    // The lowest pids, the oldest processes but after a wrap: likely the
                    // long-lived ones (a tmux server, an agent).
                    let pinned: Vec<_> = scan
                        .pids
                        .iter()
                        .take(held.count())
                        .filter_map(|&pid| {
                            let fd = runplane_sys::pidfd::pidfd(pid).ok()?;
                            runplane_sys::pidfd::uid_of(pid)
                                .is_ok_and(|u| u == uid)
                                .then_some(fd)
                        })
                        .collect();
                    held.keep(pinned.len());
                    (scan.any(), pinned, Some(held))
                })
                .await
                // A scan that panicked said nothing: look again rather than remove.
                .unwrap_or((true, Vec::new(), None));
                if !any {
                    break;
                }
                tracing::debug!(
                    uid,
                    count = pinned.len(),
                    "waiting for processes of the uid to exit"
                );
                let fds: Vec<_> = pinned
                    .into_iter()
                    .filter_map(|p| {
                        runplane_sys::asyncfd::register_with_interest(p, Interest::READABLE).ok()
                    })
                    .collect();
                for fd in &fds {
                    let _ = fd.readable().await;
                }
            }
            let _ = tx.send(Event::ProcessesGone(uid));
        });
        if let Some(old) = self.watchers.insert(uid, h) {
            old.abort();
        }
    }

    fn arm(&mut self, uid: u32, generation: u64, deadline: u64) {
        let tx = self.events.clone();
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms()));
        let h = spawn_later(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(Event::GraceExpired { uid, generation });
        });
        if let Some(old) = self.timers.insert(uid, h) {
            old.abort();
        }
    }

    /// Mounts detached from the daemon's namespace: a user's tmpfs among them (its unique id
    /// is recorded) that someone unmounted or moved away is mounted again at once, with the
    /// limits it had; the processes of its sessions find a fresh one at `XDG_RUNTIME_DIR`
    /// rather than a plain directory without limits, or nothing. Where events were lost,
    /// every user's dir is looked at. The daemon's own unmounts (removals, foreign mounts
    /// detached) name no dir in the table.
    fn mounts_detached(&mut self, seen: &[runplane_sys::mountwatch::MountEvent]) {
        use runplane_sys::mountwatch::MountEvent;
        let lost = seen.contains(&MountEvent::Lost);
        let gone: std::collections::HashSet<u64> = (seen.iter())
            .filter_map(|e| match e {
                MountEvent::Detached(id) => Some(*id),
                MountEvent::Lost => None,
            })
            .collect();
        let hit: Vec<u32> = (self.lc.users())
            .filter(|u| {
                u.dir.is_some_and(|d| {
                    d.backend != Backend::FallbackDir
                        && (lost || d.mount_unique.is_some_and(|m| gone.contains(&m.get())))
                })
            })
            .map(|u| u.uid)
            .collect();
        for uid in hit {
            self.remount(uid);
        }
    }

    /// Where the kernel tells of no unmounts (before Linux 6.15), a login of a user whose dir
    /// exists looks (one `statx` by name) whether its tmpfs is still on top there, and mounts
    /// it again if it is gone: the login gets a tmpfs, not the plain directory left.
    fn check_mounted(&mut self, uid: u32) {
        let Some(ours) = self.lc.user(uid).and_then(|u| u.dir?.mount()) else {
            return;
        };
        if !self.root.on_top(uid, ours) {
            self.remount(uid);
        }
    }

    /// Mounts a new tmpfs for a user in the table whose recorded one is gone from its path
    /// (nothing is done while it is there, also under another's mount), and records it.
    fn remount(&mut self, uid: u32) {
        let Some(u) = self.lc.user(uid) else { return };
        let Some(ours) = u.dir.and_then(|d| d.mount()) else {
            return;
        };
        if !self.root.lost(uid, ours) {
            return;
        }
        let (gid, size, inodes) = (u.gid, u.size, u.inodes);
        let path = self.root.user_path(uid);
        match self.root.create(uid, gid, size, inodes, &self.mount) {
            Ok((info, note)) => {
                if let Some(n) = note {
                    tracing::warn!(uid, "{n}");
                }
                tracing::warn!(
                    uid,
                    "the tmpfs on {} was unmounted behind runplaned's back: mounted a new one",
                    path.display()
                );
                self.remounted += 1;
                let actions = self.lc.created(uid, info);
                let _ = self.execute(actions);
            }
            Err(e) => tracing::error!(
                uid,
                "the tmpfs on {} was unmounted behind runplaned's back and no new one could be made: {e}",
                path.display()
            ),
        }
    }

    /// Re-adopts what the records say, keeping live sessions and their directories.
    fn restore(&mut self, loaded: runplane_userdirs::store::Loaded) {
        let records = loaded.records;
        for p in loaded.problems {
            tracing::error!("userdirs records: {p}");
        }
        if let Some(t) = loaded.torn {
            tracing::warn!("userdirs records: {t}");
        }
        let mut live: HashMap<SessionId, Process> = HashMap::new();
        let mut missing_dirs = Vec::new();
        let mut recs = Vec::new();
        // Records of dirs whose unique mount id they lacked and now have.
        let mut filled = Vec::new();
        for mut r in records {
            for s in &r.sessions {
                if let Some(id) = s.leader.identity()
                    && let Ok(Some(p)) = Process::open_checked(s.leader.pid, id)
                {
                    live.insert(s.id, p);
                }
            }
            let intact = match r.user.dir {
                Some(d) if d.backend == Backend::FallbackDir => {
                    self.root.usage(r.user.uid, None).ok().flatten().is_some()
                }
                Some(d) => match d.mount().and_then(|m| self.root.mounted_as(r.user.uid, m)) {
                    Some(now) => {
                        if d.mount_unique.is_none() && now.unique.is_some() {
                            let unique = now.unique.and_then(std::num::NonZeroU64::new);
                            r.user.dir = Some(DirInfo {
                                mount_unique: unique,
                                ..d
                            });
                            filled.push(r.user.uid);
                        }
                        true
                    }
                    None => false,
                },
                None => false,
            };
            if !intact {
                missing_dirs.push((r.user.uid, r.user.gid, r.user.size, r.user.inodes));
            }
            recs.push((r.user, r.sessions));
        }
        let n = recs.len();
        let actions = self
            .lc
            .restore(recs, |s| live.contains_key(&s.id), now_ms());
        for (id, p) in live {
            if self.lc.session(id).is_some() {
                self.watch_leader(id, p);
            }
        }
        let mut recreate = Vec::new();
        for (uid, gid, size, inodes) in missing_dirs {
            if self.lc.user(uid).is_some() {
                tracing::warn!(
                    uid,
                    "{} vanished while runplaned was down: making it again",
                    self.root.user_path(uid).display()
                );
                recreate.push(Action::Create {
                    uid,
                    gid,
                    size,
                    inodes,
                });
            }
        }
        if n > 0 {
            tracing::info!(
                users = n,
                sessions = self.lc.sessions().count(),
                "re-adopted runtime dirs from the state directory"
            );
        }
        let _ = self.execute(recreate);
        let _ = self.execute(actions);
        let refill = (filled.into_iter())
            .filter(|&uid| self.lc.user(uid).is_some())
            .map(|uid| Action::Persist { uid })
            .collect();
        let _ = self.execute(refill);
    }

    fn linger_dir(&self, create: bool) -> Result<Option<Dir>, String> {
        let p = &self.cfg.linger_dir;
        if create {
            std::fs::create_dir_all(p)
                .map_err(|e| format!("unable to create {}: {e}", p.display()))?;
        }
        match Dir::open(p) {
            Ok(d) => Ok(Some(d)),
            Err(e)
                if !create && e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn linger_names(&self) -> Result<Vec<String>, String> {
        let Some(d) = self.linger_dir(false)? else {
            return Ok(vec![]);
        };
        let mut names: Vec<String> = d
            .entries()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|e| e.name.into_string().ok())
            .filter(|n| accounts::valid_user_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    fn write_linger_file(&self, name: &str, on: bool) -> Result<(), String> {
        let d = self.linger_dir(on)?;
        match (d, on) {
            (Some(d), true) => {
                runplane_sys::atomic::write_atomic(&d, name, b"", 0o644).map_err(|e| e.to_string())
            }
            (Some(d), false) => match d.unlink(name) {
                Err(e) if e.raw_os_error() != Some(rustix::io::Errno::NOENT.raw_os_error()) => {
                    Err(e.to_string())
                }
                _ => Ok(()),
            },
            (None, _) => Ok(()),
        }
    }

    /// Lingering users' directories exist from daemon start.
    fn bring_up_lingering(&mut self) {
        let names = match self.linger_names() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("unable to read the linger directory: {e}");
                return;
            }
        };
        for name in names {
            match accounts::lookup(Some(&name), None) {
                Ok(a) => match self.lc.set_linger(a.uid, a.gid, &a.name, true, now_ms()) {
                    Ok(actions) => {
                        let _ = self.execute(actions);
                    }
                    Err(r) => tracing::error!(
                        uid = a.uid,
                        "unable to bring up lingering user {name}: {r}"
                    ),
                },
                Err(e) => {
                    tracing::warn!("linger file {}/{name}: {e}", self.cfg.linger_dir.display())
                }
            }
        }
    }
}

/// RemoveIPC for `uid`, unless it is a system user or processes of the uid still run.
fn remove_ipc_of(uid: u32) {
    use runplane_userdirs::ipc;
    if uid < ipc::FIRST_REGULAR_UID {
        return;
    }
    let procs = runplane_userdirs::procs::pids_of(Path::new("/proc"), uid);
    if procs.any() {
        tracing::info!(
            uid,
            processes = procs.pids.len(),
            "keeping IPC objects: processes of the uid still run"
        );
        return;
    }
    let (removed, failed) = ipc::remove(uid);
    for o in &removed {
        tracing::info!(uid, kind = o.kind, id = %o.id, "removed IPC object");
    }
    for f in failed {
        tracing::error!(uid, "RemoveIPC: {f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_in_the_table_and_under_removal_are_merged_by_uid() {
        let at = |uids: &[u32]| {
            uids.iter()
                .map(|&uid| UserdirStatus {
                    uid,
                    ..UserdirStatus::default()
                })
                .collect::<Vec<_>>()
        };
        let uids = |a: &[u32], b: &[u32]| {
            by_uid(at(a).into_iter(), at(b).into_iter())
                .map(|e| e.uid)
                .collect::<Vec<_>>()
        };
        assert_eq!(uids(&[1, 4, 9], &[0, 5, 6, 10]), [0, 1, 4, 5, 6, 9, 10]);
        assert_eq!(uids(&[], &[3, 7]), [3, 7]);
        assert_eq!(uids(&[3, 7], &[]), [3, 7]);
        assert_eq!(uids(&[], &[]), [] as [u32; 0]);
    }

    #[test]
    fn the_fd_budget_leaves_room_for_connections_and_watches() {
        let b = |nofile, clients| {
            let b = FdBudget::of(nofile, clients);
            (b.sessions, b.watched)
        };
        // systemd's limit for logind, this CI host's hard limit, the kernel's default hard
        // limit, the usual soft one.
        assert_eq!(b(524_288, 256), (519_680, 4096));
        assert_eq!(b(20_000, 256), (17_052, 2436));
        assert_eq!(b(4096, 256), (3136, 448));
        assert_eq!(b(1024, 256), (448, 64));
        // Nothing left: still one session, so that the refusal names the limit, not a failed
        // pidfd; no watches (scans instead).
        assert_eq!(b(300, 4096), (1, 0));
        assert!(FdBudget::of(u64::MAX, 4096).sessions >= 1 << 40);
    }

    #[test]
    fn watch_permits_are_shared_and_given_back() {
        let p = WatchPermits::new(100);
        let mut a = p.take(64);
        let b = p.take(64);
        assert_eq!((a.count(), b.count(), p.in_use()), (64, 36, 100));
        assert_eq!(p.take(1).count(), 0, "none left");
        a.keep(10); // pinned only 10
        assert_eq!(p.in_use(), 46);
        drop(b);
        assert_eq!(p.in_use(), 10);
        // A lower limit after a reload: what is held stays, nothing more is handed out.
        p.set_limit(5);
        assert_eq!(p.take(3).count(), 0);
        drop(a);
        assert_eq!((p.in_use(), p.take(9).count()), (0, 5));
    }
}

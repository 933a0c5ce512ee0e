//! The daemon's state and event loop: what `status` reports, who may do what, reloads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{SignalKind, signal};

use runplane_proto::{
    Answer, Code, ConfigStatus, DaemonStatus, ErrorReply, Pong, Request, Status, answer,
};
use runplane_sys::scm::Cred;

use crate::Fatal;
use crate::args::Setup;
use crate::config::{self, Config};
use crate::control;
use crate::readiness;
use crate::state::StateDir;
use crate::userdirs::{Event, Userdirs};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The configuration as loaded, and the history of reloads.
#[derive(Debug)]
struct Loaded {
    config: Config,
    path: Option<PathBuf>,
    generation: u64,
    loaded_at: u64,
    last_error: Option<String>,
    pending_restart: Vec<String>,
}

/// Shared state of the running daemon.
#[derive(Debug)]
pub struct Daemon {
    setup: Setup,
    pid: i32,
    uid: u32,
    started_at: u64,
    control: PathBuf,
    state: PathBuf,
    loaded: Mutex<Loaded>,
    pub(crate) clients: AtomicU32,
    /// Connections over the limit being answered EBUSY (bounded by MAX_REFUSING).
    pub(crate) refusing: AtomicU32,
    requests: AtomicU64,
    userdirs: Userdirs,
}

impl Daemon {
    fn loaded(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn config_status(&self) -> ConfigStatus {
        let l = self.loaded();
        ConfigStatus {
            path: l.path.as_ref().map(|p| p.display().to_string()),
            generation: l.generation,
            loaded_at: l.loaded_at,
            last_error: l.last_error.clone(),
            pending_restart: l.pending_restart.clone(),
        }
    }

    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn max_clients(&self) -> u32 {
        self.loaded().config.daemon.max_clients
    }

    /// `(max_clients, max_clients_per_uid)`, as configured now.
    pub(crate) fn client_limits(&self) -> (u32, u32) {
        let l = self.loaded();
        (
            l.config.daemon.max_clients,
            l.config.daemon.max_clients_per_uid,
        )
    }

    /// The daemon's own uid (with root, exempt from the per-uid connection limits).
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// The whole plane as the daemon sees it (per-user entries filtered to `cred` unless root).
    pub fn status(&self, cred: Cred) -> Status {
        let (mgr, users, more) = self.userdirs.status(cred);
        Status {
            userdirs_manager: Some(mgr),
            userdirs: users,
            userdirs_more: more,
            daemon: DaemonStatus {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: self.pid,
                uid: self.uid,
                mode: self.setup.mode,
                started_at: self.started_at,
                uptime_secs: now().saturating_sub(self.started_at),
                control: self.control.display().to_string(),
                state: self.state.display().to_string(),
                clients: self.clients.load(Ordering::Relaxed),
                max_clients: self.max_clients(),
                requests: self.requests.load(Ordering::Relaxed),
                config: self.config_status(),
            },
        }
    }

    /// Re-reads the configuration. A bad file leaves the running configuration untouched.
    pub fn reload(&self) -> Result<ConfigStatus, ErrorReply> {
        match config::load(&self.setup.source, &self.setup.defaults) {
            Ok((new, path)) => {
                {
                    let mut l = self.loaded();
                    // Compare with what runs, not with the last file: control and state
                    // were fixed at start.
                    let mut running = new.clone();
                    running.daemon.control = self.control.clone();
                    running.daemon.state = self.state.clone();
                    l.pending_restart = running.restart_only_changes(&new);
                    // userdirs.root and linger_dir were fixed at start too.
                    l.pending_restart.retain(|k| !k.starts_with("userdirs."));
                    l.pending_restart.extend(
                        self.userdirs
                            .reconfigure(&new.userdirs, new.daemon.max_clients),
                    );
                    l.config = new;
                    l.path = path;
                    l.generation += 1;
                    l.loaded_at = now();
                    l.last_error = None;
                }
                let st = self.config_status();
                if !st.pending_restart.is_empty() {
                    tracing::warn!(
                        "reloaded; {} take effect at the next start",
                        st.pending_restart.join(", ")
                    );
                } else {
                    tracing::info!(generation = st.generation, "configuration reloaded");
                }
                Ok(st)
            }
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                self.loaded().last_error = Some(e.to_string());
                Err(ErrorReply::new(
                    Code::EINVAL,
                    format!("reload failed, the running configuration stays: {e}"),
                ))
            }
        }
    }

    fn may_administer(&self, cred: Cred) -> bool {
        cred.uid == 0 || cred.uid == self.uid
    }

    /// Authorizes and carries out one request.
    pub async fn dispatch(&self, req: &Request, cred: Cred) -> Result<Answer, ErrorReply> {
        match req {
            Request::Ping => answer(&Pong {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: self.pid,
            }),
            Request::Status => answer(&self.status(cred)),
            Request::SessionOpen(a) => answer(&self.userdirs.open(a.clone(), cred).await?),
            Request::SessionClose(a) => answer(&self.userdirs.close(a.id, cred)?),
            Request::SessionList(a) => answer(&self.userdirs.list(cred, a.after)?),
            Request::Linger(a) => answer(&self.userdirs.linger(a.clone(), cred).await?),
            Request::LingerList(a) => answer(&self.userdirs.linger_list(a.after.as_deref())?),
            Request::Userdirs(a) => answer(&self.userdirs.page(cred, a.after)),
            Request::SessionIpc(a) => answer(&self.userdirs.ipc(a.clone(), cred).await?),
            Request::Reload => {
                if !self.may_administer(cred) {
                    return Err(ErrorReply::new(
                        Code::EPERM,
                        format!(
                            "reload is for root and the daemon's own user (uid 0, {}), not uid {}",
                            self.uid, cred.uid
                        ),
                    ));
                }
                readiness::notify(&format!(
                    "RELOADING=1\nMONOTONIC_USEC={}",
                    readiness::monotonic_usec()
                ));
                let r = self.reload();
                readiness::notify("READY=1");
                answer(&r?)
            }
        }
    }
}

/// The userdirs capability: managed in system mode unless another manager runs (and no
/// `--force`) or `/run/user` is unsafe; each refusal is logged and shown in status.
fn start_userdirs(
    setup: &Setup,
    config: &Config,
    state: &StateDir,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
) -> Userdirs {
    let root = config.userdirs.root.clone();
    if setup.mode == runplane_proto::Mode::User {
        return Userdirs::disabled(
            root,
            "a user daemon does not manage other users' runtime dirs".into(),
        );
    }
    if let Some((name, pid)) =
        runplane_userdirs::procs::other_manager(std::path::Path::new("/proc"))
    {
        if !setup.force {
            let why = format!(
                "{name} (pid {pid}) manages {}; start runplaned with --force to take over",
                root.display()
            );
            tracing::error!("not managing user runtime dirs: {why}");
            return Userdirs::disabled(root, why);
        }
        tracing::warn!(
            "{name} (pid {pid}) runs, but --force: managing {} anyway",
            root.display()
        );
    }
    match Userdirs::start(
        config.userdirs.clone(),
        config.daemon.max_clients,
        state.dir(),
        events,
    ) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("not managing user runtime dirs: {e}");
            Userdirs::disabled(root, e)
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(setup: Setup, config: Config, config_path: Option<PathBuf>) -> Result<(), Fatal> {
    let mode = setup.mode;
    let control_path = config.daemon.control.clone();
    let state_path = config.daemon.state.clone();
    // Take the fd number before anything else can open fds that might collide with it.
    let ready_fd = match setup.ready_fd {
        Some(n) => Some(
            runplane_sys::inherited::take(n, "readiness")
                .map_err(|e| Fatal::usage(e.to_string()))?,
        ),
        None => None,
    };
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Fatal::system(format!("unable to catch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Fatal::system(format!("unable to catch SIGINT: {e}")))?;
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| Fatal::system(format!("unable to catch SIGHUP: {e}")))?;

    let state = StateDir::open(&state_path, mode)?;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let userdirs = start_userdirs(&setup, &config, &state, events_tx);
    let listener = control::bind(&control_path, mode)?;
    let daemon = Arc::new(Daemon {
        setup,
        pid: std::process::id() as i32,
        uid: rustix::process::geteuid().as_raw(),
        started_at: now(),
        control: control_path.clone(),
        state: state_path.clone(),
        loaded: Mutex::new(Loaded {
            config,
            path: config_path.clone(),
            generation: 1,
            loaded_at: now(),
            last_error: None,
            pending_restart: Vec::new(),
        }),
        clients: AtomicU32::new(0),
        refusing: AtomicU32::new(0),
        requests: AtomicU64::new(0),
        userdirs,
    });
    let server = control::Server::start(listener, daemon.clone())?;
    tracing::info!(
        mode = if mode == runplane_proto::Mode::System { "system" } else { "user" },
        config = %config_path.as_ref().map_or("built-in defaults".into(), |p| p.display().to_string()),
        "runplaned {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        control_path.display()
    );
    readiness::notify(&format!(
        "READY=1\nSTATUS=listening on {}\nMAINPID={}",
        control_path.display(),
        daemon.pid
    ));
    if let Some(fd) = ready_fd {
        readiness::ready_fd(fd);
    }

    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            Some(ev) = events.recv() => daemon.userdirs.handle(ev),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                readiness::notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", readiness::monotonic_usec()));
                let _ = daemon.reload();
                readiness::notify("READY=1");
            }
        }
    }
    readiness::notify("STOPPING=1");
    server.stop();
    state.close();
    tracing::info!("stopped");
    Ok(())
}

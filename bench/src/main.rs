//! runplane's side of `bench/run`. Each mode prints `p50_us p99_us mean_us` on one line, the
//! same shape as the C reference programs, so that bench/run can put them side by side.
//!
//! - `control SOCKET N OPFLOOR DIR`: N `ping` round trips through the library client on one
//!   connection, each followed by a bare 1-byte round trip to the C server OPFLOOR (working
//!   in DIR; it mounts nothing for these): prints `ping` and `floor_ping`.
//! - `spawn N TOUCH_MIB PROGRAM`: N spawn+wait of PROGRAM with `runplane_sys::spawn`, from a
//!   process that first touched TOUCH_MIB MiB (the primitive must not slow down as the
//!   daemon grows, which is what fork does).
//! - `userdirs SOCKET DAEMON_PID FIRST_UID USERS FURTHER IDLE_SECS OPFLOOR FLOOR_DIR`: through
//!   the library client on one connection, led by this process, passing the resolved account
//!   as the PAM module does: a first `session_open` for each of USERS uids (each mounts a
//!   tmpfs), a further open for FURTHER of them and the close of those; then the daemon's RSS
//!   with USERS users mounted, and its context switches (wakeups) over IDLE_SECS of idleness.
//!   Each request to runplaned is followed by the same request to the C floor server OPFLOOR
//!   (bench/c/opfloor.c, working in FLOOR_DIR) and by a bare round trip to it, so that runplane
//!   and its floors are measured at the same moments of a shared machine; FURTHER pings go
//!   first, each followed by a bare round trip; last, FURTHER users' first sessions are closed
//!   (each their user's last: the grace period starts). Besides, back to back: the first
//!   opens of the first FURTHER users (before the others), a third session of each of FURTHER
//!   users and its close, in blocks of [`HOT_BLOCK`] runplane requests in a row, then as
//!   many of the C server's floor in a row, then as many bare round trips: hot, as a mount
//!   loop and a ping-pong are (`hot_first`, `hot_further`, `hot_close`, their floors
//!   `hot_floor_bare_mount`, `hot_floor_open`, `hot_floor_close`, and `hot_rtt`). Prints
//!   `ping`, `first`, `further`,
//!   `close`, `last_close` and their floors `floor_ping`, `floor_mount`, `floor_open`,
//!   `floor_close`, `floor_last_close`, `floor_bare_mount` (the C server's mkdirat + mount(2)
//!   alone, asked after each first open too), and `rtt` (p50 p99 mean, µs), then `rss_kib N`
//!   and `idle_wakeups N`.

use std::time::{Duration, Instant};

fn summary(mut t: Vec<f64>) -> String {
    if t.is_empty() {
        return "0 0 0".into();
    }
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    t.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{:.1} {:.1} {:.1}",
        t[t.len() / 2],
        t[t.len() * 99 / 100],
        mean
    )
}

fn usage() -> ! {
    eprintln!(
        "usage: runplane-bench control SOCKET N OPFLOOR DIR | spawn N TOUCH_MIB PROGRAM | userdirs SOCKET DAEMON_PID FIRST_UID USERS FURTHER IDLE_SECS OPFLOOR FLOOR_DIR"
    );
    std::process::exit(100);
}

fn fatal(msg: impl std::fmt::Display) -> ! {
    eprintln!("runplane-bench: fatal: {msg}");
    std::process::exit(111);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> usize {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match args.get(1).map(String::as_str) {
        Some("control") => {
            let sock = args.get(2).unwrap_or_else(|| usage());
            let n = num(3);
            let floor = Floor::start(
                args.get(4).unwrap_or_else(|| usage()),
                args.get(5).unwrap_or_else(|| usage()),
                0,
            );
            let mut c = runplane::Client::connect(sock, Duration::from_secs(5))
                .unwrap_or_else(|e| fatal(e));
            for _ in 0..n.min(1000) {
                c.ping().unwrap_or_else(|e| fatal(e)); // warm up
                floor.request(b'p');
            }
            let (mut t, mut f) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                let t0 = Instant::now();
                c.ping().unwrap_or_else(|e| fatal(e));
                t.push(t0.elapsed().as_secs_f64() * 1e6);
                f.push(floor.request(b'p'));
            }
            floor.stop();
            println!("ping {}", summary(t));
            println!("floor_ping {}", summary(f));
        }
        Some("spawn") => {
            let n = num(2);
            let touch = num(3) << 20;
            let prog = args.get(4).unwrap_or_else(|| usage());
            let mut mem: Vec<u8> = Vec::with_capacity(touch);
            // Touch every page so it is really resident (as in the C reference).
            mem.resize(touch, 1);
            let spawn = runplane_sys::spawn::Spawn::new(prog);
            let mut t = Vec::with_capacity(n);
            for _ in 0..n {
                let t0 = Instant::now();
                let child = spawn.spawn().unwrap_or_else(|e| fatal(e));
                let st = child.wait().unwrap_or_else(|e| fatal(e));
                t.push(t0.elapsed().as_secs_f64() * 1e6);
                if !st.success() {
                    fatal(format!("{prog}: {st}"));
                }
            }
            std::hint::black_box(&mem);
            println!("{}", summary(t));
        }
        Some("userdirs") => userdirs(&args),
        _ => usage(),
    }
}

fn status_field(pid: &str, task: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{task}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Voluntary and involuntary context switches of every thread of `pid`: each wakeup of a
/// sleeping thread counts one.
fn switches(pid: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        fatal(format!("no process {pid}"))
    };
    rd.flatten()
        .map(|t| {
            let t = t.file_name().to_string_lossy().into_owned();
            status_field(pid, &t, "voluntary_ctxt_switches:")
                + status_field(pid, &t, "nonvoluntary_ctxt_switches:")
        })
        .sum()
}

/// The C floor server of `bench/c/opfloor.c`, on a SEQPACKET socketpair (fd 3 in the child).
struct Floor {
    sock: runplane_sys::OwnedFd,
    child: runplane_sys::spawn::Child,
}

impl Floor {
    fn start(program: &str, dir: &str, most_open: u64) -> Floor {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        let (mine, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap_or_else(|e| fatal(format!("socketpair: {e}")));
        let child = runplane_sys::spawn::Spawn::new(program)
            .args(["3", dir, &most_open.to_string()])
            .fd(runplane_sys::AsFd::as_fd(&theirs), 3)
            .spawn()
            .unwrap_or_else(|e| fatal(e));
        Floor { sock: mine, child }
    }

    /// One request and its answer, in microseconds.
    fn request(&self, op: u8) -> f64 {
        use rustix::net::{RecvFlags, SendFlags, recv, send};
        let t0 = Instant::now();
        let mut b = [op];
        send(&self.sock, &b, SendFlags::NOSIGNAL).unwrap_or_else(|e| fatal(e));
        match recv(&self.sock, &mut b, RecvFlags::empty()) {
            Ok((1, _)) => {}
            r => fatal(format!("the floor server died: {r:?}")),
        }
        t0.elapsed().as_secs_f64() * 1e6
    }

    fn stop(self) {
        drop(self.sock); // EOF: it removes its mounts and exits
        match self.child.wait() {
            Ok(st) if st.success() => {}
            r => fatal(format!("the floor server failed: {r:?}")),
        }
    }
}

/// Requests in a row in the back-to-back rows of `userdirs`.
const HOT_BLOCK: usize = 50;

fn userdirs(args: &[String]) {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    let num = |i: usize| -> u64 { arg(i).parse().unwrap_or_else(|_| usage()) };
    let (sock, pid) = (arg(2), arg(3));
    let (first_uid, users, further, idle) = (num(4) as u32, num(5) as u32, num(6) as u32, num(7));
    let floor = Floor::start(&arg(8), &arg(9), u64::from(users) + 2 * u64::from(further));
    let me = Some(std::process::id() as i32);
    let mut c =
        runplane::Client::connect(&sock, Duration::from_secs(10)).unwrap_or_else(|e| fatal(e));
    let open = |c: &mut runplane::Client, uid: u32| {
        let t0 = Instant::now();
        let s = c
            .session_open(runplane::proto::SessionOpen {
                // As pam_runplane.so does: the account resolved by the caller (names b0, b1...
                // with gid = uid, as bench/userdirs writes them).
                user: Some(format!("b{}", uid - first_uid)),
                uid: Some(uid),
                pid: me,
                allow_nested: None,
                gid: Some(uid),
            })
            .unwrap_or_else(|e| fatal(format!("uid {uid}: {e}")));
        (t0.elapsed().as_secs_f64() * 1e6, s.id)
    };
    // The request path alone, measured the same way: a ping, then a bare round trip.
    let (mut t, mut f) = (Vec::new(), Vec::new());
    for _ in 0..further {
        let t0 = Instant::now();
        c.ping().unwrap_or_else(|e| fatal(e));
        t.push(t0.elapsed().as_secs_f64() * 1e6);
        f.push(floor.request(b'p'));
    }
    println!("ping {}", summary(t));
    println!("floor_ping {}", summary(f));
    // Back to back: blocks of HOT_BLOCK runplane requests in a row, then as many of the C
    // server's floor in a row, then as many bare round trips: each hot, as the floors
    // (a mount loop, a ping-pong) are, and a block apart in time.
    let mut firsts = Vec::new();
    // As many as the further opens, and no more than leave as many for the one-by-one rows:
    // the C server must have opened (one by one) what the closes close.
    let hot = further.min(users.saturating_sub(further));
    let (mut t, mut bare, mut rtt) = (Vec::new(), Vec::new(), Vec::new());
    for block in (first_uid..first_uid + hot)
        .collect::<Vec<_>>()
        .chunks(HOT_BLOCK)
    {
        for &uid in block {
            let (d, id) = open(&mut c, uid);
            t.push(d);
            firsts.push(id);
        }
        bare.extend(block.iter().map(|_| floor.request(b'M')));
        rtt.extend(block.iter().map(|_| floor.request(b'p')));
    }
    println!("hot_first {}", summary(t));
    println!("hot_floor_bare_mount {}", summary(bare));
    let mut hot_rtt = rtt;
    let (mut rtt, mut t, mut f, mut bare) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for uid in first_uid + hot..first_uid + users {
        let (d, id) = open(&mut c, uid);
        t.push(d);
        firsts.push(id);
        f.push(floor.request(b'm'));
        bare.push(floor.request(b'M'));
        rtt.push(floor.request(b'p'));
    }
    println!("first {}", summary(t));
    println!("floor_mount {}", summary(f));
    println!("floor_bare_mount {}", summary(bare));
    let (mut ids, mut t, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for uid in first_uid..first_uid + further.min(users) {
        let (d, id) = open(&mut c, uid);
        t.push(d);
        ids.push(id);
        f.push(floor.request(b'o'));
        rtt.push(floor.request(b'p'));
    }
    println!("further {}", summary(t));
    println!("floor_open {}", summary(f));
    // The second sessions of as many other users, back to back (those of the one-by-one
    // further opens when there are not enough users).
    let (mut hot_ids, mut t, mut f) = (Vec::new(), Vec::new(), Vec::new());
    let n = further.min(users);
    let from = if users >= 2 * n {
        first_uid + n
    } else {
        first_uid
    };
    let uids: Vec<u32> = (from..from + n).collect();
    for block in uids.chunks(HOT_BLOCK) {
        for &uid in block {
            let (d, id) = open(&mut c, uid);
            t.push(d);
            hot_ids.push(id);
        }
        f.extend(block.iter().map(|_| floor.request(b'o')));
        hot_rtt.extend(block.iter().map(|_| floor.request(b'p')));
    }
    println!("hot_further {}", summary(t));
    println!("hot_floor_open {}", summary(f));
    // Closes `ids`, each followed by the floor's `op` and a bare round trip.
    let mut closes = |c: &mut runplane::Client, ids: &[u64], op: u8, name: &str| {
        let (mut t, mut f) = (Vec::new(), Vec::new());
        for &id in ids {
            let t0 = Instant::now();
            c.session_close(id).unwrap_or_else(|e| fatal(e));
            t.push(t0.elapsed().as_secs_f64() * 1e6);
            f.push(floor.request(op));
            rtt.push(floor.request(b'p'));
        }
        println!("{name} {}", summary(t));
        println!("floor_{name} {}", summary(f));
    };
    closes(&mut c, &ids, b'c', "close");
    let (mut t, mut f) = (Vec::new(), Vec::new());
    for block in hot_ids.chunks(HOT_BLOCK) {
        for &id in block {
            let t0 = Instant::now();
            c.session_close(id).unwrap_or_else(|e| fatal(e));
            t.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        f.extend(block.iter().map(|_| floor.request(b'c')));
        hot_rtt.extend(block.iter().map(|_| floor.request(b'p')));
    }
    println!("hot_close {}", summary(t));
    println!("hot_floor_close {}", summary(f));
    println!("hot_rtt {}", summary(hot_rtt));
    // The last session of a user: its close starts the grace period (a timer on the loop).
    closes(
        &mut c,
        &firsts[..ids.len().min(firsts.len())],
        b'l',
        "last_close",
    );
    println!("rtt {}", summary(rtt));
    floor.stop();
    let rss = status_field(&pid, &pid, "VmRSS:");
    println!("rss_kib {rss}");
    drop(c);
    // Let the daemon settle (the connection's end, tokio's idle blocking threads retiring).
    std::thread::sleep(Duration::from_secs(12));
    let before = switches(&pid);
    std::thread::sleep(Duration::from_secs(idle));
    println!("idle_wakeups {}", switches(&pid) - before);
}

//! runplane's side of `bench/run`. Each mode prints `p50_us p99_us mean_us` on one line, the
//! same shape as the C reference programs, so that bench/run can put them side by side.
//!
//! - `control SOCKET N`: N `ping` round trips through the library client on one connection.
//! - `spawn N TOUCH_MIB PROGRAM`: N spawn+wait of PROGRAM with `runplane_sys::spawn`, from a
//!   process that first touched TOUCH_MIB MiB (the primitive must not slow down as the
//!   daemon grows, which is what fork does).

use std::time::{Duration, Instant};

fn summary(mut t: Vec<f64>) -> String {
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
    eprintln!("usage: runplane-bench control SOCKET N | spawn N TOUCH_MIB PROGRAM");
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
            let mut c = runplane::Client::connect(sock, Duration::from_secs(5))
                .unwrap_or_else(|e| fatal(e));
            for _ in 0..n.min(1000) {
                c.ping().unwrap_or_else(|e| fatal(e)); // warm up
            }
            let mut t = Vec::with_capacity(n);
            for _ in 0..n {
                let t0 = Instant::now();
                c.ping().unwrap_or_else(|e| fatal(e));
                t.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            println!("{}", summary(t));
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
        _ => usage(),
    }
}

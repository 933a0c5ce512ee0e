//! Logging through tracing: to journald when stderr is connected to it (`$JOURNAL_STREAM`
//! names stderr's device and inode, as systemd sets it), else to stderr (OpenRC, runit, s6
//! and terminals), filtered by `$RUNPLANE_LOG` (default `info`).

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(md) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(md.dev()) && ino.parse() == Ok(md.ino())
}

static TO_JOURNAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether logs go to journald (then stderr messages are not already in the log).
pub fn to_journal() -> bool {
    TO_JOURNAL.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the global subscriber (once).
pub fn init() {
    let filter = EnvFilter::try_from_env("RUNPLANE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal()
        && let Ok(j) = tracing_journald::layer()
    {
        TO_JOURNAL.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(j.with_syslog_identifier("runplaned".into()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// The most log events one [`Held`] keeps back; more are logged at once.
const MAX_HELD: usize = 64;

type Event = Box<dyn FnOnce()>;

thread_local! {
    static HELD: std::cell::RefCell<Option<Vec<Event>>> = const { std::cell::RefCell::new(None) };
}

/// While alive, what this thread logs through [`later`] is held back; dropping it logs it, in
/// order. The control socket's threads hold the events of a request until its answer is sent:
/// a login waits for its runtime dir, not for a line about it to be formatted and written.
#[derive(Debug)]
pub struct Held {
    /// Bound to the thread whose events it holds.
    _thread: std::marker::PhantomData<*const ()>,
}

/// Starts holding this thread's [`later`] events back.
pub fn hold() -> Held {
    HELD.with(|h| *h.borrow_mut() = Some(Vec::new()));
    Held {
        _thread: std::marker::PhantomData,
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let events = HELD.with(|h| h.borrow_mut().take());
        for log in events.into_iter().flatten() {
            log();
        }
    }
}

/// Logs through `log` now, or when this thread's [`Held`] is dropped.
pub fn later(log: impl FnOnce() + 'static) {
    let mut log = Some(log);
    HELD.with(|h| {
        if let Some(q) = h.borrow_mut().as_mut()
            && q.len() < MAX_HELD
            && let Some(l) = log.take()
        {
            q.push(Box::new(l));
        }
    });
    if let Some(l) = log {
        l();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn later_runs_at_once_unless_held_and_in_order_when_released() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = |n: u32| {
            let seen = seen.clone();
            move || seen.lock().unwrap().push(n)
        };
        later(log(1));
        assert_eq!(*seen.lock().unwrap(), [1]);
        let held = hold();
        later(log(2));
        later(log(3));
        assert_eq!(*seen.lock().unwrap(), [1]);
        drop(held);
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
        later(log(4));
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
    }

    #[test]
    fn a_hold_keeps_back_at_most_max_held_events() {
        let seen = Arc::new(Mutex::new(0usize));
        let held = hold();
        for _ in 0..MAX_HELD + 5 {
            let seen = seen.clone();
            later(move || *seen.lock().unwrap() += 1);
        }
        assert_eq!(*seen.lock().unwrap(), 5);
        drop(held);
        assert_eq!(*seen.lock().unwrap(), MAX_HELD + 5);
    }
}

//! Work a request does that its caller need not wait for: log lines about what it did,
//! timers and watchers it starts on the event loop. A control thread [`hold`]s while it
//! answers, so that such work runs after the answer is sent: formatting and writing a line
//! costs a login a few microseconds, and waking the event loop (a task spawned from another
//! thread) may let the loop's thread run first on the CPU the answer waits for.
//! Elsewhere (the event loop itself) [`later`] runs the work at once.

use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;

/// The most pieces of work one [`Held`] keeps back; more run at once.
const MAX_HELD: usize = 64;

type Work = Box<dyn FnOnce()>;

thread_local! {
    static HELD: std::cell::RefCell<Option<Vec<Work>>> = const { std::cell::RefCell::new(None) };
}

/// While alive, what this thread hands to [`later`] is held back; dropping it runs it, in
/// order. The control socket's threads hold a request's work until its answer is sent.
#[derive(Debug)]
pub struct Held {
    /// A hold taken inside another leaves the work to the outer one.
    outer: bool,
    /// Bound to the thread whose work it holds.
    _thread: std::marker::PhantomData<*const ()>,
}

/// Starts holding this thread's [`later`] work back (inside a hold already taken: changes
/// nothing, the outer hold runs the work).
pub fn hold() -> Held {
    let outer = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let outer = h.is_none();
        if outer {
            *h = Some(Vec::new());
        }
        outer
    });
    Held {
        outer,
        _thread: std::marker::PhantomData,
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let work = HELD.with(|h| h.borrow_mut().take());
        for w in work.into_iter().flatten() {
            w();
        }
    }
}

/// Runs `work` now, or when this thread's [`Held`] is dropped.
pub fn later(work: impl FnOnce() + 'static) {
    let mut work = Some(work);
    HELD.with(|h| {
        if let Some(q) = h.borrow_mut().as_mut()
            && q.len() < MAX_HELD
            && let Some(w) = work.take()
        {
            q.push(Box::new(w));
        }
    });
    if let Some(w) = work {
        w();
    }
}

/// A task started through [`spawn_later`]: abortable before it starts (then it never does) and
/// after.
#[derive(Debug, Default)]
pub struct Deferred(Mutex<State>);

#[derive(Debug, Default)]
enum State {
    #[default]
    Pending,
    Running(AbortHandle),
    Aborted,
}

impl Deferred {
    /// Stops the task, or keeps it from starting.
    pub fn abort(&self) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Running(h) = &*s {
            h.abort();
        }
        *s = State::Aborted;
    }
}

/// Spawns `task` on the current runtime, [`later`].
pub fn spawn_later<F>(task: F) -> Arc<Deferred>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let slot = Arc::new(Deferred::default());
    let rt = tokio::runtime::Handle::current();
    let s = slot.clone();
    later(move || {
        let mut st = s.0.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*st, State::Pending) {
            *st = State::Running(rt.spawn(task).abort_handle());
        }
    });
    slot
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
        let inner = hold();
        later(log(4));
        drop(inner);
        assert_eq!(
            *seen.lock().unwrap(),
            [1],
            "an inner hold ran the outer's work"
        );
        drop(held);
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
        later(log(5));
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4, 5]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_spawned_later_starts_after_the_hold_unless_aborted_first() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let held = hold();
        let t = tx.clone();
        let a = spawn_later(async move {
            let _ = t.send("a");
        });
        let t = tx.clone();
        let b = spawn_later(async move {
            let _ = t.send("b");
        });
        b.abort();
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "started before the hold ended");
        drop(held);
        assert_eq!(rx.recv().await, Some("a"));
        // Aborting after the start stops it; b never started.
        let t = tx.clone();
        let c = spawn_later(async move {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            let _ = t.send("c");
        });
        tokio::task::yield_now().await;
        c.abort();
        a.abort();
        drop(tx);
        assert_eq!(rx.recv().await, None);
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

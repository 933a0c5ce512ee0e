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

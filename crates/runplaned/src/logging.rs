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
        .with_writer(|| OneLine)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// stderr, where each event is one line: messages carry what users chose (a file name in a
/// runtime dir that could not be removed, a user name in a refused request), and a newline or
/// carriage return in one must not start a forged line of root's log. tracing's formatter
/// escapes terminal escapes but not these; it writes each event with one `write_all`, ending
/// in its newline, so every other control character (but tab) is escaped here.
struct OneLine;

impl std::io::Write for OneLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(&one_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn one_line(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let escaped = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    if !body.iter().any(|&b| escaped(b)) {
        return buf.into();
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if escaped(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(&buf[body.len()..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn an_event_stays_one_line_whatever_its_message_holds() {
        let plain = b"2026-12-02T12:00:00Z  INFO removed /run/user/1000\n";
        assert_eq!(&*one_line(plain), &plain[..]);
        assert_eq!(
            &*one_line(b"INFO unable to remove a\nERROR forged\r\x00\x7f\tz\n"),
            &b"INFO unable to remove a\\nERROR forged\\r\\x00\\x7f\tz\n"[..]
        );
        // Without its final newline (a partial write) nothing is added.
        assert_eq!(&*one_line(b"a\nb"), &b"a\\nb"[..]);
    }
}

//! Append-only journals: state changes as lines appended with one `write(2)` each, replaced
//! whole (compacted) with the `.new` + rename of [`crate::atomic`].
//!
//! Why not one atomic file per change: `openat2(O_CREAT)` + `write` + `close` + `renameat`
//! costs four syscalls and a dentry and inode allocation per change (about 17 µs on the CI
//! machines, more than a control round trip), where an `O_APPEND` write costs one.
//!
//! Atomicity, stated exactly: a line is appended with a single `write` of the line and its
//! `\n`. A writer killed in the middle of that write (`kill -9`) can leave a torn last line
//! without its `\n`; [`Journal::open`] drops it (truncating the file to the last complete line)
//! and reports its length. A short write (a full filesystem) is rolled back with `ftruncate`
//! so that the next line never glues onto a fragment. Every complete line is whole. Lines must
//! not contain `\n`. One writer per journal: callers hold a lock on the directory (runplaned's
//! state lock).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self, OFlags};
use rustix::io::Errno;

use crate::atomic::{Durability, read_to_end, write_all};
use crate::dir::{Dir, Resolve, check_component};
use crate::error::{Context, Error, Result};

/// An open journal, positioned for appending.
#[derive(Debug)]
pub struct Journal {
    dir: Dir,
    name: OsString,
    fd: OwnedFd,
    len: u64,
    mode: u32,
    durability: Durability,
}

/// What [`Journal::open`] read back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// The journal as read, complete lines only (each ends in `\n`).
    pub data: Vec<u8>,
    /// Bytes of a torn last line that were dropped (0 when the journal ended cleanly).
    pub torn: usize,
}

impl Contents {
    /// The complete lines, in order, without their `\n` (borrowed: a journal of some MiB is
    /// not copied line by line).
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let body = self.data.strip_suffix(b"\n");
        body.into_iter().flat_map(|b| b.split(|&c| c == b'\n'))
    }
}

impl Journal {
    /// Opens `dir/name` (created with `mode` if missing, never through a symlink), reads its
    /// complete lines and truncates a torn last line. A journal larger than `limit` bytes is
    /// an error (`EFBIG`), not a partial read.
    pub fn open(
        dir: &Dir,
        name: impl AsRef<OsStr>,
        mode: u32,
        durability: Durability,
        limit: usize,
    ) -> Result<(Journal, Contents)> {
        let name = name.as_ref().to_owned();
        let path = dir.path().join(&name);
        check_component(&name).ctx("open", path.display())?;
        let fd = dir.open_at(
            &name,
            OFlags::RDWR | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW,
            mode,
            Resolve::STRICT,
        )?;
        let st = fs::fstat(&fd).ctx("stat", path.display())?;
        if fs::FileType::from_raw_mode(st.st_mode) != fs::FileType::RegularFile {
            return Err(Error::errno("open", path.display(), Errno::INVAL));
        }
        if st.st_size as u64 > limit as u64 {
            return Err(Error::errno(
                "read (larger than its limit)",
                path.display(),
                Errno::FBIG,
            ));
        }
        let mut data = read_to_end(fd.as_fd(), limit, &path.display())?;
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn = data.len() - complete;
        if torn > 0 {
            fs::ftruncate(&fd, complete as u64).ctx("truncate", path.display())?;
        }
        data.truncate(complete);
        Ok((
            Journal {
                dir: dir.try_clone()?,
                name,
                fd,
                len: complete as u64,
                mode,
                durability,
            },
            Contents { data, torn },
        ))
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }

    /// The journal's length in bytes (complete lines only).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `line` and its `\n` with one `write`. A line containing `\n` is refused
    /// (`EINVAL`); a short write is rolled back and reported.
    pub fn append(&mut self, mut line: Vec<u8>) -> Result<()> {
        if line.contains(&b'\n') {
            return Err(Error::errno(
                "append to",
                self.path().display(),
                Errno::INVAL,
            ));
        }
        line.push(b'\n');
        let r = match rustix::io::write(&self.fd, &line) {
            Ok(n) if n == line.len() => Ok(()),
            // Only part of the line fit: the filesystem is full (the part is cut off below).
            Ok(_) => Err(Error::errno(
                "append to",
                self.path().display(),
                Errno::NOSPC,
            )),
            Err(e) => Err(Error::errno("append to", self.path().display(), e)),
        };
        if r.is_err() {
            // Never leave a fragment for the next line to glue onto.
            let _ = fs::ftruncate(&self.fd, self.len);
            return r;
        }
        if self.durability == Durability::Sync {
            fs::fdatasync(&self.fd).ctx("fsync", self.path().display())?;
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Replaces the journal's whole content with `lines` atomically (`NAME.new`, fsync when
    /// durable, rename over `NAME`), written in 64 KiB chunks so that a large journal never
    /// needs one large buffer. On error the old journal stays in place and in use.
    pub fn rewrite<I>(&mut self, lines: I) -> Result<()>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let mut tmp = self.name.clone();
        tmp.push(".new");
        let tmp_path = self.dir.path().join(&tmp);
        let fd = self.dir.open_at(
            &tmp,
            OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::APPEND | OFlags::NOFOLLOW,
            self.mode,
            Resolve::STRICT,
        )?;
        let written = (|| {
            fs::fchmod(&fd, fs::Mode::from_raw_mode(self.mode))
                .ctx("change mode of", tmp_path.display())?;
            let mut buf = Vec::with_capacity(64 << 10);
            let mut len = 0u64;
            for mut line in lines {
                if line.contains(&b'\n') {
                    return Err(Error::errno("write", tmp_path.display(), Errno::INVAL));
                }
                line.push(b'\n');
                len += line.len() as u64;
                buf.extend_from_slice(&line);
                if buf.len() >= 64 << 10 {
                    write_all(fd.as_fd(), &buf, &tmp_path.display())?;
                    buf.clear();
                }
            }
            write_all(fd.as_fd(), &buf, &tmp_path.display())?;
            if self.durability == Durability::Sync {
                fs::fsync(&fd).ctx("fsync", tmp_path.display())?;
            }
            Ok(len)
        })();
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                // The old journal stays; no half-written .new is left behind.
                let _ = self.dir.unlink(&tmp);
                return Err(e);
            }
        };
        self.dir.rename(&tmp, &self.name)?;
        if self.durability == Durability::Sync {
            fs::fsync(self.dir.fd()).ctx("fsync", self.dir.path().display())?;
        }
        self.fd = fd;
        self.len = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic::write_atomic;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn open(d: &Dir) -> (Journal, Contents) {
        Journal::open(d, "j", 0o600, Durability::Volatile, 1 << 20).unwrap()
    }

    #[test]
    fn appends_read_back_in_order_and_survive_reopen() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        let (mut j, c) = open(&d);
        assert_eq!(c, Contents::default());
        assert!(j.is_empty());
        j.append(b"one".to_vec()).unwrap();
        j.append(b"".to_vec()).unwrap();
        j.append(b"three".to_vec()).unwrap();
        assert_eq!(j.len(), 11);
        let (_, c) = open(&d);
        assert_eq!(c.lines().collect::<Vec<_>>(), [&b"one"[..], b"", b"three"]);
        assert_eq!(c.torn, 0);
        let mode = std::fs::metadata(t.path().join("j"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_never_glued_onto() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        std::fs::write(t.path().join("j"), b"whole\n{\"half").unwrap();
        let (mut j, c) = open(&d);
        assert_eq!(c.lines().collect::<Vec<_>>(), [b"whole"]);
        assert_eq!(c.torn, 6);
        j.append(b"next".to_vec()).unwrap();
        assert_eq!(std::fs::read(t.path().join("j")).unwrap(), b"whole\nnext\n");
        // Only a fragment, no complete line at all.
        std::fs::write(t.path().join("j"), b"frag").unwrap();
        let (j, c) = open(&d);
        assert_eq!((c.lines().count(), c.torn, j.len()), (0, 4, 0));
    }

    #[test]
    fn rewrite_replaces_atomically_and_appends_go_to_the_new_file() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        let (mut j, _) = open(&d);
        for i in 0..100 {
            j.append(format!("line {i}").into_bytes()).unwrap();
        }
        // Large enough to need several chunks.
        let big: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("{i:0>40}").into_bytes())
            .collect();
        j.rewrite(big.clone()).unwrap();
        assert_eq!(j.len(), 3000 * 41);
        j.append(b"after".to_vec()).unwrap();
        let (_, c) = open(&d);
        let lines: Vec<&[u8]> = c.lines().collect();
        assert_eq!(lines.len(), 3001);
        assert!(lines[..3000].iter().zip(&big).all(|(a, b)| a == b));
        assert_eq!(lines[3000], b"after");
        assert!(!t.path().join("j.new").exists());
        let e = j.rewrite([b"a\nb".to_vec()]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert!(!t.path().join("j.new").exists());
        assert_eq!(
            open(&d).1.lines().count(),
            3001,
            "a refused rewrite changes nothing"
        );
    }

    #[test]
    fn bad_lines_symlinks_and_oversized_journals_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        let (mut j, _) = open(&d);
        let e = j.append(b"two\nlines".to_vec()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert!(e.to_string().contains("unable to append to"), "{e}");
        assert!(j.is_empty());
        // A symlink at the journal's name or at its .new is never followed.
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        symlink(&victim, t.path().join("k")).unwrap();
        let e = Journal::open(&d, "k", 0o600, Durability::Volatile, 1 << 20).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        symlink(&victim, t.path().join("j.new")).unwrap();
        let e = j.rewrite([b"x".to_vec()]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        write_atomic(&d, "big", &[b'x'; 100], 0o600).unwrap();
        let e = Journal::open(&d, "big", 0o600, Durability::Volatile, 99).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}");
        std::fs::create_dir(t.path().join("dir")).unwrap();
        assert!(Journal::open(&d, "dir", 0o600, Durability::Volatile, 99).is_err());
    }

    #[test]
    fn durable_journals_sync_and_still_read_back() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        let (mut j, _) = Journal::open(&d, "s", 0o640, Durability::Sync, 1 << 20).unwrap();
        j.append(b"a".to_vec()).unwrap();
        j.rewrite([b"b".to_vec(), b"c".to_vec()]).unwrap();
        j.append(b"d".to_vec()).unwrap();
        let (_, c) = Journal::open(&d, "s", 0o640, Durability::Sync, 1 << 20).unwrap();
        assert_eq!(c.lines().collect::<Vec<_>>(), [b"b", b"c", b"d"]);
        let mode = std::fs::metadata(t.path().join("s"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}

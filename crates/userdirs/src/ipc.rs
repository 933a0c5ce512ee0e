//! RemoveIPC: a user's System V shared memory, semaphores and message queues, POSIX shared
//! memory (`/dev/shm`) and message queues (`/dev/mqueue`), listed and removed at the final
//! removal of the user's runtime dir when `userdirs.remove_ipc` is on (systemd's
//! `RemoveIPC=`, off by default here as in elogind: it breaks long-running users such as
//! PostgreSQL). Objects match when the owner or the creator is the uid. Never for system
//! users (uid below 1000) and never while processes of the uid still run.

use std::ffi::OsString;
use std::path::Path;

use runplane_sys::dir::{Dir, Kind};
use runplane_sys::ipc::{SysvKind, remove as remove_sysv};

/// Users below this uid are system users: RemoveIPC never touches them.
pub const FIRST_REGULAR_UID: u32 = 1000;

/// One object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// `shm`, `sem`, `msg`, `posix-shm`, `mqueue`.
    pub kind: &'static str,
    /// The SysV id, or the file name as [`shown`] (escaped: any user may name a file).
    pub id: String,
    pub bytes: Option<u64>,
    /// The file's name as it is: what removal unlinks.
    file: Option<OsString>,
}

/// A file name as text that is safe to print and tells every name apart: bytes that are not
/// UTF-8 and control characters as C escapes (`\xff`, `\x1b`, `\u{85}`), a backslash doubled.
/// A user's `/dev/shm` file named with terminal escapes must not write to root's terminal
/// (`runplane session ipc`) or forge a line of the daemon's log, and `x\xff` must not read as
/// another user's `x\u{fffd}`.
pub fn shown(name: &std::ffi::OsStr) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Parses a `/proc/sysvipc/{shm,sem,msg}` table: the ids owned or created by `uid`.
/// Columns are found by header name, so kernel versions with other columns parse too.
pub fn parse_sysvipc(text: &str, uid: u32) -> Vec<(i32, Option<u64>)> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return vec![];
    };
    let cols: Vec<&str> = header.split_whitespace().collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(id_col), Some(uid_col), Some(cuid_col)) = (
        at("shmid").or_else(|| at("semid")).or_else(|| at("msqid")),
        at("uid"),
        at("cuid"),
    ) else {
        return vec![];
    };
    let size_col = at("size").or_else(|| at("cbytes"));
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let id: i32 = f.get(id_col)?.parse().ok()?;
            let owner: u32 = f.get(uid_col)?.parse().ok()?;
            let creator: u32 = f.get(cuid_col)?.parse().ok()?;
            (owner == uid || creator == uid)
                .then(|| (id, size_col.and_then(|c| f.get(c)?.parse().ok())))
        })
        .collect()
}

fn files_of(dir: &Path, uid: u32, kind: &'static str) -> Vec<Object> {
    let Ok(d) = Dir::open(dir) else { return vec![] };
    let Ok(entries) = d.entries() else {
        return vec![];
    };
    entries
        .into_iter()
        .filter(|e| e.kind != Kind::Directory)
        .filter_map(|e| {
            // A mount point (a user may mount FUSE on a file it owns) is no IPC object.
            let st = d.stat_here(&e.name).ok()??;
            (st.st_uid == uid).then(|| Object {
                kind,
                id: shown(&e.name),
                bytes: Some(st.st_size as u64),
                file: Some(e.name),
            })
        })
        .collect()
}

/// Everything RemoveIPC would remove for `uid`, from the IPC namespace and the `/dev/shm`
/// and `/dev/mqueue` of the calling thread.
pub fn list(uid: u32) -> Vec<Object> {
    let mut out = Vec::new();
    for (file, kind) in [("shm", "shm"), ("sem", "sem"), ("msg", "msg")] {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{file}")).unwrap_or_default();
        out.extend(
            parse_sysvipc(&text, uid)
                .into_iter()
                .map(|(id, bytes)| Object {
                    kind,
                    id: id.to_string(),
                    bytes,
                    file: None,
                }),
        );
    }
    out.extend(files_of(Path::new("/dev/shm"), uid, "posix-shm"));
    out.extend(files_of(Path::new("/dev/mqueue"), uid, "mqueue"));
    out
}

/// Removes what [`list`] shows. Returns the objects removed and a message per failure.
pub fn remove(uid: u32) -> (Vec<Object>, Vec<String>) {
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    // /dev/shm and /dev/mqueue, each opened once, when it holds something to remove.
    let mut dirs: [Option<Result<Dir, String>>; 2] = [None, None];
    for o in list(uid) {
        let r = match &o.file {
            Some(name) => {
                let (i, path) = if o.kind == "posix-shm" {
                    (0, "/dev/shm")
                } else {
                    (1, "/dev/mqueue")
                };
                match dirs[i].get_or_insert_with(|| Dir::open(path).map_err(|e| e.to_string())) {
                    Ok(d) => remove_file_of(d, name, uid),
                    Err(e) => Err(e.clone()),
                }
            }
            None => {
                let kind = match o.kind {
                    "shm" => SysvKind::Shm,
                    "sem" => SysvKind::Sem,
                    _ => SysvKind::Msg,
                };
                o.id.parse()
                    .map_err(|_| format!("bad id {}", o.id))
                    .and_then(|id| remove_sysv(kind, id).map_err(|e| e.to_string()))
                    .map(|()| true)
            }
        };
        match r {
            Ok(true) => removed.push(o),
            Ok(false) => {} // gone meanwhile
            Err(e) => failed.push(e),
        }
    }
    (removed, failed)
}

/// Unlinks `dir/name` if it is still a file of `uid`. Never through a path a user could
/// swap (the unlink is in the directory held open), by the name as it is (not as shown), and
/// only while the user owns it: since the listing it may have been removed and its name taken
/// by another user. `Ok(false)` when it is gone.
fn remove_file_of(d: &Dir, name: &std::ffi::OsStr, uid: u32) -> Result<bool, String> {
    match d.stat_here(name).map_err(|e| e.to_string())? {
        None => Ok(false),
        Some(st) if st.st_uid == uid => d.unlink(name).map(|()| true).map_err(|e| e.to_string()),
        Some(st) => Err(format!(
            "{}/{} is no longer uid {uid}'s (now uid {}'s): kept",
            d.path().display(),
            shown(name),
            st.st_uid
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_escaped_and_apart() {
        use std::os::unix::ffi::OsStrExt;
        let s = |b: &[u8]| shown(std::ffi::OsStr::from_bytes(b));
        assert_eq!(s(b"pshm-1000"), "pshm-1000");
        assert_eq!(s(b"x\xff"), "x\\xff");
        assert_eq!(s("x\u{fffd}".as_bytes()), "x\u{fffd}");
        assert_eq!(s(b"a\x1b]0;owned\x07\n"), "a\\x1b]0;owned\\x07\\x0a");
        assert_eq!(s("\u{85}é".as_bytes()), "\\u{85}é");
        assert_eq!(
            s(b"a\\xff"),
            "a\\\\xff",
            "a literal backslash is not an escape"
        );
    }

    #[test]
    fn a_file_is_removed_by_its_own_name_and_only_while_it_is_the_users() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        let raw = std::ffi::OsStr::from_bytes(b"x\xff");
        let shown = "x\u{fffd}"; // what the raw name shows as, and a valid name of its own
        std::fs::write(t.path().join(raw), "").unwrap();
        std::fs::write(t.path().join(shown), "").unwrap();
        let d = Dir::open(t.path()).unwrap();
        let e = remove_file_of(&d, raw, me + 1).unwrap_err();
        assert!(
            e.contains(&format!(
                "is no longer uid {}'s (now uid {me}'s): kept",
                me + 1
            )),
            "{e}"
        );
        assert!(t.path().join(raw).exists());
        assert_eq!(remove_file_of(&d, raw, me), Ok(true));
        assert!(!t.path().join(raw).exists());
        assert!(
            t.path().join(shown).exists(),
            "the file it shows as is another"
        );
        assert_eq!(
            remove_file_of(&d, raw, me),
            Ok(false),
            "gone: nothing to do"
        );
    }

    #[test]
    fn parses_the_kernel_tables_by_column_name() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
-1895296974          0   644                  4096 11078     0      0  2000  2000  2000  2000          0          0 1795271003                     0                     0\n\
         0          7   600                  8192 11078     0      0  3000  3000  2000  2000          0          0 1795271003                     0                     0\n\
         0          9   600                  8192 11078     0      0  3000  3000  3000  3000          0          0 1795271003                     0                     0\n";
        assert_eq!(
            parse_sysvipc(shm, 2000),
            vec![(0, Some(4096)), (7, Some(8192))]
        );
        let sem = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n2024376595          4   644          2  2000  2000  2000  2000          0 1795271003\n";
        assert_eq!(parse_sysvipc(sem, 2000), vec![(4, None)]);
        let msg = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n1756581171          2   644          10          0     0     0  2000  2000  2000  2000          0          0 1795271003\n";
        assert_eq!(parse_sysvipc(msg, 2000), vec![(2, Some(10))]);
        assert!(parse_sysvipc("", 1).is_empty());
        assert!(parse_sysvipc("garbage header\n1 2 3\n", 1).is_empty());
    }
}

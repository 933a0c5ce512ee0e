//! RemoveIPC: a user's System V shared memory, semaphores and message queues, POSIX shared
//! memory (`/dev/shm`) and message queues (`/dev/mqueue`), listed and removed at the final
//! removal of the user's runtime dir when `userdirs.remove_ipc` is on (systemd's
//! `RemoveIPC=`, off by default here as in elogind: it breaks long-running users such as
//! PostgreSQL). Objects match when the owner or the creator is the uid. Never for system
//! users (uid below 1000) and never while processes of the uid still run.

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
    /// The SysV id, or the file name.
    pub id: String,
    pub bytes: Option<u64>,
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
            let st = d.stat(&e.name).ok()??;
            (st.st_uid == uid).then(|| Object {
                kind,
                id: e.name.to_string_lossy().into_owned(),
                bytes: Some(st.st_size as u64),
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
    for o in list(uid) {
        let r = match o.kind {
            "shm" | "sem" | "msg" => {
                let kind = match o.kind {
                    "shm" => SysvKind::Shm,
                    "sem" => SysvKind::Sem,
                    _ => SysvKind::Msg,
                };
                o.id.parse()
                    .map_err(|_| format!("bad id {}", o.id))
                    .and_then(|id| remove_sysv(kind, id).map_err(|e| e.to_string()))
            }
            kind => {
                let dir = if kind == "posix-shm" {
                    "/dev/shm"
                } else {
                    "/dev/mqueue"
                };
                // Never through a path a user could swap: unlink in the directory we hold.
                Dir::open(dir)
                    .and_then(|d| d.unlink(&o.id))
                    .map_err(|e| e.to_string())
            }
        };
        match r {
            Ok(()) => removed.push(o),
            Err(e) => failed.push(e),
        }
    }
    (removed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

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

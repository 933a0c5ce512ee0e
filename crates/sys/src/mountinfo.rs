//! `/proc/self/mountinfo` (proc(5)): which mounts exist, with what options.
//!
//! The parser is pure and takes the file's text; [`read`] does the I/O. The mount id of a
//! line is the one `statx(STATX_MNT_ID)` returns, which is how [`crate::dir::Dir::mount_id`]
//! ties an open directory to its line.

use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u64,
    pub parent: u64,
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,nodev,relatime`).
    pub mount_options: String,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options (`rw,size=1024k,nr_inodes=64,mode=700,uid=1000,noswap`).
    pub super_options: String,
}

impl MountInfo {
    /// Whether the per-mount or per-superblock options contain `opt` exactly (e.g. `nodev`)
    /// or as a key (e.g. `size` matches `size=1024k`).
    pub fn has_option(&self, opt: &str) -> bool {
        self.option(opt).is_some()
    }

    /// The value of `key=value` in either option list; `Some("")` for a bare flag.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.mount_options
            .split(',')
            .chain(self.super_options.split(','))
            .find_map(|o| match o.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if o == key => Some(""),
                _ => None,
            })
    }
}

/// Undoes the octal escapes (`\040` for space, `\011`, `\012`, `\134`) the kernel writes.
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if v <= 255 {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Parses one line; `None` for a line that does not have the documented shape.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let mut it = line.split(' ');
    let id = it.next()?.parse().ok()?;
    let parent = it.next()?.parse().ok()?;
    let _devno = it.next()?;
    let root = unescape(it.next()?);
    let mount_point = unescape(it.next()?);
    let mount_options = it.next()?.to_owned();
    // Optional fields end at a lone "-".
    loop {
        if it.next()? == "-" {
            break;
        }
    }
    let fstype = it.next()?.to_owned();
    let source = it.next()?.to_owned();
    let super_options = it.next().unwrap_or("").to_owned();
    Some(MountInfo {
        id,
        parent,
        root,
        mount_point,
        mount_options,
        fstype,
        source,
        super_options,
    })
}

/// Parses the whole text, skipping malformed lines.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// Reads and parses the calling thread's mountinfo (`/proc/thread-self/mountinfo`: a thread
/// may have its own mount namespace, and `/proc/self` shows the thread-group leader's).
pub fn read() -> crate::Result<Vec<MountInfo>> {
    Table::open()?.read()
}

/// An open `/proc/thread-self/mountinfo` that tells whether the mount table changed: the
/// kernel marks the open file with `POLLPRI` on every mount and unmount in its namespace
/// (proc(5)), so that a reader can keep what it parsed until then.
#[derive(Debug)]
pub struct Table {
    fd: rustix::fd::OwnedFd,
}

const PATH: &str = "/proc/thread-self/mountinfo";

impl Table {
    pub fn open() -> crate::Result<Table> {
        let fd = rustix::fs::open(
            PATH,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| crate::Error::errno("open", PATH, e))?;
        Ok(Table { fd })
    }

    /// The table as it is now.
    pub fn read(&self) -> crate::Result<Vec<MountInfo>> {
        use rustix::fd::AsFd;
        let text = crate::atomic::read_to_end(self.fd.as_fd(), usize::MAX, &PATH)?;
        Ok(parse(&String::from_utf8_lossy(&text)))
    }

    /// Whether a mount or unmount happened since the file was opened or last asked.
    pub fn changed(&self) -> crate::Result<bool> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut p = [PollFd::new(&self.fd, PollFlags::PRI)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let n = poll(&mut p, Some(&zero)).map_err(|e| crate::Error::errno("poll", PATH, e))?;
        Ok(n > 0 && p[0].revents().intersects(PollFlags::PRI | PollFlags::ERR))
    }
}

/// The line of mount `id`, if any.
pub fn find(id: u64) -> crate::Result<Option<MountInfo>> {
    Ok(read()?.into_iter().find(|m| m.id == id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_example_and_tmpfs_line() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!((m.id, m.parent), (36, 35));
        assert_eq!(m.root, PathBuf::from("/mnt1"));
        assert_eq!(m.mount_point, PathBuf::from("/mnt2"));
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.option("errors"), Some("continue"));
        let t = parse_line(
            "512 30 0:99 / /run/user/1000 rw,nosuid,nodev,relatime shared:5 - tmpfs tmpfs rw,size=1024k,nr_inodes=64,mode=700,uid=1000,gid=1000,noswap",
        )
        .unwrap();
        assert_eq!(t.option("size"), Some("1024k"));
        assert_eq!(t.option("mode"), Some("700"));
        assert!(t.has_option("noswap") && t.has_option("nodev") && t.has_option("nosuid"));
        assert!(!t.has_option("noexec"));
    }

    #[test]
    fn unescapes_and_rejects_garbage() {
        let m = parse_line("1 0 0:1 / /a\\040b\\134c rw - tmpfs none rw").unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/a b\\c"));
        assert!(parse_line("").is_none());
        assert!(parse_line("x y").is_none());
        assert!(parse_line("1 2 3 / /x rw no-separator").is_none());
        assert!(!read().unwrap().is_empty());
    }

    #[test]
    fn an_open_table_reads_like_the_file() {
        let t = Table::open().unwrap();
        let a: Vec<u64> = t.read().unwrap().iter().map(|m| m.id).collect();
        // Against the file read plainly, since read() is an open Table too.
        let text = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let b: Vec<u64> = parse(&text).iter().map(|m| m.id).collect();
        assert_eq!(a, b);
        assert!(!a.is_empty());
        let again: Vec<u64> = t.read().unwrap().iter().map(|m| m.id).collect();
        assert_eq!(again, a, "a second read starts from the top");
    }
}

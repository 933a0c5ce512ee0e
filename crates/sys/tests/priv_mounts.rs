//! Real-kernel tests of the tmpfs, removal and unmount primitives, as root, each inside its
//! own private mount namespace (runplane-testkit); skipped with a message when not root.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use runplane_sys::dir::{Dir, Resolve};
use runplane_sys::tmpfs::{TmpfsOptions, kernel_has_noswap, mount_tmpfs_on, unmount_lazy, usage};
use runplane_sys::{mountinfo, remove};
use runplane_testkit::{Setup, require_root, run_private};

fn opts() -> TmpfsOptions {
    TmpfsOptions {
        size: Some(1 << 20),
        nr_inodes: Some(64),
        mode: 0o700,
        uid: 1000,
        gid: 1001,
        noswap: kernel_has_noswap().unwrap(),
        ..Default::default()
    }
}

#[test]
fn priv_tmpfs_options_owner_mode_and_limits_are_real() {
    require_root!();
    run_private(Setup::default(), |p| {
        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("u", 0o755).unwrap();
        let o = opts();
        mount_tmpfs_on(&parent, "u", &o).unwrap();
        let u = parent.open_dir("u", Resolve::STRICT).unwrap();
        let mi = mountinfo::find(u.mount_id().unwrap())
            .unwrap()
            .expect("mount in mountinfo");
        // The fallbacks, mount(2) on the /proc/self/fd magic link and the fd-based API (also
        // the diagnostic path), make the same mount.
        type Mount = fn(BorrowedFd<'_>, &Path, &TmpfsOptions) -> runplane_sys::Result<()>;
        let others: [(&str, Mount); 2] = [
            ("v", runplane_sys::tmpfs::mount_tmpfs_via_proc),
            ("w", runplane_sys::tmpfs::mount_tmpfs_fd_api),
        ];
        for (name, mount) in others {
            parent.mkdir(name, 0o755).unwrap();
            let v = parent.open_dir(name, Resolve::STRICT).unwrap();
            mount(v.fd(), &p.scratch.join(name), &o).unwrap();
            let vm = parent.open_dir(name, Resolve::STRICT).unwrap();
            assert_ne!(vm.mount_id().unwrap(), v.mount_id().unwrap(), "{name}");
            let vi = mountinfo::find(vm.mount_id().unwrap())
                .unwrap()
                .expect("mount in mountinfo");
            assert_eq!(
                (vi.mount_options.as_str(), vi.super_options.as_str()),
                (mi.mount_options.as_str(), mi.super_options.as_str()),
                "{name}"
            );
        }
        // The fast path mounted on the directory itself, and left the cwd where it was.
        assert_ne!(u.mount_id().unwrap(), parent.mount_id().unwrap());
        assert_eq!(
            std::fs::read_link("/proc/thread-self/cwd").unwrap(),
            std::env::current_dir().unwrap()
        );
        assert_eq!(mi.fstype, "tmpfs");
        assert_eq!(mi.option("size"), Some("1024k"), "{mi:?}");
        assert_eq!(mi.option("nr_inodes"), Some("64"));
        assert_eq!(mi.option("mode"), Some("700"));
        assert_eq!(mi.option("uid"), Some("1000"));
        assert_eq!(mi.option("gid"), Some("1001"));
        assert!(mi.has_option("nodev") && mi.has_option("nosuid"), "{mi:?}");
        assert_eq!(mi.has_option("noswap"), o.noswap, "{mi:?}");
        let md = std::fs::metadata(p.scratch.join("u")).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1000, 1001, 0o700)
        );

        let us = usage(u.fd(), u.path()).unwrap();
        assert_eq!(us.bytes_total, 1 << 20);
        assert_eq!(us.inodes_total, 64);

        // The size limit: writing 2 MiB stops with ENOSPC around 1 MiB.
        let mut f = std::fs::File::create(p.scratch.join("u/big")).unwrap();
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0usize;
        let err = loop {
            match f.write_all(&chunk) {
                Ok(()) => written += chunk.len(),
                Err(e) => break e,
            }
            assert!(written <= 2 << 20, "size limit not enforced");
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(written >= (1 << 20) - (64 << 10), "{written}");
        drop(f);
        std::fs::remove_file(p.scratch.join("u/big")).unwrap();

        // The inode limit: the root dir takes one inode; 63 more files fit, the 64th fails.
        let mut n = 0;
        let err = loop {
            match std::fs::File::create(p.scratch.join(format!("u/f{n}"))) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n <= 64, "inode limit not enforced");
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(n, 63);
        assert_eq!(usage(u.fd(), u.path()).unwrap().inodes_used, 64);
    });
}

#[test]
fn priv_mount_target_that_is_a_symlink_is_refused() {
    require_root!();
    run_private(Setup::default(), |p| {
        let elsewhere = p.scratch.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, p.scratch.join("u")).unwrap();
        let parent = Dir::open(&p.scratch).unwrap();
        let e = mount_tmpfs_on(&parent, "u", &opts()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(e.to_string().contains("/run/.testkit/u"), "{e}");
        let el = Dir::open(&elsewhere).unwrap();
        assert_eq!(
            el.mount_id().unwrap(),
            parent.mount_id().unwrap(),
            "mounted through the symlink"
        );
    });
}

#[test]
fn priv_removal_never_crosses_mounts_and_unmount_drops_nested() {
    require_root!();
    run_private(Setup::default(), |p| {
        // Something outside the tree that a bind mount exposes inside it.
        let precious = p.scratch.join("precious");
        std::fs::create_dir(&precious).unwrap();
        std::fs::write(precious.join("data"), b"keep").unwrap();

        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("u", 0o755).unwrap();
        mount_tmpfs_on(&parent, "u", &opts()).unwrap();
        let u = p.scratch.join("u");
        std::fs::create_dir_all(u.join("a/bind")).unwrap();
        std::fs::create_dir_all(u.join("b/c")).unwrap();
        std::fs::write(u.join("b/c/f"), b"x").unwrap();
        runplane_testkit::bind(&precious, &u.join("a/bind"));
        symlink(&precious, u.join("b/link")).unwrap();

        let ud = parent.open_dir("u", Resolve::STRICT).unwrap();
        let r = remove::empty_dir(&ud).unwrap();
        assert_eq!(r.mounts_skipped, vec![u.join("a/bind")]);
        assert!(u.join("a/bind").exists() && !u.join("b").exists());
        assert_eq!(std::fs::read(precious.join("data")).unwrap(), b"keep");

        // remove_tree on a mount point leaves it alone and says so.
        let r = remove::remove_tree(&parent, "u").unwrap();
        assert_eq!(r.mounts_skipped, vec![u.clone()]);

        // The lazy unmount drops the tmpfs and the bind mount inside it.
        drop(ud);
        assert!(unmount_lazy(&parent, "u").unwrap());
        assert!(
            !unmount_lazy(&parent, "u").unwrap(),
            "second unmount found a mount"
        );
        let mounts = mountinfo::read().unwrap();
        assert!(
            !mounts.iter().any(|m| m.mount_point.starts_with(&u)),
            "{mounts:#?}"
        );
        remove::remove_tree(&parent, "u").unwrap();
        assert!(!u.exists());
        assert_eq!(std::fs::read(precious.join("data")).unwrap(), b"keep");
        assert!(Path::new(&precious).exists());
    });
}

#[test]
fn priv_no_xdev_refuses_to_cross_a_mount_when_asked() {
    require_root!();
    run_private(Setup::default(), |p| {
        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("m", 0o755).unwrap();
        mount_tmpfs_on(&parent, "m", &TmpfsOptions::default()).unwrap();
        std::fs::create_dir(p.scratch.join("m/inner")).unwrap();
        // Without NO_XDEV the mount is crossed; with it, EXDEV.
        assert!(parent.open_dir("m/inner", Resolve::STRICT).is_ok());
        let e = parent
            .open_dir("m/inner", Resolve::STRICT.no_xdev())
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{e}");
    });
}

#[test]
fn priv_a_mount_that_refuses_root_is_skipped_as_a_mount() {
    require_root!();
    run_private(Setup::default(), |p| {
        // A mount root we cannot open, as FUSE without allow_other is for root: a tmpfs of
        // mode 000 owned by another uid, opened by this test's own thread after it dropped
        // CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (capabilities are per thread).
        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("tree", 0o755).unwrap();
        std::fs::create_dir(p.scratch.join("tree/locked")).unwrap();
        runplane_testkit::mount_tmpfs(&p.scratch.join("tree/locked"), "mode=000,uid=4242");
        std::fs::create_dir(p.scratch.join("tree/plain")).unwrap();
        let tree = parent.open_dir("tree", Resolve::STRICT).unwrap();
        let mut caps = rustix::thread::capabilities(None).unwrap();
        caps.effective -= rustix::thread::CapabilitySet::DAC_OVERRIDE
            | rustix::thread::CapabilitySet::DAC_READ_SEARCH;
        rustix::thread::set_capabilities(None, caps).unwrap();
        let e = tree.open_dir("locked", Resolve::STRICT).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EACCES),
            "the test premise: root cannot open it now"
        );
        let r = remove::empty_dir(&tree).unwrap();
        assert_eq!(r.mounts_skipped, vec![p.scratch.join("tree/locked")]);
        assert!(!p.scratch.join("tree/plain").exists());
        // A directory that refuses us but is not a mount is a real error, named.
        std::fs::create_dir(p.scratch.join("tree/closed")).unwrap();
        std::fs::create_dir(p.scratch.join("tree/closed/inner")).unwrap();
        std::os::unix::fs::chown(p.scratch.join("tree/closed"), Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(
            p.scratch.join("tree/closed"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        let e = remove::remove_tree(&tree, "closed").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        assert!(e.to_string().contains("tree/closed"), "{e}");
    });
}

#[test]
fn priv_a_refused_option_is_named() {
    require_root!();
    run_private(Setup::default(), |p| {
        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("w", 0o755).unwrap();
        let bad = TmpfsOptions {
            huge: Some("sometimes".into()),
            ..opts()
        };
        let e = mount_tmpfs_on(&parent, "w", &bad).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
        assert!(
            e.to_string()
                .starts_with("unable to set tmpfs option huge for /run/.testkit/w:"),
            "{e}"
        );
    });
}

#[test]
fn priv_a_journal_on_a_full_tmpfs_refuses_the_line_and_stays_whole() {
    use runplane_sys::atomic::Durability;
    use runplane_sys::journal::Journal;
    require_root!();
    run_private(Setup::default(), |p| {
        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("full", 0o700).unwrap();
        let small = TmpfsOptions {
            size: Some(64 << 10),
            nr_inodes: Some(16),
            mode: 0o700,
            ..Default::default()
        };
        mount_tmpfs_on(&parent, "full", &small).unwrap();
        let d = parent.open_dir("full", Resolve::STRICT).unwrap();
        let (mut j, _) = Journal::open(&d, "log", 0o600, Durability::Volatile, 1 << 20).unwrap();
        // Lines of 1000 bytes: the tmpfs fills in the middle of one.
        let line = |i: usize| format!("{i:0>999}").into_bytes();
        let mut written = 0;
        let err = loop {
            match j.append(line(written)) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 1000, "a 64 KiB tmpfs never filled");
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert!(err.to_string().contains("full/log"), "{err}");
        assert_eq!(
            j.len(),
            written as u64 * 1000,
            "the fragment was rolled back"
        );
        let (_, c) = Journal::open(&d, "log", 0o600, Durability::Volatile, 1 << 20).unwrap();
        assert_eq!((c.lines().count(), c.torn), (written, 0));
        assert!(c.lines().enumerate().all(|(i, l)| l == line(i)));
        // A compaction that does not fit leaves the old journal in place, and no .new.
        let e = j.rewrite((0..written + 40).map(line)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        assert!(d.stat("log.new").unwrap().is_none());
        let (_, c) = Journal::open(&d, "log", 0o600, Durability::Volatile, 1 << 20).unwrap();
        assert_eq!(c.lines().count(), written);
    });
}

#[test]
fn priv_an_open_mount_table_sees_mounts_and_unmounts() {
    require_root!();
    run_private(Setup::default(), |p| {
        let t = mountinfo::Table::open().unwrap();
        assert!(!t.changed().unwrap(), "nothing happened yet");
        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("m", 0o755).unwrap();
        mount_tmpfs_on(&parent, "m", &opts()).unwrap();
        assert!(t.changed().unwrap(), "a mount marks the table");
        assert!(!t.changed().unwrap(), "and asking clears the mark");
        let id = parent
            .open_dir("m", Resolve::STRICT)
            .unwrap()
            .mount_id()
            .unwrap();
        assert!(t.read().unwrap().iter().any(|m| m.id == id));
        unmount_lazy(&parent, "m").unwrap();
        assert!(t.changed().unwrap(), "an unmount too");
        assert!(!t.read().unwrap().iter().any(|m| m.id == id));
    });
}

/// statmount(2)'s answer, written in mountinfo's form, is mountinfo's text for mounts with
/// every per-mount and per-superblock flag, a read-only bind of a writable superblock, and
/// the namespace's /run; mounts without options of their own (/proc here) get no answer, for
/// the caller to read mountinfo.
#[test]
fn priv_statmount_options_read_as_mountinfo_shows_them() {
    use rustix::mount::{MountFlags, mount, mount_remount};
    require_root!();
    run_private(Setup::default(), |p| {
        let s = &p.scratch;
        let noswap = if kernel_has_noswap().unwrap() {
            ",noswap"
        } else {
            ""
        };
        let cases: [(&str, MountFlags, String); 4] = [
            (
                "user",
                MountFlags::NODEV | MountFlags::NOSUID,
                format!("size=1m,nr_inodes=64,mode=0700,uid=1000,gid=1001{noswap}"),
            ),
            (
                "ro",
                MountFlags::RDONLY | MountFlags::NOEXEC | MountFlags::NOATIME,
                "size=64k".into(),
            ),
            (
                "flags",
                MountFlags::NODIRATIME
                    | MountFlags::NOSYMFOLLOW
                    | MountFlags::SYNCHRONOUS
                    | MountFlags::DIRSYNC
                    | MountFlags::LAZYTIME,
                "size=64k,huge=within_size".into(),
            ),
            // No filesystem options to show: statmount sets no MNT_OPTS, the caller reads
            // mountinfo (Ok(None)).
            ("strict", MountFlags::STRICTATIME, String::new()),
        ];
        let mut paths = vec![];
        for (name, flags, data) in &cases {
            let at = s.join(name);
            std::fs::create_dir(&at).unwrap();
            let data = std::ffi::CString::new(data.as_str()).unwrap();
            mount("tmpfs", &at, "tmpfs", *flags, data.as_c_str()).unwrap();
            paths.push(at);
        }
        // A read-only bind of the writable "user" superblock: "ro,...,rw,...".
        let bind = s.join("bind");
        std::fs::create_dir(&bind).unwrap();
        mount(&paths[0], &bind, "", MountFlags::BIND, None).unwrap();
        mount_remount(&bind, MountFlags::BIND | MountFlags::RDONLY, c"").unwrap();
        paths.push(bind);
        paths.push("/run".into());
        paths.push("/proc".into());
        let mut seen_ro_bind = false;
        for path in &paths {
            let d = Dir::open(path).unwrap();
            let m = runplane_sys::statmount::options(d.fd(), path).unwrap();
            let Some(m) = m else {
                if path == &paths[0] {
                    eprintln!("statmount cannot report options on this kernel (< 6.11): skipped");
                    return;
                }
                // Neither has options of its own filesystem to show.
                assert!(
                    path.ends_with("strict") || path == Path::new("/proc"),
                    "no answer for {}",
                    path.display()
                );
                continue;
            };
            assert_eq!(m.id, d.mount_id().unwrap(), "{}", path.display());
            let mi = mountinfo::find(m.id).unwrap().expect("in mountinfo");
            assert_eq!(
                m.options,
                format!("{},{}", mi.mount_options, mi.super_options),
                "{}",
                path.display()
            );
            seen_ro_bind |= m
                .options
                .starts_with("ro,relatime,rw,size=1024k,nr_inodes=64");
        }
        assert!(seen_ro_bind, "the read-only bind shows as such");
    });
}

/// `statmount` by unique id says where a mount sits and what it is, and that an unmounted
/// one (held only by an fd, as a pinned mount its owner unmounted is) is gone from the tree.
#[test]
fn priv_statmount_placement_names_parent_and_type_and_sees_an_unmount() {
    use runplane_sys::statmount::{Placement, placement};
    require_root!();
    run_private(Setup::default(), |p| {
        let parent = Dir::open(&p.scratch).unwrap();
        parent.mkdir("m", 0o755).unwrap();
        mount_tmpfs_on(&parent, "m", &opts()).unwrap();
        let at = p.scratch.join("m");
        let pinned = parent.open_path("m", Resolve::STRICT).unwrap();
        let unique = runplane_sys::dir::STATX_MNT_ID_UNIQUE;
        let stx = rustix::fs::statx(
            &pinned,
            c"",
            rustix::fs::AtFlags::EMPTY_PATH,
            rustix::fs::StatxFlags::from_bits_retain(unique),
        )
        .unwrap();
        if stx.stx_mask & unique == 0 {
            eprintln!("this kernel has no unique mount ids (< 6.8): skipped");
            return;
        }
        let Placement::Of(placed) = placement(stx.stx_mnt_id, &at).unwrap() else {
            panic!("a live mount is in the tree");
        };
        let pfd: BorrowedFd<'_> = pinned.as_fd();
        assert_eq!(placed.id, runplane_sys::dir::mount_id(pfd, &at).unwrap());
        assert_eq!(placed.parent, parent.mount_id().unwrap());
        assert_eq!(placed.magic, 0x0102_1994, "tmpfs");
        unmount_lazy(&parent, "m").unwrap();
        assert_eq!(placement(stx.stx_mnt_id, &at).unwrap(), Placement::Gone);
    });
}

/// fanotify's mount events name each mount detached from the namespace by its unique id
/// (unmounted, lazily with the mounts under it, or moved away), none for a new mount, and a
/// queue that overflowed is reported as such.
#[test]
fn priv_the_mount_watch_names_detached_mounts_and_reports_an_overflow() {
    use runplane_sys::mountwatch::{MountEvent, MountWatch};
    require_root!();
    run_private(Setup::default(), |p| {
        let Some(w) = MountWatch::detaches().unwrap() else {
            eprintln!("this kernel has no fanotify mount events (< 6.15): skipped");
            return;
        };
        let parent = Dir::open(&p.scratch).unwrap();
        let unique_of = |name: &str| {
            let want = runplane_sys::dir::STATX_MNT_ID_UNIQUE;
            let st = rustix::fs::statx(
                parent.fd(),
                name,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::from_bits_retain(want),
            )
            .unwrap();
            assert_ne!(
                st.stx_mask & want,
                0,
                "unique mount ids (6.8) come before 6.15"
            );
            st.stx_mnt_id
        };
        let read_all = || {
            let mut out = Vec::new();
            while w.read(&mut out).unwrap() {}
            out
        };
        for d in ["a", "b", "c", "o"] {
            parent.mkdir(d, 0o755).unwrap();
        }
        mount_tmpfs_on(&parent, "a", &opts()).unwrap();
        let inner = parent.open_dir("a", Resolve::STRICT).unwrap();
        inner.mkdir("n", 0o755).unwrap();
        mount_tmpfs_on(&inner, "n", &opts()).unwrap();
        drop(inner);
        mount_tmpfs_on(&parent, "b", &opts()).unwrap();
        assert_eq!(read_all(), [], "new mounts make no event");
        let (a, n, b) = (unique_of("a"), unique_of("a/n"), unique_of("b"));
        unmount_lazy(&parent, "a").unwrap();
        rustix::mount::mount_move(p.scratch.join("b"), p.scratch.join("c")).unwrap();
        let mut seen = read_all();
        seen.sort_by_key(|e| match e {
            MountEvent::Detached(id) => *id,
            MountEvent::Lost => 0,
        });
        let mut want = vec![
            MountEvent::Detached(a),
            MountEvent::Detached(n),
            MountEvent::Detached(b),
        ];
        want.sort_by_key(|e| match e {
            MountEvent::Detached(id) => *id,
            MountEvent::Lost => 0,
        });
        assert_eq!(seen, want);
        // More detaches than the queue holds, unread: the overflow is reported.
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
            .map_or(16384, |s| s.trim().parse().unwrap());
        for _ in 0..=limit {
            mount_tmpfs_on(&parent, "o", &opts()).unwrap();
            unmount_lazy(&parent, "o").unwrap();
        }
        let seen = read_all();
        assert_eq!(seen.last(), Some(&MountEvent::Lost));
        assert_eq!(
            seen.len(),
            limit + 1,
            "the queue's events, then the overflow"
        );
        assert_eq!(read_all(), []);
    });
}

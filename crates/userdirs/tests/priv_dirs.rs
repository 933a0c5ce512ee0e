//! The effects on a real kernel, as root, in a private mount namespace with a tmpfs over /run:
//! mount options read back from mountinfo, limits hit for real, everything a user (or a
//! squatter) can leave in the way, and removal under attack.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use runplane_sys::mountinfo;
use runplane_testkit::{Setup, Users, require_root, run_private};
use runplane_userdirs::dirs::{DirError, MountPolicy, open_root};
use runplane_userdirs::lifecycle::Backend;

fn policy() -> MountPolicy {
    MountPolicy {
        noswap: true,
        huge: None,
        mpol: None,
    }
}

fn mount_of(path: &Path) -> Option<mountinfo::MountInfo> {
    mountinfo::read()
        .unwrap()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path)
}

#[test]
fn priv_root_is_created_0755_root_and_unsafe_roots_are_refused() {
    require_root!();
    run_private(Setup::default(), |_| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let md = std::fs::metadata("/run/user").unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o755));
        assert_eq!(r.path(), Path::new("/run/user"));
        std::os::unix::fs::chown("/run/user", Some(1000), None).unwrap();
        let e = open_root(Path::new("/run/user")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refusing to use /run/user: owned by 1000:0, not root:root"
        );
        std::os::unix::fs::chown("/run/user", Some(0), None).unwrap();
        std::fs::set_permissions("/run/user", std::fs::Permissions::from_mode(0o775)).unwrap();
        let e = open_root(Path::new("/run/user")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refusing to use /run/user: mode 0775 is looser than 0755"
        );
        std::fs::remove_dir("/run/user").unwrap();
        std::fs::create_dir("/run/elsewhere").unwrap();
        symlink("/run/elsewhere", "/run/user").unwrap();
        assert!(
            matches!(open_root(Path::new("/run/user")), Err(DirError::UnsafeRoot { why, .. }) if why == "it is a symlink")
        );
        std::fs::remove_file("/run/user").unwrap();
        std::fs::write("/run/user", b"").unwrap();
        assert!(
            open_root(Path::new("/run/user"))
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    });
}

#[test]
fn priv_user_dir_is_a_limited_tmpfs_with_exact_options() {
    require_root!();
    run_private(Setup::default(), |_| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let (info, note) = r.create(1000, 1001, 1 << 20, 64, &policy()).unwrap();
        assert_eq!(info.backend, Backend::Tmpfs);
        assert_eq!(note, None);
        let m = mount_of(Path::new("/run/user/1000")).expect("mounted");
        assert_eq!(Some(m.id), info.mount().map(|m| m.id));
        assert_eq!(m.fstype, "tmpfs");
        for (k, v) in [
            ("mode", "700"),
            ("uid", "1000"),
            ("gid", "1001"),
            ("size", "1024k"),
            ("nr_inodes", "64"),
        ] {
            assert_eq!(m.option(k), Some(v), "{k} in {m:?}");
        }
        assert!(
            m.has_option("nodev") && m.has_option("nosuid") && !m.has_option("noexec"),
            "{m:?}"
        );
        assert_eq!(m.has_option("noswap"), r.kernel_noswap(), "{m:?}");
        assert_eq!(info.noswap, r.kernel_noswap());
        let md = std::fs::metadata("/run/user/1000").unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1000, 1001, 0o700)
        );
        // The limits bite.
        let mut f = std::fs::File::create("/run/user/1000/big").unwrap();
        let err = (0..64)
            .find_map(|_| f.write_all(&[0u8; 64 << 10]).err())
            .expect("size limit");
        assert_eq!(err.raw_os_error(), Some(28));
        let u = r.usage(1000, info.mount()).unwrap().unwrap();
        assert_eq!((u.bytes_total, u.inodes_total), (1 << 20, 64));
        assert!(u.bytes_used >= (1 << 20) - (64 << 10), "{u:?}");
        // uid 0 gets one too.
        assert_eq!(
            r.create(0, 0, 1 << 20, 64, &policy()).unwrap().0.backend,
            Backend::Tmpfs
        );
        // Removal by numeric uid leaves nothing.
        let rep = r.remove(1000, info.mount()).unwrap().report;
        assert!(rep.files >= 1, "{rep:?}");
        assert!(!Path::new("/run/user/1000").exists());
        assert!(mount_of(Path::new("/run/user/1000")).is_none());
        assert!(
            r.remove(1000, info.mount()).unwrap().report.files == 0,
            "removing a missing dir is fine"
        );
    });
}

#[test]
fn priv_whatever_is_in_the_way_is_replaced_without_following_it() {
    require_root!();
    run_private(Setup::default(), |p| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let outside = p.scratch.join("precious");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), b"keep").unwrap();

        // A symlink at the leaf: unlinked, never followed.
        symlink(&outside, "/run/user/1000").unwrap();
        let (info, note) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
        assert_eq!(info.backend, Backend::Tmpfs);
        assert!(note.unwrap().contains("replaced a Symlink"));
        assert_eq!(
            std::fs::metadata(&outside).unwrap().uid(),
            0,
            "chowned through the symlink"
        );
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"keep");

        // A file at the leaf.
        std::fs::write("/run/user/1001", b"squat").unwrap();
        assert!(
            r.create(1001, 1001, 1 << 20, 64, &policy())
                .unwrap()
                .1
                .unwrap()
                .contains("replaced a File")
        );

        // A plain directory with content: mounted over, and the content goes at removal.
        std::fs::create_dir("/run/user/1002").unwrap();
        std::fs::write("/run/user/1002/old-secret", b"x").unwrap();
        let (info, note) = r.create(1002, 1002, 1 << 20, 64, &policy()).unwrap();
        assert_eq!(info.backend, Backend::Tmpfs);
        assert!(note.unwrap().contains("already held files"));
        assert!(
            !Path::new("/run/user/1002/old-secret").exists(),
            "hidden under the new tmpfs"
        );
        r.remove(1002, info.mount()).unwrap();
        assert!(!Path::new("/run/user/1002").exists());

        // A correct tmpfs in place is adopted; a foreign mount is replaced.
        runplane_testkit::mount_tmpfs(
            Path::new("/run/user/1003"),
            "mode=0700,uid=1003,gid=1003,size=1m",
        );
        let (info, note) = r.create(1003, 1003, 1 << 20, 64, &policy()).unwrap();
        assert_eq!(info.backend, Backend::Adopted);
        assert!(note.unwrap().contains("adopted"));
        runplane_testkit::mount_tmpfs(Path::new("/run/user/1004"), "mode=0755,uid=0,size=1m");
        let (info, note) = r.create(1004, 1004, 1 << 20, 64, &policy()).unwrap();
        assert_eq!(info.backend, Backend::Tmpfs);
        assert!(note.unwrap().contains("detached a foreign mount"));
        assert_eq!(std::fs::metadata("/run/user/1004").unwrap().uid(), 1004);
    });
}

#[test]
fn priv_removal_under_attack_touches_nothing_outside() {
    require_root!();
    run_private(Setup::default(), |p| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let outside = p.scratch.join("precious");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("sub/f"), b"keep").unwrap();
        let (info, _) = r.create(1000, 1000, 4 << 20, 256, &policy()).unwrap();
        let u = Path::new("/run/user/1000");
        // What a user can plant: symlinks to outside, a dir renamed around, deep trees;
        // what root can leave: a bind mount of something precious inside.
        symlink(&outside, u.join("link-dir")).unwrap();
        symlink(outside.join("sub/f"), u.join("link-file")).unwrap();
        std::fs::create_dir_all(u.join("a/b/c")).unwrap();
        std::fs::rename(u.join("a/b"), u.join("moved")).unwrap();
        std::fs::create_dir(u.join("bind")).unwrap();
        runplane_testkit::bind(&outside, &u.join("bind"));
        std::fs::create_dir(u.join("nested-tmpfs")).unwrap();
        runplane_testkit::mount_tmpfs(&u.join("nested-tmpfs"), "size=64k");
        std::fs::write(u.join("nested-tmpfs/x"), b"y").unwrap();
        // A mount over the dir itself (a user may mount FUSE over its own tmpfs root): its
        // usage is not read, and it is detached before anything of it is opened.
        runplane_testkit::mount_tmpfs(u, "size=64k");
        std::fs::write(u.join("over"), b"z").unwrap();
        assert_eq!(
            r.usage(1000, info.mount()).unwrap(),
            Some(runplane_sys::tmpfs::Usage::default())
        );
        assert!(!r.still_mounted(1000, info.mount().unwrap()));

        let rep = r.remove(1000, info.mount()).unwrap().report;
        let mut skipped: Vec<_> = rep
            .mounts_skipped
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        skipped.sort();
        assert_eq!(skipped, ["1000", "bind", "nested-tmpfs"], "{rep:?}");
        // Only the user's own tree was emptied (one file and two links there, none over it).
        assert_eq!(rep.files, 2, "{rep:?}");
        assert!(!u.exists());
        assert!(
            mountinfo::read()
                .unwrap()
                .iter()
                .all(|m| !m.mount_point.starts_with(u))
        );
        assert_eq!(std::fs::read(outside.join("sub/f")).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    });
}

#[test]
fn priv_a_tree_deeper_than_the_remover_goes_is_removed() {
    require_root!();
    run_private(Setup::default(), |_| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let (info, _) = r.create(1000, 1000, 4 << 20, 4096, &policy()).unwrap();
        let u = Path::new("/run/user/1000");
        // What `mkdir d; cd d` in a loop makes: three times deeper than the walk goes.
        let mut p = u.to_path_buf();
        for _ in 0..3 * runplane_sys::remove::MAX_DEPTH {
            p.push("d");
            std::fs::create_dir(&p).unwrap();
        }
        std::fs::write(p.join("f"), b"x").unwrap();
        let removed = r.remove(1000, info.mount()).unwrap();
        assert!(removed.not_emptied.is_none(), "{removed:?}");
        assert_eq!(removed.report.moved, 2, "{removed:?}");
        // Every level, and the user's directory itself.
        assert_eq!(
            removed.report.dirs,
            3 * runplane_sys::remove::MAX_DEPTH as u64 + 1,
            "{removed:?}"
        );
        assert!(!u.exists());
        assert!(mount_of(u).is_none());
    });
}

#[test]
fn priv_a_dir_that_cannot_be_emptied_is_unmounted_and_removed_all_the_same() {
    require_root!();
    run_private(Setup::default(), |_| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let (info, _) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
        let u = Path::new("/run/user/1000");
        // An immutable file: not even root may unlink it, so the tree cannot be emptied.
        std::fs::create_dir(u.join("sub")).unwrap();
        let stuck = u.join("sub/stuck");
        std::fs::write(&stuck, b"x").unwrap();
        let f = std::fs::File::open(&stuck).unwrap();
        rustix::fs::ioctl_setflags(&f, rustix::fs::IFlags::IMMUTABLE).unwrap();
        drop(f);
        let removed = r.remove(1000, info.mount()).unwrap();
        let e = removed.not_emptied.expect("emptying fails");
        assert_eq!(
            e.to_string(),
            "unable to remove /run/user/1000/sub/stuck: Operation not permitted (os error 1)"
        );
        // The tmpfs went with what it held: nothing of the user's stays mounted or in /run/user.
        assert!(!u.exists());
        assert!(mount_of(u).is_none());
    });
}

#[test]
fn priv_a_pile_of_mounts_over_a_dir_is_detached_and_the_dir_removed() {
    require_root!();
    run_private(Setup::default(), |_| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let (info, _) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
        let u = Path::new("/run/user/1000");
        std::fs::write(u.join("mine"), b"x").unwrap();
        // A user may stack as many FUSE mounts over its dir as fusermount3's mount_max lets it.
        for _ in 0..40 {
            runplane_testkit::mount_tmpfs(u, "size=64k");
            std::fs::write(u.join("theirs"), b"y").unwrap();
        }
        let rep = r.remove(1000, info.mount()).unwrap().report;
        assert_eq!(rep.mounts_skipped.len(), 40, "{rep:?}");
        assert_eq!(
            rep.files, 1,
            "only the user's own tree was emptied: {rep:?}"
        );
        assert!(!u.exists());
        assert!(mount_of(u).is_none());
    });
}

/// Someone unmounts a user's tmpfs behind runplane's back and the next mount made anywhere
/// takes its reusable mount id (the kernel gives the lowest free one): here a mount made at
/// the dir itself, by root. It is not taken for the dir: not read (status), not emptied
/// (removal detaches it unlooked-at), not counted as intact after a restart.
#[test]
fn priv_a_mount_that_took_the_dirs_reused_mount_id_is_not_taken_for_it() {
    require_root!();
    run_private(Setup::default(), |_| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let u = Path::new("/run/user/1000");
        // Another mount made meanwhile in the machine may take the id first: try again.
        let (info, theirs) = (0..5)
            .find_map(|_| {
                let (info, _) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
                let ids = info.mount().unwrap();
                let stx = rustix::fs::statx(
                    rustix::fs::CWD,
                    u,
                    rustix::fs::AtFlags::empty(),
                    rustix::fs::StatxFlags::from_bits_retain(
                        runplane_sys::dir::STATX_MNT_ID_UNIQUE,
                    ),
                )
                .unwrap();
                let unique = (stx.stx_mask & runplane_sys::dir::STATX_MNT_ID_UNIQUE != 0)
                    .then_some(stx.stx_mnt_id);
                assert_eq!(ids.unique, unique, "the record holds the unique id");
                assert!(unique.is_none_or(|u| u > 1 << 31), "{unique:?}");
                rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
                let got = runplane_testkit::mount_tmpfs_with_id(
                    ids.id,
                    u,
                    &[("mode", "0700"), ("uid", "1000"), ("gid", "1000")],
                );
                if got.is_none() {
                    r.remove(1000, None).unwrap();
                }
                Some((info, got?))
            })
            .expect("a mount at the dir takes its old id within five tries");
        let Some(_) = info.mount_unique else {
            eprintln!("this kernel has no unique mount ids (< 6.8): skipped");
            return;
        };
        assert_eq!(mount_of(u).unwrap().id, info.mount().unwrap().id);
        std::fs::write(u.join("theirs"), b"precious").unwrap();
        assert!(!r.still_mounted(1000, info.mount().unwrap()));
        assert!(
            !r.on_top(1000, info.mount().unwrap()),
            "told apart by the unique id"
        );
        // A record without the unique id (an older daemon's) names it by the reusable id
        // alone: a tmpfs of the uid, 0700, right on the root's mount is taken for the dir (as
        // `create` would adopt it), with its unique id; not once its mode is another.
        let old = runplane_sys::dir::MountIds {
            unique: None,
            ..info.mount().unwrap()
        };
        let taken = rustix::fs::statx(
            rustix::fs::CWD,
            u,
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::from_bits_retain(runplane_sys::dir::STATX_MNT_ID_UNIQUE),
        )
        .map(|st| st.stx_mnt_id)
        .ok();
        assert_eq!(r.mounted_as(1000, old).and_then(|m| m.unique), taken);
        std::fs::set_permissions(u, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert_eq!(r.mounted_as(1000, old), None);
        std::fs::set_permissions(u, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let st = r.status_of(1000, info.mount(), true).unwrap().unwrap();
        assert!(st.covered, "{st:?}");
        let rep = r.remove(1000, info.mount()).unwrap().report;
        assert_eq!(rep.mounts_skipped, [u], "{rep:?}");
        assert_eq!(rep.files, 0, "nothing of theirs was emptied: {rep:?}");
        assert!(!u.exists());
        let kept = rustix::fs::openat(
            &theirs,
            "theirs",
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&kept, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"precious");
    });
}

/// Whether this kernel has unique mount ids (`STATX_MNT_ID_UNIQUE`, Linux >= 6.8).
fn unique_mount_ids() -> bool {
    let unique = runplane_sys::dir::STATX_MNT_ID_UNIQUE;
    rustix::fs::statx(
        rustix::fs::CWD,
        "/",
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::from_bits_retain(unique),
    )
    .is_ok_and(|st| st.stx_mask & unique != 0)
}

fn with_user_1000() -> Setup {
    Setup {
        users: Some(Users::numbered("u", 1000, 1)),
        private_dev: true,
        ..Default::default()
    }
}

/// A source dir for the user's bindfs mounts, owned by it.
fn fuse_src(p: &runplane_testkit::Private) -> std::path::PathBuf {
    let src = p.scratch.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::os::unix::fs::chown(&src, Some(1000), Some(1000)).unwrap();
    src
}

/// Its owner may mount over a new dir the moment it exists, before `create` has checked what
/// it mounted: what the name leads to then is not taken for the new tmpfs, however it looks
/// (a tmpfs of the uid, 0700), and is detached; the user's FUSE mount (which refuses root) is
/// not looked into.
#[test]
fn priv_mounts_made_over_a_new_dir_before_it_is_checked_are_detached() {
    require_root!();
    run_private(with_user_1000(), |p| {
        let r = open_root(Path::new("/run/user")).unwrap();
        if !unique_mount_ids() {
            eprintln!("this kernel has no unique mount ids (< 6.8): skipped");
            return;
        }
        let (info, _) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
        let u = Path::new("/run/user/1000");
        std::fs::write(u.join("mine"), b"x").unwrap();
        runplane_testkit::mount_tmpfs(u, "mode=0700,uid=1000,gid=1000");
        let fuse = runplane_testkit::bindfs(Some(1000), &fuse_src(p), u);
        let (st, ids) = r.made(1000).unwrap();
        assert_eq!(Some(ids), info.mount());
        assert_eq!((st.stx_uid, st.stx_mode & 0o7777), (1000, 0o700));
        assert_eq!(mount_of(u).unwrap().id, info.mount().unwrap().id);
        assert!(u.join("mine").exists());
        drop(fuse);
    });
}

/// The reusable id of a user's tmpfs, unmounted behind runplane's back, taken by the user's
/// own FUSE mount over a tmpfs root made there for it: the unique id is asked without the
/// FUSE server (which refuses root), and the mount is detached, not read.
#[test]
fn priv_a_users_fuse_mount_with_the_dirs_reused_mount_id_is_detached_unread() {
    require_root!();
    run_private(with_user_1000(), |p| {
        if !unique_mount_ids() {
            eprintln!("this kernel has no unique mount ids (< 6.8): skipped");
            return;
        }
        let r = open_root(Path::new("/run/user")).unwrap();
        let u = Path::new("/run/user/1000");
        let spare = p.scratch.join("spare");
        std::fs::create_dir_all(&spare).unwrap();
        let src = fuse_src(p);
        // Another mount made meanwhile in the machine may take the id first: try again.
        let (info, fuse) = (0..5)
            .find_map(|_| {
                let (info, _) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
                let ids = info.mount().unwrap();
                // A tmpfs for the user made aside, moved where the dir's tmpfs was.
                runplane_testkit::mount_tmpfs(&spare, "mode=0700,uid=1000,gid=1000");
                rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
                rustix::mount::mount_move(&spare, u).unwrap();
                let fillers = runplane_testkit::next_mount_id_is(ids.id);
                let fuse = fillers.map(|_| runplane_testkit::bindfs(Some(1000), &src, u));
                let top = rustix::fs::open(u, rustix::fs::OFlags::PATH, rustix::fs::Mode::empty())
                    .ok()
                    .and_then(|fd| runplane_sys::dir::mount_id(fd.as_fd(), u).ok());
                if top == Some(ids.id) {
                    return Some((info, fuse?));
                }
                drop(fuse);
                r.remove(1000, None).unwrap();
                None
            })
            .expect("the user's FUSE mount takes the dir's old id within five tries");
        assert!(!r.still_mounted(1000, info.mount().unwrap()));
        // Nor by a record without the unique id (an older daemon's), by the reusable id
        // alone: the unique id is asked without the server, and statmount shows no tmpfs.
        let old = runplane_sys::dir::MountIds {
            unique: None,
            ..info.mount().unwrap()
        };
        assert_eq!(r.mounted_as(1000, old), None);
        let st = r.status_of(1000, info.mount(), true).unwrap().unwrap();
        assert!(st.covered, "{st:?}");
        let rep = r.remove(1000, info.mount()).unwrap().report;
        assert_eq!(
            rep.mounts_skipped,
            [u, u],
            "the FUSE mount and the tmpfs: {rep:?}"
        );
        assert!(!u.exists());
        drop(fuse);
    });
}

/// The tmpfs unmounted behind runplane's back: status says so and reads nothing of the plain
/// directory left; removal removes that.
#[test]
fn priv_a_dir_whose_tmpfs_was_unmounted_is_reported_and_removed() {
    require_root!();
    run_private(Setup::default(), |_| {
        let r = open_root(Path::new("/run/user")).unwrap();
        let (info, _) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
        let u = Path::new("/run/user/1000");
        rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
        std::fs::write(u.join("left"), b"y").unwrap();
        let st = r.status_of(1000, info.mount(), true).unwrap().unwrap();
        assert!(st.unmounted && !st.covered, "{st:?}");
        assert_eq!(st.usage, runplane_sys::tmpfs::Usage::default());
        assert!(!r.still_mounted(1000, info.mount().unwrap()));
        let rep = r.remove(1000, info.mount()).unwrap().report;
        assert_eq!(rep.files, 1, "{rep:?}");
        assert!(!u.exists());
    });
}

/// Whether a dir's tmpfs is gone from its path (what the daemon mounts again when told of an
/// unmount): not while it is there, also under the user's own FUSE mount; yes once it is
/// unmounted (the plain directory left), once another mount sits there while the tmpfs is
/// mounted nowhere, and once the path is gone. And whether it is on top (the quick look of
/// a login where no mount events tell of unmounts).
#[test]
fn priv_a_dirs_tmpfs_is_lost_only_when_it_is_gone_from_its_path() {
    require_root!();
    run_private(with_user_1000(), |p| {
        if !unique_mount_ids() {
            eprintln!("this kernel has no unique mount ids (< 6.8): skipped");
            return;
        }
        let r = open_root(Path::new("/run/user")).unwrap();
        let u = Path::new("/run/user/1000");
        let (info, _) = r.create(1000, 1000, 1 << 20, 64, &policy()).unwrap();
        let ours = info.mount().unwrap();
        assert!(!r.lost(1000, ours) && r.on_top(1000, ours));
        let fuse = runplane_testkit::bindfs(Some(1000), &fuse_src(p), u);
        assert!(!r.lost(1000, ours), "under the user's FUSE mount");
        assert!(
            !r.on_top(1000, ours),
            "the FUSE mount (which refuses root) is on top"
        );
        rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
        drop(fuse);
        assert!(
            !r.lost(1000, ours) && r.on_top(1000, ours),
            "uncovered again"
        );
        rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
        assert!(
            r.lost(1000, ours) && !r.on_top(1000, ours),
            "the plain directory left"
        );
        runplane_testkit::mount_tmpfs(u, "mode=0700,uid=1000,gid=1000");
        assert!(
            r.lost(1000, ours),
            "another's tmpfs there, ours mounted nowhere"
        );
        rustix::mount::unmount(u, rustix::mount::UnmountFlags::DETACH).unwrap();
        std::fs::remove_dir(u).unwrap();
        assert!(r.lost(1000, ours), "nothing there");
    });
}

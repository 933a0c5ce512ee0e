//! `no-mount-events PROGRAM [ARGS...]`: runs PROGRAM as on a kernel without fanotify mount
//! events (before Linux 6.15), where `fanotify_init` refuses `FAN_REPORT_MNT` with `EINVAL`:
//! a seccomp filter answers exactly that, and nothing else changes. For tests of what a
//! daemon does where it cannot watch mounts. The filter survives the exec and is inherited
//! by every child.

use std::os::unix::process::CommandExt;

/// `FAN_REPORT_MNT` of linux/fanotify.h.
const FAN_REPORT_MNT: u32 = 0x4000;

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: no-mount-events PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    const LD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half first on
    // little-endian machines, which both architectures above are).
    let mut filter = [
        stmt(LD, 4),
        jump(JEQ, ARCH, 0, 4),
        stmt(LD, 0),
        jump(JEQ, libc::SYS_fanotify_init as u32, 0, 2),
        stmt(LD, 16),
        jump(JSET, FAN_REPORT_MNT, 1, 0),
        stmt(RET, libc::SECCOMP_RET_ALLOW),
        stmt(RET, libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, a valid classic BPF program of `len` instructions
    // that outlives the call; the kernel copies it. Installing a filter without
    // no_new_privs needs CAP_SYS_ADMIN, which the root running these tests has.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        eprintln!(
            "no-mount-events: unable to install the seccomp filter: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(111);
    }
    let e = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "no-mount-events: unable to run {}: {e}",
        program.to_string_lossy()
    );
    std::process::exit(111);
}

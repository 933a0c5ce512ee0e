//! Removing System V IPC objects by id (`shmctl`/`semctl`/`msgctl` with `IPC_RMID`;
//! svipc(7)). Listing is done from `/proc/sysvipc/*` by the caller. Objects belong to the IPC
//! namespace of the calling thread.

use crate::error::{Error, Result};

/// A System V IPC object kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysvKind {
    Shm,
    Sem,
    Msg,
}

/// Removes the object `id` of `kind`. A segment still attached is destroyed after the last
/// detach (the kernel's rule); its key is freed at once.
pub fn remove(kind: SysvKind, id: i32) -> Result<()> {
    // SAFETY: IPC_RMID takes no buffer (NULL is allowed for shmctl/msgctl, and semctl's
    // fourth argument is not read for IPC_RMID); the id is only a number to the kernel.
    let rc = unsafe {
        match kind {
            SysvKind::Shm => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            SysvKind::Sem => libc::semctl(id, 0, libc::IPC_RMID),
            SysvKind::Msg => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
        }
    };
    if rc < 0 {
        let what = match kind {
            SysvKind::Shm => "shared memory segment",
            SysvKind::Sem => "semaphore set",
            SysvKind::Msg => "message queue",
        };
        return Err(Error::new(
            "remove",
            format_args!("{what} {id}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_missing_object_names_it() {
        // No such id (ids are sequence-based; this one is far out of range).
        let e = remove(SysvKind::Shm, 2_000_000_000).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unable to remove shared memory segment 2000000000: "),
            "{e}"
        );
        assert!(matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::EIDRM)
        ));
    }
}

//! The one error type of the syscall layer: what could not be done, to what, and the errno.

use std::fmt;
use std::io;

/// A failed system operation: `unable to <op> <target>: <source>`.
///
/// `op` is a verb phrase ("mount tmpfs on", "open", "remove"), `target` names the object
/// (usually a path, sometimes "pid 42" or "socket"). The kernel's errno is kept in `source`
/// so that callers can branch on it ([`Error::errno`]).
#[derive(Debug)]
pub struct Error {
    op: &'static str,
    target: String,
    source: io::Error,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an error for `op` on `target` caused by `source`.
    pub fn new(op: &'static str, target: impl fmt::Display, source: impl Into<io::Error>) -> Self {
        Self {
            op,
            target: target.to_string(),
            source: source.into(),
        }
    }

    /// Builds an error from a rustix errno.
    pub fn errno(op: &'static str, target: impl fmt::Display, errno: rustix::io::Errno) -> Self {
        Self::new(op, target, io::Error::from(errno))
    }

    /// The verb phrase of the failed operation.
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// What the operation was applied to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The raw OS error number, when the failure came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The underlying I/O error.
    pub fn io(&self) -> &io::Error {
        &self.source
    }

    /// Converts into the underlying I/O error, dropping the context.
    pub fn into_io(self) -> io::Error {
        self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unable to {} {}: {}", self.op, self.target, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Extension to attach context to rustix and std results.
pub(crate) trait Context<T> {
    fn ctx(self, op: &'static str, target: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx(self, op: &'static str, target: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::errno(op, target, e))
    }
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn ctx(self, op: &'static str, target: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::new(op, target, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_op_target_and_cause() {
        let e = Error::errno("mount tmpfs on", "/run/user/1000", rustix::io::Errno::PERM);
        assert_eq!(
            e.to_string(),
            "unable to mount tmpfs on /run/user/1000: Operation not permitted (os error 1)"
        );
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    }
}

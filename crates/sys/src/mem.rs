//! Memory that costs only what is used: a buffer of untouched pages, and the allocator's free
//! memory handed back to the kernel.

use std::ptr::NonNull;

/// A zeroed buffer in pages of its own (an anonymous private mapping): a page becomes
/// resident only when first written, so a 64 KiB receive buffer that gets 200-byte requests
/// costs one page, where a heap buffer costs all sixteen once the allocator has to zero it.
#[derive(Debug)]
pub struct PageBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

impl PageBuffer {
    /// A buffer of `len` bytes (at least 1), all zero.
    pub fn new(len: usize) -> std::io::Result<PageBuffer> {
        let len = len.max(1);
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing
        // aliases nothing; it is owned by this value alone and unmapped once, in Drop.
        let p = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned a null address"))?;
        Ok(PageBuffer { ptr, len })
    }
}

impl std::ops::Deref for PageBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to len bytes mapped readable and writable (zero-filled by the
        // kernel, so initialized) for as long as self lives; &self forbids writes meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in new() with this address and length, and nothing
        // borrows it any more (Drop has &mut self).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Returns the free memory of every malloc arena to the kernel (`malloc_trim(0)`: glibc
/// gives back each arena's free pages, not only the top of the main heap). A daemon calls it
/// after a burst of threads ends: each thread that allocated had an arena of its own, and
/// glibc keeps what was freed in it. Returns whether anything was given back.
pub fn return_free_memory() -> bool {
    // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own state
    // (under its locks), and is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's resident anonymous memory.
    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    #[test]
    fn a_page_buffer_is_zeroed_writable_and_resident_only_where_written() {
        let before = rss_kib();
        let mut b = PageBuffer::new(64 << 20).unwrap();
        assert_eq!(b.len(), 64 << 20);
        assert!(b.iter().step_by(4096 * 64).all(|&x| x == 0));
        b[..300].copy_from_slice(&[7u8; 300]);
        assert_eq!(&b[..300], &[7u8; 300][..]);
        // 64 MiB mapped, a few pages touched by the reads above and the write.
        assert!(
            rss_kib() < before + 8 * 1024,
            "{} KiB then {}",
            before,
            rss_kib()
        );
        drop(b);
        assert!(PageBuffer::new(0).is_ok_and(|b| b.len() == 1));
    }

    #[test]
    fn freed_memory_of_another_threads_arena_goes_back() {
        // A thread allocates 32 MiB in 64 KiB blocks and one more block after them, then frees
        // the first ones: the last, still alive, keeps its arena from shrinking, so the
        // freed pages stay resident until trimmed.
        let pin = std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..512).map(|_| vec![1u8; 64 << 10]).collect();
            let pin = vec![1u8; 100 << 10]; // larger than any chunk freed so far: from the top
            drop(std::hint::black_box(blocks));
            pin
        })
        .join()
        .unwrap();
        let before = rss_kib();
        return_free_memory();
        let after = rss_kib();
        assert!(
            after + 16 * 1024 < before,
            "RssAnon {before} KiB before the trim, {after} KiB after"
        );
        drop(pin);
    }
}

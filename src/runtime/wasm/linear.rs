//! Linear memories of command guests: one anonymous read-write mapping of
//! exactly the guest's accessible size each, grown with `mremap`.
//!
//! wasmtime's default gives every memory a 4 GiB reservation plus a 2 GiB
//! guard, and a copy-on-write image of its data: four or five mappings per
//! guest, and 6 GiB of address space. Linux allows a process 65,530
//! mappings (`vm.max_map_count`) and 128 TiB of addresses, so ketchd aborted
//! near 10,000 idle guests, with most of its memory free. Here a memory is
//! one mapping, and the kernel merges neighbouring ones of the same kind, so
//! what bounds the guests of one ketchd is their fiber stacks (a stack and
//! its guard page, two mappings: see `admission`).
//!
//! With no reservation and no guard, wasmtime compiles explicit bounds
//! checks for every access, as it does on hosts without virtual memory: a
//! guest cannot reach past its memory. Growing moves the mapping's pages
//! (no copy) when the addresses after it are taken.

use std::ptr::NonNull;
use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

/// Makes [`Mapping`]s. Give it to an engine whose memories have no
/// reservation, no guard and no copy-on-write images (see [`configure`]).
pub(super) struct Creator;

/// Set up `cfg` for memories from [`Creator`].
pub(super) fn configure(cfg: &mut wasmtime::Config) {
    cfg.memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .guard_before_linear_memory(false)
        .memory_init_cow(false)
        .memory_may_move(true)
        .with_host_memory(std::sync::Arc::new(Creator));
}

// SAFETY: every memory is a private anonymous mapping of its own, zero
// filled by the kernel, at least as large as wasmtime was told, and unmapped
// only when wasmtime drops it.
unsafe impl MemoryCreator for Creator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if reserved_size_in_bytes.unwrap_or(0) != 0 || guard_size_in_bytes != 0 {
            return Err(format!(
                "a linear memory with a reservation ({reserved_size_in_bytes:?}) or a guard ({guard_size_in_bytes}) was asked of an engine configured without them"
            ));
        }
        Mapping::new(minimum)
            .map(|m| Box::new(m) as Box<dyn LinearMemory>)
            .map_err(|e| format!("linear memory of {minimum} bytes: {e}"))
    }
}

/// One linear memory.
struct Mapping {
    base: NonNull<u8>,
    /// Bytes mapped: `size` rounded up to pages, and at least one page.
    mapped: usize,
    /// Bytes the guest may access.
    size: usize,
}

// SAFETY: the mapping is owned by this value and moves with it.
unsafe impl Send for Mapping {}
// SAFETY: `&self` methods only read the fields; wasmtime serialises access
// to the memory's bytes through its store.
unsafe impl Sync for Mapping {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// `n` rounded up to whole pages, at least one.
fn pages(n: usize) -> std::io::Result<usize> {
    let page = page_size();
    n.max(1)
        .checked_next_multiple_of(page)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))
}

impl Mapping {
    fn new(size: usize) -> std::io::Result<Self> {
        let mapped = pages(size)?;
        // SAFETY: a fresh private anonymous mapping, placed by the kernel.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Mapping { base, mapped, size })
    }
}

// SAFETY: `as_ptr` points at `byte_capacity` mapped, writable bytes, of
// which the first `byte_size` are the guest's; growing keeps the contents.
unsafe impl LinearMemory for Mapping {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.mapped
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.mapped {
            let mapped = pages(new_size)?;
            // SAFETY: remaps this value's own mapping; the kernel moves its
            // pages if it cannot grow in place, and zero-fills the rest.
            let p = unsafe {
                libc::mremap(
                    self.base.as_ptr().cast(),
                    self.mapped,
                    mapped,
                    libc::MREMAP_MAYMOVE,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error().into());
            }
            self.base = NonNull::new(p.cast()).ok_or_else(std::io::Error::last_os_error)?;
            self.mapped = mapped;
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly this value's mapping, which nothing uses
        // once wasmtime drops the memory.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_keeping_contents_and_zero_fills_the_rest() {
        let mut m = Mapping::new(65536).unwrap();
        assert_eq!((m.byte_size(), m.byte_capacity()), (65536, 65536));
        // SAFETY: within the mapping.
        unsafe { m.as_ptr().add(65535).write(7) };
        m.grow_to(64 << 20).unwrap();
        assert_eq!(m.byte_size(), 64 << 20);
        // SAFETY: within the grown mapping.
        unsafe {
            assert_eq!(m.as_ptr().add(65535).read(), 7);
            assert_eq!(m.as_ptr().add((64 << 20) - 1).read(), 0);
        }
    }

    #[test]
    fn an_empty_memory_maps_a_page_and_grows_from_it() {
        let mut m = Mapping::new(0).unwrap();
        assert_eq!(m.byte_size(), 0);
        m.grow_to(65536).unwrap();
        assert_eq!(m.byte_size(), 65536);
    }

    #[test]
    fn a_reservation_is_refused() {
        let ty = MemoryType::new(1, None);
        let e = Creator
            .new_memory(ty, 65536, None, Some(1 << 32), 0)
            .err()
            .unwrap();
        assert!(e.contains("reservation"), "{e}");
    }
}

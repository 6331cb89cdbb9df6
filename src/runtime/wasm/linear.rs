//! Linear memories and fiber stacks of command guests, made so that one
//! guest costs about one of the process's memory mappings.
//!
//! wasmtime's defaults give every memory a 4 GiB reservation plus a 2 GiB
//! guard and a copy-on-write image of its data, and every fiber stack a
//! guard page: about seven mappings per guest. Linux allows a process
//! 65,530 mappings (`vm.max_map_count`), so ketchd aborted near 10,000 idle
//! guests with most of its memory free.
//!
//! - A memory is one private anonymous read-write mapping of exactly its
//!   accessible size, grown with `mremap` (pages move, nothing is copied).
//!   With no reservation and no guard, wasmtime compiles explicit bounds
//!   checks for every access, as it does on hosts without virtual memory: a
//!   guest cannot reach past its memory. Memories are placed one below the
//!   other in a region of their own, away from the stacks, so the kernel
//!   merges neighbours into one mapping.
//! - A stack is one `MAP_GROWSDOWN` mapping. The kernel keeps a gap below
//!   such a mapping free (`stack_guard_gap`, 1 MiB by default) and never
//!   grows it into another mapping, so an overflow faults, as it would on a
//!   guard page, without a `PROT_NONE` mapping of its own to split the map.
//!   A stack is made with its gap, which is then unmapped, so the gap is
//!   free from the start too.
//!   Up to [`SPARE_STACKS`] stacks of ended guests are kept for new ones.

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::{LinearMemory, MemoryCreator, MemoryType, StackCreator, StackMemory};

/// Makes [`Mapping`]s. Give it to an engine whose memories have no
/// reservation, no guard and no copy-on-write images (see [`configure`]).
pub(super) struct Creator;

/// Set up `cfg` for memories and stacks from [`Creator`].
pub(super) fn configure(cfg: &mut wasmtime::Config) {
    cfg.memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .guard_before_linear_memory(false)
        .memory_init_cow(false)
        .memory_may_move(true)
        .with_host_memory(std::sync::Arc::new(Creator))
        .with_host_stack(std::sync::Arc::new(Creator));
}

/// The kernel's default `stack_guard_gap`: what wasmtime is told is the
/// guard below a stack (faults there are reported as overflows).
const STACK_GAP: usize = 256 * 4096;
/// How far below the first mapping the memories' region starts: room for
/// the stacks, which the kernel places from the top down.
const MEMORY_REGION_OFFSET: usize = 1 << 40;

/// Where the next memory is asked to go: just below the last one (0 until
/// the first).
static NEXT_MEMORY: AtomicUsize = AtomicUsize::new(0);
/// The top of the memories' region.
static MEMORY_REGION: AtomicUsize = AtomicUsize::new(0);

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

/// A fresh private anonymous mapping of `len` bytes, at `hint` if that is
/// free (never over anything: no `MAP_FIXED`).
fn map(hint: usize, len: usize, flags: libc::c_int) -> std::io::Result<NonNull<u8>> {
    // SAFETY: without MAP_FIXED the hint is only a hint; the kernel places
    // a new mapping where nothing is mapped.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(std::io::Error::last_os_error)
}

/// Where a memory of `len` bytes is asked to go: right below the last one,
/// in a region [`MEMORY_REGION_OFFSET`] below the first mapping ketch saw;
/// back at the region's top when the next place would leave it.
fn memory_hint(len: usize) -> usize {
    let mut top = MEMORY_REGION.load(Ordering::Relaxed);
    if top == 0 {
        // The first memory: probe where the kernel puts mappings now.
        if let Ok(p) = map(0, len, 0) {
            // SAFETY: unmaps the probe just made.
            unsafe { libc::munmap(p.as_ptr().cast(), len) };
            let region = (p.as_ptr() as usize).saturating_sub(MEMORY_REGION_OFFSET);
            top = match MEMORY_REGION.compare_exchange(
                0,
                region,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => region,
                Err(other) => other,
            };
        }
    }
    let next = match NEXT_MEMORY.load(Ordering::Relaxed) {
        0 => top,
        n => n,
    };
    match next.checked_sub(len) {
        Some(h) if h >= top.saturating_sub(MEMORY_REGION_OFFSET / 2) => h,
        _ => top.saturating_sub(len),
    }
}

impl Mapping {
    fn new(size: usize) -> std::io::Result<Self> {
        let mapped = pages(size)?;
        let hint = memory_hint(mapped);
        let base = map(hint, mapped, 0)?;
        // The next one goes below the place asked for, whether this one got
        // it or the kernel put it elsewhere because it was taken.
        NEXT_MEMORY.store(hint, Ordering::Relaxed);
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

/// One fiber stack: a `MAP_GROWSDOWN` mapping (see the module's docs).
struct Stack {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value and moves with it.
unsafe impl Send for Stack {}
// SAFETY: `&self` methods only read the fields.
unsafe impl Sync for Stack {}

/// Stacks of guests that ended, kept for the next guests. Unmapping a
/// stack makes the kernel flush it from the TLB of every CPU running
/// ketchd, an interrupt to each, in every short run; a kept stack is reused
/// as it is (wasmtime does not ask for zeroed stacks: a guest cannot read
/// the host's stack).
const SPARE_STACKS: usize = 64;
static SPARES: std::sync::Mutex<Vec<Stack>> = std::sync::Mutex::new(Vec::new());

fn spares() -> std::sync::MutexGuard<'static, Vec<Stack>> {
    SPARES.lock().unwrap_or_else(|e| e.into_inner())
}

// SAFETY: each stack is a mapping of its own, page aligned, at least `size`
// bytes, and protected below by the kernel's stack guard gap; a fresh one is
// zero-filled, a spare is handed out only when zeroing is not asked for.
// It is unmapped or kept as a spare only when wasmtime drops it.
unsafe impl StackCreator for Creator {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let len = pages(size)?;
        if !zeroed {
            let mut s = spares();
            if let Some(i) = s.iter().position(|st| st.len == len) {
                return Ok(Box::new(s.swap_remove(i)));
            }
        }
        Ok(Box::new(map_stack(0, len)?))
    }
}

/// A fresh stack of `len` bytes with [`STACK_GAP`] free below it, at `hint`
/// if that is free.
///
/// The kernel keeps the gap below a `MAP_GROWSDOWN` mapping free of the
/// mappings it places afterwards, but it places the stack itself in any hole
/// that fits, which may end right on top of another mapping: a host overflow
/// would then write into that neighbour. So the stack is mapped with its gap
/// and the gap is unmapped, whereupon nothing but `MAP_FIXED` can take it.
fn map_stack(hint: usize, len: usize) -> std::io::Result<Stack> {
    let whole = len
        .checked_add(STACK_GAP)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
    let low = map(hint, whole, libc::MAP_GROWSDOWN | libc::MAP_NORESERVE)?;
    // SAFETY: unmaps the bottom of the mapping just made, which nothing
    // uses; the rest keeps its flags.
    if unsafe { libc::munmap(low.as_ptr().cast(), STACK_GAP) } != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: unmaps the mapping just made.
        unsafe { libc::munmap(low.as_ptr().cast(), whole) };
        return Err(e);
    }
    let base = NonNull::new(low.as_ptr().wrapping_add(STACK_GAP))
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
    Ok(Stack { base, len })
}

// SAFETY: `top` and `range` describe exactly the mapping; the guard is the
// gap the kernel keeps free below it.
unsafe impl StackMemory for Stack {
    fn top(&self) -> *mut u8 {
        self.base.as_ptr().wrapping_add(self.len)
    }

    fn range(&self) -> Range<usize> {
        let base = self.base.as_ptr() as usize;
        base..base + self.len
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.base.as_ptr().wrapping_sub(STACK_GAP)..self.base.as_ptr()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut s = spares();
        if s.len() < SPARE_STACKS {
            // The mapping moves to a spare that owns it; this value lets go.
            s.push(Stack {
                base: self.base,
                len: self.len,
            });
            return;
        }
        drop(s);
        // SAFETY: unmaps exactly this stack, which wasmtime no longer uses.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
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

    /// The kernel keeps the gap below a fiber stack free: a mapping asked
    /// for right below it is put elsewhere, so nothing can sit where an
    /// overflow would write.
    #[test]
    fn nothing_is_placed_in_the_gap_below_a_stack() {
        let stack = Creator.new_stack(64 << 10, true).unwrap();
        let base = stack.range().start;
        assert_eq!(stack.guard_range().end as usize, base);
        let page = page_size();
        let near = map(base - page, page, 0).unwrap();
        let at = near.as_ptr() as usize;
        // SAFETY: unmaps the page just mapped.
        unsafe { libc::munmap(near.as_ptr().cast(), page) };
        assert!(
            at + page <= base - STACK_GAP || at >= base,
            "a mapping at {at:#x} is inside the gap below the stack at {base:#x}"
        );
    }

    /// The mappings of this process that overlap `range`.
    fn mapped_in(range: Range<usize>) -> Vec<String> {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| {
                let span = l.split(' ').next().unwrap();
                let (a, b) = span.split_once('-').unwrap();
                let a = usize::from_str_radix(a, 16).unwrap();
                let b = usize::from_str_radix(b, 16).unwrap();
                a < range.end && b > range.start
            })
            .map(str::to_owned)
            .collect()
    }

    /// A hole that fits a stack exactly, right above another mapping, is
    /// not where the stack goes: its gap would hold that neighbour.
    #[test]
    fn a_stack_is_not_placed_right_above_another_mapping() {
        let page = page_size();
        let len = 64 << 10;
        let r = map(0, len + page, 0).unwrap();
        let hole = r.as_ptr() as usize + page;
        // SAFETY: unmaps the top of the mapping just made, keeping a page
        // below the hole as the neighbour.
        unsafe { libc::munmap(hole as *mut libc::c_void, len) };
        let stack = map_stack(hole, len).unwrap();
        let base = stack.range().start;
        let inside = mapped_in(base - STACK_GAP..base);
        // SAFETY: unmaps the neighbour page.
        unsafe { libc::munmap(r.as_ptr().cast(), page) };
        assert!(
            inside.is_empty(),
            "the gap below {base:#x} holds {inside:?}"
        );
    }

    /// A host overflow of a fiber stack, even with a neighbour forced into
    /// the gap (MAP_FIXED, which ketch never uses), faults rather than
    /// growing the stack into it. Run in a child, which the fault ends.
    #[test]
    fn an_overflow_faults_instead_of_writing_below() {
        let stack = Creator.new_stack(64 << 10, true).unwrap();
        let base = stack.range().start;
        let page = page_size();
        let victim_end = base - STACK_GAP / 2;
        // SAFETY: MAP_FIXED_NOREPLACE maps only where nothing is mapped.
        let victim = unsafe {
            libc::mmap(
                (victim_end - page) as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_ne!(
            victim,
            libc::MAP_FAILED,
            "{}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fork, then the child only writes and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            for addr in (victim_end..base).rev().step_by(8) {
                // SAFETY: the attack itself: it must fault before the
                // victim's page.
                unsafe { ((addr & !7) as *mut u64).write_volatile(0x004b_4554_4348) };
            }
            // SAFETY: exit without unwinding in the forked child.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
            "the overflow did not fault: status {status:#x}"
        );
        // SAFETY: the victim page is mapped (above) and still ours.
        assert_eq!(unsafe { *(victim as *const u64) }, 0);
        // SAFETY: unmaps the page mapped above.
        unsafe { libc::munmap(victim, page) };
    }

    #[test]
    fn an_ended_guests_stack_is_reused_unless_zeroing_is_asked() {
        // A size no other test uses, as the spares are the process's.
        let size = 200 << 10;
        let first = Creator.new_stack(size, false).unwrap();
        let base = first.range().start;
        drop(first);
        let zeroed = Creator.new_stack(size, true).unwrap();
        assert_ne!(zeroed.range().start, base);
        let again = Creator.new_stack(size, false).unwrap();
        assert_eq!(again.range().start, base);
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

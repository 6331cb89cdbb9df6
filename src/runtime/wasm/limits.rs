//! Memory and table limits of one store: the guest's cap and the daemon's
//! budget, enforced by wasmtime's `ResourceLimiter`.

use super::control::{store_born, store_gone};
use crate::model::units::format_size;
use crate::runtime::memory::MemoryBudget;
use crate::runtime::stats::MemoryGauge;
use std::sync::Arc;
use wasmtime::ResourceLimiter;

/// Elements of one table: bounds a hostile module's `table.grow` even under
/// a large cap (each element is also counted against the cap).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// What wasmtime stores per table element: a pointer (its
/// `ResourceLimiter::table_growing` docs).
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;
/// Linear memories of one store. Each reserves 4 GiB of address space plus
/// guards when created, however small: at wasmtime's default of 10,000 per
/// store, a few guests of empty memories would exhaust ketchd's 128 TiB of
/// address space, and then its own allocations fail. Multi-memory guests
/// and composed components use a handful.
const MAX_MEMORIES: usize = 16;

/// The memory one guest may hold, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cap {
    /// The container's `--memory`.
    Flag(u64),
    /// The daemon's `--wasm-memory-default`.
    Default(u64),
    /// An embedded plugin's `Limits::memory`.
    Plugin(u64),
}

impl Cap {
    fn bytes(self) -> u64 {
        match self {
            Cap::Flag(n) | Cap::Default(n) | Cap::Plugin(n) => n,
        }
    }
}

/// Why the limiter refused a grow: said in the exit error (so in the
/// container's log), and for the daemon's budget in ketchd's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The guest's own cap.
    Cap(Cap),
    /// The daemon's budget, taken by all its guests; holds its size.
    Budget(u64),
    /// One table past [`MAX_TABLE_ELEMENTS`].
    Table,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Cap(Cap::Flag(n)) => write!(
                f,
                "memory refused: over the container's --memory of {}",
                format_size(*n)
            ),
            Refusal::Cap(Cap::Default(n)) => write!(
                f,
                "memory refused: over the {} every Wasm guest may hold without --memory (ketchd --wasm-memory-default)",
                format_size(*n)
            ),
            Refusal::Cap(Cap::Plugin(n)) => write!(
                f,
                "memory refused: over the plugin's memory limit of {}",
                format_size(*n)
            ),
            Refusal::Budget(n) => write!(
                f,
                "memory refused: the {} that all Wasm guests of ketchd may hold together is taken (ketchd --wasm-memory-budget)",
                format_size(*n)
            ),
            Refusal::Table => write!(
                f,
                "table refused: over {MAX_TABLE_ELEMENTS} elements"
            ),
        }
    }
}

/// Memory/table limits of one store: the guest's cap, and the daemon's
/// budget, which it takes from before granting. Remembers why a grow was
/// refused, so a guest that then dies is reported as OOM-killed. Counts
/// what it grants in the container's [`MemoryGauge`]; gives everything back
/// to both when the store is dropped, however the guest ended (exit, trap,
/// kill, a dropped future, a panic).
pub(crate) struct Limits {
    cap: Cap,
    budget: Arc<MemoryBudget>,
    pub(crate) refused: Option<Refusal>,
    /// Bytes of memories and tables granted, all taken from `budget`.
    held: u64,
    gauge: Arc<MemoryGauge>,
    /// The container, for ketchd's log.
    name: Arc<str>,
}

impl Limits {
    pub(crate) fn new(
        cap: Cap,
        budget: &Arc<MemoryBudget>,
        gauge: &Arc<MemoryGauge>,
        name: &Arc<str>,
    ) -> Self {
        store_born();
        Limits {
            cap,
            budget: budget.clone(),
            refused: None,
            held: 0,
            gauge: gauge.clone(),
            name: name.clone(),
        }
    }

    /// Grant `add` more bytes if both the cap and the budget allow.
    fn grant(&mut self, add: u64) -> bool {
        // A cap set since the start (`update`) replaces the first one.
        let cap = self.gauge.limit().map_or(self.cap, Cap::Flag);
        if self.held.saturating_add(add) > cap.bytes() {
            self.refuse(Refusal::Cap(cap));
            return false;
        }
        if !self.budget.try_take(add) {
            self.refuse(Refusal::Budget(self.budget.limit()));
            return false;
        }
        self.held += add;
        self.gauge.grow(add);
        true
    }

    fn refuse(&mut self, why: Refusal) {
        if self.refused != Some(why) {
            // The container's log says it when the guest dies; the budget
            // is every guest's, so its operator hears of it too.
            if let Refusal::Budget(_) = why {
                tracing::warn!("wasm container {}: {why}", self.name);
            } else {
                tracing::debug!("wasm container {}: {why}", self.name);
            }
        }
        self.refused = Some(why);
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
        self.gauge.shrink(self.held);
        store_gone();
    }
}

/// wasmtime asks here for every grow and, with `current` 0, for the initial
/// size of every memory and table an instantiation creates (`limit_new` in
/// its `vm/memory.rs` and `vm/table.rs`, for the on-demand and pooling
/// allocators alike), so `held` is the store's whole footprint. Shared
/// memories would bypass the limiter, but the engines leave them disabled.
impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum wasmtime fails the grow
        // whatever we answer: the guest's own limit, not an OOM.
        if maximum.is_some_and(|m| desired > m) {
            return Ok(true);
        }
        Ok(self.grant(desired.saturating_sub(current) as u64))
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(true);
        }
        if desired > MAX_TABLE_ELEMENTS {
            self.refuse(Refusal::Table);
            return Ok(false);
        }
        let add = desired.saturating_sub(current) as u64;
        Ok(self.grant(add.saturating_mul(TABLE_ELEMENT_BYTES)))
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn limiter_counts_memories_and_tables_against_cap_and_budget() {
        let budget = Arc::new(MemoryBudget::new(10 * MIB));
        let gauge = Arc::new(MemoryGauge::default());
        let name: Arc<str> = "t".into();
        let mb = MIB as usize;
        let mut a = Limits::new(Cap::Flag(8 * MIB), &budget, &gauge, &name);
        // Two memories of 4 MiB: the cap is for their sum.
        assert!(a.memory_growing(0, 4 * mb, None).unwrap());
        assert!(a.memory_growing(0, 4 * mb, None).unwrap());
        assert!(!a.memory_growing(4 * mb, 5 * mb, None).unwrap());
        assert_eq!(a.refused, Some(Refusal::Cap(Cap::Flag(8 * MIB))));
        // Table elements count too; one table is bounded on its own.
        let mut b = Limits::new(Cap::Default(8 * MIB), &budget, &gauge, &name);
        assert!(b.table_growing(0, 1024, None).unwrap());
        assert_eq!(b.held, 1024 * TABLE_ELEMENT_BYTES);
        assert!(!b.table_growing(1024, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert_eq!(b.refused, Some(Refusal::Table));
        // 8 MiB of the 10 are a's: b gets no 2 MiB more.
        assert!(!b.memory_growing(0, 2 * mb, None).unwrap());
        assert_eq!(b.refused, Some(Refusal::Budget(10 * MIB)));
        // Past a memory's own maximum: wasmtime fails it, not an OOM.
        let mut c = Limits::new(Cap::Default(8 * MIB), &budget, &gauge, &name);
        assert!(c.memory_growing(0, 2 * mb, Some(mb)).unwrap());
        assert_eq!((c.held, c.refused), (0, None));
        assert_eq!(gauge.current(), 8 * MIB + 1024 * TABLE_ELEMENT_BYTES);
        drop(a);
        assert!(b.memory_growing(0, 2 * mb, None).unwrap());
        drop((b, c));
        assert_eq!(budget.used(), 0);
        assert_eq!(gauge.current(), 0);
    }

    #[test]
    fn a_limit_set_on_a_running_guest_replaces_its_cap() {
        use crate::runtime::Control;
        let budget = Arc::new(MemoryBudget::new(100 * MIB));
        let ctl = super::super::control::Ctl::new(None);
        let name: Arc<str> = "t".into();
        let mb = MIB as usize;
        let mut a = Limits::new(Cap::Default(8 * MIB), &budget, &ctl.memory, &name);
        assert!(a.memory_growing(0, 4 * mb, None).unwrap());
        let below = ctl.set_memory_limit(2 * MIB).unwrap_err();
        assert!(
            below.contains("below the 4MiB the guest already holds"),
            "{below}"
        );
        ctl.set_memory_limit(16 * MIB).unwrap();
        assert!(a.memory_growing(4 * mb, 12 * mb, None).unwrap());
        assert!(!a.memory_growing(12 * mb, 17 * mb, None).unwrap());
        assert_eq!(a.refused, Some(Refusal::Cap(Cap::Flag(16 * MIB))));
    }
}

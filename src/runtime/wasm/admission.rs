//! Admission of command guests: a guest starts only if the process can hold
//! it, so a flood of starts is refused with an error that names the limit,
//! never answered by an abort that takes every other guest with it.
//!
//! Guests are instances inside ketchd, and share its process-wide limits:
//! - memory mappings (`vm.max_map_count`, 65,530 by default). A guest takes
//!   up to [`GUEST_MAPS`]: its fiber stack and its linear memory, which
//!   usually merges with its neighbours' (see `linear`). When malloc
//!   cannot map, Rust aborts: so a reserve of [`MAPS_RESERVED`] is kept
//!   for everything else of ketchd's;
//! - file descriptors: one per granted directory, counted in the tenant
//!   budget of [`crate::accept`] with connections;
//! - the operator's own cap, `ketchd --wasm-max-guests`;
//! - memory: the guest's initial memory must fit in what is left of the
//!   daemon's budget. The limiter (`limits`) is what holds guests to the
//!   budget as they grow; this only turns a start that could not even
//!   instantiate into a refusal, rather than a guest that dies OOM-killed.
//!
//! Counting mappings exactly is a read of `/proc/self/maps`, O(mappings).
//! So the count is an upper bound: the last reading plus [`GUEST_MAPS`] for
//! every guest admitted since (merged or freed mappings only make it high),
//! read again only when that bound reaches the limit.

use crate::accept;
use crate::model::units::format_size;
use crate::runtime::memory::MemoryBudget;
use crate::runtime::RuntimeError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

/// Mappings one guest may add: its fiber stack and its memory.
const GUEST_MAPS: usize = 2;
/// Mappings kept for ketchd itself: libraries, thread stacks, malloc
/// arenas, compiled modules, the function pool, monitors' pipes.
const MAPS_RESERVED: usize = 4096;

/// The admission of one process's guests.
pub(crate) struct Admission {
    /// `--wasm-max-guests`.
    max: AtomicUsize,
    maps: Maps,
    state: Mutex<State>,
}

/// The process's admission.
static PROCESS: LazyLock<Admission> = LazyLock::new(|| Admission::new(Maps::host()));

/// Set `--wasm-max-guests` for this process.
pub fn set_max_guests(n: usize) {
    PROCESS.max.store(n, Ordering::Relaxed);
}

/// What a guest needs to start.
pub(crate) struct Needs<'a> {
    /// Descriptors of its own (preopened directories).
    pub(crate) fds: usize,
    /// Bytes of memory its instantiation takes at least.
    pub(crate) memory: u64,
    pub(crate) budget: &'a MemoryBudget,
}

/// Admit the guest `name`.
pub(crate) fn admit(name: &str, needs: Needs<'_>) -> Result<Ticket, RuntimeError> {
    PROCESS.admit(name, needs)
}

struct State {
    guests: usize,
    /// Mappings at the last reading of `/proc/self/maps`; none before the
    /// first guest.
    measured: Option<usize>,
    /// Guests admitted since that reading.
    since: usize,
}

/// Where the process's mappings can be counted and their limit read.
pub(crate) struct Maps {
    /// `vm.max_map_count`, if the host has one.
    pub(crate) limit: Option<usize>,
    pub(crate) count: fn() -> usize,
}

impl Maps {
    fn host() -> Self {
        Maps {
            limit: std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            count: count_maps,
        }
    }
}

/// Mappings of this process now (lines of `/proc/self/maps`).
fn count_maps() -> usize {
    std::fs::read("/proc/self/maps")
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// A running guest's place; given back when dropped.
#[must_use]
pub(crate) struct Ticket {
    admission: &'static Admission,
    _fds: Option<accept::Held>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        s.guests = s.guests.saturating_sub(1);
    }
}

impl Admission {
    pub(crate) fn new(maps: Maps) -> Self {
        Admission {
            max: AtomicUsize::new(usize::MAX),
            maps,
            state: Mutex::new(State {
                guests: 0,
                measured: None,
                since: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn admit(
        &'static self,
        name: &str,
        needs: Needs<'_>,
    ) -> Result<Ticket, RuntimeError> {
        let refuse = |reason: String| RuntimeError::Capacity {
            name: name.to_string(),
            reason,
        };
        let mut s = self.lock();
        if s.guests >= self.max.load(Ordering::Relaxed) {
            return Err(refuse(format!(
                "ketchd runs {} Wasm guests, the most its --wasm-max-guests allows",
                s.guests
            )));
        }
        if let Some(limit) = self.maps.limit {
            let ceiling = limit.saturating_sub(MAPS_RESERVED);
            let bound = |s: &State| s.measured.map(|m| m + (s.since + 1) * GUEST_MAPS);
            if bound(&s).is_none_or(|b| b > ceiling) {
                let now = (self.maps.count)();
                s.measured = Some(now);
                s.since = 0;
                if bound(&s).is_none_or(|b| b > ceiling) {
                    return Err(refuse(format!(
                        "ketchd holds {now} memory mappings with {} Wasm guests, and the host allows a process {limit} (vm.max_map_count; raise it with `sysctl -w vm.max_map_count=N`)",
                        s.guests
                    )));
                }
            }
        }
        let budget = needs.budget;
        if budget.used().saturating_add(needs.memory) > budget.limit() {
            return Err(refuse(format!(
                "its {} of initial memory does not fit in what is left of the {} all Wasm guests of ketchd may hold ({} taken; ketchd --wasm-memory-budget)",
                format_size(needs.memory),
                format_size(budget.limit()),
                format_size(budget.used())
            )));
        }
        let held = match needs.fds {
            0 => None,
            n => Some(accept::tenant_descriptors(n).ok_or_else(|| {
                let c = accept::config();
                refuse(format!(
                    "its {n} granted directories need descriptors, and the {} of ketchd's {} (RLIMIT_NOFILE) that containers may hold are taken (raise ketchd's limit, e.g. LimitNOFILE= in its unit)",
                    c.tenant_ceiling(),
                    c.fd_limit
                ))
            })?),
        };
        s.guests += 1;
        s.since += 1;
        Ok(Ticket {
            admission: self,
            _fds: held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(maps: Maps) -> &'static Admission {
        Box::leak(Box::new(Admission::new(maps)))
    }

    static ROOMY: LazyLock<MemoryBudget> = LazyLock::new(|| MemoryBudget::new(1 << 40));

    fn needs(memory: u64, budget: &MemoryBudget) -> Needs<'_> {
        Needs {
            fds: 0,
            memory,
            budget,
        }
    }

    #[test]
    fn a_guest_whose_memory_does_not_fit_the_budget_is_refused() {
        let a = admission(Maps {
            limit: None,
            count: || 0,
        });
        let budget = MemoryBudget::new(10 << 20);
        assert!(budget.try_take(8 << 20));
        let e = a
            .admit("big", needs(4 << 20, &budget))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot start big") && e.contains("--wasm-memory-budget"),
            "{e}"
        );
        let _fits = a.admit("small", needs(1 << 20, &budget)).unwrap();
    }

    #[test]
    fn the_operator_cap_refuses_by_name_and_frees_on_drop() {
        let a = admission(Maps {
            limit: None,
            count: || 0,
        });
        a.max.store(2, Ordering::Relaxed);
        let first = a.admit("a", needs(0, &ROOMY)).unwrap();
        let _b = a.admit("b", needs(0, &ROOMY)).unwrap();
        let e = a.admit("c", needs(0, &ROOMY)).err().unwrap().to_string();
        assert!(
            e.contains("cannot start c") && e.contains("--wasm-max-guests"),
            "{e}"
        );
        drop(first);
        let _c = a.admit("c", needs(0, &ROOMY)).unwrap();
    }

    #[test]
    fn a_process_near_its_mapping_limit_is_refused_by_name() {
        let a = admission(Maps {
            limit: Some(MAPS_RESERVED + 30),
            count: || 100,
        });
        let e = a.admit("x", needs(0, &ROOMY)).err().unwrap().to_string();
        assert!(
            e.contains("cannot start x")
                && e.contains("100 memory mappings")
                && e.contains("vm.max_map_count"),
            "{e}"
        );
    }

    #[test]
    fn mappings_are_read_again_only_near_the_limit() {
        static READS: AtomicUsize = AtomicUsize::new(0);
        /// Guests this test holds.
        static HELD: AtomicUsize = AtomicUsize::new(0);
        let a = admission(Maps {
            limit: Some(MAPS_RESERVED + 10 * GUEST_MAPS),
            count: || {
                READS.fetch_add(1, Ordering::Relaxed);
                // Merged memories: each guest really takes one.
                HELD.load(Ordering::Relaxed)
            },
        });
        let mut held = Vec::new();
        while let Ok(t) = a.admit("g", needs(0, &ROOMY)) {
            held.push(t);
            HELD.store(held.len(), Ordering::Relaxed);
            assert!(held.len() < 100, "never refused");
        }
        // The first reading (none) and the bound let 10 in; then readings
        // (one mapping each) let 9 more in, each only when the bound was
        // reached: 19 guests in 20 mappings, and 6 readings.
        assert_eq!(held.len(), 19);
        assert_eq!(READS.load(Ordering::Relaxed), 6, "read on every start");
        drop(held);
        assert_eq!(a.lock().guests, 0);
    }
}

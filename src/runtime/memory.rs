//! How much memory Wasm guests may hold: a cap per guest, which `--memory`
//! replaces, and a budget shared by all the guests of the daemon. Guests run
//! inside ketchd, so without both one guest (or many, each within its cap)
//! could grow until the kernel's OOM killer picks ketchd, and every Wasm
//! container would die with it.
//!
//! What is counted is what wasmtime grants: the accessible bytes of every
//! linear memory and table of a store, from its instantiation on. That is
//! an upper bound of what the guest can make resident, so a budget below the
//! host's memory keeps the sum of all guests below it.

use crate::model::units::{parse_size, UnitError};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The cap of a guest run without `--memory`: 4096 Wasm pages. Ample for
/// interpreters built for WASI (CPython, QuickJS) and for the Rust, Go and
/// TinyGo services that run here (a few MiB each), and a runaway guest stops
/// there instead of at wasm32's 4 GiB per memory, with several memories
/// each. A guest that needs more asks with `--memory`, as a Linux container
/// asks its cgroup.
pub const DEFAULT_GUEST_CAP: u64 = 256 << 20;
/// The budget when the host's memory cannot be read (no `/proc`).
const FALLBACK_BUDGET: u64 = 4 << 30;
/// A Wasm page: the smallest cap or budget that lets a guest have memory.
pub const WASM_PAGE: u64 = 64 << 10;

/// ketchd's `--wasm-memory-default` and `--wasm-memory-budget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasmMemory {
    /// The cap of a guest (a command, or one request of a function) run
    /// without `--memory`, bytes.
    pub guest_default: u64,
    /// What all guests of the daemon may hold at once, bytes.
    pub budget: u64,
}

impl Default for WasmMemory {
    fn default() -> Self {
        WasmMemory {
            guest_default: DEFAULT_GUEST_CAP,
            budget: default_budget(),
        }
    }
}

/// Half of the memory ketchd may use: the host's `MemTotal`, or its cgroup's
/// limit if lower (ketchd under systemd's `MemoryMax=` or in a container).
/// The other half is for ketchd itself, the page cache, and whatever else
/// the host runs; Linux containers are held by cgroups of their own.
pub fn default_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_total(&s));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| cgroup_limit(&s, |p| std::fs::read_to_string(p).ok()));
    let usable = match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    };
    usable.map_or(FALLBACK_BUDGET, |m| m / 2)
}

/// A memory limit flag that is not a size of at least one page.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(transparent)]
    Size(#[from] UnitError),
    #[error("{0:?} is less than one Wasm page (64KiB)")]
    BelowOnePage(String),
}

/// A size for the two flags: as `--memory` reads it, at least one page.
pub fn parse_limit(s: &str) -> Result<u64, LimitError> {
    let n = parse_size(s)?;
    if n < WASM_PAGE {
        return Err(LimitError::BelowOnePage(s.to_string()));
    }
    Ok(n)
}

/// `MemTotal` of `/proc/meminfo`, bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim();
    kb.parse::<u64>().ok()?.checked_mul(1024)
}

/// The lowest memory limit from the process's cgroups (as
/// `/proc/self/cgroup` lists them) up to the root: cgroup v2 `memory.max`,
/// v1 `memory.limit_in_bytes`. `read` reads a file.
fn cgroup_limit(self_cgroup: &str, read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    let mut lowest: Option<u64> = None;
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, file) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
        } else {
            continue;
        };
        let leaf = Path::new(base).join(path.trim_start_matches('/'));
        // "max" (v2 unlimited) does not parse; v1 says unlimited with a
        // number larger than any host, which `min` with MemTotal discards.
        let found = leaf
            .ancestors()
            .take_while(|d| d.starts_with(base))
            .filter_map(|d| read(&d.join(file))?.trim().parse::<u64>().ok())
            .min();
        lowest = match (lowest, found) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    lowest
}

/// Bytes granted to the daemon's live guests, against the budget. A
/// store's limiter takes from it before granting memory or table growth and
/// gives back all it took when the store is dropped.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Self {
        MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Take `n` bytes if they fit, all or nothing.
    pub fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    pub fn give_back(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    #[test]
    fn reads_mem_total() {
        let meminfo = "MemTotal:       24684096 kB\nMemFree:        21750416 kB\n";
        assert_eq!(mem_total(meminfo), Some(24684096 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn finds_the_lowest_cgroup_limit_up_to_the_root() {
        let files: HashMap<PathBuf, &str> = [
            ("/sys/fs/cgroup/system.slice/memory.max", "2147483648\n"),
            (
                "/sys/fs/cgroup/system.slice/ketchd.service/memory.max",
                "max\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]
        .into_iter()
        .map(|(p, s)| (PathBuf::from(p), s))
        .collect();
        let read = |p: &Path| files.get(p).map(|s| s.to_string());
        let v2 = "0::/system.slice/ketchd.service\n";
        assert_eq!(cgroup_limit(v2, read), Some(2 << 30));
        let v1 = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n";
        assert_eq!(cgroup_limit(v1, read), Some(9223372036854771712));
        assert_eq!(cgroup_limit("0::/\n", read), None);
    }

    #[test]
    fn limits_are_at_least_a_page() {
        assert_eq!(parse_limit("512m"), Ok(512 << 20));
        assert_eq!(parse_limit("64k"), Ok(WASM_PAGE));
        assert!(parse_limit("1k").is_err());
        assert!(parse_limit("lots").is_err());
    }

    #[test]
    fn budget_is_all_or_nothing_and_given_back() {
        let b = MemoryBudget::new(10);
        assert!(b.try_take(6));
        assert!(!b.try_take(5));
        assert_eq!(b.used(), 6);
        assert!(b.try_take(4));
        b.give_back(6);
        assert!(b.try_take(5));
        b.give_back(100);
        assert_eq!(b.used(), 0);
    }
}

//! Live counters a running container reports through `stats`: memory in
//! use, and for function containers, requests and their latency.
//!
//! Everything here is lock-free: a function serving tens of thousands of
//! requests a second updates these on every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// CPU time spent running the container's guest code, nanoseconds.
    pub cpu_ns: u64,
    /// Bytes of linear memory and tables held by the container's instances.
    pub memory_bytes: u64,
    /// Peak of `memory_bytes` since start.
    pub memory_peak: u64,
    /// The cgroup's memory limit (Linux containers).
    pub memory_limit: Option<u64>,
    /// Processes in the container (Linux containers).
    pub pids: Option<u64>,
    pub http: Option<HttpStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests answered (by the function or by ketch).
    pub requests: u64,
    /// Requests that ended in a 5xx: traps, deadlines, refusals.
    pub errors: u64,
    /// Of those, turned away at the concurrency cap (503).
    pub rejected: u64,
    pub in_flight: u64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Sub-buckets per power of two: latency is reported within 1/8 (12.5%).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values below this many microseconds get a bucket each.
const LINEAR: u64 = SUB as u64 * 2;
/// Covers up to 2^40 µs (~12 days), far beyond any request deadline.
const BUCKETS: usize = LINEAR as usize + (40 - (SUB_BITS as usize + 1)) * SUB;

/// A log-linear latency histogram in microseconds, HdrHistogram-style,
/// with atomic buckets.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < LINEAR {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros(); // >= SUB_BITS + 1
        let sub = (us >> (exp - SUB_BITS)) as usize & (SUB - 1);
        let i = LINEAR as usize + (exp as usize - (SUB_BITS as usize + 1)) * SUB + sub;
        i.min(BUCKETS - 1)
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < LINEAR as usize {
            return i as u64;
        }
        let k = i - LINEAR as usize;
        let exp = (k / SUB) as u32 + SUB_BITS + 1;
        let sub = (k % SUB) as u64;
        let low = (1u64 << exp) + (sub << (exp - SUB_BITS));
        low + (1u64 << (exp - SUB_BITS)) - 1
    }

    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile (0.0..=1.0), or zero with no samples.
    pub fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(Self::upper(i));
            }
        }
        Duration::from_micros(Self::upper(BUCKETS - 1))
    }
}

/// The counters of one function container.
#[derive(Default)]
pub struct HttpCounters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub rejected: AtomicU64,
    pub in_flight: AtomicU64,
    pub latency: Histogram,
}

impl HttpCounters {
    /// Count one finished request.
    pub fn finish(&self, status: u16, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(took);
    }

    pub fn snapshot(&self) -> HttpStats {
        HttpStats {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            p50: self.latency.quantile(0.50),
            p99: self.latency.quantile(0.99),
        }
    }
}

/// Memory held by a container's instances: current and peak.
#[derive(Default)]
pub struct MemoryGauge {
    current: AtomicU64,
    peak: AtomicU64,
    /// A cap set on the running guest (`update`), bytes; 0 while unset.
    limit: AtomicU64,
}

impl MemoryGauge {
    /// The cap set on the running guest, if any.
    pub fn limit(&self) -> Option<u64> {
        match self.limit.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes.max(1), Ordering::Relaxed);
    }
    pub fn grow(&self, by: u64) {
        let now = self.current.fetch_add(by, Ordering::Relaxed) + by;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    pub fn shrink(&self, by: u64) {
        self.current.fetch_sub(by, Ordering::Relaxed);
    }
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_their_values() {
        let mut last = 0;
        for us in [0u64, 1, 15, 16, 17, 100, 1_000, 12_345, 1 << 30, 1 << 39] {
            let i = Histogram::index(us);
            assert!(i >= last, "index not monotonic at {us}");
            last = i;
            assert!(Histogram::upper(i) >= us, "bucket {i} does not cover {us}");
            // Within 12.5% above.
            assert!(Histogram::upper(i) as f64 <= us as f64 * 1.125 + 1.0);
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((50_000.0..=50_000.0 * 1.125).contains(&p50), "p50 {p50}");
        assert!((99_000.0..=99_000.0 * 1.125).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn counters_count_5xx_as_errors() {
        let c = HttpCounters::default();
        c.finish(200, Duration::from_millis(1));
        c.finish(503, Duration::from_millis(1));
        let s = c.snapshot();
        assert_eq!((s.requests, s.errors), (2, 1));
    }
}

//! Per-sandbox counters and call latencies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Latencies kept for the percentiles: the most recent calls.
const WINDOW: usize = 4096;

/// A snapshot of a sandbox's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Calls made (of every kind, failed ones included).
    pub calls: u64,
    /// Calls that trapped (deadline, fuel and memory included).
    pub traps: u64,
    /// Calls stopped at their deadline.
    pub timeouts: u64,
    /// Median and 99th percentile of the latest calls' durations.
    pub p50: Duration,
    pub p99: Duration,
}

#[derive(Default)]
pub(super) struct Recorder {
    calls: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    latencies: Mutex<VecDeque<u64>>,
}

/// How a call ended, for the counters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    Ok,
    /// Refused before the guest ran (no export, bad arguments).
    Refused,
    Trap,
    Timeout,
}

impl Recorder {
    pub(super) fn record(&self, took: Duration, ended: Ended) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match ended {
            Ended::Ok | Ended::Refused => {}
            Ended::Trap => {
                self.traps.fetch_add(1, Ordering::Relaxed);
            }
            Ended::Timeout => {
                self.traps.fetch_add(1, Ordering::Relaxed);
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut l = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == WINDOW {
            l.pop_front();
        }
        l.push_back(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    pub(super) fn snapshot(&self) -> Metrics {
        let mut sorted: Vec<u64> = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        sorted.sort_unstable();
        let pct = |p: usize| {
            if sorted.is_empty() {
                return Duration::ZERO;
            }
            let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
            Duration::from_nanos(sorted[i.min(sorted.len() - 1)])
        };
        Metrics {
            calls: self.calls.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            p50: pct(50),
            p99: pct(99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_recorded_calls() {
        let r = Recorder::default();
        assert_eq!(r.snapshot(), Metrics::default());
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms), Ended::Ok);
        }
        r.record(Duration::from_secs(1), Ended::Timeout);
        r.record(Duration::from_millis(1), Ended::Trap);
        let m = r.snapshot();
        assert_eq!((m.calls, m.traps, m.timeouts), (102, 2, 1));
        assert_eq!(m.p50, Duration::from_millis(50));
        assert_eq!(m.p99, Duration::from_millis(100));
    }
}

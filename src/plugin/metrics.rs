//! Per-sandbox counters and call latencies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Latencies kept for the percentiles: the most recent samples.
const WINDOW: usize = 4096;
/// One call in this many is timed: reading the clock twice costs a warm
/// call a tenth of its time, and a sample estimates the percentiles as
/// well once the window fills.
const SAMPLE_EVERY: u64 = 8;

/// A snapshot of a sandbox's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Calls made (of every kind, failed ones included).
    pub calls: u64,
    /// Calls that trapped (deadline, fuel and memory included).
    pub traps: u64,
    /// Calls stopped at their deadline.
    pub timeouts: u64,
    /// Median and 99th percentile of the durations of the latest calls
    /// (one in eight is timed, the first one always).
    pub p50: Duration,
    pub p99: Duration,
}

#[derive(Default)]
pub(super) struct Recorder {
    /// Calls started: what `calls` reports.
    started: AtomicU64,
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
    /// At the start of a call: the time, if this call is to be timed.
    pub(super) fn start(&self) -> Option<std::time::Instant> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        (n % SAMPLE_EVERY == 0).then(std::time::Instant::now)
    }

    /// At its end.
    pub(super) fn end(&self, t0: Option<std::time::Instant>, ended: Ended) {
        self.record(t0.map(|t| t.elapsed()), ended);
    }

    fn record(&self, took: Option<Duration>, ended: Ended) {
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
        let Some(took) = took else {
            return;
        };
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
            calls: self.started.load(Ordering::Relaxed),
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
            r.record(Some(Duration::from_millis(ms)), Ended::Ok);
        }
        r.record(Some(Duration::from_secs(1)), Ended::Timeout);
        r.record(None, Ended::Trap);
        let m = r.snapshot();
        assert_eq!((m.calls, m.traps, m.timeouts), (0, 2, 1));
        assert_eq!(m.p50, Duration::from_millis(51));
        assert_eq!(m.p99, Duration::from_millis(100));
        // One call in eight is timed, starting with the first.
        let timed = (0..16).filter(|_| r.start().is_some()).count();
        assert_eq!(timed, 2);
        assert_eq!(r.snapshot().calls, 16);
    }
}

//! Rate limits for log lines a client can repeat at will: at most one line
//! per key per second gets through, and the next one says how many were
//! dropped. A flood of failed accepts (ketchd out of descriptors) or
//! refused connections must not turn into a flood of log (an adversarial
//! review logged 320 MB in seconds).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys are `&'static str` names of call sites, so the table never holds
/// more entries than there are call sites: no client can grow it.
pub struct LogRate {
    every: Duration,
    slots: Mutex<Vec<Slot>>,
}

struct Slot {
    key: &'static str,
    last: Instant,
    suppressed: u64,
}

impl LogRate {
    pub const fn new(every: Duration) -> Self {
        LogRate {
            every,
            slots: Mutex::new(Vec::new()),
        }
    }

    /// May a line for `key` be written now? `Some(n)`: yes, and `n` lines
    /// were suppressed since the last one written; `None`: drop it.
    pub fn admit(&self, key: &'static str) -> Option<u64> {
        self.admit_at(key, Instant::now())
    }

    /// [`LogRate::admit`] at a given time.
    pub fn admit_at(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.iter_mut().find(|s| s.key == key) {
            None => {
                slots.push(Slot {
                    key,
                    last: now,
                    suppressed: 0,
                });
                Some(0)
            }
            Some(s) if now.saturating_duration_since(s.last) >= self.every => {
                s.last = now;
                Some(std::mem::take(&mut s.suppressed))
            }
            Some(s) => {
                s.suppressed += 1;
                None
            }
        }
    }
}

/// The daemon's limiter: one line per key per second.
pub static LOG_RATE: LogRate = LogRate::new(Duration::from_secs(1));

/// `tracing::warn!`, at most once a second per `key` (a `&'static str`
/// naming the call site); the line after a quiet spell counts the lines
/// dropped.
macro_rules! warn_limited {
    ($key:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $crate::lograte::LOG_RATE.admit($key) {
            if suppressed == 0 {
                ::tracing::warn!($($arg)+);
            } else {
                ::tracing::warn!(
                    "{} ({} similar lines suppressed)",
                    format_args!($($arg)+),
                    suppressed
                );
            }
        }
    };
}
pub(crate) use warn_limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_then_the_count_of_dropped_ones() {
        let rate = LogRate::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(rate.admit_at("accept", at(0)), Some(0));
        assert_eq!(rate.admit_at("accept", at(1)), None);
        assert_eq!(rate.admit_at("accept", at(500)), None);
        assert_eq!(rate.admit_at("accept", at(999)), None);
        // Another key has its own allowance.
        assert_eq!(rate.admit_at("refused", at(10)), Some(0));
        assert_eq!(rate.admit_at("refused", at(20)), None);
        // A second later: through, with the three dropped ones counted.
        assert_eq!(rate.admit_at("accept", at(1000)), Some(3));
        assert_eq!(rate.admit_at("accept", at(1001)), None);
        // Nothing dropped since: a plain line again.
        assert_eq!(rate.admit_at("accept", at(2001)), Some(1));
        assert_eq!(rate.admit_at("accept", at(5000)), Some(0));
        assert_eq!(rate.admit_at("refused", at(5000)), Some(1));
        // A clock read out of order never panics or lets a line through.
        assert_eq!(rate.admit_at("accept", at(4000)), None);
    }

    #[test]
    fn the_macro_compiles_with_inline_arguments() {
        let e = "boom";
        warn_limited!("lograte-test", "accept failed: {e}");
        warn_limited!("lograte-test", "accept failed: {}", e);
    }
}

//! A pace for warnings that anyone on the network can cause (a refused control-plane caller,
//! a connection that closes before its TLS handshake): the first in a period is a warning,
//! the rest of the period go to debug level and are counted in the next warning. A port
//! scanner or a load balancer's health check must not flood the log, and an operator must
//! still learn that something keeps happening.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often such events are logged at warning level, unless a pace says otherwise.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// One kind of event's warnings, shared by every connection that may cause one.
#[derive(Debug)]
pub struct LogPace {
    /// At most one warning per this long.
    every: Duration,
    /// The origin of `logged`.
    started: Instant,
    /// Seconds after `started`, plus `every`, at which one was last logged at warning level
    /// (0: never).
    logged: AtomicU64,
    /// Events logged at debug level since the last warning.
    quiet: AtomicU64,
}

impl Default for LogPace {
    fn default() -> Self {
        LogPace::every(LOG_EVERY)
    }
}

impl LogPace {
    /// A pace of one warning per `every` (whole seconds).
    pub fn every(every: Duration) -> LogPace {
        LogPace {
            every,
            started: Instant::now(),
            logged: AtomicU64::new(0),
            quiet: AtomicU64::new(0),
        }
    }

    /// An event happened: answers `Some(count of events not logged at warning level since the
    /// last warning)` when this one should be logged at warning level, at most once per
    /// period; `None` when it goes to debug level.
    pub fn warning(&self) -> Option<u64> {
        let every = self.every.as_secs().max(1);
        let now = self.started.elapsed().as_secs() + every;
        let last = self.logged.load(Ordering::Relaxed);
        let due = now >= last + every
            && self
                .logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        match due {
            true => Some(self.quiet.swap(0, Ordering::Relaxed)),
            false => {
                self.quiet.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_period_is_a_warning_and_it_counts_the_quiet_ones() {
        let pace = LogPace::default();
        assert_eq!(pace.warning(), Some(0));
        assert_eq!(pace.warning(), None);
        assert_eq!(pace.warning(), None);
        assert_eq!(pace.quiet.load(Ordering::Relaxed), 2);
    }
}

//! Slowing down password guessing, node-wide: failed logins are counted per client address,
//! and every login from an address with recent failures waits before it is checked, whatever
//! its password. A delay per connection alone would not do: a guesser opens a new connection
//! per guess, or closes one as soon as no `OK` came at once (a right password is answered at
//! once, a wrong one only after the delay), and so would pay nothing.
//!
//! The count of an address decays: one failure is forgotten every [`FORGET_EVERY`]. The table
//! is bounded ([`MAX_ADDRESSES`]); when it is full, addresses whose failures are all forgotten
//! make room, and if none are, the new address is counted as the most-failed one is (a flood
//! from many addresses slows everyone down rather than growing the table).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long the first login after one failure from an address waits.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest a login waits, however many failures came before it.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// One failure of an address is forgotten this long after its last.
pub const FORGET_EVERY: Duration = Duration::from_secs(10);
/// The most addresses counted at once.
pub const MAX_ADDRESSES: usize = 65_536;

/// Failures of one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// How many, not yet forgotten.
    count: u32,
    /// When the count last changed.
    at: Instant,
}

impl Failures {
    /// The count as of `now`, after what has been forgotten since.
    fn now(self, now: Instant) -> u32 {
        let forgotten = now.saturating_duration_since(self.at).as_secs() / FORGET_EVERY.as_secs();
        self.count
            .saturating_sub(u32::try_from(forgotten).unwrap_or(u32::MAX))
    }
}

/// Failed logins by client address, shared by every connection of a node.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    /// How long a login from `address` waits before its password is checked: nothing for an
    /// address with no recent failures, then doubling with each one up to [`MAX_DELAY`].
    pub fn delay(&self, address: IpAddr) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.get(&address).map_or(0, |f| f.now(Instant::now()));
        delay_after(count)
    }

    /// A login from `address` failed: answers how many failures the address has now.
    pub fn failed(&self, address: IpAddr) -> u32 {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, f| f.now(now) > 0);
        }
        let worst = match failures.len() >= MAX_ADDRESSES {
            true => failures.values().map(|f| f.now(now)).max().unwrap_or(0),
            false => 0,
        };
        let entry = failures.entry(address).or_insert(Failures {
            count: worst,
            at: now,
        });
        let count = entry.now(now).saturating_add(1);
        *entry = Failures { count, at: now };
        if failures.len() > MAX_ADDRESSES {
            // Full of addresses that all still count: this one is counted, not kept.
            failures.remove(&address);
        }
        count
    }
}

/// The wait before a login from an address with `count` recent failures.
fn delay_after(count: u32) -> Duration {
    match count {
        0 => Duration::ZERO,
        n => FIRST_DELAY
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_DELAY),
    }
}

/// Whether a failure count is worth a log line: the first, then each doubling, so a guesser
/// cannot flood the log (the count in the line says how many there were).
pub fn worth_logging(count: u32) -> bool {
    count.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_without_failures_logs_in_at_once() {
        assert_eq!(LoginThrottle::default().delay(A), Duration::ZERO);
    }

    #[test]
    fn each_failure_of_an_address_doubles_the_wait_of_its_next_login_up_to_a_limit() {
        let throttle = LoginThrottle::default();
        assert_eq!(throttle.failed(A), 1);
        assert_eq!(throttle.delay(A), FIRST_DELAY);
        throttle.failed(A);
        assert_eq!(throttle.delay(A), FIRST_DELAY * 2);
        for _ in 0..40 {
            throttle.failed(A);
        }
        assert_eq!(throttle.delay(A), MAX_DELAY);
        assert_eq!(
            throttle.delay(B),
            Duration::ZERO,
            "other addresses are not slowed"
        );
    }

    #[test]
    fn failures_are_forgotten_one_by_one_as_time_passes() {
        let at = Instant::now();
        let failures = Failures { count: 3, at };
        assert_eq!(failures.now(at + FORGET_EVERY / 2), 3);
        assert_eq!(failures.now(at + FORGET_EVERY * 2), 1);
        assert_eq!(failures.now(at + FORGET_EVERY * 10), 0);
    }

    #[test]
    fn the_log_hears_of_the_first_failure_and_each_doubling() {
        let logged: Vec<u32> = (1..=20).filter(|n| worth_logging(*n)).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
    }
}

//! Who gets to the control plane's RPCs: a connection has one short deadline to set up TLS
//! (when the node has it) and prove the cluster secret, only so many connections may be at
//! that stage at once, and refusals are logged without letting anyone flood the log.
//!
//! Before a caller has proved anything it costs the member a socket and a task; without these
//! bounds, anyone who can reach the control port could hold enough of them (a few idle
//! connections a second, each kept for the deadline) to take the descriptors the member needs
//! for its own heartbeats, and so its lease. Members that know the secret finish their
//! handshake in two round trips, far inside the deadline, and never wait for a place.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::log_pace::LogPace;

/// How long a connection may take to set up TLS and prove the cluster secret, all of it.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(3);

/// The most connections that may be setting up at once; more are closed at once. Members
/// dial each of their peers a handful of connections at a time, so this leaves room for
/// dozens of members.
pub const MAX_SETTING_UP: usize = 64;

/// The control plane's admission state, shared by every connection a member serves.
#[derive(Debug)]
pub struct Admission {
    /// Places for connections that have not finished their handshake.
    setting_up: Arc<Semaphore>,
    /// Refusals are logged at warning level at most once per 10 s (the rest at debug level,
    /// with a count in the next warning).
    refusals: LogPace,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            setting_up: Arc::new(Semaphore::new(MAX_SETTING_UP)),
            refusals: LogPace::default(),
        }
    }
}

impl Admission {
    /// A place for a new connection to set up in, or `None` when all are taken (the
    /// connection is then closed unanswered). The place is freed when the permit drops.
    pub fn place(&self) -> Option<OwnedSemaphorePermit> {
        self.setting_up.clone().try_acquire_owned().ok()
    }

    /// A refusal happened: answers `Some(count of refusals not logged at warning level since
    /// the last warning)` when this one should be logged at warning level, at most once per
    /// 10 s for the whole member; `None` when it goes to debug level.
    pub fn refusal_warning(&self) -> Option<u64> {
        self.refusals.warning()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_freed_when_a_connection_is_set_up() {
        let admission = Admission::default();
        let held: Vec<_> = (0..MAX_SETTING_UP).map(|_| admission.place()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(admission.place().is_none(), "one more waits for nothing");
        drop(held);
        assert!(admission.place().is_some());
    }
}

//! Where a node's data stands, and the clients waiting for it to get somewhere (`WAITPOS`,
//! `GET ... AFTER`).
//!
//! [`NodePosition`] is shared by every session of a node. It holds the node's [`History`] (set
//! by whoever decides it: the node assembly for a fixed primary, the Follower on a replica,
//! the coordinator when a failover member is promoted) and the last mutation that is as safe
//! as the `--fsync` policy promises, which one task copies from the persistence writer's
//! progress ([`NodePosition::track`]).
//!
//! Waiting costs no polling and no thread: a waiter parks a oneshot channel in a map ordered
//! by the offset it needs, and each advance wakes exactly the waiters it passed. A change of
//! history wakes every waiter, and each decides again ([`decide`]): a history change is rare,
//! and can turn a wait into a refusal (the history it waited in ended short of its offset).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;

use super::position_token::{decide, Decision, History, PositionToken};
use super::wait::Blocked;
use crate::storage::durability::Durability;
use crate::store::Seq;

/// Why a wait for a position did not end with the position reached.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PositionError {
    /// The node's history does not contain the position, and never will.
    #[error("{0}")]
    Never(String),
    /// The time given ran out first.
    #[error("position {token} not reached within {timeout_ms} ms (this node has {have})")]
    Timeout {
        /// The token waited for.
        token: String,
        /// How long it waited.
        timeout_ms: u64,
        /// Where this node stood when the time ran out.
        have: String,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Stopping,
}

impl PositionError {
    /// The error's code word, first in its reply (as Redis's `NOREPLICAS`).
    pub fn code(&self) -> &'static str {
        match self {
            PositionError::Never(_) => "NOHISTORY",
            PositionError::Timeout { .. } => "TIMEOUT",
            PositionError::Stopping => "SHUTDOWN",
        }
    }
}

/// What the waiters share.
#[derive(Debug, Default)]
struct State {
    /// The history the node's data belongs to.
    history: History,
    /// Every mutation up to this one is as safe as the policy promises.
    safe: Seq,
    /// Progress of writer generations older than this is ignored: a full resync replaced the
    /// data, and what the writer reported before is another history's.
    min_generation: u64,
    /// The writer generation last reported.
    generation: u64,
    /// Waiters by the offset they need (and a number that keeps two apart).
    waiters: BTreeMap<(Seq, u64), oneshot::Sender<()>>,
    /// Waiters for a history this node does not hold yet: woken when it changes.
    unknown: BTreeMap<u64, oneshot::Sender<()>>,
    /// Numbers the waiters.
    next: u64,
    /// Set once the node stops: every waiter is woken, and none waits again.
    stopped: bool,
    /// The latest histories, by version, newest last.
    histories: std::collections::VecDeque<(u64, History)>,
}

/// A node's history and safe position, and the clients waiting on them.
#[derive(Debug, Clone, Default)]
pub struct NodePosition {
    inner: Arc<Shared>,
}

/// What the clones of a [`NodePosition`] share.
#[derive(Debug, Default)]
struct Shared {
    /// The history, the safe position and the waiters.
    state: Mutex<State>,
    /// Counts the changes of history, readable without the lock: a session notes it with
    /// each position it observes, so `LASTPOS` names the history that position counts in.
    version: AtomicU64,
}

/// What a connection has observed: a position, in the history of a version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// The [`NodePosition::version`] of the history `offset` counts in.
    pub version: u64,
    /// The newest state the connection's replies showed it.
    pub offset: Seq,
}

impl Observed {
    /// The connection saw the state up to `offset` in the history of `version`: the newer
    /// of the two in one history, or the new one when the history changed meanwhile.
    pub fn saw(&mut self, version: u64, offset: Seq) {
        if version != self.version {
            *self = Observed { version, offset };
        } else {
            self.offset = self.offset.max(offset);
        }
    }
}

/// How many histories the node remembers, for connections that observed a position in one
/// of them: a history changes rarely (a full resync, a failover), so a few are plenty.
const KEEP_HISTORIES: usize = 16;

impl NodePosition {
    /// A position in `history`, safe up to `safe`.
    pub fn new(history: History, safe: Seq) -> NodePosition {
        let position = NodePosition::default();
        position.lock().safe = safe;
        position.set_history(history);
        position
    }

    /// The version of the node's history now (it changes with the history).
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// Make `history` the node's, under a new version; every waiter decides again.
    fn change_history(&self, state: &mut State, history: History) {
        let version = self.inner.version.fetch_add(1, Ordering::AcqRel) + 1;
        state.history = history.clone();
        state.histories.push_back((version, history));
        if state.histories.len() > KEEP_HISTORIES {
            state.histories.pop_front();
        }
        wake_all(state);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever a panicking holder did: each change is one
        // assignment.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The history the node's data belongs to now.
    pub fn history(&self) -> History {
        self.lock().history.clone()
    }

    /// The token for `offset` in the node's history now.
    pub fn token(&self, offset: Seq) -> PositionToken {
        self.token_of(Observed {
            version: self.version(),
            offset,
        })
    }

    /// The token for what a connection observed, in the history it observed it in. A
    /// position in no history (data disposable), or in a history too old to remember, names
    /// nothing (`0:-:0`).
    pub fn token_of(&self, observed: Observed) -> PositionToken {
        let state = self.lock();
        let history = state
            .histories
            .iter()
            .rev()
            .find(|(version, _)| *version == observed.version)
            .map(|(_, history)| history)
            .filter(|history| history.id.is_some() && observed.offset > 0);
        match history {
            Some(history) => PositionToken {
                epoch: history.epoch,
                id: history.id.clone(),
                offset: observed.offset,
                previous: history.previous.clone(),
            },
            None => PositionToken {
                epoch: state.history.epoch,
                id: None,
                offset: 0,
                previous: None,
            },
        }
    }

    /// The node's data now belongs to `history` (its offsets continue: a partial resync under
    /// a new id, a promotion). Every waiter decides again.
    pub fn set_history(&self, history: History) {
        let mut state = self.lock();
        if state.history == history && !state.histories.is_empty() {
            return;
        }
        self.change_history(&mut state, history);
    }

    /// A full resync is about to replace the node's data: until the Follower names the new
    /// history (once the Store holds it, [`Self::set_history`]), the node holds none, so every
    /// token waits; and what the writer reports counts again only from generation
    /// `generation` on (the one that stores the new data).
    pub fn replacing(&self, generation: u64) {
        let mut state = self.lock();
        state.min_generation = generation;
        state.safe = 0;
        self.change_history(&mut state, History::default());
    }

    /// The writer reports its data safe up to `safe` in generation `generation`.
    pub fn advance(&self, safe: Seq, generation: u64) {
        let mut state = self.lock();
        state.generation = generation;
        if generation < state.min_generation {
            return;
        }
        let moved_back = safe < state.safe;
        state.safe = safe;
        if moved_back {
            // A resync set the count back: whoever waited decides again.
            wake_all(&mut state);
            return;
        }
        while let Some(entry) = state.waiters.first_entry() {
            if entry.key().0 > safe {
                break;
            }
            let _ = entry.remove().send(());
        }
    }

    /// Copy the writer's progress here, from a task of its own on `thread` (the writer's, so
    /// that each step of progress wakes no other thread), until the writer stops.
    pub fn track(&self, durability: Durability, thread: &actix::ArbiterHandle) {
        let position = self.clone();
        let mut durability = durability;
        thread.spawn(async move {
            loop {
                let state = durability.current();
                if state.failure.is_none() {
                    position.advance(durability.safe_in(&state), state.generation);
                }
                if !durability.changed().await {
                    return;
                }
            }
        });
    }

    /// The node stops: wake every waiter (each answers that the node is shutting down).
    pub fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        wake_all(&mut state);
    }

    /// Wait until the node's data holds `token`'s position (as [`decide`] rules), at most
    /// `timeout` (none: as long as it takes). `blocked` counts the client while it waits
    /// (`INFO`'s `blocked_clients`).
    pub async fn wait(
        &self,
        token: &PositionToken,
        timeout: Option<Duration>,
        blocked: &AtomicUsize,
    ) -> Result<(), PositionError> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut counted = None;
        let mut parked = Parked {
            position: self,
            key: None,
        };
        loop {
            let woken = {
                let mut state = self.lock();
                if state.stopped {
                    return Err(PositionError::Stopping);
                }
                let (sender, woken) = oneshot::channel();
                state.next += 1;
                let n = state.next;
                match decide(token, &state.history, state.safe) {
                    Decision::Ready => return Ok(()),
                    Decision::Never(why) => return Err(PositionError::Never(why)),
                    Decision::Until(offset) => {
                        state.waiters.insert((offset, n), sender);
                        parked.key = Some(Key::Offset(offset, n));
                    }
                    Decision::Unknown => {
                        state.unknown.insert(n, sender);
                        parked.key = Some(Key::Unknown(n));
                    }
                }
                woken
            };
            counted.get_or_insert_with(|| Blocked::new(blocked));
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                // Woken (or the sender dropped by a wake-all): decide again.
                _ = woken => parked.key = None,
                () = expired => {
                    let state = self.lock();
                    if decide(token, &state.history, state.safe) == Decision::Ready {
                        return Ok(());
                    }
                    let have = PositionToken {
                        epoch: state.history.epoch,
                        id: state.history.id.clone(),
                        offset: state.safe,
                        previous: None,
                    };
                    return Err(PositionError::Timeout {
                        token: token.to_string(),
                        timeout_ms: timeout.map_or(0, |t| t.as_millis() as u64),
                        have: have.to_string(),
                    });
                }
            }
        }
    }

    /// How many waiters are parked (for tests).
    pub fn waiting(&self) -> usize {
        let state = self.lock();
        state.waiters.len() + state.unknown.len()
    }
}

/// Wake every waiter: each decides again.
fn wake_all(state: &mut State) {
    for (_, waiter) in std::mem::take(&mut state.waiters) {
        let _ = waiter.send(());
    }
    for (_, waiter) in std::mem::take(&mut state.unknown) {
        let _ = waiter.send(());
    }
}

/// Where a waiter is parked.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// In `waiters`, for this offset.
    Offset(Seq, u64),
    /// In `unknown`.
    Unknown(u64),
}

/// Takes a waiter out of the maps when its wait ends any way but by being woken (a timeout,
/// or the client gone), so that waiters that give up never pile up.
struct Parked<'a> {
    position: &'a NodePosition,
    key: Option<Key>,
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut state = self.position.lock();
        match key {
            Key::Offset(offset, n) => drop(state.waiters.remove(&(offset, n))),
            Key::Unknown(n) => drop(state.unknown.remove(&n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::replication_id::Previous;

    const X: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const Y: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn token(id: &str, offset: Seq) -> PositionToken {
        PositionToken {
            epoch: 0,
            id: Some(id.into()),
            offset,
            previous: None,
        }
    }

    fn history(id: &str) -> History {
        History::new(Some(id), None, 0)
    }

    /// Start a wait for `token` on a task of its own; answers its outcome when it ends.
    fn spawn_wait(
        position: &NodePosition,
        token: PositionToken,
        timeout: Option<Duration>,
    ) -> tokio::task::JoinHandle<Result<(), PositionError>> {
        let position = position.clone();
        tokio::spawn(async move {
            let blocked = AtomicUsize::new(0);
            position.wait(&token, timeout, &blocked).await
        })
    }

    /// Until `n` waiters are parked (the spawned waits have run that far).
    async fn parked(position: &NodePosition, n: usize) {
        while position.waiting() != n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_position_already_reached_answers_at_once() {
        let position = NodePosition::new(history(X), 10);
        let blocked = AtomicUsize::new(0);
        assert_eq!(position.wait(&token(X, 10), None, &blocked).await, Ok(()));
        assert_eq!(position.waiting(), 0);
    }

    #[tokio::test]
    async fn an_advance_wakes_exactly_the_waiters_it_passed() {
        let position = NodePosition::new(history(X), 0);
        let near = spawn_wait(&position, token(X, 5), None);
        let far = spawn_wait(&position, token(X, 50), None);
        parked(&position, 2).await;
        position.advance(7, 0);
        assert_eq!(near.await.ok(), Some(Ok(())));
        assert_eq!(position.waiting(), 1, "the far waiter was not woken");
        position.advance(50, 0);
        assert_eq!(far.await.ok(), Some(Ok(())));
        assert_eq!(position.waiting(), 0);
    }

    #[tokio::test]
    async fn a_thousand_waiters_cost_one_entry_each_and_no_wake_ups_until_passed() {
        let position = NodePosition::new(history(X), 0);
        let waits: Vec<_> = (1..=1000)
            .map(|i| spawn_wait(&position, token(X, i), None))
            .collect();
        parked(&position, 1000).await;
        position.advance(500, 0);
        parked(&position, 500).await;
        position.advance(1000, 0);
        for wait in waits {
            assert_eq!(wait.await.ok(), Some(Ok(())));
        }
    }

    #[tokio::test]
    async fn a_timeout_says_where_the_node_is_and_leaves_no_waiter_behind() {
        let position = NodePosition::new(history(X), 3);
        let blocked = AtomicUsize::new(0);
        let outcome = position
            .wait(&token(X, 9), Some(Duration::from_millis(20)), &blocked)
            .await;
        let Err(PositionError::Timeout { have, .. }) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(have, format!("0:{X}:3"));
        assert_eq!(position.waiting(), 0);
        assert_eq!(blocked.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_history_that_ends_short_of_the_position_turns_the_wait_into_a_refusal() {
        // A replica waits in X; its primary crashed and came back as Y, which continues X
        // only up to 20: offset 30 of X will never exist.
        let position = NodePosition::new(history(X), 10);
        let lost = spawn_wait(&position, token(X, 30), None);
        let kept = spawn_wait(&position, token(X, 15), None);
        parked(&position, 2).await;
        let previous = Previous {
            id: X.into(),
            offset: 20,
        };
        position.set_history(History::new(Some(Y), Some(previous), 0));
        assert!(matches!(
            lost.await.ok(),
            Some(Err(PositionError::Never(_)))
        ));
        position.advance(15, 0);
        assert_eq!(kept.await.ok(), Some(Ok(())));
    }

    #[tokio::test]
    async fn a_node_with_no_history_yet_waits_to_learn_one() {
        let position = NodePosition::new(History::default(), 0);
        let wait = spawn_wait(&position, token(X, 4), None);
        parked(&position, 1).await;
        position.set_history(history(X));
        parked(&position, 1).await;
        position.advance(4, 0);
        assert_eq!(wait.await.ok(), Some(Ok(())));
    }

    #[tokio::test]
    async fn after_a_full_resync_only_the_new_generation_counts() {
        let position = NodePosition::new(history(X), 100);
        position.advance(100, 1);
        // Y's snapshot as of 40 is on its way; the writer stores it as generation 2.
        position.replacing(2);
        let early = spawn_wait(&position, token(Y, 40), None);
        parked(&position, 1).await;
        // The Store holds Y now; the writer has not reported storing it.
        position.set_history(history(Y));
        position.advance(100, 1);
        parked(&position, 1).await;
        assert_eq!(position.waiting(), 1, "X's progress is not Y's");
        let later = spawn_wait(&position, token(Y, 60), None);
        parked(&position, 2).await;
        position.advance(40, 2);
        assert_eq!(early.await.ok(), Some(Ok(())));
        position.advance(60, 2);
        assert_eq!(later.await.ok(), Some(Ok(())));
    }

    #[test]
    fn a_token_names_the_history_its_position_was_observed_in() {
        let position = NodePosition::new(history(X), 0);
        let mut observed = Observed::default();
        observed.saw(position.version(), 12);
        position.set_history(History::default());
        assert_eq!(
            position.token_of(observed).to_string(),
            format!("0:{X}:12"),
            "the data became disposable after the read: the read was still X's"
        );
        let mut now = observed;
        now.saw(position.version(), 30);
        assert_eq!(position.token_of(now).to_string(), "0:-:0");
        for _ in 0..KEEP_HISTORIES {
            position.set_history(history(Y));
            position.set_history(history(X));
        }
        assert_eq!(position.token_of(observed).to_string(), "0:-:0");
    }

    #[tokio::test]
    async fn stopping_ends_every_wait() {
        let position = NodePosition::new(history(X), 0);
        let wait = spawn_wait(&position, token(X, 4), None);
        parked(&position, 1).await;
        position.stop();
        assert_eq!(wait.await.ok(), Some(Err(PositionError::Stopping)));
    }
}

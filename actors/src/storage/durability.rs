//! How far the log is written and made durable, shared by the persistence writer (which
//! advances it) and sessions (which wait on it before a reply may show a mutation).
//!
//! What a reply promises, by `--fsync` policy (docs/storage.md, "What a reply promises"):
//! under `always`, every mutation a reply shows (a write acknowledged, a value read) is on
//! disk; under `everysec` and `no`, it has been handed to the operating system, so a crash of
//! the process alone never loses it.
//!
//! A `tokio::sync::watch` channel carries the latest [`DurableState`]: cheap to read from any
//! thread, and a waiter wakes only when the state changes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::store::Seq;

/// When the persistence writer forces the log to disk, as Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Before a reply shows a mutation: nothing acknowledged or read is ever lost.
    Always,
    /// At most once a second: a crash of the machine loses at most about a second of
    /// writes (two while the disk stalls); a crash of the process, none.
    #[default]
    EverySec,
    /// Never explicitly: the operating system decides.
    No,
}

impl FsyncPolicy {
    /// The policy's name as `--fsync` takes it, and as the logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

impl FsyncPolicy {
    /// Whether `state` makes every mutation up to `seq` safe enough to show under this policy.
    fn reached(self, state: &DurableState, seq: Seq) -> bool {
        match self {
            FsyncPolicy::Always => state.synced >= seq,
            FsyncPolicy::EverySec | FsyncPolicy::No => state.written >= seq,
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(format!("'{s}' is not one of always, everysec, no")),
        }
    }
}

/// The persistence writer's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableState {
    /// Every mutation up to this one has been handed to the operating system.
    pub written: Seq,
    /// Every mutation up to this one is on disk (fsynced).
    pub synced: Seq,
    /// Set while the log cannot be written; writes are refused until it clears.
    pub failure: Option<Arc<str>>,
    /// How many times a replica's data was replaced by a full resync: a wait for a position of
    /// an earlier generation (a history that is gone) ends when it changes.
    pub generation: u64,
}

/// The writer's side of the channel.
pub type DurableSender = watch::Sender<DurableState>;

/// A session's view of the writer's progress.
#[derive(Debug, Clone)]
pub struct Durability {
    /// The `--fsync` policy: only under `always` does a write wait to be on disk.
    policy: FsyncPolicy,
    /// The writer's latest progress; the channel closes when the writer stops.
    state: watch::Receiver<DurableState>,
    /// Whether a writer reports here: if it stops, writes must stop being acknowledged.
    has_writer: bool,
}

impl Durability {
    /// A channel starting with everything up to `synced` durable.
    pub fn channel(policy: FsyncPolicy, synced: Seq) -> (DurableSender, Durability) {
        let (sender, state) = watch::channel(DurableState {
            written: synced,
            synced,
            failure: None,
            generation: 0,
        });
        (
            sender,
            Durability {
                policy,
                state,
                has_writer: true,
            },
        )
    }

    /// For nodes and tests without persistence: everything counts as durable at once.
    pub fn none() -> Durability {
        let (sender, mut durability) = Durability::channel(FsyncPolicy::No, 0);
        // Keep the value readable after the sender is gone.
        drop(sender);
        durability.has_writer = false;
        durability
    }

    /// The `--fsync` policy, which decides what [`Self::wait_safe`] waits for.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// The writer's progress as last reported.
    pub fn current(&self) -> DurableState {
        self.state.borrow().clone()
    }

    /// Why writes are refused right now, if they are.
    pub fn failure(&self) -> Option<Arc<str>> {
        if self.has_writer && self.state.has_changed().is_err() {
            return Some("the persistence writer stopped".into());
        }
        self.state.borrow().failure.clone()
    }

    /// Whether every mutation up to `seq` is as safe as the policy promises before a reply
    /// may show it: on disk under `always`, handed to the operating system otherwise. Always
    /// true without a writer.
    pub fn is_safe(&self, seq: Seq) -> bool {
        if !self.has_writer {
            return true;
        }
        let state = self.state.borrow();
        state.failure.is_none() && self.policy.reached(&state, seq)
    }

    /// The last mutation that is as safe as the policy promises before it may be shown (or
    /// sent to a replica): fsynced under `always`, written otherwise. Everything without a
    /// writer.
    pub fn safe(&self) -> Seq {
        self.safe_in(&self.state.borrow())
    }

    /// [`Self::safe`] as of `state` (one the writer reported), so that it goes with that
    /// state's generation.
    pub fn safe_in(&self, state: &DurableState) -> Seq {
        if !self.has_writer {
            return Seq::MAX;
        }
        match self.policy {
            FsyncPolicy::Always => state.synced,
            FsyncPolicy::EverySec | FsyncPolicy::No => state.written,
        }
    }

    /// Wait until the writer reports progress (or a failure); `false` once it has stopped.
    pub async fn changed(&mut self) -> bool {
        self.state.changed().await.is_ok()
    }

    /// Wait until [`Self::is_safe`] holds for `seq`. Answers the failure that prevents it,
    /// if the writer reports one first (or stops).
    pub async fn wait_safe(&mut self, seq: Seq) -> Result<(), Arc<str>> {
        if self.is_safe(seq) {
            return Ok(());
        }
        let policy = self.policy;
        let generation = self.state.borrow().generation;
        let state = self
            .state
            .wait_for(|state| {
                policy.reached(state, seq)
                    || state.failure.is_some()
                    || state.generation != generation
            })
            .await;
        match state {
            // A full resync replaced the data: `seq` counted in a history that is gone, and
            // will never be reached in this one. What the reply shows came from that
            // history's primary, which only streams what it has made safe: answered.
            Ok(state) if state.generation != generation => Ok(()),
            Ok(state) if state.failure.is_none() => Ok(()),
            Ok(state) => Err(state.failure.clone().unwrap_or_else(|| "unknown".into())),
            Err(_) => Err("the persistence writer stopped".into()),
        }
    }
}

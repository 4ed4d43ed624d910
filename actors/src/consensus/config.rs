//! The control plane's timing and secret, and the openraft configuration derived from them.

use std::sync::Arc;
use std::time::Duration;

use openraft::{Config, ConfigError, SnapshotPolicy};

use crate::replication::auth::ClusterSecret;
use crate::tls::TlsContext;

/// The control plane builds a snapshot after this many applied entries. The state is tiny and
/// a failover writes two or three entries, so snapshots are rare and cheap; they keep the log
/// (held in memory and replayed at start) from growing without bound.
pub const SNAPSHOT_EVERY: u64 = 32;

/// Entries kept behind a snapshot, so a follower a little behind catches up from the log
/// rather than by a snapshot transfer.
pub const KEEP_BEHIND_SNAPSHOT: u64 = 8;

/// How fast the control plane reacts (openraft's heartbeat and election timeouts), and the
/// secret its connections prove.
///
/// The leader lease follows from the timeouts (see [`ConsensusConfig::lease`]); a failover
/// takes about `election_max + rand(election_min, election_max)` plus one vote round.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// How often the leader sends heartbeats, and how often the lease keeper confirms the lease.
    pub heartbeat: Duration,
    /// The shortest a follower waits without a heartbeat before standing for election.
    pub election_min: Duration,
    /// The longest it waits; also how long a follower refuses votes after a heartbeat (openraft
    /// 0.9's leader lease), on which our lease rests.
    pub election_max: Duration,
    /// The cluster secret both ends of every control-plane connection prove before the first
    /// RPC (`handshake.rs`); `None` only where members run without one.
    pub secret: Option<ClusterSecret>,
    /// The node's TLS: with it, every control-plane connection is TLS both ways (a peer must
    /// show a certificate from `--tls-ca`), the secret's handshake on top.
    pub tls: Option<TlsContext>,
}

impl ConsensusConfig {
    /// The timing for an operator's failover timeout: elections after `timeout / 2 .. timeout`
    /// without a heartbeat, heartbeats every `timeout / 6` (at least 10 ms, so that a tiny
    /// timeout does not turn heartbeats into a busy loop).
    pub fn from_failover_timeout(timeout: Duration) -> ConsensusConfig {
        ConsensusConfig {
            heartbeat: (timeout / 6).max(Duration::from_millis(10)),
            election_min: timeout / 2,
            election_max: timeout,
            secret: None,
            tls: None,
        }
    }

    /// The same timing, with connections authenticated by `secret`.
    pub fn with_secret(self, secret: Option<ClusterSecret>) -> ConsensusConfig {
        ConsensusConfig { secret, ..self }
    }

    /// The same, with connections over TLS when `tls` is given.
    pub fn with_tls(self, tls: Option<TlsContext>) -> ConsensusConfig {
        ConsensusConfig { tls, ..self }
    }

    /// How long a confirmed lease lasts: `election_max` minus one `heartbeat`, the margin that
    /// covers clock-rate differences between nodes over one lease and the time from the lease
    /// check to the reply leaving the primary. No other node can be elected within
    /// `election_max` of a heartbeat a quorum acknowledged.
    pub fn lease(&self) -> Duration {
        self.election_max.saturating_sub(self.heartbeat)
    }

    /// The openraft configuration, validated by openraft (the heartbeat must be shorter than
    /// `election_min`, which must be shorter than `election_max`).
    pub fn raft_config(&self) -> Result<Arc<Config>, Box<ConfigError>> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: "kvstore-control".into(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_min),
            election_timeout_max: millis(self.election_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: KEEP_BEHIND_SNAPSHOT,
            ..Default::default()
        };
        Ok(Arc::new(config.validate().map_err(Box::new)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_follows_the_failover_timeout() {
        let c = ConsensusConfig::from_failover_timeout(Duration::from_millis(600));
        assert_eq!(c.heartbeat, Duration::from_millis(100));
        assert_eq!(c.election_min, Duration::from_millis(300));
        assert_eq!(c.election_max, Duration::from_millis(600));
        assert_eq!(c.lease(), Duration::from_millis(500));
        assert!(c.raft_config().is_ok());
        let tiny = ConsensusConfig::from_failover_timeout(Duration::from_millis(30));
        assert_eq!(tiny.heartbeat, Duration::from_millis(10));
        // A heartbeat not shorter than the election timeout is refused, not silently used.
        let bad = ConsensusConfig::from_failover_timeout(Duration::from_millis(12));
        assert!(bad.raft_config().is_err());
    }
}

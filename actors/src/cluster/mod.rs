//! Automatic failover: a cluster of nodes elects its primary with Raft (the [`consensus`]
//! control plane) and moves the primary role when the primary stops answering.
//!
//! Raft decides only who is primary for which epoch; the data keeps flowing over the
//! replication stream (`replication/`). The [`coordinator::Coordinator`] turns the control
//! plane's decisions into the data plane's roles: it promotes this node when it is elected
//! (after fencing the old epoch's stream and making the new epoch durable), demotes it when
//! another is named, and keeps the [`view::ClusterView`] every session reads: whether a write
//! may be accepted, and whether its reply may be sent (the primary's lease).
//! docs/replication.md, "Failover", gives the argument for why no acknowledged write is lost.
//!
//! [`consensus`]: crate::consensus

pub mod coordinator;
pub mod switchover;
pub mod view;

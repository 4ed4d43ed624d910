//! Keeping replicas converging to their primary's data.
//!
//! On a primary, one [`replicator::Replicator`] per replica streams mutations from a
//! [`backlog::Backlog`] and publishes its replica's [`progress`], which [`wait`] (`WAIT`) and
//! `INFO` read. On a replica, the [`follower::Follower`] applies the primary's stream; the
//! connection it arrives on is served by a Session, whose replication part is
//! [`replica_link`]. [`replication_id`] records which history a node's data belongs to.
//! Every message either side sends is defined, parsed and encoded in [`wire`]; [`auth`] makes
//! and checks the proofs by which each side of a link shows it knows the cluster secret.
//! [`node_position`] keeps how far a node's history is safe, for clients that wait for a
//! [`position_token`] (read-your-writes on replicas).

pub mod auth;
pub mod backlog;
pub mod data_epoch;
pub mod fingerprint;
pub mod follower;
pub mod follower_messages;
pub mod follower_parts;
pub mod handshake;
pub mod node_position;
pub mod position_token;
pub mod progress;
pub mod replica_link;
pub mod replication_id;
pub mod replicator;
pub mod replicator_config;
pub mod resync;
pub mod wait;
pub mod wire;

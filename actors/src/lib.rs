//! The engine of kvstore: its actors, the typed messages they exchange, the wire codecs and
//! the on-disk format.
//!
//! Actors:
//! - [`store::Store`] owns the data ([`keyspace`] of [`pair`]s) and numbers every mutation; it
//!   does no I/O.
//! - [`session::Session`] serves one client connection (or a primary's replication stream).
//! - [`listener::Listener`] accepts connections and starts sessions.
//! - [`writer::Writer`] persists every mutation ([`durability`] reports how far).
//! - [`replicator::Replicator`] streams mutations to one replica ([`backlog`]).
//! - [`follower::Follower`] applies a primary's stream on a replica.
//!
//! Wire: [`codec`] (framing, both protocols), [`command`] (requests), [`reply`] (replies),
//! [`resp`] (RESP2 frames), [`info`] (INFO, DIGEST, WAIT).
//!
//! Disk: [`record`] (the record format), [`segment`] (log files), [`snapshot_file`],
//! [`data_dir`] (names, lock, errors), [`recovery`] (start-up), [`replication_id`].
//!
//! The programs that assemble these into a node live in the `kvstore` package.

pub mod backlog;
pub mod codec;
pub mod command;
pub mod data_dir;
pub mod durability;
pub mod follower;
pub mod info;
pub mod keyspace;
pub mod listener;
pub mod pair;
pub mod record;
pub mod recovery;
pub mod replication_id;
pub mod replicator;
pub mod reply;
pub mod resp;
pub mod segment;
pub mod session;
pub mod snapshot_file;
pub mod store;
pub mod writer;

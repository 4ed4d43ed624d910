//! The engine of kvstore: its actors, the typed messages they exchange, and the wire codec.
//!
//! - [`store::Store`] owns the data and numbers every mutation; it does no I/O.
//! - [`session::Session`] serves one client connection.
//! - [`listener::Listener`] accepts connections and starts sessions.
//! - [`codec`], [`command`] and [`reply`] are the line protocol.
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

//! The engine of kvstore: its actors, the typed messages they exchange, the wire protocols and
//! the on-disk format. One folder per subsystem; the tree reads like the architecture table in
//! `docs/architecture.md`:
//!
//! - [`store`]: the Store actor, which owns the data and numbers every mutation, and the data
//!   structures it keeps ([`store::keyspace`], [`store::pair`]). It does no I/O.
//! - [`storage`]: everything on disk. The persistence [`storage::writer::Writer`] actor, the
//!   record format, log segments, snapshot files, the data directory, recovery at start-up,
//!   and the durability a writer reports.
//! - [`replication`]: the primary's [`replication::replicator::Replicator`] (one per replica)
//!   with its backlog, the replica's [`replication::follower::Follower`] and its end of the
//!   link, the replication id, `WAIT`, and the replication wire protocol
//!   ([`replication::wire`]), which is parsed and encoded there and nowhere else.
//! - [`protocol`]: what clients send and receive: every command with its parse and reply shape
//!   ([`protocol::command`]), replies, RESP2 frames, and the connection codec.
//! - [`server`]: the [`server::listener::Listener`] that accepts connections, one
//!   [`server::session::Session`] per connection, and what a node reports about itself
//!   (`INFO`, `DIGEST`).
//! - [`consensus`]: the failover control plane, on openraft: which node is primary for which
//!   epoch, the lease that fences a primary, and the data-aware vote. Of the rest of the crate
//!   it uses only [`outgoing`] and [`tls`], to dial and accept its peers.
//! - [`auth`]: client authentication: the users (the users file, `--requirepass`), their
//!   rights, and the checks of their passwords.
//! - [`tls`]: TLS on every link: the certificate files, the reloadable configs, a stream that
//!   is plain or TLS, accepting and dialing over it.
//! - [`outgoing`]: how the node dials its peers (replication, Raft RPCs): from the source
//!   address `--source-addr` names, if any.
//!
//! Dependencies point one way: `server` uses `protocol`, `replication`, `storage` and `store`;
//! `replication` uses `storage` and `store`; `storage` and `protocol` use `store`; `store`
//! uses nothing of the crate. `tests/layout.rs` checks that no two files import each other,
//! directly or through others.
//!
//! The programs that assemble these into a node live in the `kvstore` package.

#![warn(missing_docs)]

pub mod auth;
pub mod cluster;
pub mod consensus;
pub mod outgoing;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod storage;
pub mod store;
pub mod tls;

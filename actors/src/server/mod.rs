//! Serving connections: the Listener accepts them, a Session serves each one.
//!
//! - [`listener`]: accepts connections, enforces `--max-clients`, places sessions on arbiters,
//!   drives shutdown.
//! - [`session`]: one client connection: batches of requests to the Store, replies in order;
//!   or, when a primary opens a replication stream on it, the glue to
//!   [`crate::replication::replica_link`].
//! - [`session_config`]: the settings every session of a node shares.
//! - [`watched`]: a socket's read half that notes when bytes last arrived.
//! - [`output`]: writing a batch's replies to the socket.
//! - [`node_context`]: what every session of a node shares about the node.
//! - [`node_query`]: the answers to commands about the node (`DBSIZE`, `INFO`, `DIGEST`,
//!   `WAIT`, `HELLO`); [`info`] and [`digest`] compute the `INFO` and `DIGEST` ones.
//! - [`position_waits`]: a batch's waits for positions (`WAITPOS`, `GET ... AFTER`).
//! - [`auth`]: what a connection has logged in as, and what that lets it run (`NOAUTH`,
//!   `NOPERM`); failed logins slowed down.
//! - [`client_registry`]: the node's client connections, which sessions join and leave;
//!   [`client_query`] answers `CLIENT ...` from it; [`client_memory`] counts what their
//!   buffers hold and evicts the largest past `--maxmemory-clients`.

pub mod auth;
pub mod batch;
pub mod client_memory;
pub mod client_query;
pub mod client_registry;
pub mod cluster_query;
pub mod digest;
pub mod info;
pub mod listener;
pub mod node_context;
pub mod node_query;
pub mod output;
pub mod position_waits;
pub mod session;
pub mod session_config;
pub mod session_owner;
pub mod transaction;
pub mod watched;

//! The programs of kvstore: node assembly, configuration, logging and a small client library.
//!
//! The engine (actors, messages, codec) is the `kv_actors` crate; this crate puts its pieces
//! together into the `kvnode` server and the `kvcli` client.

pub mod auth;
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod cluster_client;
pub mod config;
pub mod failover;
pub mod import;
pub mod logging;
pub mod node;
pub mod replica_reads;
pub mod tls_args;
pub mod tls_client;
pub mod tls_stream;

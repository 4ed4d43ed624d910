//! What clients send and what they are answered, in both protocols.
//!
//! - [`command`]: every client command: its RESP parse and its reply shape; the line
//!   protocol's parse is [`line_commands`]. Adding a command is one edit there, plus the
//!   Store operation it needs; [`string_commands`], [`expiry_commands`] and
//!   [`keyspace_commands`] parse families of
//!   RESP commands into Store ops.
//! - [`reply`]: replies, and how each is framed in either protocol; [`error`]: the errors a
//!   client can be told.
//! - [`resp`]: RESP2 frames: the request decoder and reply encoders.
//! - [`line`](mod@line): the line protocol's framing: batches of request lines.
//! - [`codec`]: a connection's decoder: picks the protocol from the first byte, and hands over
//!   to the replication stream's decoder when a primary opens one.

pub mod cluster_commands;
pub mod codec;
pub mod command;
pub mod error;
pub mod expiry_commands;
pub mod inline;
pub mod keyspace_commands;
pub mod line;
pub mod line_commands;
pub mod reply;
pub mod resp;
pub mod string_commands;
pub mod words;

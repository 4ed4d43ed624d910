//! What clients send and what they are answered, in both protocols.
//!
//! - [`command`]: every client command: its RESP parse and its reply shape; the line
//!   protocol's parse is [`line_commands`]. Adding a command is one edit there, plus the
//!   Store operation it needs, plus its row in [`command_table`] (what `COMMAND` answers; its
//!   tests check the two agree) and its name in [`command_name`]. [`client_commands`],
//!   [`string_commands`], [`expiry_commands`], [`keyspace_commands`] and [`cluster_commands`]
//!   parse families of commands for it.
//!   [`auth_commands`] parses `AUTH`, `ACL` and `HELLO`; [`command_rights`] says which right
//!   each command needs.
//!   [`position_commands`] parses `LASTPOS`, `WAITPOS` and `GET ... AFTER` (read-your-writes).
//! - [`reply`]: replies, and how each is framed in either protocol; [`error`]: the errors a
//!   client can be told.
//! - [`resp`]: RESP2 frames: the request decoder and reply encoders.
//! - [`line`](mod@line): the line protocol's framing: batches of request lines.
//! - [`codec`]: a connection's decoder: picks the protocol from the first line, and hands over
//!   to the replication stream's decoder when a primary opens one.

pub mod auth_commands;
pub mod client_commands;
pub mod cluster_commands;
pub mod codec;
pub mod command;
pub mod command_name;
pub mod command_rights;
pub mod command_table;
pub mod error;
pub mod expiry_commands;
pub mod inline;
pub mod keyspace_commands;
pub mod line;
pub mod line_commands;
pub mod position_commands;
pub mod reply;
pub mod resp;
pub mod string_commands;
pub mod tls_commands;
pub mod words;

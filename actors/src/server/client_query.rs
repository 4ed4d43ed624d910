//! The answers to `CLIENT ...`, from the node's registry of connections
//! (`client_registry.rs`), as Redis gives them. They need nothing from the Store, so a session
//! answers them at once, in request order.
//!
//! `CLIENT KILL` closes other clients' connections, and `CLIENT LIST` shows them: an operator's
//! commands, which on a node with passwords need the `admin` right (`command_rights.rs`).

use std::sync::Arc;
use std::time::Instant;

use super::client_registry::{Client, Registration};
use crate::protocol::client_commands::{ClientCommand, LibraryField};
use crate::protocol::command_table::help;
use crate::protocol::error::CommandError;
use crate::protocol::reply::{ErrorReply, Protocol, Reply};

/// An error reply worded as Redis words it.
fn error(text: &str) -> Reply {
    Reply::Error(ErrorReply::Command(CommandError::Redis(text.into())))
}

/// The reply to `command`, sent on the connection `me` (registered, unless it is not a client)
/// speaking `protocol`.
pub fn answer(command: ClientCommand, me: Option<&Registration>, protocol: Protocol) -> Reply {
    let Some(me) = me else {
        return error("ERR this connection is not a client connection");
    };
    let client = me.client();
    // A `HELLO 3` earlier in the same batch is already in force.
    client.note(None, protocol);
    let now = Instant::now();
    match command {
        ClientCommand::Id => Reply::Integer(client.id as i64),
        ClientCommand::Info => Reply::Text(client.line(now) + "\n"),
        ClientCommand::GetName => client.name().map_or(Reply::NotFound, Reply::Value),
        ClientCommand::SetName(name) => {
            client.set_name(name);
            Reply::Ok
        }
        ClientCommand::SetInfo(field, value) => {
            client.set_library(field == LibraryField::Version, value);
            Reply::Ok
        }
        ClientCommand::List(filter) => {
            Reply::Text(lines(&me.registry().matching(&filter, client.id), now))
        }
        ClientCommand::Kill { filter, old_form } => {
            let victims = me.registry().matching(&filter, client.id);
            let killed = victims.iter().filter(|victim| victim.kill()).count();
            match (old_form, killed) {
                (true, 0) => error("ERR No such client"),
                (true, _) => Reply::Ok,
                (false, n) => Reply::Integer(n as i64),
            }
        }
        ClientCommand::Help => help(&[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "GETNAME",
            "    Return the name of the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are LIB-NAME and LIB-VER.",
            "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
            "    Return information about client connections.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are: ID <id>, ADDR <ip:port>, LADDR <ip:port>,",
            "    TYPE (NORMAL|MASTER|REPLICA|PUBSUB), USER <username>, SKIPME (YES|NO),",
            "    MAXAGE <seconds>.",
        ]),
    }
}

/// `CLIENT LIST`'s answer: one line per connection, each ending in `\n`.
fn lines(clients: &[Arc<Client>], now: Instant) -> String {
    let mut text = String::with_capacity(clients.len() * 300);
    for client in clients {
        text.push_str(&client.line(now));
        text.push('\n');
    }
    text
}

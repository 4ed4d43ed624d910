//! RESP's `CLIENT` subcommands (`ID`, `INFO`, `LIST`, `GETNAME`, `SETNAME`, `SETINFO`, `KILL`,
//! `HELP`), parsed into a [`ClientCommand`] with Redis's argument checks and error wording;
//! the command table (`command.rs`) wraps them into its `Command`s, and the session answers
//! them from the node's registry of connections (`server/client_query.rs`).

use bytes::Bytes;

use super::command_table::unknown_subcommand;
use super::error::CommandError;
use super::words::printable;

/// A `CLIENT` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `CLIENT ID`: this connection's id.
    Id,
    /// `CLIENT INFO`: this connection's `CLIENT LIST` line.
    Info,
    /// `CLIENT LIST [TYPE type] [ID id ...]`: one line per connection that matches.
    List(Box<ClientFilter>),
    /// `CLIENT GETNAME`: this connection's name, or nil.
    GetName,
    /// `CLIENT SETNAME name`: name this connection (an empty name removes it).
    SetName(Bytes),
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`: what the client library says it is.
    SetInfo(LibraryField, Bytes),
    /// `CLIENT KILL ...`: close the connections that match.
    Kill {
        /// Which connections.
        filter: Box<ClientFilter>,
        /// `CLIENT KILL ip:port`, Redis's old form: answers `OK` or an error rather than a
        /// count.
        old_form: bool,
    },
    /// `CLIENT HELP`.
    Help,
}

impl ClientCommand {
    /// The subcommand's full name as Redis shows it (`CLIENT LIST`'s `cmd=` field).
    pub fn name(&self) -> &'static str {
        match self {
            ClientCommand::Id => "client|id",
            ClientCommand::Info => "client|info",
            ClientCommand::List(_) => "client|list",
            ClientCommand::GetName => "client|getname",
            ClientCommand::SetName(_) => "client|setname",
            ClientCommand::SetInfo(..) => "client|setinfo",
            ClientCommand::Kill { .. } => "client|kill",
            ClientCommand::Help => "client|help",
        }
    }
}

/// Which of `CLIENT SETINFO`'s attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryField {
    /// `LIB-NAME`: the client library's name.
    Name,
    /// `LIB-VER`: its version.
    Version,
}

/// The connection kinds `CLIENT LIST TYPE` and `CLIENT KILL TYPE` name. Every connection of a
/// node is a `normal` one: a primary's replication stream is not listed as a client, and
/// there is no pub/sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// `normal`: an ordinary client.
    Normal,
    /// `master`, `replica` (or `slave`), `pubsub`: none of the connections listed.
    Other,
}

/// Which connections a `CLIENT LIST` or `CLIENT KILL` is about: all of its conditions hold
/// (the default: every connection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    /// `ID id ...`: one of these ids (any, when empty).
    pub ids: Vec<u64>,
    /// `ADDR ip:port` (or the old form's address): the client's address, as listed.
    pub addr: Option<Bytes>,
    /// `LADDR ip:port`: the address of the node's socket it connected to.
    pub laddr: Option<Bytes>,
    /// `TYPE type`.
    pub kind: Option<ClientKind>,
    /// `USER name`: connections authenticated as that user (all are `default`).
    pub user: Option<Bytes>,
    /// `MAXAGE seconds`: connections older than this.
    pub max_age: Option<u64>,
    /// `SKIPME yes|no`: leave out the connection that asks (`CLIENT KILL`'s new form skips it
    /// unless told `no`; the old form does not).
    pub skip_me: bool,
}

/// The error Redis gives for a subcommand's arguments.
fn wrong_args(sub: &str) -> CommandError {
    CommandError::Redis(format!(
        "ERR wrong number of arguments for 'client|{sub}' command"
    ))
}

fn syntax() -> CommandError {
    CommandError::Redis("ERR syntax error".into())
}

/// Whether `text` may name a connection or a library: visible ASCII only, as Redis requires
/// (no spaces or newlines, which would break `CLIENT LIST`'s lines).
fn printable_word(text: &[u8]) -> bool {
    text.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// RESP `CLIENT <subcommand> ...` (`args` starts with `CLIENT`; at least two words).
pub fn parse_resp_client(args: &[Bytes]) -> Result<ClientCommand, CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let argc = args.len();
    let command = match (sub.as_str(), argc) {
        ("id", 2) => ClientCommand::Id,
        ("info", 2) => ClientCommand::Info,
        ("getname", 2) => ClientCommand::GetName,
        ("help", 2) => ClientCommand::Help,
        ("setname", 3) if printable_word(&args[2]) => ClientCommand::SetName(args[2].clone()),
        ("setname", 3) => {
            return Err(CommandError::Redis(
                "ERR Client names cannot contain spaces, newlines or special characters.".into(),
            ))
        }
        ("setinfo", 4) => parse_setinfo(&args[2], &args[3])?,
        ("list", _) => ClientCommand::List(Box::new(parse_list(&args[2..])?)),
        ("kill", 3) => ClientCommand::Kill {
            filter: Box::new(ClientFilter {
                addr: Some(args[2].clone()),
                ..ClientFilter::default()
            }),
            old_form: true,
        },
        ("kill", n) if n > 3 => ClientCommand::Kill {
            filter: Box::new(parse_kill(&args[2..])?),
            old_form: false,
        },
        ("id" | "info" | "getname" | "help" | "setname" | "setinfo" | "kill", _) => {
            return Err(wrong_args(&sub))
        }
        _ => return Err(unknown_subcommand("CLIENT", &args[1])),
    };
    Ok(command)
}

/// `CLIENT SETINFO attribute value`.
fn parse_setinfo(attribute: &[u8], value: &Bytes) -> Result<ClientCommand, CommandError> {
    let field = if attribute.eq_ignore_ascii_case(b"lib-name") {
        LibraryField::Name
    } else if attribute.eq_ignore_ascii_case(b"lib-ver") {
        LibraryField::Version
    } else {
        return Err(CommandError::Redis(format!(
            "ERR Unrecognized option '{}'",
            printable(attribute)
        )));
    };
    if !printable_word(value) {
        return Err(CommandError::Redis(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            printable(attribute).to_ascii_lowercase()
        )));
    }
    Ok(ClientCommand::SetInfo(field, value.clone()))
}

/// A client id argument; `error` is Redis's wording for one that is not a positive number.
fn client_id(arg: &[u8], error: &str) -> Result<u64, CommandError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| CommandError::Redis(error.into()))
}

/// `TYPE`'s argument.
fn client_kind(arg: &[u8]) -> Result<ClientKind, CommandError> {
    match String::from_utf8_lossy(arg).to_ascii_lowercase().as_str() {
        "normal" => Ok(ClientKind::Normal),
        "master" | "replica" | "slave" | "pubsub" => Ok(ClientKind::Other),
        _ => Err(CommandError::Redis(format!(
            "ERR Unknown client type '{}'",
            printable(arg)
        ))),
    }
}

/// `CLIENT LIST`'s options: `TYPE type`, `ID id [id ...]`.
fn parse_list(options: &[Bytes]) -> Result<ClientFilter, CommandError> {
    let mut filter = ClientFilter::default();
    match options {
        [] => {}
        [option, kind] if option.eq_ignore_ascii_case(b"type") => {
            filter.kind = Some(client_kind(kind)?)
        }
        [option, ids @ ..] if option.eq_ignore_ascii_case(b"id") && !ids.is_empty() => {
            for id in ids {
                filter.ids.push(client_id(id, "ERR Invalid client ID")?);
            }
        }
        _ => return Err(syntax()),
    }
    Ok(filter)
}

/// `CLIENT KILL`'s new form: `<filter> <value>` pairs, all of which must hold.
fn parse_kill(pairs: &[Bytes]) -> Result<ClientFilter, CommandError> {
    let mut filter = ClientFilter {
        skip_me: true,
        ..ClientFilter::default()
    };
    if !pairs.len().is_multiple_of(2) {
        return Err(syntax());
    }
    for pair in pairs.chunks(2) {
        let value = &pair[1];
        match String::from_utf8_lossy(&pair[0])
            .to_ascii_lowercase()
            .as_str()
        {
            "id" => filter
                .ids
                .push(client_id(value, "ERR client-id should be greater than 0")?),
            "addr" => filter.addr = Some(value.clone()),
            "laddr" => filter.laddr = Some(value.clone()),
            "type" => filter.kind = Some(client_kind(value)?),
            "user" => filter.user = Some(value.clone()),
            "maxage" => {
                let age = std::str::from_utf8(value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(syntax)?;
                filter.max_age = Some(age);
            }
            "skipme" if value.eq_ignore_ascii_case(b"yes") => filter.skip_me = true,
            "skipme" if value.eq_ignore_ascii_case(b"no") => filter.skip_me = false,
            _ => return Err(syntax()),
        }
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<ClientCommand, CommandError> {
        let args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        parse_resp_client(&args)
    }

    fn error(words: &[&str]) -> String {
        match parse(words) {
            Err(CommandError::Redis(text)) => text,
            other => panic!("expected an error for {words:?}, got {other:?}"),
        }
    }

    #[test]
    fn subcommands_parse_in_any_case() {
        assert_eq!(parse(&["CLIENT", "id"]), Ok(ClientCommand::Id));
        assert_eq!(parse(&["client", "GETNAME"]), Ok(ClientCommand::GetName));
        assert_eq!(
            parse(&["CLIENT", "SETNAME", "worker-1"]),
            Ok(ClientCommand::SetName(Bytes::from_static(b"worker-1")))
        );
        assert_eq!(
            parse(&["CLIENT", "SETNAME", ""]),
            Ok(ClientCommand::SetName(Bytes::new()))
        );
        assert_eq!(
            parse(&["CLIENT", "SETINFO", "lib-name", "redis-rs"]),
            Ok(ClientCommand::SetInfo(
                LibraryField::Name,
                Bytes::from_static(b"redis-rs")
            ))
        );
        let Ok(ClientCommand::List(filter)) = parse(&["CLIENT", "LIST", "ID", "3", "7"]) else {
            panic!("CLIENT LIST ID");
        };
        assert_eq!(filter.ids, vec![3, 7]);
    }

    #[test]
    fn kill_has_an_old_form_and_a_new_one() {
        let Ok(ClientCommand::Kill { filter, old_form }) =
            parse(&["CLIENT", "KILL", "127.0.0.1:5000"])
        else {
            panic!("old form");
        };
        assert!(old_form && !filter.skip_me);
        assert_eq!(filter.addr.as_deref(), Some(&b"127.0.0.1:5000"[..]));
        let Ok(ClientCommand::Kill { filter, old_form }) =
            parse(&["CLIENT", "KILL", "ID", "4", "TYPE", "normal"])
        else {
            panic!("new form");
        };
        assert!(!old_form && filter.skip_me);
        assert_eq!(
            (filter.ids, filter.kind),
            (vec![4], Some(ClientKind::Normal))
        );
        let Ok(ClientCommand::Kill { filter, .. }) =
            parse(&["CLIENT", "KILL", "ADDR", "1.2.3.4:5", "SKIPME", "no"])
        else {
            panic!("new form");
        };
        assert!(!filter.skip_me);
        assert_eq!(
            error(&["CLIENT", "KILL", "ID", "4", "ADDR"]),
            "ERR syntax error"
        );
        assert_eq!(error(&["CLIENT", "KILL", "FOO", "bar"]), "ERR syntax error");
        assert_eq!(
            error(&["CLIENT", "KILL", "ID", "x"]),
            "ERR client-id should be greater than 0"
        );
        assert_eq!(
            error(&["CLIENT", "KILL"]),
            "ERR wrong number of arguments for 'client|kill' command"
        );
    }

    #[test]
    fn errors_are_worded_as_redis_words_them() {
        assert_eq!(
            error(&["CLIENT", "SETNAME", "my name"]),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(
            error(&["CLIENT", "SETNAME", "a\nb"]),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(
            error(&["CLIENT", "SETNAME"]),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            error(&["CLIENT", "Frobnicate"]),
            "ERR unknown subcommand 'Frobnicate'. Try CLIENT HELP."
        );
        assert_eq!(
            error(&["CLIENT", "SETINFO", "color", "red"]),
            "ERR Unrecognized option 'color'"
        );
        assert_eq!(
            error(&["CLIENT", "LIST", "TYPE", "robot"]),
            "ERR Unknown client type 'robot'"
        );
        assert_eq!(
            error(&["CLIENT", "LIST", "ID", "0"]),
            "ERR Invalid client ID"
        );
    }
}

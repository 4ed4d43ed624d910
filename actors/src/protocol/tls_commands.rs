//! `TLS RELOAD`, in both protocols: read the node's certificate, key and authority files
//! again and use them for new connections (as SIGHUP does), so a renewed certificate needs no
//! restart. `command.rs` makes it a `Command`; docs/protocol.md, "TLS", is its reference.

use bytes::Bytes;

use super::command_table::{help, unknown_subcommand};
use super::error::CommandError;
use super::reply::Reply;
use super::words::token;

/// The line protocol's usage of `TLS`.
const TLS_USAGE: &str = "TLS RELOAD";

/// `TLS`'s subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsCommand {
    /// `TLS RELOAD`: read the TLS files again (admin only); a failure keeps the old ones.
    Reload,
    /// `TLS HELP`.
    Help,
}

/// `TLS HELP`'s reply.
pub fn tls_help() -> Reply {
    help(&[
        "TLS <subcommand>. Subcommands are:",
        "RELOAD",
        "    Read --tls-cert, --tls-key and --tls-ca again for new connections; admin only.",
    ])
}

/// RESP `TLS <subcommand>` (`args[0]` is the verb).
pub fn parse_resp(args: &[Bytes]) -> Result<TlsCommand, CommandError> {
    let wrong = |name: &str| {
        CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    let Some(sub) = args.get(1) else {
        return Err(wrong("tls"));
    };
    let command = match sub.to_ascii_lowercase().as_slice() {
        b"reload" => TlsCommand::Reload,
        b"help" => TlsCommand::Help,
        _ => return Err(unknown_subcommand("TLS", sub)),
    };
    match args.len() {
        2 => Ok(command),
        _ => Err(wrong(&format!(
            "tls|{}",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ))),
    }
}

/// The line protocol's `TLS RELOAD` (`verb_end`: where the verb ends in `line`).
pub fn parse_line(line: &Bytes, verb_end: usize) -> Result<TlsCommand, CommandError> {
    let usage = || CommandError::Usage(TLS_USAGE);
    let (start, end) = token(line, verb_end).ok_or_else(usage)?;
    match (
        line[start..end].eq_ignore_ascii_case(b"RELOAD"),
        token(line, end),
    ) {
        (true, None) => Ok(TlsCommand::Reload),
        _ => Err(usage()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(words: &[&str]) -> Result<TlsCommand, CommandError> {
        let args: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
        parse_resp(&args)
    }

    #[test]
    fn reload_parses_in_both_protocols_and_nothing_else_does() {
        assert_eq!(resp(&["tls", "reload"]), Ok(TlsCommand::Reload));
        assert_eq!(resp(&["TLS", "RELOAD"]), Ok(TlsCommand::Reload));
        assert_eq!(resp(&["tls", "help"]), Ok(TlsCommand::Help));
        assert!(resp(&["tls"]).is_err());
        assert!(resp(&["tls", "reload", "now"]).is_err());
        assert!(resp(&["tls", "rotate"]).is_err());
        let line = |text: &'static str| parse_line(&Bytes::from(text), 3);
        assert_eq!(line("TLS RELOAD"), Ok(TlsCommand::Reload));
        assert_eq!(line("tls reload"), Ok(TlsCommand::Reload));
        assert!(line("TLS").is_err());
        assert!(line("TLS RELOAD now").is_err());
    }
}

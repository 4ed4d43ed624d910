//! The commands of a failover cluster's members: `FAILOVER` in both protocols, and RESP's
//! `SENTINEL` discovery commands, parsed into their arguments; the command table
//! (`command.rs`) wraps them into its `Command`s.

use bytes::Bytes;

use super::error::CommandError;
use super::words::{printable, token};

/// The Sentinel commands a node answers about its failover cluster (the name is
/// `--sentinel-name`, `kvstore` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelQuery {
    /// `SENTINEL MASTERS`: the one primary, as Sentinel describes a master.
    Masters,
    /// `SENTINEL MASTER <name>`.
    Master(Bytes),
    /// `SENTINEL GET-MASTER-ADDR-BY-NAME <name>`: the primary's host and port.
    GetMasterAddr(Bytes),
    /// `SENTINEL REPLICAS <name>` (or `SLAVES`): the replicas, as Sentinel describes them.
    Replicas(Bytes),
}

/// `FAILOVER`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverArgs {
    /// The member to hand over to, as `host:port`.
    pub to: Option<String>,
    /// How long the handover may take, in milliseconds.
    pub timeout_ms: u64,
}

/// How long `FAILOVER` may take unless told otherwise.
const FAILOVER_TIMEOUT_MS: u64 = 10_000;
/// The line protocol's `FAILOVER` usage.
const FAILOVER_USAGE: &str = "FAILOVER [TO <host:port>]";

/// The line protocol's `FAILOVER [TO <host:port>]`.
pub fn parse_failover(line: &Bytes, verb_end: usize) -> Result<FailoverArgs, CommandError> {
    let usage = || CommandError::Usage(FAILOVER_USAGE);
    let word = |from: usize| token(line, from).map(|(s, e)| (&line[s..e], e));
    let to = match word(verb_end) {
        None => None,
        Some((to, end)) if to.eq_ignore_ascii_case(b"TO") => match word(end) {
            Some((addr, end)) if word(end).is_none() => {
                Some(String::from_utf8_lossy(addr).into_owned())
            }
            _ => return Err(usage()),
        },
        Some(_) => return Err(usage()),
    };
    Ok(FailoverArgs {
        to,
        timeout_ms: FAILOVER_TIMEOUT_MS,
    })
}

/// RESP `FAILOVER [TO host port] [TIMEOUT ms]`, as Redis spells it (`FORCE` and `ABORT` are
/// not supported: a handover here never gives up a write, and cannot be aborted).
pub fn parse_resp_failover(args: &[Bytes]) -> Result<FailoverArgs, CommandError> {
    let syntax = || CommandError::Redis("ERR syntax error".into());
    let mut to = None;
    let mut timeout_ms = FAILOVER_TIMEOUT_MS;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let word = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match word.as_str() {
            "to" => {
                let (Some(host), Some(port)) = (rest.next(), rest.next()) else {
                    return Err(syntax());
                };
                let host = String::from_utf8_lossy(host);
                let port = String::from_utf8_lossy(port);
                to = Some(format!("{host}:{port}"));
            }
            "timeout" => {
                timeout_ms = rest
                    .next()
                    .and_then(|t| std::str::from_utf8(t).ok()?.parse().ok())
                    .filter(|t| *t > 0)
                    .ok_or_else(|| {
                        CommandError::Redis("ERR FAILOVER timeout must be greater than 0".into())
                    })?;
            }
            "force" | "abort" => {
                return Err(CommandError::Redis(format!(
                    "ERR FAILOVER {word} is not supported: a handover waits for the target to \
                     have every write"
                )))
            }
            _ => return Err(syntax()),
        }
    }
    Ok(FailoverArgs { to, timeout_ms })
}

/// RESP `SENTINEL <subcommand> ...`: the discovery commands clients with Sentinel support use.
pub fn parse_resp_sentinel(args: &[Bytes]) -> Result<SentinelQuery, CommandError> {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let name = || args[2].clone();
    match (sub.as_str(), args.len()) {
        ("masters", 2) => Ok(SentinelQuery::Masters),
        ("master", 3) => Ok(SentinelQuery::Master(name())),
        ("get-master-addr-by-name", 3) => Ok(SentinelQuery::GetMasterAddr(name())),
        ("replicas" | "slaves", 3) => Ok(SentinelQuery::Replicas(name())),
        ("masters" | "master" | "get-master-addr-by-name" | "replicas" | "slaves", _) => {
            Err(CommandError::Redis(format!(
                "ERR wrong number of arguments for 'sentinel|{sub}' command"
            )))
        }
        _ => Err(CommandError::Redis(format!(
            "ERR SENTINEL {} is not supported (only MASTERS, MASTER, GET-MASTER-ADDR-BY-NAME, \
             REPLICAS)",
            printable(sub.as_bytes())
        ))),
    }
}

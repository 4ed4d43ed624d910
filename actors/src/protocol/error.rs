//! What can go wrong with a request, worded for the client: in the line protocol as the text
//! after `ERROR: `, in RESP as Redis words it.

use std::sync::Arc;

use crate::auth::rights::Rights;
use crate::replication::node_position::PositionError;
use thiserror::Error;

/// Why a line is not a valid request; its `Display` is the text after `ERROR: `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// The verb is known but its arguments are wrong; carries the verb's usage.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// The verb is not one the protocol knows (shown printable and shortened).
    #[error("unknown command '{0}'")]
    Unknown(String),
    /// A RESP request error, worded as Redis words it (the code word, then the message).
    #[error("{0}")]
    Redis(String),
    /// An argument the command cannot take (said in either protocol's words: `ERR ` before it
    /// over RESP).
    #[error("{0}")]
    Invalid(String),
}

/// Everything a client can be told went wrong; its `Display` is the text after `ERROR: `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorReply {
    /// The request did not parse.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A write sent to a replica.
    #[error("READONLY: this node is a replica; write to the primary")]
    ReadOnly,
    /// A write sent to a replica of a failover cluster: names the primary to write to.
    #[error("READONLY: this node is a replica; write to the primary at {0}")]
    ReadOnlyPrimaryAt(std::sync::Arc<str>),
    /// A read on a replica of a failover cluster whose data has not joined the current epoch's
    /// history yet: it may hold writes that epoch discards (Redis answers `LOADING` while a
    /// replica loads its primary's data).
    #[error("LOADING: this replica has not caught up with the primary of epoch {0} yet; read from the primary or retry shortly")]
    Loading(u64),
    /// A member of a failover cluster whose control plane stopped (its Raft storage failed):
    /// it no longer knows who the primary is, and serves no data until restarted.
    #[error("CLUSTERDOWN: this member's control plane stopped ({0}); restart it, and use another member meanwhile")]
    ControlPlaneDown(std::sync::Arc<str>),
    /// `FAILOVER` could not hand over (the primary goes on as it was).
    #[error("FAILOVER failed: {0}")]
    FailoverFailed(std::sync::Arc<str>),
    /// A write sent while no node may act as primary (an election is under way, or this
    /// node was the primary and cannot confirm it still is): not applied.
    #[error(
        "READONLY: no primary right now (an election is under way); not applied, retry shortly"
    )]
    NoPrimary,
    /// A write applied on the primary whose acknowledgement the node cannot give: too few
    /// replicas made it durable in time (`--min-replicas-to-write`), or the node lost its
    /// primary lease meanwhile. Its fate is unknown: it survives if the history it is in does.
    #[error(
        "not acknowledged: {0}; the write was applied on this node but may not survive a failover"
    )]
    NotAcknowledged(std::sync::Arc<str>),
    /// A request line longer than `--max-line-bytes`; the connection closes after it.
    #[error("line too long (limit {limit} bytes)")]
    LineTooLong {
        /// The longest line accepted, in bytes (`--max-line-bytes`), shown to the client.
        limit: usize,
    },
    /// A request line longer than a connection may send before it logs in, on a node that
    /// asks for a password; the connection closes after it.
    #[error("line too long before login (limit {limit} bytes until AUTH); closing the connection")]
    LineTooLongBeforeLogin {
        /// The longest line accepted before a login, in bytes.
        limit: usize,
    },
    /// The connection was closed to bring the memory of all clients' buffers back under
    /// `--maxmemory-clients` (it held the most).
    #[error("client evicted: node-wide client buffer memory over --maxmemory-clients")]
    Evicted,
    /// The node already serves `--max-clients` clients.
    #[error("max clients reached")]
    MaxClients,
    /// One batch's replies exceed the client output limit; the connection closes after it.
    #[error("replies too large (client output limit {limit} bytes); closing the connection")]
    OutputLimit {
        /// The most reply bytes one batch may produce (`--client-output-limit`).
        limit: usize,
    },
    /// `RESYNC` gives up a replica's data; a primary has no one to take it from.
    #[error("RESYNC is for a replica: it gives up the replica's data for its primary's")]
    ResyncOnPrimary,
    /// `WAIT` asks about a primary's replicas; a replica has none.
    #[error("WAIT cannot be used on a replica")]
    WaitOnReplica,
    /// A value with a newline asked for over the line protocol, which cannot frame it.
    #[error("a stored value contains a newline, which a line cannot carry; read it over RESP (redis-cli)")]
    NeedsResp,
    /// The write was applied but could not be made durable (its fate is unknown until the
    /// disk recovers), or a read could show such a write.
    #[error("persistence failed: {0}")]
    PersistenceFailed(std::sync::Arc<str>),
    /// A write refused before it was applied, because the log cannot be written: unlike
    /// `PersistenceFailed`, the client knows the write did not happen.
    #[error("writes refused until the disk recovers (not applied): {0}")]
    WritesRefused(std::sync::Arc<str>),
    /// `WAITPOS` or a read's `AFTER` did not reach its position: this node's history does not
    /// contain it (`NOHISTORY`), or the time ran out (`TIMEOUT`). The client reads from the
    /// primary instead, or waits longer; it is never shown older data.
    #[error("{code}: {0}", code = .0.code())]
    Position(PositionError),
    /// A request before the connection logged in, on a node that asks for it.
    #[error("NOAUTH: authentication required")]
    NoAuth,
    /// `HELLO` without `AUTH` before the connection logged in.
    #[error("NOAUTH: authentication required (HELLO <protover> AUTH <user> <password> logs in)")]
    NoAuthHello,
    /// A login with a wrong user or password (which of the two is not said).
    #[error("WRONGPASS: invalid username-password pair or user is disabled")]
    WrongPass,
    /// A command the connection's user has not the rights for.
    #[error(
        "NOPERM: user {user} has no permission to run '{command}' (it needs the {missing} right)"
    )]
    NoPerm {
        /// The connection's user.
        user: Arc<str>,
        /// The command, as Redis names it.
        command: &'static str,
        /// The rights it needs that the user does not hold.
        missing: Rights,
    },
    /// `AUTH <password>` on a node that has no password.
    #[error("AUTH: this node has no password (see --requirepass and --users-file)")]
    NoPassword,
    /// `ACL LOAD` could not put the users file in force.
    #[error("ACL LOAD failed: {0}")]
    UsersNotLoaded(Arc<str>),
}

impl ErrorReply {
    /// The error as Redis would word it: a code word, then the message.
    pub fn resp_text(&self) -> String {
        match self {
            ErrorReply::Command(CommandError::Redis(text)) => text.clone(),
            ErrorReply::ReadOnly => "READONLY You can't write against a read only replica.".into(),
            ErrorReply::ReadOnlyPrimaryAt(addr) => {
                format!("READONLY You can't write against a read only replica. (primary: {addr})")
            }
            ErrorReply::ControlPlaneDown(_) => format!("CLUSTERDOWN {self}"),
            ErrorReply::Loading(epoch) => format!(
                "LOADING this replica has not caught up with the primary of epoch {epoch} yet"
            ),
            ErrorReply::NoPrimary => "READONLY no primary right now (an election is under way); \
                not applied, retry shortly"
                .into(),
            // Redis's word for "too few replicas took the write".
            ErrorReply::NotAcknowledged(_) => format!("NOREPLICAS {self}"),
            ErrorReply::MaxClients => "ERR max number of clients reached".into(),
            ErrorReply::WaitOnReplica => "ERR WAIT cannot be used with replica instances".into(),
            // Redis's word for "writes are stopped because persistence is failing".
            ErrorReply::WritesRefused(_) => format!("MISCONF {self}"),
            ErrorReply::Position(error) => format!("{} {error}", error.code()),
            // Redis's words, which clients and tools recognise.
            ErrorReply::NoAuth => "NOAUTH Authentication required.".into(),
            ErrorReply::NoAuthHello => "NOAUTH HELLO must be called with the client already \
                authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used \
                to authenticate the client and select the RESP protocol version at the same time"
                .into(),
            ErrorReply::WrongPass => {
                "WRONGPASS invalid username-password pair or user is disabled.".into()
            }
            ErrorReply::NoPerm { user, command, .. } => {
                format!("NOPERM User {user} has no permissions to run the '{command}' command")
            }
            ErrorReply::NoPassword => "ERR AUTH <password> called without any password \
                configured for the default user. Are you sure your configuration is correct?"
                .into(),
            other => format!("ERR {other}"),
        }
    }
}

//! A history of operations on a key-value store, as concurrent clients saw them: what each
//! asked, when it asked, when it heard back, and what it heard.
//!
//! Times are nanoseconds from the start of a run, from one monotonic clock. An operation
//! whose outcome is unknown (a timeout, a lost connection) may or may not have taken effect,
//! with any answer: if it did, at an instant from its invocation to its `completed` field,
//! which for it is a bound, not an answer's arrival. The runner knows such a bound when the
//! process the operation was sent to was killed (`kill -9`) after it was sent: that process
//! is dead by then, and the restarted one never sees the connection. Without one the bound
//! is `u64::MAX`: it may take effect any time after its invocation, or never.

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `PUT key value`.
    Put(String),
    /// `GET key`.
    Get,
    /// `DEL key`.
    Del,
}

/// What a client heard back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `PUT` applied.
    Written,
    /// `GET` found this value, or nothing (`None`).
    Read(Option<String>),
    /// `DEL` removed the key (`true`) or found nothing (`false`).
    Deleted(bool),
    /// An error reply that says the operation did not happen: left out of the history.
    Failed,
    /// No answer (a timeout, a lost connection): it may or may not have happened.
    Unknown,
}

/// Which node answered an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Node {
    /// The primary: its answers must be linearizable, and no acknowledged write may be lost.
    #[default]
    Primary,
    /// Replica number `n` (reads only): every value it shows must have been written, and on
    /// one connection it must never go back in time.
    Replica(usize),
}

/// One operation, from invocation to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client (thread) that made it.
    pub client: usize,
    /// The connection it was sent on: a client opens a new one after a lost answer, so a
    /// replica's promise not to go back in time holds per connection.
    pub connection: u64,
    /// The node it was sent to.
    pub node: Node,
    /// The key it concerns; linearizability is checked per key.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// When it was sent.
    pub invoked: u64,
    /// When its answer arrived. For an `Unknown` outcome: the latest instant it may have taken
    /// effect (the process it was sent to was dead by then), or `u64::MAX` if there is no
    /// such bound. Either way, the latest instant it may take effect, as every check reads it.
    pub completed: u64,
    /// What the client heard.
    pub outcome: Outcome,
    /// A read-your-writes client's position token (`kvchaos --read-your-writes`) as it sent
    /// this operation: the last `LASTPOS` answer it got, which covers every write it had
    /// acknowledged and everything its reads had shown, so a read sent with it (`GET key
    /// AFTER token`) must show all of that. `None`: not such a client, or one whose token no
    /// longer covers all that (a `LASTPOS` answer was lost), which reads from the primary
    /// until it has one again. `read_your_writes.rs` holds the reads that carry one to it.
    pub token: Option<String>,
}

/// As a person would name it: `primary`, `replica 2`.
impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Primary => write!(f, "primary"),
            Node::Replica(n) => write!(f, "replica {n}"),
        }
    }
}

/// Nanoseconds from the start of a run as seconds, to the microsecond (`12.345678s`).
fn seconds(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, ns % 1_000_000_000 / 1_000)
}

/// One line a person can read: when, who, where, what was asked and what was heard, as in
/// `1.000200s..1.000350s client 2 conn 8589934593 primary: PUT k1 c2-17 -> OK`.
impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let completed = if self.outcome == Outcome::Unknown {
            "?".to_string()
        } else {
            seconds(self.completed)
        };
        write!(
            f,
            "{}..{completed} client {} conn {} {}: ",
            seconds(self.invoked),
            self.client,
            self.connection,
            self.node
        )?;
        match &self.call {
            Call::Put(value) => write!(f, "PUT {} {value}", self.key)?,
            Call::Get => write!(f, "GET {}", self.key)?,
            Call::Del => write!(f, "DEL {}", self.key)?,
        }
        if let Some(token) = &self.token {
            write!(f, " [token {token}]")?;
        }
        match &self.outcome {
            Outcome::Written | Outcome::Deleted(true) => write!(f, " -> OK"),
            Outcome::Read(Some(value)) => write!(f, " -> {value}"),
            Outcome::Read(None) | Outcome::Deleted(false) => write!(f, " -> NOT_FOUND"),
            Outcome::Failed => write!(f, " -> failed (did not happen)"),
            Outcome::Unknown if self.completed == u64::MAX => {
                write!(f, " -> no answer (may or may not have happened)")
            }
            Outcome::Unknown => write!(
                f,
                " -> no answer (may or may not have happened, not after {})",
                seconds(self.completed)
            ),
        }
    }
}

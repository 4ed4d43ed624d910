//! A history of operations on a key-value store, as concurrent clients saw them: what each
//! asked, when it asked, when it heard back, and what it heard.
//!
//! Times are nanoseconds from the start of a run, from one monotonic clock. An operation
//! whose outcome is unknown (a timeout, a lost connection) may or may not have taken effect:
//! it is treated as still running forever, with any answer.

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
    /// When its answer arrived (meaningless for `Unknown`).
    pub completed: u64,
    /// What the client heard.
    pub outcome: Outcome,
}

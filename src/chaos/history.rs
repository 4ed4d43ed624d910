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

/// One operation, from invocation to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client (connection) that made it.
    pub client: usize,
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

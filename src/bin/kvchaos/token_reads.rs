//! What the read-your-writes workload (`--read-your-writes`, `clients/tokens.rs`) is asked to
//! do, and what it counts of its replica reads for the line before the verdict.

use std::fmt;

use clap::ValueEnum;

/// The token of a connection that has seen nothing, which every node has reached.
pub const NOTHING_SEEN: &str = "0:-:0";

/// How a read-your-writes client reads from the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadYourWrites {
    /// With its token: `GET key AFTER token timeout-ms`.
    Tokens,
    /// A deliberate bug, to show that the checker catches one: plain `GET key`, though the
    /// client keeps its token and the history says it holds one, so a lagging replica's
    /// answers are held to it.
    WithoutTokens,
}

/// What became of a client's replica reads with a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Sent to a replica with the client's token.
    pub sent: u64,
    /// Answered by the replica.
    pub answered: u64,
    /// Refused with `TIMEOUT`: the replica did not reach the token in time.
    pub timeout: u64,
    /// Refused with `NOHISTORY`: the replica does not know the token's history.
    pub nohistory: u64,
    /// Refused with another error.
    pub refused: u64,
    /// Not answered (a paused or killed replica, a lost connection).
    pub unanswered: u64,
    /// Not sent: the replica could not be reached.
    pub unreachable: u64,
    /// Read from the primary instead, after one of the above.
    pub fell_back: u64,
    /// Read from the primary because the client had no token (a `LASTPOS` answer was lost).
    pub without_token: u64,
}

impl TokenCounts {
    /// Both counts together.
    pub fn add(&mut self, other: &TokenCounts) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.timeout += other.timeout;
        self.nohistory += other.nohistory;
        self.refused += other.refused;
        self.unanswered += other.unanswered;
        self.unreachable += other.unreachable;
        self.fell_back += other.fell_back;
        self.without_token += other.without_token;
    }
}

/// One line of `name=value` fields, as the verdict line has them.
impl fmt::Display for TokenCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token_reads={} by_replica={} timeout={} nohistory={} refused={} no_answer={} \
             unreachable={} fell_back_to_primary={} read_from_primary_without_token={}",
            self.sent,
            self.answered,
            self.timeout,
            self.nohistory,
            self.refused,
            self.unanswered,
            self.unreachable,
            self.fell_back,
            self.without_token
        )
    }
}

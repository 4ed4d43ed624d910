//! What a session tells its owner (the Listener), and what the owner can ask of it.

use actix::prelude::*;

/// Tells a session's owner that it has ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    /// The session's id, as the Listener gave it.
    pub id: u64,
}

/// Tells a session's owner that the connection is a primary's replication stream, not a
/// client: it no longer counts as one (`connected_clients`, `--max-clients`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionReplicating {
    /// The session's id, as the Listener gave it.
    pub id: u64,
}

/// Who a session reports to: the Listener that accepted it.
#[derive(Clone)]
pub struct SessionOwner {
    /// Told when the session ends.
    pub closed: Recipient<SessionClosed>,
    /// Told when the connection turns out to be a replication stream.
    pub replicating: Recipient<SessionReplicating>,
}

/// Asks a session to finish: it closes once every request it has read is answered.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

//! `FAILOVER`, the planned switchover, as the message a session sends the Coordinator (which
//! carries it out, `coordinator.rs`).

use std::time::Duration;

use actix::prelude::*;

/// `FAILOVER [TO <addr>]`: hand the primary role over to a member that has every write, with
/// no write lost and writes refused (not applied) only while the member is elected.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, String>")]
pub struct Failover {
    /// The member to hand over to; without one, the streaming replica furthest ahead.
    pub to: Option<String>,
    /// How long the member may take to catch up and be elected.
    pub timeout: Duration,
}

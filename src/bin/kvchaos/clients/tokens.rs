//! The read-your-writes workload (`--read-your-writes`): each client keeps the position token
//! `LASTPOS` answered after its last operation, and reads from the replicas with it.
//!
//! Writes go to the primary with `LASTPOS` pipelined after them; a read goes to a replica
//! (one at random, so a client's reads move between replicas) as `GET key AFTER token
//! timeout-ms` with `LASTPOS` after it, so the new token covers what the read showed too. A
//! replica that cannot honour the token in time (`TIMEOUT`), does not know its history
//! (`NOHISTORY`), refuses otherwise, does not answer or cannot be reached gives a failed or
//! unknown read, not a violation, and the client reads from the primary instead.
//!
//! The client's token covers everything it did and saw before only while every `LASTPOS`
//! answered: after an answered operation whose `LASTPOS` answer was lost it has none, and
//! reads from the primary (whose `LASTPOS` covers everything) until it has one again. A
//! failed or unanswered operation leaves its token as it was: it showed nothing, and a write
//! of unknown outcome binds no read. The history records, with every operation, the token
//! the client held as it sent it; the checker holds every read that carries one to what the
//! client wrote and saw before (`kvstore::chaos::read_your_writes`).

use kvstore::chaos::history::{Call, Node, Operation, Outcome};

use super::Client;
use crate::route;
use crate::token_reads::ReadYourWrites;

/// What became of one operation sent with `LASTPOS`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    /// It was answered (a value, an acknowledgement).
    Answered,
    /// An error said it was not done; its text.
    Refused(String),
    /// No answer came.
    Unanswered,
    /// No connection could be opened.
    Unreachable,
}

impl Client {
    /// One operation of a read-your-writes client: a write to the primary, or a read from a
    /// replica with its token (from the primary if the replica cannot answer, or if the
    /// client has no token); false if no node could be reached.
    pub(super) fn with_token(&mut self, key: String, call: Call, mode: ReadYourWrites) -> bool {
        let members = self.plan.members.len();
        let replicas = members - 1;
        // Another node than the one it believes is the primary.
        let replica = (self.primary + 1 + self.rng.usize(0..replicas.max(1))) % members;
        let to_replica = self.rng.u8(0..100) < self.plan.replica_reads;
        if call == Call::Get && replicas > 0 && to_replica {
            if self.token.is_none() {
                self.tokens.without_token += 1;
            } else {
                self.tokens.sent += 1;
                match self.send(replica, &key, &call, mode) {
                    Sent::Answered => {
                        self.tokens.answered += 1;
                        return true;
                    }
                    Sent::Refused(error) if error.starts_with("TIMEOUT") => {
                        self.tokens.timeout += 1
                    }
                    Sent::Refused(error) if error.starts_with("NOHISTORY") => {
                        self.tokens.nohistory += 1
                    }
                    Sent::Refused(_) => self.tokens.refused += 1,
                    Sent::Unanswered => self.tokens.unanswered += 1,
                    Sent::Unreachable => self.tokens.unreachable += 1,
                }
                self.tokens.fell_back += 1;
            }
        }
        self.send(self.primary, &key, &call, mode) != Sent::Unreachable
    }

    /// Send `call` on `key` to node `member` with `LASTPOS` after it, a read from another
    /// node than the primary with the client's token (unless `mode` leaves it out), and
    /// record it with the token the client held; take the new token if the operation was
    /// answered. In a failover cluster a read asks for the node's `ROLE` too (the node that
    /// answered it is the primary only if it says so), and the answers say where the primary
    /// is, as in `Client::call`.
    fn send(&mut self, member: usize, key: &str, call: &Call, mode: ReadYourWrites) -> Sent {
        let Some(connection_id) = self.connect(member) else {
            self.lost(member);
            return Sent::Unreachable;
        };
        let Some((connection, _)) = self.connections.get_mut(&member) else {
            return Sent::Unreachable;
        };
        let held = self.token.clone();
        let after = match (member != self.primary, mode, held.as_deref()) {
            (true, ReadYourWrites::Tokens, Some(token)) => {
                Some((token, self.plan.token_timeout_ms))
            }
            _ => None,
        };
        let failover = self.plan.failover;
        let ask_role = failover && *call == Call::Get;
        let invoked = self.plan.start.elapsed().as_nanos() as u64;
        let (outcome, token, role) = connection.call_with_token(key, call, after, ask_role);
        let completed = self.plan.start.elapsed().as_nanos() as u64;
        let refusal = connection.last_error.clone();
        if outcome == Outcome::Unknown || token.is_none() {
            // An answer may still come on this connection: start afresh.
            self.connections.remove(&member);
        }
        let node = match (call, failover) {
            (Call::Get, true) => route::read_by(member, role.as_deref()),
            (Call::Get, false) if member > 0 => Node::Replica(member),
            _ => Node::Primary,
        };
        if failover {
            let members = &self.plan.members;
            let named = match &role {
                Some(role) => route::primary_from_role(member, role, members),
                None => refusal.as_deref().and_then(|e| self.named(e)),
            };
            match named {
                Some(primary) => self.primary = primary,
                None if refusal.is_some() || outcome == Outcome::Unknown => self.lost(member),
                None => {}
            }
        }
        let sent = match outcome {
            Outcome::Unknown => Sent::Unanswered,
            Outcome::Failed => Sent::Refused(refusal.unwrap_or_default()),
            _ => {
                // Without the new token, the client's no longer covers what it did and saw.
                self.token = token;
                Sent::Answered
            }
        };
        self.history.push(Operation {
            client: self.client,
            connection: connection_id,
            node,
            key: key.to_string(),
            call: call.clone(),
            invoked,
            completed,
            outcome,
            token: held,
        });
        sent
    }
}

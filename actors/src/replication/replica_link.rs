//! The replica's end of the replication link.
//!
//! A primary's replication stream arrives on the replica's client port like any client, and is
//! served by a Session, which reads it with the connection codec. Once the connection opens
//! with `REPLICATE`, the session hands everything here: [`admit`] decides whether this node
//! takes the stream and answers the `CHALLENGE` line; [`Handshake::prove`] checks the
//! primary's proof; [`ReplicaLink::attach`] tells the [`Follower`] and answers the `POSITION`
//! line; [`ReplicaLink::stream`] hands the Follower each part of the stream and answers the
//! `ACK` line to write back; [`ReplicaLink::current_ack`] answers the periodic `ACK`. The
//! session only writes the lines, and closes a handshake that takes too long or a primary
//! that goes silent.

use std::future::Future;

use actix::prelude::*;
use thiserror::Error;

use super::auth::{self, ClusterSecret, Side};
use super::follower::{Ack, Attach, CurrentAck, Detach, Follower, Stream, Superseded};
use super::wire::{Prove, Refusal, ReplicaLine, Replicate, StreamFrame};
use crate::store::Seq;

/// Why a replication stream ends on the replica's side.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The Follower stopped (the node is shutting down).
    #[error("the follower is gone: {0}")]
    Follower(#[from] MailboxError),
    /// The Follower refused the stream (a gap, another history, a superseded stream, a disk
    /// that cannot persist), or the primary sent what the protocol does not allow here.
    #[error("{0}")]
    Refused(String),
}

/// A primary's handshake between its opening and its proof.
#[derive(Debug)]
pub struct Handshake {
    /// The node's Follower, which the stream attaches to once the primary has proved itself.
    follower: Addr<Follower>,
    /// This node's cluster secret; without one, any primary is taken (docs/replication.md).
    secret: Option<ClusterSecret>,
    /// The primary's nonce, from its opening, bound to its epoch (what the proofs cover).
    primary_nonce: String,
    /// The primary's epoch, from its opening.
    epoch: u64,
    /// This replica's fresh nonce, sent in the challenge.
    replica_nonce: String,
}

/// Whether this node takes a primary's stream: it must be a replica (have a Follower), and the
/// opening must carry a nonce. Answers the handshake and the `CHALLENGE` line to send (with
/// this replica's proof, when it has a secret).
pub fn admit(
    follower: Option<&Addr<Follower>>,
    secret: Option<&ClusterSecret>,
    opening: &Replicate,
) -> Result<(Handshake, Vec<u8>), Refusal> {
    let follower = follower.ok_or(Refusal::NotAReplica)?;
    if !auth::is_nonce(&opening.nonce) {
        return Err(Refusal::Malformed);
    }
    let replica_nonce = auth::nonce();
    let primary_nonce = opening.bound_nonce();
    let proof = secret.map(|s| s.proof(Side::Replica, &primary_nonce, &replica_nonce));
    let challenge = ReplicaLine::Challenge {
        nonce: replica_nonce.clone(),
        proof,
    }
    .encode();
    let handshake = Handshake {
        follower: follower.clone(),
        secret: secret.cloned(),
        primary_nonce,
        epoch: opening.epoch,
        replica_nonce,
    };
    Ok((handshake, challenge))
}

impl Handshake {
    /// Check the primary's proof: with a secret, it must be the primary's HMAC of this
    /// handshake's nonces (compared in constant time). Answers the Follower to attach to, and
    /// the primary's epoch.
    pub fn prove(self, prove: &Prove) -> Result<(Addr<Follower>, u64), Refusal> {
        let Some(secret) = &self.secret else {
            return Ok((self.follower, self.epoch));
        };
        match &prove.proof {
            Some(proof)
                if secret.verify(
                    Side::Primary,
                    &self.primary_nonce,
                    &self.replica_nonce,
                    proof,
                ) =>
            {
                Ok((self.follower, self.epoch))
            }
            _ => Err(Refusal::WrongSecret),
        }
    }
}

/// An attached stream: the session that serves it holds one.
#[derive(Debug)]
pub struct ReplicaLink {
    /// The node's Follower, which applies the stream.
    follower: Addr<Follower>,
    /// Which attachment this is: the Follower refuses parts of a superseded stream.
    link: u64,
}

/// An `ACK` line for `ack`.
fn ack_line(ack: Ack) -> Vec<u8> {
    ReplicaLine::Ack {
        applied: ack.applied,
        durable: ack.durable,
    }
    .encode()
}

impl ReplicaLink {
    /// Attach a new stream to the Follower (superseding any other, whose session is told
    /// through `session`); answers the link and the `POSITION` line to send the primary.
    /// `from` is where the primary's backlog starts (from its `PROVE`); `epoch` is the
    /// primary's, which must not be older than the newest this node has seen.
    pub async fn attach(
        follower: Addr<Follower>,
        session: Recipient<Superseded>,
        from: Seq,
        epoch: u64,
    ) -> Result<(ReplicaLink, Vec<u8>), LinkError> {
        let attach = Attach {
            session,
            from,
            epoch,
        };
        let position = follower.send(attach).await?.map_err(|current| {
            LinkError::Refused(format!(
                "the primary's epoch {epoch} is over: this node follows epoch {current}"
            ))
        })?;
        let line = ReplicaLine::Position {
            id: position.replication_id,
            offset: position.offset,
            window: position.window,
        }
        .encode();
        let link = ReplicaLink {
            follower,
            link: position.link,
        };
        Ok((link, line))
    }

    /// Hand one part of the stream to the Follower, in order; the future answers the `ACK`
    /// line to write once it is applied.
    pub fn stream(
        &self,
        frame: StreamFrame,
    ) -> impl Future<Output = Result<Vec<u8>, LinkError>> + 'static {
        let (start, records) = match frame {
            StreamFrame::Start(start) => (Some(start), Vec::new()),
            StreamFrame::Records(records) => (None, records),
            StreamFrame::Prove(_) => (None, Vec::new()),
        };
        let applied = self.follower.send(Stream {
            link: self.link,
            start,
            records,
        });
        async move { Ok(ack_line(applied.await?.map_err(LinkError::Refused)?)) }
    }

    /// The `ACK` line to send now (the periodic acknowledgement, which also tells the primary
    /// the replica is alive).
    pub fn current_ack(&self) -> impl Future<Output = Result<Vec<u8>, LinkError>> + 'static {
        let ack = self.follower.send(CurrentAck { link: self.link });
        async move { Ok(ack_line(ack.await?)) }
    }

    /// The session's connection ended: the Follower forgets the stream, unless another
    /// superseded it already.
    pub fn detach(&self) {
        self.follower.do_send(Detach { link: self.link });
    }
}

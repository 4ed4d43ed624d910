//! The primary's end of the replication handshake: connect to a replica, authenticate both
//! ways, and learn where the replica stands. The messages are `wire.rs`'s, the proofs
//! `auth.rs`'s; the replica's end is `replica_link.rs`.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::auth::{self, ClusterSecret, Side};
use super::wire::{Prove, ReplicaLine, Replicate, MAX_CONTROL_LINE};
use crate::store::Seq;
use crate::tls::{ReadHalf, TlsContext, WriteHalf};

/// A link whose handshake finished: the replica's lines to come (`ACK`), the socket to stream
/// to, and where the replica stands.
pub struct Opened {
    /// The replica's lines from now on.
    pub lines: FramedRead<ReadHalf, LinesCodec>,
    /// The socket's write half, for the stream.
    pub writer: WriteHalf,
    /// The history the replica's data belongs to (`None`: none).
    pub id: Option<String>,
    /// How far its data goes.
    pub offset: Seq,
    /// The replica's fingerprint of its mutations after `.0` up to `offset`, if it offered one.
    pub window: Option<(Seq, u64)>,
}

/// Connect to the replica at `addr` and run the handshake, each step within `timeout`, telling
/// it that the primary's backlog holds everything after `from` (what the replica then
/// fingerprints for the primary to check). With
/// a `secret`, the replica must prove it knows it before it is sent anything else (an
/// impostor learns nothing), and the primary then proves it in turn. With `tls`, the link is
/// TLS, the replica's certificate checked against `--tls-ca`, under the same handshake.
/// Answers why it failed, as one line for the log.
pub async fn open(
    addr: &str,
    secret: Option<&ClusterSecret>,
    tls: Option<&TlsContext>,
    timeout: Duration,
    (from, epoch): (Seq, u64),
) -> Result<Opened, String> {
    let stream = tokio::time::timeout(timeout, crate::tls::dial::dial(addr, tls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect failed: {e}"))?;
    let (reader, mut writer) = stream.into_split();
    let opening = Replicate::with_epoch(&auth::nonce(), epoch);
    // The proofs cover the nonce bound to the epoch, so the epoch cannot be altered in flight.
    let primary_nonce = opening.bound_nonce();
    writer
        .send(&opening.encode())
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    let mut lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_CONTROL_LINE));
    let (replica_nonce, replica_proof) = match next_line(&mut lines, timeout).await? {
        ReplicaLine::Challenge { nonce, proof } => (nonce, proof),
        other => return Err(unexpected(other)),
    };
    let proof = match (secret, replica_proof) {
        (Some(secret), Some(proof))
            if secret.verify(Side::Replica, &primary_nonce, &replica_nonce, &proof) =>
        {
            Some(secret.proof(Side::Primary, &primary_nonce, &replica_nonce))
        }
        (Some(_), _) => {
            return Err(
                "the replica did not prove it knows the cluster secret; sending it nothing".into(),
            )
        }
        (None, Some(_)) => {
            return Err(
                "the replica requires a cluster secret; start this node with the same \
                 --cluster-secret"
                    .into(),
            )
        }
        (None, None) => None,
    };
    writer
        .send(&Prove { proof, from }.encode())
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    match next_line(&mut lines, timeout).await? {
        ReplicaLine::Position { id, offset, window } => Ok(Opened {
            lines,
            writer,
            id,
            offset,
            window,
        }),
        other => Err(unexpected(other)),
    }
}

/// The replica's next line in the handshake, within `timeout`.
async fn next_line(
    lines: &mut FramedRead<ReadHalf, LinesCodec>,
    timeout: Duration,
) -> Result<ReplicaLine, String> {
    let line = tokio::time::timeout(timeout, lines.next())
        .await
        .map_err(|_| "no answer to the handshake".to_string())?
        .ok_or("the replica closed the connection during the handshake")?
        .map_err(|e| format!("handshake failed: {e}"))?;
    ReplicaLine::parse(&line).map_err(|_| format!("the replica refused the handshake: {line:.80}"))
}

/// Why a line the replica sent ends the handshake.
fn unexpected(line: ReplicaLine) -> String {
    match line {
        ReplicaLine::Refused(why) => format!("the replica refused the handshake: {why}"),
        other => format!("the replica refused the handshake: unexpected {other:?}"),
    }
}

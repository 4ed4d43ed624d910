//! What travels on a Raft RPC connection: its opening line, then one length-prefixed JSON frame
//! per request and per response.
//!
//! The node serves Raft on its client port: its Listener peeks the first bytes of every
//! connection, and hands those that start with [`OPENING`] to the consensus server. After the
//! opening, frames are `len: u32 big-endian | JSON`. A connection carries one request at a
//! time (openraft runs one replication stream per follower and waits for each reply), so no
//! request ids are needed.

use std::io;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::consensus::cluster_state::NodeId;
use crate::consensus::position::DataPosition;
use crate::consensus::type_config::TypeConfig;

/// Opening line of a Raft RPC connection: the node serves Raft on its client port, and its
/// Listener peeks the first bytes of every connection. No client command starts this way (the
/// line protocol has no `RAFT` command, RESP starts with `*`), and the version lets a future
/// format be told apart: version 2 authenticates both ends before the first request
/// (`handshake.rs`), and a version 1 caller is closed at its opening.
pub const OPENING: &[u8] = b"RAFT 2\n";

/// Whether a connection whose first bytes are `head` is (or may still turn out to be) a Raft
/// RPC connection, for a Listener that peeks.
///
/// Exactly: `head` is non-empty, and either `head` is a prefix of [`OPENING`] (fewer bytes than
/// the opening have arrived, and all agree with it: peek again for a sure answer) or `head`
/// starts with the whole of [`OPENING`] (a Raft connection, possibly with its first frame
/// behind). An empty `head` is `false`: nothing is known yet.
pub fn opens(head: &[u8]) -> bool {
    !head.is_empty() && (OPENING.starts_with(head) || head.starts_with(OPENING))
}

/// Largest frame accepted; protects the reader from a garbage or hostile length.
pub const MAX_FRAME: usize = 64 << 20;

/// Errors of the transport; mapped to openraft's `RPCError` kinds at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The local node is cut off (tests simulate partitions with this).
    #[error("node is isolated")]
    Isolated,
    /// No TCP connection could be made: openraft backs off before retrying.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The connection broke mid-call.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// A frame did not (de)serialize.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A frame's length field exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
    /// The connection did not start with [`OPENING`].
    #[error("connection did not open with the Raft opening line")]
    BadOpening,
    /// The handshake failed: a peer without the cluster secret, or one that does not follow the
    /// handshake (`handshake.rs`).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The peer answered a different kind of RPC than was asked.
    #[error("response does not match the request")]
    Mismatch,
    /// The peer could not do what was asked (a switchover's election), or did not answer.
    #[error("{0}")]
    Refused(String),
    /// The voter's data is ahead of the candidate's, so it refused to consider the vote.
    #[error("vote refused: the voter's data {voter:?} is ahead of the candidate's {candidate:?}")]
    VoteRefused {
        /// The voter's position.
        voter: DataPosition,
        /// The candidate's position, as it sent it.
        candidate: DataPosition,
    },
}

/// One Raft RPC on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// Replicate entries, or a heartbeat.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Ask for a vote, with the candidate's data position for the data-aware vote.
    Vote {
        /// openraft's request.
        request: VoteRequest<NodeId>,
        /// The candidate's data position when it sent the request.
        position: DataPosition,
        /// The newest epoch the candidate's applied state names a primary for, and the offset
        /// that primary's history starts at: a voter whose data is of an older epoch holds
        /// nothing past that offset the current history keeps, so it counts only up to it.
        #[serde(default)]
        known: Option<(u64, u64)>,
    },
    /// A chunk of a snapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A planned switchover: the primary asks the member it hands over to to start an
    /// election now (see `handover.rs`). Honoured only from the member's current leader in
    /// its current term.
    Elect {
        /// The leader asking.
        from: NodeId,
        /// Its term.
        term: u64,
    },
}

/// The reply to an [`RpcRequest`], carrying the remote Raft's own error if it failed.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// The answer to [`RpcRequest::Append`].
    Append(AppendAnswer),
    /// openraft's answer to [`RpcRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// The voter did not pass the request to Raft: its data is ahead of the candidate's.
    VoteRefused {
        /// The voter's data position.
        voter: DataPosition,
    },
    /// The answer to [`RpcRequest::Snapshot`].
    Snapshot(SnapshotAnswer),
    /// The answer to [`RpcRequest::Elect`]: the election started, or why not.
    Elect(Result<(), String>),
}

/// What an answer to an Append request carries.
type AppendAnswer = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;

/// What an answer to a Snapshot request carries.
type SnapshotAnswer =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

impl RpcResponse {
    /// The answer to an Append request, or [`NetError::Mismatch`] for any other kind.
    pub fn into_append(self) -> Result<AppendAnswer, NetError> {
        match self {
            RpcResponse::Append(r) => Ok(r),
            _ => Err(NetError::Mismatch),
        }
    }

    /// The answer to a Snapshot request, or [`NetError::Mismatch`] for any other kind.
    pub fn into_snapshot(self) -> Result<SnapshotAnswer, NetError> {
        match self {
            RpcResponse::Snapshot(r) => Ok(r),
            _ => Err(NetError::Mismatch),
        }
    }
}

/// Reads the opening line and checks it, so a stray connection is closed, not parsed.
pub async fn read_opening<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(), NetError> {
    let mut head = [0u8; OPENING.len()];
    stream.read_exact(&mut head).await?;
    if head == OPENING {
        Ok(())
    } else {
        Err(NetError::BadOpening)
    }
}

/// Writes one frame (optionally behind the opening line) with a single `write_all`, so a
/// frame is never interleaved or half-sent by our side.
pub async fn write_frame<S, T>(stream: &mut S, opening: bool, value: &T) -> Result<(), NetError>
where
    S: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(value)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or(NetError::FrameTooLarge(body.len()))?;
    let mut buf = Vec::with_capacity(OPENING.len() + 4 + body.len());
    if opening {
        buf.extend_from_slice(OPENING);
    }
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    stream.write_all(&buf).await?;
    // Over TLS, what the socket did not take yet waits in the session until flushed.
    stream.flush().await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<S, T>(stream: &mut S) -> Result<Option<T>, NetError>
where
    S: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len4 = [0u8; 4];
    match stream.read_exact(&mut len4).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len4) as usize;
    if len > MAX_FRAME {
        return Err(NetError::FrameTooLarge(len));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_accepts_prefixes_of_the_opening_and_streams_behind_it() {
        assert!(opens(b"R"));
        assert!(opens(b"RAFT 2"));
        assert!(opens(OPENING));
        assert!(opens(b"RAFT 2\n\0\0\0\x05{...}"));
        assert!(!opens(b""));
        assert!(!opens(b"PUT a 1\n"));
        assert!(!opens(b"RAFT 1\n"));
        assert!(!opens(b"*1\r\n$4\r\nPING\r\n"));
    }

    #[tokio::test]
    async fn frames_round_trip_and_a_bad_opening_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, true, &"hello").await.unwrap();
        write_frame(&mut buf, false, &42u64).await.unwrap();
        let mut r = &buf[..];
        read_opening(&mut r).await.unwrap();
        assert_eq!(
            read_frame::<_, String>(&mut r).await.unwrap().unwrap(),
            "hello"
        );
        assert_eq!(read_frame::<_, u64>(&mut r).await.unwrap(), Some(42));
        assert_eq!(read_frame::<_, u64>(&mut r).await.unwrap(), None);
        let mut bad = &b"RAFT 1\nxxxx"[..];
        assert!(matches!(
            read_opening(&mut bad).await,
            Err(NetError::BadOpening)
        ));
        let mut huge = &[0xffu8, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            read_frame::<_, u64>(&mut huge).await,
            Err(NetError::FrameTooLarge(_))
        ));
    }
}

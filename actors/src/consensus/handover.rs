//! A planned switchover (`FAILOVER`): the primary asks the member it hands over to to stand for
//! election at once.
//!
//! openraft 0.9 has no leadership transfer, but it needs none here: a follower within the
//! leader's lease refuses votes, while the leader itself grants one to any candidate whose
//! Raft log is as complete as its own (its own vote carries no lease). So a caught-up member
//! that stands now is elected with the leader's vote in one round, and the leader steps down
//! on granting it; the leader's lease is fenced before it grants (see `server.rs`), and the
//! data-aware vote still applies. The caller makes sure the member has every write first.

use std::time::Duration;

use crate::consensus::cluster_state::NodeId;
use crate::consensus::handshake;
use crate::consensus::wire::{read_frame, write_frame, NetError, RpcRequest, RpcResponse};
use crate::replication::auth::ClusterSecret;
use crate::tls::dial::dial;
use crate::tls::TlsContext;

/// Ask the member whose control plane is at `addr` to start an election now, within `timeout`,
/// over a connection authenticated with `secret`, and over `tls` if given, like every other
/// control-plane connection.
pub async fn ask_to_elect(
    addr: &str,
    (secret, tls): (Option<&ClusterSecret>, Option<&TlsContext>),
    from: NodeId,
    term: u64,
    timeout: Duration,
) -> Result<(), NetError> {
    let call = async {
        let mut stream = dial(addr, tls).await.map_err(|source| NetError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        handshake::call(&mut stream, secret).await?;
        write_frame(&mut stream, false, &RpcRequest::Elect { from, term }).await?;
        match read_frame::<_, RpcResponse>(&mut stream).await? {
            Some(RpcResponse::Elect(Ok(()))) => Ok(()),
            Some(RpcResponse::Elect(Err(e))) => Err(NetError::Refused(e)),
            _ => Err(NetError::Mismatch),
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| NetError::Refused("no answer in time".into()))?
}

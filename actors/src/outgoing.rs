//! The node's outgoing connections to its peers (a primary's replication stream, the control
//! plane's Raft RPCs), bound to one source address when the operator asks for it
//! (`--source-addr`, Redis 7's `bind-source-addr`): on a host with several addresses, peers
//! and firewalls then see the node's connections come from the address it is known by, and a
//! test harness can tell the members' connections apart by their source.
//!
//! The source is a property of the process, as in Redis, set once at start-up: every module
//! that dials a peer reads it here, so the replicators the failover Coordinator creates and
//! the consensus layer's RPC clients need no new configuration path to carry it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use tokio::net::{TcpSocket, TcpStream};

/// The source address outgoing peer connections bind to, once set.
static SOURCE: OnceLock<IpAddr> = OnceLock::new();

/// Why the source address could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the outgoing source address is already {0}")]
pub struct AlreadySet(pub IpAddr);

/// Bind every outgoing peer connection of this process to `ip` from now on. Set once, at
/// start-up; a second, different address is refused (one process, one source, as Redis).
pub fn set_source(ip: IpAddr) -> Result<(), AlreadySet> {
    let set = *SOURCE.get_or_init(|| ip);
    match set == ip {
        true => Ok(()),
        false => Err(AlreadySet(set)),
    }
}

/// The source address outgoing peer connections bind to, if one was set.
pub fn source() -> Option<IpAddr> {
    SOURCE.get().copied()
}

/// Connect to `addr` (`host:port`, resolved now), from the source address if one was set.
/// Every address the host resolves to of the source's family is tried in turn; the last
/// failure is answered.
pub async fn connect(addr: &str) -> io::Result<TcpStream> {
    let Some(ip) = source() else {
        return TcpStream::connect(addr).await;
    };
    let mut last = io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        format!("{addr} has no address of the source address's family ({ip})"),
    );
    for target in tokio::net::lookup_host(addr).await? {
        if target.is_ipv4() != ip.is_ipv4() {
            continue;
        }
        match connect_from(ip, target).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One connection to `target` from `ip` (any free port).
async fn connect_from(ip: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(target).await
}

#[cfg(test)]
mod tests {
    use super::*;

    // The process-wide source is not set here: other tests in this binary dial peers too.
    #[tokio::test]
    async fn a_connection_comes_from_the_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let client = connect_from(source, target).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), source);
        assert_eq!(client.local_addr().unwrap().ip(), source);
    }
}

//! Dialing a peer (a replica for the replication stream, a member's control plane) over TLS
//! when the node has it: the node's own certificate as client certificate, the peer's checked
//! against `--tls-ca` for the host name it is dialed by.

use std::io;

use rustls::pki_types::ServerName;

use super::context::TlsContext;
use super::stream::Stream;

/// The host part of `host:port` (brackets of an IPv6 address removed), which the peer's
/// certificate must name.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Connect to `addr` (`host:port`, from the source address if one is set), then, with `tls`,
/// run the TLS handshake as its client.
pub async fn dial(addr: &str, tls: Option<&TlsContext>) -> io::Result<Stream> {
    let tcp = crate::outgoing::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let connector = tls.connector().ok_or_else(|| {
        io::Error::other("TLS to peers needs --tls-ca to check their certificates by")
    })?;
    let name = ServerName::try_from(host_of(addr).to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}: not a host name a certificate can name: {e}"),
        )
    })?;
    let stream = connector.connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(stream.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_host_dialed() {
        assert_eq!(host_of("db2.example:12346"), "db2.example");
        assert_eq!(host_of("127.0.0.1:7001"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7001"), "::1");
    }
}

//! Accepting a connection on a port that may speak TLS: tell a TLS client from a plain one by
//! its first byte, and run the handshake, both within one deadline. Runs per connection, off
//! the accept loop, so a slow or silent client never holds up the next one; only so many
//! handshakes run at once, so that a flood of them cannot take every core.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use super::stream::{Socket, Stream};

/// A TLS connection opens with a handshake record, whose first byte is this; no command of
/// either text protocol starts with it.
pub const HANDSHAKE_BYTE: u8 = 0x16;

/// How long a client is given to start and finish its TLS handshake, from when it is
/// accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most TLS handshakes a node runs at once; a connection that opens one past it is
/// closed. Its cryptography is the costliest thing a client can make a node do before it has
/// proved anything.
pub const MAX_HANDSHAKES: usize = 64;

/// What a plain-text RESP client (its request opens with `*`) on a TLS-only port is told
/// before it is closed: an error `redis-cli` and client libraries show as one.
pub const NOT_TLS_RESP: &[u8] = b"-ERR this port speaks TLS only; connect with TLS\r\n";

/// What any other plain-text client (the line protocol, `nc`) is told: an error line as the
/// line protocol writes them, which `kvcli` reports as an error.
pub const NOT_TLS_LINE: &[u8] = b"ERROR: this port speaks TLS only; connect with TLS\n";

/// How long a refused plain-text client's input is read before closing, so that the close
/// does not reset the connection and drop the error line unread.
const DRAIN: Duration = Duration::from_millis(100);

/// What a listening socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMode {
    /// Plain text only: the node has no TLS.
    Plain,
    /// Plain text, or TLS when the client opens with a handshake: the plain port of a node
    /// that also has a TLS port, so peers listed by that address still link over TLS.
    Either,
    /// TLS only.
    TlsOnly,
}

/// Why an accepted connection did not become a session.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// A plain-text client on a TLS-only port; it was told so.
    #[error("a plain-text client on a TLS-only port; told it to use TLS and closed")]
    NotTls,
    /// No (whole) handshake in time.
    #[error("no TLS handshake within {} ms", HANDSHAKE_TIMEOUT.as_millis())]
    Timeout,
    /// The client left before saying anything.
    #[error("closed before the TLS handshake")]
    Closed,
    /// The handshake failed: an untrusted or missing certificate, no common protocol ...
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    /// [`MAX_HANDSHAKES`] were running already.
    #[error("{MAX_HANDSHAKES} TLS handshakes running already; closed")]
    Busy,
}

/// Make `tcp`, accepted on a port in `mode`, a [`Stream`]: as it is on a plain port; on the
/// others, TLS by `acceptor` when its first byte opens a handshake, which then needs one of
/// the `handshakes` places. Telling which and the handshake share one deadline,
/// [`HANDSHAKE_TIMEOUT`] from now.
pub async fn accept(
    tcp: TcpStream,
    mode: PortMode,
    acceptor: Option<TlsAcceptor>,
    handshakes: &Semaphore,
) -> Result<Stream, AcceptError> {
    // Before the handshake, whose flights then go out without waiting for acknowledgements.
    // Best effort: a socket that cannot take it is gone, and its first read will say so.
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = acceptor.filter(|_| mode != PortMode::Plain) else {
        return Ok(Stream::Plain(tcp));
    };
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut first = [0u8; 1];
    let peeked = timeout_at(deadline, tcp.peek(&mut first)).await;
    match (peeked, mode) {
        // Silence on a port that also speaks plain text is a plain client not typing yet.
        (Err(_), PortMode::Either) => return Ok(Stream::Plain(tcp)),
        (Err(_), _) => return Err(AcceptError::Timeout),
        (Ok(Ok(0)), _) => return Err(AcceptError::Closed),
        (Ok(Err(error)), _) => return Err(AcceptError::Handshake(error)),
        (Ok(Ok(_)), PortMode::Either) if first[0] != HANDSHAKE_BYTE => {
            return Ok(Stream::Plain(tcp))
        }
        (Ok(Ok(_)), _) if first[0] != HANDSHAKE_BYTE => {
            refuse_plain(tcp, first[0] == b'*').await;
            return Err(AcceptError::NotTls);
        }
        (Ok(Ok(_)), _) => {}
    }
    // Taken only once a handshake opens: a silent connection costs no place.
    let Ok(_place) = handshakes.try_acquire() else {
        return Err(AcceptError::Busy);
    };
    match timeout_at(deadline, acceptor.accept(Socket::from(tcp))).await {
        Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls.into()))),
        Ok(Err(error)) => Err(AcceptError::Handshake(error)),
        Err(_) => Err(AcceptError::Timeout),
    }
}

/// Tell a plain-text client, in its protocol (`resp`: RESP), that this port speaks TLS only,
/// then close.
async fn refuse_plain(mut tcp: TcpStream, resp: bool) {
    let told = match resp {
        true => NOT_TLS_RESP,
        false => NOT_TLS_LINE,
    };
    // The client may already be gone; there is nobody left to tell.
    let _ = tcp.write_all(told).await;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(DRAIN, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

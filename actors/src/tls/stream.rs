//! A connection that is either plain TCP or TLS over TCP, and its two halves.
//!
//! An enum rather than a boxed trait object: the plain path, which most nodes run, costs one
//! match per read or write and nothing else, and neither path allocates per request. A plain
//! stream splits with `TcpStream::into_split` as before; a TLS stream, whose reads and writes
//! share one TLS session, with `tokio::io::split`.
//!
//! A client's TLS handshake runs on a thread of its own and its session on another; tokio
//! ties a socket to the thread it was registered on, so in between a stream is [`Parked`]:
//! its socket a std socket, registered nowhere.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// A connection, plain or TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, as accepted or dialed (boxed: the TLS session is large, and a stream is
    /// moved a few times before it settles).
    Tls(Box<TlsStream<Socket>>),
}

/// The TCP socket under a TLS session: live on the thread that polls it, or parked while the
/// session moves to another thread (one of the two, always).
pub struct Socket {
    /// Registered with this thread's reactor.
    live: Option<TcpStream>,
    /// A std socket, registered nowhere, on its way to another thread.
    parked: Option<std::net::TcpStream>,
}

impl From<TcpStream> for Socket {
    fn from(tcp: TcpStream) -> Socket {
        Socket {
            live: Some(tcp),
            parked: None,
        }
    }
}

/// What a parked socket answers to reads and writes: nothing may use it before it is resumed.
fn parked() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket parked between threads")
}

impl Socket {
    /// The live socket, or the error a parked one answers.
    fn live(&self) -> io::Result<&TcpStream> {
        self.live.as_ref().ok_or_else(parked)
    }

    /// The live socket to poll, or the error a parked one answers.
    fn poll_live(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        self.get_mut()
            .live
            .as_mut()
            .map(Pin::new)
            .ok_or_else(parked)
    }

    /// Deregister from this thread's reactor.
    fn park(&mut self) -> io::Result<()> {
        if let Some(tcp) = self.live.take() {
            self.parked = Some(tcp.into_std()?);
        }
        Ok(())
    }

    /// Register with this thread's reactor (from within a runtime).
    fn resume(&mut self) -> io::Result<()> {
        if let Some(tcp) = self.parked.take() {
            self.live = Some(TcpStream::from_std(tcp)?);
        }
        Ok(())
    }
}

/// Ready with the error of a parked socket, or what `poll` answers for the live one.
macro_rules! live {
    ($socket:expr, $tcp:ident => $poll:expr) => {
        match $socket.poll_live() {
            Ok($tcp) => $poll,
            Err(error) => Poll::Ready(Err(error)),
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        live!(self, tcp => tcp.poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        live!(self, tcp => tcp.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        live!(self, tcp => tcp.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        live!(self, tcp => tcp.poll_shutdown(cx))
    }
}

/// A [`Stream`] between threads: its socket registered nowhere. Made on the thread that
/// accepted it and ran its handshake, resumed on the thread its session runs on.
pub enum Parked {
    /// Plain TCP.
    Plain(std::net::TcpStream),
    /// TLS, its socket parked.
    Tls(Box<TlsStream<Socket>>),
}

impl Parked {
    /// The stream again, registered with this thread's reactor (call it from within a
    /// runtime).
    pub fn resume(self) -> io::Result<Stream> {
        match self {
            Parked::Plain(tcp) => Ok(Stream::Plain(TcpStream::from_std(tcp)?)),
            Parked::Tls(mut tls) => {
                tls.get_mut().0.resume()?;
                Ok(Stream::Tls(tls))
            }
        }
    }
}

/// The reading half of a [`Stream`].
pub enum ReadHalf {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS: shares the TLS session with its [`WriteHalf`].
    Tls(tokio::io::ReadHalf<TlsStream<Socket>>),
}

/// The writing half of a [`Stream`].
pub enum WriteHalf {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS: shares the TLS session with its [`ReadHalf`].
    Tls(tokio::io::WriteHalf<TlsStream<Socket>>),
}

impl Stream {
    /// The TCP socket underneath, for its addresses, options and descriptor.
    pub fn tcp(&self) -> io::Result<&TcpStream> {
        match self {
            Stream::Plain(tcp) => Ok(tcp),
            Stream::Tls(tls) => tls.get_ref().0.live(),
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Whether the other end showed a certificate that the node's `--tls-ca` signed: rustls
    /// keeps the peer's certificate only once its verifier accepted it, and every verifier of
    /// the node checks against `--tls-ca` (without it, none is asked for).
    pub fn peer_certified(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.get_ref().1.peer_certificates().is_some(),
        }
    }

    /// Deregister from this thread's reactor, to be [resumed](Parked::resume) on another.
    pub fn park(self) -> io::Result<Parked> {
        match self {
            Stream::Plain(tcp) => Ok(Parked::Plain(tcp.into_std()?)),
            Stream::Tls(mut tls) => {
                tls.get_mut().0.park()?;
                Ok(Parked::Tls(tls))
            }
        }
    }

    /// Split into halves that a reader and a writer can own apart.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Stream::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }
}

impl WriteHalf {
    /// Write all of `bytes` and flush them: TLS keeps what the socket did not take yet in its
    /// session, and only a flush sends it (for plain TCP the flush does nothing).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// Write what the connection takes now, without waiting (a last word to a client that may
    /// not be reading): plain TCP takes what its socket buffer has room for; TLS encrypts into
    /// its session and hands the socket what it takes now. Answers how much was taken.
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Plain(write) => write.try_write(bytes),
            WriteHalf::Tls(_) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let taken = match Pin::new(&mut *self).poll_write(&mut cx, bytes) {
                    Poll::Ready(taken) => taken?,
                    Poll::Pending => 0,
                };
                // Best effort: what the socket does not take now is dropped with the half.
                let _ = Pin::new(&mut *self).poll_flush(&mut cx);
                Ok(taken)
            }
        }
    }

    /// End the stream to the other end now, without waiting, and drop this half: TLS sends
    /// its close notification if the socket takes it and shuts the socket's writing side
    /// (dropping a TLS write half alone does neither: the read half still holds the socket);
    /// plain TCP's write half shuts the writing side as it drops.
    pub fn try_close(mut self) {
        if let WriteHalf::Tls(_) = self {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            // Best effort: a client that reads nothing is not waited for.
            let _ = Pin::new(&mut self).poll_shutdown(&mut cx);
        }
    }
}

/// Pass a poll to whichever variant `$value` is.
macro_rules! either {
    ($value:expr, $inner:ident => $poll:expr) => {
        match $value {
            Self::Plain($inner) => $poll,
            Self::Tls($inner) => $poll,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        either!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

//! Blocking connections, for the work around the measured load: prefill and the lag probe.
//!
//! They run on threads of their own, where blocking is the simplest way to wait; the
//! measured load uses the same sockets from an event loop instead (see `load`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kvstore::client::{connect_stream, ClientError};
use kvstore::tls_client::ClientTls;
use kvstore::tls_stream::Stream;
use rustls::ClientConnection;

use crate::args::{Args, Proto};
use crate::read_buf::ReadBuf;
use crate::reply::Reply;
use crate::request::push_command;

/// How long to wait for each connection: a node that does not answer by then is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply slower than this means the node is stuck: the connection counts as failed, so
/// that the benchmark ends instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to the node, plain or TLS, with a read buffer so that many small replies
/// cost few system calls.
pub struct Conn {
    /// The connection, in blocking mode with `IO_TIMEOUT` on every read and write.
    stream: Stream,
    /// Replies read and not yet taken.
    buf: ReadBuf,
}

impl Conn {
    /// Connect with a timeout, over TLS if `tls` is given (the handshake done here, before
    /// anything is measured).
    pub fn open(addr: &str, tls: Option<&ClientTls>) -> Result<Conn, ClientError> {
        let stream = connect_stream(addr, CONNECT_TIMEOUT, tls)?;
        stream.socket().set_read_timeout(Some(IO_TIMEOUT))?;
        stream.socket().set_write_timeout(Some(IO_TIMEOUT))?;
        let buf = ReadBuf::new();
        Ok(Conn { stream, buf })
    }

    /// Connect to `addr`, and log in with `args`'s credentials if it has some: every
    /// connection of a run, measured or not, logs in before anything is sent on it. A
    /// refused login is [`ClientError::Auth`].
    pub fn open_as(addr: &str, args: &Args, tls: Option<&ClientTls>) -> Result<Conn, ClientError> {
        let mut conn = Conn::open(addr, tls)?;
        if let Some(password) = &args.pass {
            let mut words: Vec<&[u8]> = vec![b"AUTH"];
            words.extend(args.user.as_deref().map(str::as_bytes));
            words.push(password.as_bytes());
            let mut request = Vec::new();
            push_command(&mut request, args.proto, &words);
            let mut text = Vec::new();
            if conn.request(args.proto, &request, &mut text)? == Reply::Error {
                let refusal = String::from_utf8_lossy(&text).into_owned();
                return Err(ClientError::Auth(refusal));
            }
        }
        Ok(conn)
    }

    /// The socket, non-blocking, and the TLS state if any, for the event loop of the
    /// measured load, which goes on with the connection where this one left it.
    pub fn into_parts(self) -> io::Result<(TcpStream, Option<ClientConnection>)> {
        let (socket, tls) = self.stream.into_parts();
        socket.set_nonblocking(true)?;
        Ok((socket, tls))
    }

    /// Write encoded requests, all of them.
    pub fn send(&mut self, requests: &[u8]) -> io::Result<()> {
        self.stream.write_all(requests)
    }

    /// Send one encoded request and read its reply, its text into `line`.
    pub fn request(
        &mut self,
        proto: Proto,
        request: &[u8],
        line: &mut Vec<u8>,
    ) -> io::Result<Reply> {
        self.send(request)?;
        self.read_reply(proto, line)
    }

    /// Read one whole reply; its text (see `reply::Parsed::text`) is left in `line`.
    pub fn read_reply(&mut self, proto: Proto, line: &mut Vec<u8>) -> io::Result<Reply> {
        loop {
            if let Some((reply, text)) = self.buf.next_reply(proto)? {
                line.clear();
                line.extend_from_slice(text);
                return Ok(reply);
            }
            match self.stream.read(self.buf.space()) {
                Ok(read) => self.buf.filled(read)?,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
}

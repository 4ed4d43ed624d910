//! A client's connection to a server, plain TCP or TLS, as one blocking stream or as a reading
//! and a writing half that two threads can use at once.
//!
//! A plain socket splits into two handles on the same socket, as it always did. A TLS
//! connection cannot: its one rustls state encrypts what is written and decrypts what is
//! read. Its halves share that state behind a mutex, and each half has its own handle on the
//! socket, so that neither ever holds the state while it waits on the network: the reading
//! half reads raw bytes without it and takes it only to decrypt them ([`Incoming`]); the
//! writing half takes it to encrypt, and writes with it released. What the reading side makes
//! rustls want to send (a key update's answer) waits in the shared state and goes out with the
//! next write, which is when TLS 1.3 requires it.
//!
//! [`Incoming`] also drives a TLS connection from an event loop (`kvbench`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use crate::tls_client::{ClientTls, TlsError};

/// One connection, used by one thread.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, its handshake done.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Shake hands over `socket`, connected to `addr`, as `tls` says, within `timeout` for
    /// every read and write of the handshake; the socket's timeouts are cleared afterwards.
    pub fn handshake(
        mut socket: TcpStream,
        tls: &ClientTls,
        addr: &str,
        timeout: Duration,
    ) -> Result<Stream, TlsError> {
        let failed = |reason: String| TlsError::Handshake {
            addr: addr.to_string(),
            reason,
        };
        let mut connection = tls.connection(addr)?;
        let io_failed = |error: io::Error| failed(handshake_reason(error));
        socket.set_read_timeout(Some(timeout)).map_err(io_failed)?;
        socket.set_write_timeout(Some(timeout)).map_err(io_failed)?;
        while connection.is_handshaking() {
            connection.complete_io(&mut socket).map_err(io_failed)?;
        }
        socket.set_read_timeout(None).map_err(io_failed)?;
        socket.set_write_timeout(None).map_err(io_failed)?;
        Ok(Stream::Tls(Box::new(StreamOwned::new(connection, socket))))
    }

    /// The socket under the connection (to set options on it).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    /// The socket and, for TLS, the connection's state, to go on with them elsewhere (an
    /// event loop). Nothing is lost: rustls keeps no bytes outside its state.
    pub fn into_parts(self) -> (TcpStream, Option<ClientConnection>) {
        match self {
            Stream::Plain(socket) => (socket, None),
            Stream::Tls(tls) => {
                let StreamOwned { conn, sock } = *tls;
                (sock, Some(conn))
            }
        }
    }

    /// A reading and a writing half, for two threads.
    pub fn split(self) -> io::Result<(ReadHalf, WriteHalf)> {
        let (socket, connection) = self.into_parts();
        let reader = socket.try_clone()?;
        Ok(match connection {
            None => (ReadHalf::Plain(reader), WriteHalf::Plain(socket)),
            Some(connection) => {
                let shared = Arc::new(Mutex::new(connection));
                let read = TlsRead {
                    shared: shared.clone(),
                    socket: reader,
                    incoming: Incoming::new(),
                };
                let write = TlsWrite {
                    shared,
                    socket,
                    outgoing: Vec::new(),
                };
                (ReadHalf::Tls(Box::new(read)), WriteHalf::Tls(write))
            }
        })
    }
}

/// Why a handshake failed, in words: rustls's reason for a TLS error, and a hint for what a
/// server that is not speaking TLS looks like.
fn handshake_reason(error: io::Error) -> String {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("{error} (is that port speaking TLS?)")
        }
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            format!("the server closed the connection ({error}; is that port speaking TLS?)")
        }
        _ => match error.get_ref() {
            Some(inner) => inner.to_string(),
            None => error.to_string(),
        },
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// The reading half of a connection.
pub enum ReadHalf {
    /// A handle on a plain socket.
    Plain(TcpStream),
    /// A handle on a TLS connection's socket, decrypting with its shared state.
    Tls(Box<TlsRead>),
}

/// The writing half of a connection.
pub enum WriteHalf {
    /// A handle on a plain socket.
    Plain(TcpStream),
    /// A handle on a TLS connection's socket, encrypting with its shared state.
    Tls(TlsWrite),
}

/// The reading half of a TLS connection.
pub struct TlsRead {
    /// The connection's state, shared with the writing half.
    shared: Arc<Mutex<ClientConnection>>,
    /// This half's handle on the socket.
    socket: TcpStream,
    /// Bytes read and not yet decrypted.
    incoming: Incoming,
}

/// The writing half of a TLS connection.
pub struct TlsWrite {
    /// The connection's state, shared with the reading half.
    shared: Arc<Mutex<ClientConnection>>,
    /// This half's handle on the socket.
    socket: TcpStream,
    /// Encrypted bytes on their way to the socket (kept to reuse its allocation).
    outgoing: Vec<u8>,
}

/// The shared state, or an error if a thread panicked holding it.
fn lock(shared: &Mutex<ClientConnection>) -> io::Result<MutexGuard<'_, ClientConnection>> {
    shared
        .lock()
        .map_err(|_| io::Error::other("a thread failed while using this TLS connection"))
}

impl ReadHalf {
    /// The socket this half reads from (to set a read timeout on it).
    pub fn socket(&self) -> &TcpStream {
        match self {
            ReadHalf::Plain(socket) => socket,
            ReadHalf::Tls(tls) => &tls.socket,
        }
    }
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let tls = match self {
            ReadHalf::Plain(socket) => return socket.read(buf),
            ReadHalf::Tls(tls) => tls,
        };
        loop {
            if let Some(read) = tls.incoming.read(&mut *lock(&tls.shared)?, buf)? {
                return Ok(read);
            }
            let read = tls.socket.read(tls.incoming.space())?;
            tls.incoming.filled(&mut *lock(&tls.shared)?, read)?;
        }
    }
}

impl Write for WriteHalf {
    /// Plain: a write to the socket. TLS: all of `buf`, encrypted and written to the socket
    /// (as a plain `write_all`), so that callers buffer above it as they do over plain TCP.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let tls = match self {
            WriteHalf::Plain(socket) => return socket.write(buf),
            WriteHalf::Tls(tls) => tls,
        };
        {
            let mut connection = lock(&tls.shared)?;
            connection.writer().write_all(buf)?;
            tls.outgoing.clear();
            take_outgoing(&mut connection, &mut tls.outgoing)?;
        }
        tls.socket.write_all(&tls.outgoing)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(socket) => socket.flush(),
            WriteHalf::Tls(_) => Ok(()),
        }
    }
}

/// Append everything `connection` has to send (encrypted records) to `out`.
pub fn take_outgoing(connection: &mut ClientConnection, out: &mut Vec<u8>) -> io::Result<()> {
    while connection.wants_write() {
        connection.write_tls(out)?;
    }
    Ok(())
}

/// Bytes a TLS connection read from its socket and has not yet given rustls to decrypt,
/// which takes them a record at a time and only while it has no plaintext waiting.
pub struct Incoming {
    /// The buffer; `bytes[start..end]` is read and not yet decrypted.
    bytes: Vec<u8>,
    /// Where the bytes not yet decrypted begin.
    start: usize,
    /// Where they end.
    end: usize,
}

/// How many bytes one read from the socket may take: a TLS record and then some.
const INCOMING: usize = 64 * 1024;

impl Default for Incoming {
    fn default() -> Incoming {
        Incoming::new()
    }
}

impl Incoming {
    /// An empty buffer.
    pub fn new() -> Incoming {
        Incoming {
            bytes: vec![0; INCOMING],
            start: 0,
            end: 0,
        }
    }

    /// Decrypted bytes into `buf`: `Some(n)` with `n` bytes (0: the server closed the
    /// connection), or `None` when more must first be read from the socket into
    /// [`Incoming::space`]. An error is the server's or rustls's: the connection is done.
    pub fn read(
        &mut self,
        connection: &mut ClientConnection,
        buf: &mut [u8],
    ) -> io::Result<Option<usize>> {
        loop {
            match connection.reader().read(buf) {
                Ok(read) => return Ok(Some(read)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            if self.start == self.end {
                return Ok(None);
            }
            let taken = connection.read_tls(&mut &self.bytes[self.start..self.end])?;
            // rustls takes nothing once the server has said it is closing: the rest is moot.
            self.start = match taken {
                0 => self.end,
                taken => self.start + taken,
            };
            connection.process_new_packets().map_err(tls_failure)?;
        }
    }

    /// Room to read the socket's next bytes into; call only when [`Incoming::read`] asked.
    pub fn space(&mut self) -> &mut [u8] {
        (self.start, self.end) = (0, 0);
        &mut self.bytes[..]
    }

    /// `read` bytes were read into [`Incoming::space`]; 0 is the end of the stream, which
    /// rustls is told (a server that closes without saying so is then an error).
    pub fn filled(&mut self, connection: &mut ClientConnection, read: usize) -> io::Result<()> {
        if read == 0 {
            connection.read_tls(&mut io::empty())?;
            connection.process_new_packets().map_err(tls_failure)?;
        }
        self.end = read;
        Ok(())
    }
}

/// A TLS error on an open connection as an I/O error, with what to do about the one a user
/// can fix: a server that wants a client certificate says so only after the handshake.
fn tls_failure(error: rustls::Error) -> io::Error {
    let hint = match error {
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            " (the server asks for a client certificate: give --tls-cert and --tls-key)"
        }
        _ => "",
    };
    io::Error::new(io::ErrorKind::InvalidData, format!("{error}{hint}"))
}

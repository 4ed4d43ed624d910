//! A small blocking client for the line protocol, used by `kvcli`, tests and scripts.
//!
//! One request is one line and gets one reply line. [`Client::send`] and [`Client::read_reply`]
//! let a caller pipeline many requests before reading their replies.
//!
//! Position tokens ([`Client::last_pos`], [`Client::wait_pos`], [`Client::get_after`]) let a
//! read on a replica show at least what a connection to another node has shown: the token of
//! a write on the primary, waited for on a replica. [`crate::replica_reads`] builds reads from
//! replicas with read-your-writes on them.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use thiserror::Error;

use crate::tls_client::{ClientTls, TlsError};
use crate::tls_stream::{ReadHalf, Stream, WriteHalf};

/// A position token as `LASTPOS` answers it (`<epoch>:<replication id>:<offset>`, and the
/// history it continues when it continues one): the engine's own type, so that the client
/// parses and prints tokens exactly as the nodes do.
pub use kv_actors::replication::position_token::PositionToken;

/// What can go wrong talking to a node.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source} (is kvnode running there?)")]
    Connect { addr: String, source: io::Error },
    #[error("connection to the node failed: {0}")]
    Io(#[from] io::Error),
    #[error("the node closed the connection")]
    Closed,
    #[error("a request is one line: it cannot contain a newline")]
    Newline,
    #[error("{0}")]
    Server(String),
    /// `WAITPOS` or `GET ... AFTER` ran out of time before the node reached the position: it
    /// may later (read elsewhere, or wait longer).
    #[error("{0}")]
    Timeout(String),
    /// The node's history does not contain the position and never will (`NOHISTORY`): read
    /// from the primary instead.
    #[error("{0}")]
    NoHistory(String),
    #[error("unexpected reply {0:?}")]
    Unexpected(String),
    /// The replicas to read from could not be found (`kvcli --read-from-replicas`).
    #[error("cannot find the replicas to read from: {0}")]
    Discovery(String),
    /// The node refused the credentials (`WRONGPASS`), or they cannot be sent.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The TLS options, their files, or the handshake.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The environment variable clients read the password from (`kvcli`, `kvbench`), so that it
/// need not be on their command line.
pub const PASSWORD_ENV: &str = "KVSTORE_PASSWORD";
/// The environment variable clients read the user from.
pub const USER_ENV: &str = "KVSTORE_USER";

/// A user and a password to log in with (`AUTH`), on a node started with `--requirepass` or
/// `--users-file`. Its `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user; `None` logs in as `default` (`--requirepass`'s).
    pub user: Option<String>,
    /// The password.
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Log in as `user` (none: `default`) with `password`.
    pub fn new(user: Option<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user,
            password: password.into(),
        }
    }

    /// The line-protocol `AUTH` request, or why these credentials cannot be sent in it: a
    /// request is one line of words, so neither may hold a blank or a line break (over RESP
    /// they may: use redis-cli).
    pub fn auth_line(&self) -> Result<Vec<u8>, ClientError> {
        let words: Vec<&str> = self
            .user
            .iter()
            .map(String::as_str)
            .chain([self.password.as_str()])
            .collect();
        if words
            .iter()
            .any(|w| w.is_empty() || w.contains([' ', '\t', '\n', '\r']))
        {
            return Err(ClientError::Auth(
                "a user or password that is empty or holds a blank cannot be sent over the line \
                 protocol; use redis-cli for it"
                    .into(),
            ));
        }
        Ok(format!("AUTH {}", words.join(" ")).into_bytes())
    }
}

/// A connection to one node.
pub struct Client {
    writer: RequestWriter,
    reader: ReplyReader,
}

/// The sending half of a connection, for callers that write requests on one thread while
/// another reads the replies.
pub struct RequestWriter(io::BufWriter<WriteHalf>);

/// The receiving half of a connection.
pub struct ReplyReader(BufReader<ReadHalf>);

impl RequestWriter {
    /// Queue one request line (without its `\n`). A final `\r` (a script with Windows line
    /// endings) is not sent: the line protocol would drop it anyway, and a first line ended
    /// by `\r\n` would make the node take the connection for a Redis client's.
    pub fn send(&mut self, line: &[u8]) -> Result<(), ClientError> {
        if line.contains(&b'\n') {
            return Err(ClientError::Newline);
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.0.write_all(line)?;
        self.0.write_all(b"\n")?;
        Ok(())
    }

    /// Send everything queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        Ok(self.0.flush()?)
    }
}

impl ReplyReader {
    /// Read the next reply line, without its `\n`.
    pub fn read_reply(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut line = Vec::new();
        if self.0.read_until(b'\n', &mut line)? == 0 {
            return Err(ClientError::Closed);
        }
        if line.pop() != Some(b'\n') {
            return Err(ClientError::Closed);
        }
        Ok(line)
    }
}

/// Whether a reply line is an error.
pub fn is_error(reply: &[u8]) -> bool {
    reply.starts_with(b"ERROR")
}

impl Client {
    /// Connect to `addr` (`host:port`), waiting at most `timeout` for the connection.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        Client::connect_with(addr, timeout, None, None)
    }

    /// Connect to `addr` as [`Client::connect`] does, then log in with `credentials`, if any.
    pub fn connect_as(
        addr: &str,
        timeout: Duration,
        credentials: Option<&Credentials>,
    ) -> Result<Client, ClientError> {
        Client::connect_with(addr, timeout, None, credentials)
    }

    /// Connect to `addr` over TLS if `tls` is given (plain TCP if not), waiting at most
    /// `timeout` for the connection and then for each step of the handshake, then log in with
    /// `credentials`, if any.
    pub fn connect_with(
        addr: &str,
        timeout: Duration,
        tls: Option<&ClientTls>,
        credentials: Option<&Credentials>,
    ) -> Result<Client, ClientError> {
        let (reader, writer) = connect_stream(addr, timeout, tls)?.split()?;
        let mut client = Client {
            reader: ReplyReader(BufReader::new(reader)),
            writer: RequestWriter(io::BufWriter::new(writer)),
        };
        if let Some(credentials) = credentials {
            client.auth(credentials)?;
        }
        Ok(client)
    }

    /// `AUTH [user] password`: log this connection in; a refusal is [`ClientError::Auth`].
    pub fn auth(&mut self, credentials: &Credentials) -> Result<(), ClientError> {
        let reply = self.request(&credentials.auth_line()?)?;
        match reply.as_slice() {
            b"OK" => Ok(()),
            _ => Err(ClientError::Auth(lossy(&reply))),
        }
    }

    /// Queue one request line (without its `\n`); it goes out at the next [`Client::flush`] or
    /// [`Client::read_reply`].
    pub fn send(&mut self, line: &[u8]) -> Result<(), ClientError> {
        self.writer.send(line)
    }

    /// Send everything queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.writer.flush()
    }

    /// Read the next reply line, without its `\n`; sends anything still queued first.
    pub fn read_reply(&mut self) -> Result<Vec<u8>, ClientError> {
        self.flush()?;
        self.reader.read_reply()
    }

    /// Split into a sending and a receiving half, to pipeline from two threads.
    pub fn into_split(self) -> (RequestWriter, ReplyReader) {
        (self.writer, self.reader)
    }

    /// Send one request and read its reply line, whatever it says.
    pub fn request(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.send(line)?;
        self.read_reply()
    }

    /// Send requests in one round trip and read their reply lines, in order.
    pub fn pipeline(&mut self, lines: &[&[u8]]) -> Result<Vec<Vec<u8>>, ClientError> {
        for line in lines {
            self.send(line)?;
        }
        lines.iter().map(|_| self.read_reply()).collect()
    }

    /// Send one request; an `ERROR` reply becomes an error ([`server_error`]).
    fn call(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        let reply = self.request(line)?;
        if is_error(&reply) {
            return Err(server_error(&reply));
        }
        Ok(reply)
    }

    /// Give up on a reply that takes longer than `timeout` to come (`None`: wait as long as it
    /// takes, the default): the read fails with [`ClientError::Io`], and the connection must
    /// then be dropped, since the late reply may still arrive.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.reader.0.get_ref().socket().set_read_timeout(timeout)?)
    }

    /// `PUT key value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let line = [b"PUT ", key, b" ", value].concat();
        expect(self.call(&line)?, b"OK")
    }

    /// `GET key`: `None` when the key does not exist.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(value(self.call(&[b"GET ", key].concat())?))
    }

    /// `DEL key`: whether the key existed.
    pub fn del(&mut self, key: &[u8]) -> Result<bool, ClientError> {
        let reply = self.call(&[b"DEL ", key].concat())?;
        match reply.as_slice() {
            b"OK" => Ok(true),
            b"NOT_FOUND" => Ok(false),
            _ => Err(ClientError::Unexpected(lossy(&reply))),
        }
    }

    /// `PING`.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        expect(self.call(b"PING")?, b"PONG")
    }

    /// `LASTPOS`: the token of the latest position this connection's replies have shown it
    /// (its writes, and the data its reads saw); `0:-:0` before it has seen anything.
    pub fn last_pos(&mut self) -> Result<PositionToken, ClientError> {
        parse_token(&self.call(b"LASTPOS")?)
    }

    /// `WAITPOS token timeout_ms`: returns once this node's data is safe up to `token`'s
    /// position. Fails with [`ClientError::Timeout`] when `timeout_ms` passes first (0 waits
    /// as long as it takes) and [`ClientError::NoHistory`] at once when this node's history
    /// does not contain the position.
    pub fn wait_pos(&mut self, token: &PositionToken, timeout_ms: u64) -> Result<(), ClientError> {
        let line = format!("WAITPOS {token} {timeout_ms}");
        expect(self.call(line.as_bytes())?, b"OK")
    }

    /// `GET key AFTER token timeout_ms`: the value once this node has reached `token`'s
    /// position (`None` when the key does not exist then), in one round trip; fails as
    /// [`Client::wait_pos`] does, without a value, when it does not reach it.
    pub fn get_after(
        &mut self,
        key: &[u8],
        token: &PositionToken,
        timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let mut line = [b"GET ", key].concat();
        line.extend_from_slice(format!(" AFTER {token} {timeout_ms}").as_bytes());
        Ok(value(self.call(&line)?))
    }
}

/// A connection to `addr` (`host:port`) with TCP_NODELAY (a lone request must not wait for
/// Nagle), over TLS if `tls` is given: `timeout` bounds the connection and each step of the
/// handshake.
pub fn connect_stream(
    addr: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Stream, ClientError> {
    let connect_error = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for candidate in addr.to_socket_addrs().map_err(connect_error)? {
        match TcpStream::connect_timeout(&candidate, timeout) {
            Ok(socket) => {
                socket.set_nodelay(true)?;
                return Ok(match tls {
                    None => Stream::Plain(socket),
                    Some(tls) => Stream::handshake(socket, tls, addr, timeout)?,
                });
            }
            Err(error) => last = error,
        }
    }
    Err(connect_error(last))
}

/// The error an `ERROR` reply line stands for: a position wait's `TIMEOUT` and `NOHISTORY`
/// have their own variants, so that a caller can read elsewhere; any other is
/// [`ClientError::Server`].
pub fn server_error(reply: &[u8]) -> ClientError {
    let text = lossy(reply);
    match text.strip_prefix("ERROR: ") {
        Some(rest) if rest.starts_with("TIMEOUT: ") => ClientError::Timeout(text),
        Some(rest) if rest.starts_with("NOHISTORY: ") => ClientError::NoHistory(text),
        _ => ClientError::Server(text),
    }
}

/// A position token from a `LASTPOS` reply line.
pub fn parse_token(reply: &[u8]) -> Result<PositionToken, ClientError> {
    std::str::from_utf8(reply)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ClientError::Unexpected(lossy(reply)))
}

/// A `GET` reply's value: `None` for `NOT_FOUND`.
pub fn value(reply: Vec<u8>) -> Option<Vec<u8>> {
    (reply != b"NOT_FOUND").then_some(reply)
}

fn expect(reply: Vec<u8>, wanted: &[u8]) -> Result<(), ClientError> {
    if reply == wanted {
        Ok(())
    } else {
        Err(ClientError::Unexpected(lossy(&reply)))
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

//! A small blocking client for the line protocol, used by `kvcli`, tests and scripts.
//!
//! One request is one line and gets one reply line. [`Client::send`] and [`Client::read_reply`]
//! let a caller pipeline many requests before reading their replies.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use thiserror::Error;

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
    #[error("unexpected reply {0:?}")]
    Unexpected(String),
}

/// A connection to one node.
pub struct Client {
    writer: RequestWriter,
    reader: ReplyReader,
}

/// The sending half of a connection, for callers that write requests on one thread while
/// another reads the replies.
pub struct RequestWriter(io::BufWriter<TcpStream>);

/// The receiving half of a connection.
pub struct ReplyReader(BufReader<TcpStream>);

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
        let connect_error = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
        for candidate in addr.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Client {
                        reader: ReplyReader(BufReader::new(stream.try_clone()?)),
                        writer: RequestWriter(io::BufWriter::new(stream)),
                    });
                }
                Err(error) => last = error,
            }
        }
        Err(connect_error(last))
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

    /// Send one request; an `ERROR` reply becomes [`ClientError::Server`].
    fn call(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        let reply = self.request(line)?;
        if is_error(&reply) {
            return Err(ClientError::Server(lossy(&reply)));
        }
        Ok(reply)
    }

    /// `PUT key value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let line = [b"PUT ", key, b" ", value].concat();
        expect(self.call(&line)?, b"OK")
    }

    /// `GET key`: `None` when the key does not exist.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        let reply = self.call(&[b"GET ", key].concat())?;
        Ok((reply != b"NOT_FOUND").then_some(reply))
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

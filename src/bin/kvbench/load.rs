//! The measured load: every connection's loop of batches, all on one event loop.
//!
//! Every connection is a future of one task on a current-thread runtime, polled when its
//! socket is ready, as redis-benchmark's connections share one thread: on a small machine
//! the client then does not spend the cores the server needs on switching between threads
//! of its own. Each keeps `--pipeline` requests in flight: it writes a batch with one write,
//! then reads the batch's replies, and a request's latency is the time from its batch's
//! write to its reply. The cycle workloads run a loop of their own on the same event loop
//! (see `cycle`).

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use kvstore::tls_stream::{take_outgoing, Incoming};
use rustls::ClientConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::args::{Args, Proto, Workload, DEFAULT_REQUESTS};
use crate::conn::IO_TIMEOUT;
use crate::cycle;
use crate::read_buf::ReadBuf;
use crate::reply::Reply;
use crate::request::{after_words, push_request};
use crate::stats::Stats;

/// Counters all connections share: requests handed out (so that `--requests` is a
/// total however fast each connection is) and answered (for the progress line).
pub struct Shared {
    /// Requests claimed so far (may overshoot the total by the last claims, which get none).
    pub issued: AtomicU64,
    /// Requests answered so far.
    pub answered: AtomicU64,
    /// Connections still sending, so the progress line and the lag probe know when to stop.
    pub running: AtomicUsize,
}

/// A connection as the event loop takes it over: its socket (non-blocking) and, over TLS,
/// the state of the session its handshake opened.
pub type Parts = (std::net::TcpStream, Option<ClientConnection>);

/// One measured connection's sockets: to the node, and for the cycle workloads that read
/// back, to `--replica`.
pub struct Sockets {
    /// The connection to the node.
    pub node: Parts,
    /// The connection to the replica, if the workload reads there.
    pub replica: Option<Parts>,
}

/// When a connection stops claiming requests: after `--duration`, or once `--requests` are
/// claimed by all connections together.
pub struct Budget {
    /// The end of a `--duration` run.
    deadline: Option<Instant>,
    /// The requests of a `--requests` run, over all connections.
    total: u64,
}

impl Budget {
    /// The budget the command line asks for, its clock starting now.
    pub fn new(args: &Args) -> Budget {
        let deadline = args
            .duration
            .map(|secs| Instant::now() + Duration::from_secs(secs));
        let total = args.requests.unwrap_or(DEFAULT_REQUESTS);
        Budget { deadline, total }
    }

    /// Claim up to `want` more requests: how many this connection may send (0: it is done).
    pub fn claim(&self, shared: &Shared, want: u64) -> u64 {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => 0,
            Some(_) => want,
            None => {
                let before = shared.issued.fetch_add(want, Relaxed);
                self.total.saturating_sub(before).min(want)
            }
        }
    }
}

/// Run the loop of every connection in `streams` on one event loop, built before `ready` is
/// waited on, so that the clock starts after; answers the results of each connection.
pub fn drive(
    streams: Vec<io::Result<Sockets>>,
    args: &Args,
    shared: &Shared,
    ready: &Barrier,
) -> Vec<Stats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    ready.wait();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            let mut stats = Stats::new();
            stats.fail(&error);
            return vec![stats];
        }
    };
    // One generator per connection, forked from one that fastrand seeds from the clock and
    // the thread: connections draw different keys, and every run draws afresh.
    let mut seeds = fastrand::Rng::new();
    let connections = (0..).zip(streams).map(|(index, sockets)| {
        let rng = seeds.fork();
        async move {
            let links = sockets.and_then(|sockets| {
                let replica = sockets.replica.map(Link::new).transpose()?;
                Ok((Link::new(sockets.node)?, replica))
            });
            match links {
                Ok((node, replica)) if args.workload.is_cycle() => {
                    cycle::run(node, replica, index, args, shared).await
                }
                Ok((node, _)) => run_conn(node, args, shared, rng).await,
                Err(error) => {
                    let mut stats = Stats::new();
                    stats.fail(&error);
                    shared.running.fetch_sub(1, Relaxed);
                    stats
                }
            }
        }
    });
    runtime.block_on(futures::future::join_all(connections))
}

/// The measured loop of one connection: claim a batch (or, with `--duration`, check the
/// clock), write it, read its replies, count them; until the requests or the time run out,
/// or the connection fails.
async fn run_conn(mut link: Link, args: &Args, shared: &Shared, mut rng: fastrand::Rng) -> Stats {
    let value = vec![b'x'; args.value_size as usize];
    let after = match &args.after {
        Some(token) => after_words(args.proto, token, args.wait_timeout),
        None => Vec::new(),
    };
    let mut buf = Vec::new();
    let mut r = Stats::new();
    let budget = Budget::new(args);
    // With `--rate`: how often this connection sends a batch, and when the next one is due.
    let every = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.pipeline as f64 * args.conns as f64 / rate));
    // Connections start spread over one period, not all at once.
    let mut due = Instant::now() + every.map_or(Duration::ZERO, |e| e.mul_f64(rng.f64()));
    'run: loop {
        if every.is_some() {
            tokio::time::sleep_until(due.into()).await;
        }
        let batch = budget.claim(shared, args.pipeline);
        if batch == 0 {
            break;
        }
        buf.clear();
        for _ in 0..batch {
            // The cycle workloads never come here (see `drive`).
            let put = match args.workload {
                Workload::Get => false,
                Workload::Mixed => rng.f64() < args.set_ratio,
                _ => true,
            };
            let key = rng.u64(..args.keyspace);
            push_request(&mut buf, args.proto, put, key, &value, &after);
        }
        // Paced, a batch counts from when it was due: a late one has waited already.
        let sent = match every {
            Some(every) => {
                let was_due = due;
                due += every;
                was_due
            }
            None => Instant::now(),
        };
        if let Err(error) = link.send(&buf).await {
            r.fail(&error);
            break;
        }
        for _ in 0..batch {
            let reply = match link.reply(args.proto, None).await {
                Ok(reply) => reply,
                Err(error) => {
                    r.fail(&error);
                    break 'run;
                }
            };
            r.latency
                .saturating_record(sent.elapsed().as_micros() as u64);
            r.done += 1;
            match reply {
                Reply::Error => r.errors += 1,
                Reply::Nil => r.not_found += 1,
                Reply::Value => {}
            }
        }
        shared.answered.fetch_add(batch, Relaxed);
    }
    r.finished = Instant::now();
    shared.running.fetch_sub(1, Relaxed);
    r
}

/// An event-loop connection: its socket's two halves, the replies read and not yet taken,
/// and over TLS the session that encrypts and decrypts them.
pub struct Link {
    /// Where replies are read from.
    reader: OwnedReadHalf,
    /// Where requests are written.
    writer: OwnedWriteHalf,
    /// Replies read and not yet taken.
    replies: ReadBuf,
    /// The TLS session, if the connection is one.
    tls: Option<Box<Tls>>,
}

/// A TLS session driven from the event loop: rustls encrypts and decrypts, the link moves
/// the bytes.
struct Tls {
    /// The session, its handshake done by the blocking connection.
    session: ClientConnection,
    /// Bytes read from the socket and not yet decrypted.
    incoming: Incoming,
    /// Encrypted requests on their way to the socket.
    outgoing: Vec<u8>,
}

impl Link {
    /// A link over a non-blocking socket, registered with the current event loop, going on
    /// with the TLS session, if any.
    fn new((stream, session): Parts) -> io::Result<Link> {
        let (reader, writer) = TcpStream::from_std(stream)?.into_split();
        let replies = ReadBuf::new();
        let tls = session.map(|session| {
            let (incoming, outgoing) = (Incoming::new(), Vec::new());
            Box::new(Tls {
                session,
                incoming,
                outgoing,
            })
        });
        Ok(Link {
            reader,
            writer,
            replies,
            tls,
        })
    }

    /// Write `requests`, all of them (encrypted, over TLS), within `IO_TIMEOUT`.
    pub async fn send(&mut self, requests: &[u8]) -> io::Result<()> {
        let bytes = match self.tls.as_deref_mut() {
            None => requests,
            Some(tls) => {
                std::io::Write::write_all(&mut tls.session.writer(), requests)?;
                tls.outgoing.clear();
                take_outgoing(&mut tls.session, &mut tls.outgoing)?;
                &tls.outgoing
            }
        };
        timed(self.writer.write_all(bytes)).await
    }

    /// The next reply: from the buffer if a whole one is there, else after reading more, each
    /// read given `IO_TIMEOUT`. With `text`, its text (see `reply::Parsed::text`) is copied
    /// there; the pipelined load, which only counts replies, copies nothing.
    pub async fn reply(&mut self, proto: Proto, text: Option<&mut Vec<u8>>) -> io::Result<Reply> {
        loop {
            if let Some((reply, bytes)) = self.replies.next_reply(proto)? {
                if let Some(text) = text {
                    text.clear();
                    text.extend_from_slice(bytes);
                }
                return Ok(reply);
            }
            let read = match self.tls.as_deref_mut() {
                None => timed(self.reader.read(self.replies.space())).await,
                Some(tls) => tls.read(&mut self.reader, self.replies.space()).await,
            };
            match read {
                Ok(read) => self.replies.filled(read)?,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
}

impl Tls {
    /// Decrypted bytes into `buf`, reading the socket as often as it takes to have some (0:
    /// the server closed the connection), each read given `IO_TIMEOUT`.
    async fn read(&mut self, socket: &mut OwnedReadHalf, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(read) = self.incoming.read(&mut self.session, buf)? {
                return Ok(read);
            }
            let read = timed(socket.read(self.incoming.space())).await?;
            self.incoming.filled(&mut self.session, read)?;
        }
    }
}

/// An I/O call given `IO_TIMEOUT`.
async fn timed<T>(call: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    flatten(tokio::time::timeout(IO_TIMEOUT, call).await)
}

/// A timed-out I/O call as an I/O error.
fn flatten<T>(result: Result<io::Result<T>, tokio::time::error::Elapsed>) -> io::Result<T> {
    result.unwrap_or_else(|_| {
        let secs = IO_TIMEOUT.as_secs();
        let message = format!("no answer within {secs} s");
        Err(io::Error::new(io::ErrorKind::TimedOut, message))
    })
}

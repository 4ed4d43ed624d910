//! The measured load: every connection's loop of batches, all on one event loop.
//!
//! Every connection is a future of one task on a current-thread runtime, polled when its
//! socket is ready, as redis-benchmark's connections share one thread: on a small machine
//! the client then does not spend the cores the server needs on switching between threads
//! of its own. Each keeps `--pipeline` requests in flight: it writes a batch with one write,
//! then reads the batch's replies, and a request's latency is the time from its batch's
//! write to its reply.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use crate::args::{Args, Proto, Workload, DEFAULT_REQUESTS};
use crate::conn::IO_TIMEOUT;
use crate::read_buf::ReadBuf;
use crate::reply::Reply;
use crate::request::push_request;
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

/// Run the loop of every connection in `streams` (non-blocking sockets) on one event loop,
/// built before `ready` is waited on, so that the clock starts after; answers the results of
/// each connection.
pub fn drive(
    streams: Vec<io::Result<std::net::TcpStream>>,
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
    let connections = streams.into_iter().map(|stream| {
        let rng = seeds.fork();
        async move {
            match stream.and_then(TcpStream::from_std) {
                Ok(stream) => run_conn(stream, args, shared, rng).await,
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
async fn run_conn(
    stream: TcpStream,
    args: &Args,
    shared: &Shared,
    mut rng: fastrand::Rng,
) -> Stats {
    let (mut reader, mut writer) = stream.into_split();
    let mut replies = ReadBuf::new();
    let value = vec![b'x'; args.value_size as usize];
    let mut buf = Vec::new();
    let mut r = Stats::new();
    let deadline = args
        .duration
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let total = args.requests.unwrap_or(DEFAULT_REQUESTS);
    'run: loop {
        let batch = match deadline {
            Some(deadline) if Instant::now() >= deadline => 0,
            Some(_) => args.pipeline,
            None => {
                let before = shared.issued.fetch_add(args.pipeline, Relaxed);
                total.saturating_sub(before).min(args.pipeline)
            }
        };
        if batch == 0 {
            break;
        }
        buf.clear();
        for _ in 0..batch {
            let put = match args.workload {
                Workload::Set => true,
                Workload::Get => false,
                Workload::Mixed => rng.f64() < args.set_ratio,
            };
            push_request(&mut buf, args.proto, put, rng.u64(..args.keyspace), &value);
        }
        let sent = Instant::now();
        let written = tokio::time::timeout(IO_TIMEOUT, writer.write_all(&buf)).await;
        if let Err(error) = flatten(written) {
            r.fail(&error);
            break;
        }
        for _ in 0..batch {
            let reply = match next_reply(&mut reader, &mut replies, args.proto).await {
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

/// The next reply on an event-loop connection: from `replies` if a whole one is there, else
/// after reading more, each read given `IO_TIMEOUT`.
async fn next_reply(
    reader: &mut OwnedReadHalf,
    replies: &mut ReadBuf,
    proto: Proto,
) -> io::Result<Reply> {
    loop {
        if let Some((reply, _text)) = replies.next_reply(proto)? {
            return Ok(reply);
        }
        let read = tokio::time::timeout(IO_TIMEOUT, reader.read(replies.space())).await;
        match flatten(read) {
            Ok(read) => replies.filled(read)?,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// A timed-out I/O call as an I/O error.
fn flatten<T>(result: Result<io::Result<T>, tokio::time::error::Elapsed>) -> io::Result<T> {
    result.unwrap_or_else(|_| {
        let secs = IO_TIMEOUT.as_secs();
        let message = format!("no answer within {secs} s");
        Err(io::Error::new(io::ErrorKind::TimedOut, message))
    })
}

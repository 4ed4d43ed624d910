//! `kvbench`: a load generator for kvstore nodes, in the spirit of redis-benchmark.
//!
//! It speaks kvstore's line protocol (`PUT`/`GET`), or with `--proto resp` RESP2, the Redis
//! protocol (`SET`/`GET` as arrays of bulk strings, every reply type parsed), so that the same
//! tool, with the same pipelining and latency measurement, can drive a node and Redis alike.
//!
//! It opens `--conns` connections, all driven by one event loop on one thread (as
//! redis-benchmark does, so the client leaves the other cores to the server), and keeps
//! `--pipeline` requests in flight on each: it writes a batch of requests with one write, then
//! reads their replies. (Prefill and the lag probe use blocking connections of their own.)
//! A request's latency is the time from its batch's write to its reply, so with a pipeline
//! it includes the wait behind the earlier requests of the batch, as a real client sees it.
//!
//! With `--lag-probe HOST:PORT` (a replica of the node), one more thread measures replication
//! lag while the load runs: it PUTs a fresh key `__lag:<n>` on the node over a connection of
//! its own, and once the `OK` is back, polls the replica with `GET __lag:<n>` until the replica
//! serves the value just written. The lag is the time from the `OK` to the reply that carries
//! the value, so it is at least one round trip to the replica, and overstates the true lag by
//! at most one; the number of GETs per probe tells how many round trips the lag spanned. The
//! probe keys stay in the data set.
//!
//! Exit status: 0 when every request got a reply that is not an `ERROR` (and the lag probe, if
//! any, did not fail), 1 when some did not (the results are still printed), 2 when the node or
//! the replica could not be reached at all.

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;

/// How long to wait for each connection: a node that does not answer by then is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply slower than this means the node is stuck: the connection counts as failed, so
/// that the benchmark ends instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests per write during `--prefill`: big batches load fast, and the node reads at most
/// 1024 lines per batch anyway.
const PREFILL_CHUNK: usize = 1000;
/// `--requests` when neither it nor `--duration` is given.
const DEFAULT_REQUESTS: u64 = 100_000;
/// Highest latency the histogram tells apart (60 s in µs); slower replies are clamped to it
/// rather than dropped, so that every request is counted.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Shortest time from the start of one lag probe to the start of the next: at most 250 probes
/// a second, so that the probe stays a small part of the load it measures.
const LAG_PROBE_INTERVAL: Duration = Duration::from_millis(4);
/// A probe value the replica has not served this long after the node's `OK` is taken as lost
/// (a replica that is not connected, or the address of some other node): the probe stops.
const LAG_TIMEOUT: Duration = Duration::from_secs(30);

/// A load generator for kvstore nodes and Redis (PUT/GET over the line protocol, or SET/GET
/// over RESP).
#[derive(Debug, Parser)]
#[command(name = "kvbench", version)]
struct Args {
    /// Host of the node.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the node.
    #[arg(long, short, default_value_t = 12345)]
    port: u16,
    /// Connections, all driven by one event loop on one thread.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    conns: u64,
    /// Requests in flight per connection. Keep pipeline x value size well under the socket
    /// buffers (a few MiB): requests are all written before any reply is read.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pipeline: u64,
    /// Total requests to send [default: 100000].
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Send requests for this many seconds instead of a fixed number.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,
    /// Keys are `key:0` to `key:<K-1>`, picked uniformly at random.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keyspace: u64,
    /// Bytes in each PUT value.
    #[arg(long, value_name = "B", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    value_size: u64,
    /// What to send: PUTs, GETs, or a random mix of both (see --set-ratio).
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    workload: Workload,
    /// Share of PUTs in the mixed workload, from 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_ratio)]
    set_ratio: f64,
    /// PUT every key of the keyspace once before measuring, so that GETs find values.
    #[arg(long)]
    prefill: bool,
    /// Print the results as one JSON object on one line instead of text.
    #[arg(long)]
    json: bool,
    /// Wire protocol: kvstore's line protocol, or RESP2 (the Redis protocol), which drives
    /// Redis as well. The lag probe speaks it too.
    #[arg(long, value_enum, default_value_t = Proto::Line)]
    proto: Proto,
    /// Also measure replication lag to this replica of the node while the load runs: PUT a
    /// fresh key on the node, then GET it from the replica until it is there (at most 250
    /// probes a second).
    #[arg(long, value_name = "HOST:PORT")]
    lag_probe: Option<String>,
}

/// The request mix, named as redis-benchmark's tests are.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Workload {
    /// Only `PUT key:<n> <value>`: the write path, through the log and its fsync policy.
    Set,
    /// Only `GET key:<n>`: the read path, which never touches the disk.
    Get,
    /// PUTs with probability `--set-ratio`, GETs otherwise.
    Mixed,
}

/// The wire protocol of every connection.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Proto {
    /// `PUT key value` / `GET key`, one line each; replies are lines.
    Line,
    /// RESP2: `SET key value` / `GET key` as arrays of bulk strings; replies are RESP values.
    Resp,
}

/// What a reply means to the benchmark. Its text (a line, a simple string, an error's message
/// or a bulk string's bytes) is left in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    /// Any success: `OK`, a value, an integer, an array.
    Value,
    /// `NOT_FOUND`, or a RESP nil (bulk or array): not an error.
    Nil,
    /// `ERROR ...`, or a RESP error (`-...`).
    Error,
}

/// Deepest nesting of RESP arrays a reply may have; deeper is taken as a broken stream.
const MAX_RESP_DEPTH: usize = 32;
/// Longest RESP bulk string accepted in a reply (Redis's own limit is 512 MiB).
const MAX_RESP_BULK: usize = 1 << 30;

/// `--set-ratio` must be a probability, or the mix means nothing.
fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

/// xorshift64*: a tiny, fast generator, good enough to spread keys, so that no dependency
/// and no lock are needed in the hot loop.
struct Rng(u64);

impl Rng {
    /// A generator per connection, seeded from the clock and the connection's number
    /// (splitmix64 turns close seeds into unrelated states, never zero).
    fn new(stream: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut z = (nanos ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(1);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in [0, 1), from the top 53 bits (all an f64 holds).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number below `n`, by multiply-and-shift (no modulo bias worth the name, no division).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// Append one request for key `key:<key>` to `buf`: with `Proto::Line` the line
/// `PUT key:<n> <value>` or `GET key:<n>`; with `Proto::Resp` the array
/// `*3 $3 SET $<len> key:<n> $<len> <value>` or `*2 $3 GET $<len> key:<n>`.
fn push_request(buf: &mut Vec<u8>, proto: Proto, put: bool, key: u64, value: &[u8]) {
    // Writing into a Vec cannot fail, hence the `let _` on each write!.
    match proto {
        Proto::Line => {
            buf.extend_from_slice(if put { b"PUT key:" } else { b"GET key:" });
            let _ = write!(buf, "{key}");
            if put {
                buf.push(b' ');
                buf.extend_from_slice(value);
            }
            buf.push(b'\n');
        }
        Proto::Resp => {
            buf.extend_from_slice(if put {
                b"*3\r\n$3\r\nSET\r\n"
            } else {
                b"*2\r\n$3\r\nGET\r\n"
            });
            let digits = key.checked_ilog10().map_or(1, |d| d + 1);
            let _ = write!(buf, "${}\r\nkey:{key}\r\n", 4 + digits);
            if put {
                let _ = write!(buf, "${}\r\n", value.len());
                buf.extend_from_slice(value);
                buf.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Put one request of the lag probe (a SET/PUT when there is a value, else a GET) in `buf`.
fn push_probe(buf: &mut Vec<u8>, proto: Proto, key: &str, value: Option<&str>) {
    buf.clear();
    let _ = match (proto, value) {
        (Proto::Line, Some(value)) => writeln!(buf, "PUT {key} {value}"),
        (Proto::Line, None) => writeln!(buf, "GET {key}"),
        (Proto::Resp, Some(value)) => write!(
            buf,
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        ),
        (Proto::Resp, None) => write!(buf, "*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()),
    };
}

/// A reply that is not valid for the protocol: the stream cannot be trusted past it.
fn bad_reply(what: &str, line: &[u8]) -> io::Error {
    let text = String::from_utf8_lossy(line);
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {text:?}"))
}

/// One connection to the node, with its reading half buffered so that many small replies
/// cost few system calls.
struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connect with a timeout and TCP_NODELAY (a lone request must not wait for Nagle).
    fn open(addr: impl ToSocketAddrs) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        for addr in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(IO_TIMEOUT))?;
                    stream.set_write_timeout(Some(IO_TIMEOUT))?;
                    let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
                    return Ok(Conn {
                        writer: stream,
                        reader,
                    });
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Send one encoded request and read its reply, its text into `line`.
    fn request(&mut self, proto: Proto, request: &[u8], line: &mut Vec<u8>) -> io::Result<Reply> {
        self.writer.write_all(request)?;
        self.read_reply(proto, line)
    }

    /// Read one whole reply; its text (see `Reply`) is left in `line`.
    fn read_reply(&mut self, proto: Proto, line: &mut Vec<u8>) -> io::Result<Reply> {
        match proto {
            Proto::Line => {
                self.read_line(line)?;
                Ok(if line.starts_with(b"ERROR") {
                    Reply::Error
                } else if line == b"NOT_FOUND" {
                    Reply::Nil
                } else {
                    Reply::Value
                })
            }
            Proto::Resp => self.read_resp(line, 0),
        }
    }

    /// Read one line into `line` (cleared first) without its `\n`; a close before the `\n`
    /// is an error.
    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<()> {
        line.clear();
        self.reader.read_until(b'\n', line)?;
        if line.pop() != Some(b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            ));
        }
        Ok(())
    }

    /// Read one RESP2 value: a simple string (`+`), an error (`-`), an integer (`:`), a bulk
    /// string (`$`, nil when its length is -1) or an array (`*`, nil when its count is -1) of
    /// values, read whole. An array is a success even if an element is an error (as in a
    /// transaction's replies); `line` is then left empty.
    fn read_resp(&mut self, line: &mut Vec<u8>, depth: usize) -> io::Result<Reply> {
        self.read_line(line)?;
        if line.pop() != Some(b'\r') {
            return Err(bad_reply("a RESP line without \\r\\n", line));
        }
        let Some(&kind) = line.first() else {
            return Err(bad_reply("an empty RESP line", line));
        };
        let number = |line: &[u8]| -> io::Result<i64> {
            std::str::from_utf8(&line[1..])
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| bad_reply("a RESP length or integer that is not a number", line))
        };
        match kind {
            b'+' | b'-' => {
                line.remove(0);
                Ok(if kind == b'+' {
                    Reply::Value
                } else {
                    Reply::Error
                })
            }
            b':' => number(line).map(|_| Reply::Value),
            b'$' => {
                let len = match number(line)? {
                    -1 => return Ok(Reply::Nil),
                    len => usize::try_from(len)
                        .ok()
                        .filter(|&len| len <= MAX_RESP_BULK)
                        .ok_or_else(|| bad_reply("a bad RESP bulk length", line))?,
                };
                line.clear();
                line.resize(len + 2, 0);
                self.reader.read_exact(line)?;
                if !line.ends_with(b"\r\n") {
                    return Err(bad_reply("a RESP bulk string without \\r\\n", line));
                }
                line.truncate(len);
                Ok(Reply::Value)
            }
            b'*' => {
                let count = match number(line)? {
                    -1 => return Ok(Reply::Nil),
                    count if count < 0 || depth >= MAX_RESP_DEPTH => {
                        return Err(bad_reply("a bad RESP array", line))
                    }
                    count => count,
                };
                for _ in 0..count {
                    self.read_resp(line, depth + 1)?;
                }
                line.clear();
                Ok(Reply::Value)
            }
            _ => Err(bad_reply("not a RESP reply", line)),
        }
    }
}

/// PUT `keys` in pipelined chunks; any error reply stops it, since a benchmark on a
/// half-loaded keyspace would mislead.
fn prefill(
    conn: &mut Conn,
    proto: Proto,
    keys: impl Iterator<Item = u64>,
    value: &[u8],
) -> Result<(), String> {
    let (mut buf, mut line, mut keys) = (Vec::new(), Vec::new(), keys.peekable());
    while keys.peek().is_some() {
        buf.clear();
        let chunk: Vec<u64> = keys.by_ref().take(PREFILL_CHUNK).collect();
        for &key in &chunk {
            push_request(&mut buf, proto, true, key, value);
        }
        conn.writer.write_all(&buf).map_err(|e| e.to_string())?;
        for _ in &chunk {
            let reply = conn
                .read_reply(proto, &mut line)
                .map_err(|e| e.to_string())?;
            if reply == Reply::Error {
                return Err(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }
    Ok(())
}

/// Counters all connections share: requests handed out (so that `--requests` is a
/// total however fast each connection is) and answered (for the progress line).
struct Shared {
    /// Requests claimed so far (may overshoot the total by the last claims, which get none).
    issued: AtomicU64,
    /// Requests answered so far.
    answered: AtomicU64,
    /// Connections still sending, so the progress line knows when to stop.
    running: AtomicUsize,
}

/// Counts and latencies of answered requests: each connection keeps its own, and they are
/// merged into the run's at the end, so that the hot loop shares nothing but two counters.
struct Stats {
    /// Latency of every answered request, in µs.
    latency: Histogram<u64>,
    /// Requests answered.
    done: u64,
    /// Error replies (`ERROR ...`, RESP `-...`), plus failed connections.
    errors: u64,
    /// Connections that failed (a write, a read, a close or a timeout) before the end.
    failures: u64,
    /// `NOT_FOUND` replies (RESP: nil): not errors, but a GET run that sees many was not
    /// prefilled.
    not_found: u64,
    /// When the last reply came: the run ends with the last connection's.
    finished: Instant,
}

/// An empty histogram of latencies in µs, from 1 µs to `MAX_LATENCY_US`.
fn latency_histogram() -> Histogram<u64> {
    // Three significant digits, as redis-benchmark keeps; the bounds are constant.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds")
}

impl Stats {
    /// Nothing answered yet.
    fn new() -> Stats {
        let latency = latency_histogram();
        let (done, errors, failures, not_found) = (0, 0, 0, 0);
        let finished = Instant::now();
        Stats {
            latency,
            done,
            errors,
            failures,
            not_found,
            finished,
        }
    }

    /// Count a connection that stopped early, and say why on stderr.
    fn fail(&mut self, error: &dyn std::fmt::Display) {
        eprintln!("kvbench: a connection failed: {error}");
        (self.failures, self.errors) = (self.failures + 1, self.errors + 1);
    }

    /// Add another connection's results to these.
    fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share their bounds");
        self.done += other.done;
        self.errors += other.errors;
        self.failures += other.failures;
        self.not_found += other.not_found;
        self.finished = self.finished.max(other.finished);
    }

    /// Print the results, and the lag probe's if there was one, as text, or as one JSON
    /// object (for scripts: flat, numbers only).
    fn print(&self, args: &Args, start: Instant, lag: Option<&Lag>) {
        let seconds = self.finished.duration_since(start).as_secs_f64().max(1e-9);
        let rps = self.done as f64 / seconds;
        let q = |quantile| self.latency.value_at_quantile(quantile);
        let (p50, p90, p99, p999) = (q(0.5), q(0.9), q(0.99), q(0.999));
        let (max, mean) = (self.latency.max(), self.latency.mean());
        let Stats {
            done,
            errors,
            failures,
            not_found,
            ..
        } = *self;
        let workload = format!("{:?}", args.workload).to_lowercase();
        let proto = format!("{:?}", args.proto).to_lowercase();
        let (conns, pipeline, keyspace, size) =
            (args.conns, args.pipeline, args.keyspace, args.value_size);
        if args.json {
            let lag = lag.map_or(String::new(), Lag::json_fields);
            println!(
                "{{\"proto\":\"{proto}\",\"workload\":\"{workload}\",\"conns\":{conns},\"pipeline\":{pipeline},\
                 \"keyspace\":{keyspace},\"value_size\":{size},\"set_ratio\":{},\"requests\":{done},\
                 \"errors\":{errors},\"conn_failures\":{failures},\"not_found\":{not_found},\
                 \"seconds\":{seconds:.3},\"rps\":{rps:.0},\"p50_us\":{p50},\"p90_us\":{p90},\
                 \"p99_us\":{p99},\"p999_us\":{p999},\"max_us\":{max},\"mean_us\":{mean:.0}{lag}}}",
                args.set_ratio
            );
            return;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        println!("{workload} ({proto}): {conns} conns, pipeline {pipeline}, keyspace {keyspace}, values of {size} B");
        println!("  {done} requests in {seconds:.2} s: {rps:.0} requests/s");
        println!(
            "  latency (ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(p50),
            ms(p90),
            ms(p99),
            ms(p999),
            ms(max)
        );
        println!(
            "  errors: {errors} ({failures} failed connections); NOT_FOUND or nil replies: {not_found}"
        );
        if let (Some(lag), Some(replica)) = (lag, &args.lag_probe) {
            lag.print_text(replica);
        }
    }
}

/// The lag probe's two connections: to the node, which takes its PUTs, and to the replica,
/// which it polls.
struct LagProbe {
    /// Connection to the node (`--host`, `--port`), apart from the load's.
    primary: Conn,
    /// Connection to the replica (`--lag-probe`).
    replica: Conn,
    /// The protocol of both connections (`--proto`).
    proto: Proto,
}

/// What the lag probe measured.
struct Lag {
    /// Per probe, the time from the node's `OK` to the replica's reply with the value, in µs.
    latency: Histogram<u64>,
    /// GETs sent to the replica over all probes: one per probe means that every value was
    /// already there at the first look.
    polls: u64,
    /// Why the probe stopped before the load did, if it did.
    failure: Option<String>,
}

impl LagProbe {
    /// Probe until every load connection is done, starting a probe every
    /// `LAG_PROBE_INTERVAL` at most; a failed probe ends the probing (and fails the run).
    fn run(&mut self, shared: &Shared) -> Lag {
        let mut lag = Lag {
            latency: latency_histogram(),
            polls: 0,
            failure: None,
        };
        // Part of every value, so that a key an earlier run left on the replica never counts.
        let nonce = Rng::new(u64::MAX).next();
        let mut line = Vec::new();
        for n in 0u64.. {
            if shared.running.load(Relaxed) == 0 {
                break;
            }
            let next = Instant::now() + LAG_PROBE_INTERVAL;
            let (key, value) = (format!("__lag:{n}"), format!("{nonce:016x}-{n}"));
            match self.probe(&key, &value, &mut line, &mut lag.polls) {
                Ok(elapsed) => lag.latency.saturating_record(elapsed.as_micros() as u64),
                Err(error) => {
                    eprintln!("kvbench: the lag probe failed: {error}");
                    lag.failure = Some(error);
                    break;
                }
            }
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        lag
    }

    /// One probe: PUT `key` with `value` on the node, then GET `key` from the replica until it
    /// answers `value`, counting the GETs in `polls`. Returns the time from the node's `OK` to
    /// that answer.
    fn probe(
        &mut self,
        key: &str,
        value: &str,
        line: &mut Vec<u8>,
        polls: &mut u64,
    ) -> Result<Duration, String> {
        let text = |line: &[u8]| String::from_utf8_lossy(line).into_owned();
        let (proto, mut request) = (self.proto, Vec::new());
        push_probe(&mut request, proto, key, Some(value));
        let reply = self
            .primary
            .request(proto, &request, line)
            .map_err(|error| format!("the node: {error}"))?;
        let acked = Instant::now();
        if reply != Reply::Value || line != b"OK" {
            return Err(format!("the node answered {:?} to PUT {key}", text(line)));
        }
        push_probe(&mut request, proto, key, None);
        loop {
            let reply = self
                .replica
                .request(proto, &request, line)
                .map_err(|error| format!("the replica: {error}"))?;
            let seen = Instant::now();
            *polls += 1;
            if reply == Reply::Value && line == value.as_bytes() {
                return Ok(seen - acked);
            }
            if reply == Reply::Error {
                let reply = text(line);
                return Err(format!("the replica answered {reply:?} to GET {key}"));
            }
            if seen - acked > LAG_TIMEOUT {
                let secs = LAG_TIMEOUT.as_secs();
                return Err(format!("the replica lacked {key} {secs} s after the OK"));
            }
        }
    }
}

impl Lag {
    /// A probe whose thread panicked: nothing measured.
    fn panicked() -> Lag {
        let failure = Some("its thread panicked".to_string());
        Lag {
            latency: latency_histogram(),
            polls: 0,
            failure,
        }
    }

    /// The lag percentiles (µs): p50, p99, p99.9 and max.
    fn percentiles(&self) -> (u64, u64, u64, u64) {
        let q = |quantile| self.latency.value_at_quantile(quantile);
        (q(0.5), q(0.99), q(0.999), self.latency.max())
    }

    /// The probe's results as JSON fields, each after a comma, to end the run's object with.
    fn json_fields(&self) -> String {
        let (p50, p99, p999, max) = self.percentiles();
        let (probes, polls, mean) = (self.latency.len(), self.polls, self.latency.mean());
        let errors = u8::from(self.failure.is_some());
        format!(
            ",\"lag_probes\":{probes},\"lag_errors\":{errors},\"lag_polls\":{polls},\
             \"lag_p50_us\":{p50},\"lag_p99_us\":{p99},\"lag_p999_us\":{p999},\
             \"lag_max_us\":{max},\"lag_mean_us\":{mean:.0}"
        )
    }

    /// The probe's results as text lines, under the load's.
    fn print_text(&self, replica: &str) {
        let (p50, p99, p999, max) = self.percentiles();
        let probes = self.latency.len();
        let polls = self.polls as f64 / probes.max(1) as f64;
        println!(
            "  replication lag to {replica} (µs, {probes} probes, {polls:.2} GETs each): \
             p50 {p50}  p99 {p99}  p99.9 {p999}  max {max}"
        );
        if let Some(failure) = &self.failure {
            println!("  the lag probe stopped early: {failure}");
        }
    }
}

/// The measured loop of one connection, as a task of the client's event loop: the same
/// claims, requests and accounting as `run_conn`, but every connection shares one thread,
/// as redis-benchmark's do, so that on a small machine the client does not spend the cores
/// the server needs on switching between its own threads.
async fn run_conn_async(
    stream: tokio::net::TcpStream,
    args: &Args,
    shared: &Shared,
    seed: u64,
) -> Stats {
    use tokio::io::AsyncWriteExt;
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader);
    let mut rng = Rng::new(seed);
    let value = vec![b'x'; args.value_size as usize];
    let (mut buf, mut line) = (Vec::new(), Vec::new());
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
                Workload::Mixed => rng.unit() < args.set_ratio,
            };
            push_request(&mut buf, args.proto, put, rng.below(args.keyspace), &value);
        }
        let sent = Instant::now();
        let written = tokio::time::timeout(IO_TIMEOUT, writer.write_all(&buf)).await;
        if let Err(error) = flatten(written) {
            r.fail(&error);
            break;
        }
        for _ in 0..batch {
            let read = tokio::time::timeout(
                IO_TIMEOUT,
                read_reply_async(&mut reader, args.proto, &mut line),
            )
            .await;
            let reply = match flatten(read) {
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

/// A timed-out I/O call as an I/O error.
fn flatten<T>(result: Result<io::Result<T>, tokio::time::error::Elapsed>) -> io::Result<T> {
    result.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer within 30 s",
        ))
    })
}

/// Read one reply, as `Conn::read_reply` does, from an event-loop connection.
async fn read_reply_async(
    reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    proto: Proto,
    line: &mut Vec<u8>,
) -> io::Result<Reply> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let read_line = async |line: &mut Vec<u8>,
                           reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>|
           -> io::Result<()> {
        line.clear();
        reader.read_until(b'\n', line).await?;
        if line.pop() != Some(b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            ));
        }
        Ok(())
    };
    if proto == Proto::Line {
        read_line(line, reader).await?;
        return Ok(if line.starts_with(b"ERROR") {
            Reply::Error
        } else if line == b"NOT_FOUND" {
            Reply::Nil
        } else {
            Reply::Value
        });
    }
    // RESP: read values until none is pending; the reply is the kind of the first one.
    let mut pending: u64 = 1;
    let mut first = None;
    while pending > 0 {
        pending -= 1;
        read_line(line, reader).await?;
        if line.pop() != Some(b'\r') {
            return Err(bad_reply("a RESP line without \\r\\n", line));
        }
        let Some(&kind) = line.first() else {
            return Err(bad_reply("an empty RESP line", line));
        };
        let number = std::str::from_utf8(&line[1..])
            .ok()
            .and_then(|text| text.parse::<i64>().ok());
        let reply = match kind {
            b'+' => Reply::Value,
            b'-' => Reply::Error,
            b':' => Reply::Value,
            b'$' => match number {
                Some(-1) => Reply::Nil,
                Some(len) if len >= 0 && len as usize <= MAX_RESP_BULK => {
                    line.clear();
                    line.resize(len as usize + 2, 0);
                    reader.read_exact(line).await?;
                    Reply::Value
                }
                _ => return Err(bad_reply("a bad RESP bulk length", line)),
            },
            b'*' => match number {
                Some(-1) => Reply::Nil,
                Some(count) if count >= 0 => {
                    pending += count as u64;
                    Reply::Value
                }
                _ => return Err(bad_reply("a bad RESP array", line)),
            },
            _ => return Err(bad_reply("not a RESP reply", line)),
        };
        first.get_or_insert(reply);
    }
    Ok(first.unwrap_or(Reply::Value))
}

/// Once a second until every connection is done, print the progress so far (only called
/// when stderr is a terminal, so that logs of scripted runs stay clean).
fn show_progress(shared: &Shared, start: Instant) {
    let (mut last_count, mut last_print) = (0, start);
    while shared.running.load(Relaxed) > 0 {
        thread::sleep(Duration::from_millis(50));
        if last_print.elapsed() >= Duration::from_secs(1) {
            let count = shared.answered.load(Relaxed);
            let rate = (count - last_count) as f64 / last_print.elapsed().as_secs_f64();
            eprintln!(
                "kvbench: {:.0} s: {count} requests, {rate:.0} req/s",
                start.elapsed().as_secs_f64()
            );
            (last_count, last_print) = (count, Instant::now());
        }
    }
}

/// Open every connection before anything is measured, so that a node that is not there is
/// reported at once, as one line, with exit status 2.
fn connect_all(args: &Args) -> Result<Vec<Conn>, ExitCode> {
    (0..args.conns)
        .map(|_| Conn::open((args.host.as_str(), args.port)))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|error| {
            let (host, port) = (&args.host, args.port);
            eprintln!(
                "kvbench: cannot connect to {host}:{port}: {error} (is kvnode running there?)"
            );
            ExitCode::from(2)
        })
}

/// With `--lag-probe`, open the probe's two connections; as in `connect_all`, a node or a
/// replica that is not there ends the run at once, with exit status 2.
fn connect_probe(args: &Args) -> Result<Option<LagProbe>, ExitCode> {
    let Some(replica) = &args.lag_probe else {
        return Ok(None);
    };
    let unreachable = |what: &str, error: io::Error| {
        eprintln!("kvbench: cannot connect to {what} for the lag probe: {error}");
        ExitCode::from(2)
    };
    let primary = Conn::open((args.host.as_str(), args.port))
        .map_err(|error| unreachable(&format!("{}:{}", args.host, args.port), error))?;
    let replica = Conn::open(replica.as_str()).map_err(|error| unreachable(replica, error))?;
    let proto = args.proto;
    Ok(Some(LagProbe {
        primary,
        replica,
        proto,
    }))
}

/// `--prefill`: every connection loads its share of the keyspace in parallel.
fn prefill_all(conns: &mut [Conn], args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let (step, keyspace) = (conns.len(), args.keyspace);
    let value = &vec![b'x'; args.value_size as usize];
    thread::scope(|s| {
        let loaders: Vec<_> = (0..)
            .zip(conns.iter_mut())
            .map(|(i, conn)| {
                let keys = (i..keyspace).step_by(step); // connection i loads i, i + step, ...
                s.spawn(move || prefill(conn, args.proto, keys, value))
            })
            .collect();
        loaders
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or(Err("a loader panicked".into())))
    })?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("kvbench: prefilled {keyspace} keys in {secs:.2} s");
    Ok(())
}

/// Run every connection's loop, and the lag probe if there is one, started together behind a
/// barrier, and return the time the clock started with the merged results and the lag.
fn measure(
    conns: &mut [Conn],
    probe: Option<&mut LagProbe>,
    args: &Args,
) -> (Instant, Stats, Option<Lag>) {
    let shared = Shared {
        issued: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        running: AtomicUsize::new(conns.len()),
    };
    let barrier = Barrier::new(2 + usize::from(probe.is_some()));
    // The connections' sockets, for the event loop (the blocking handles stay open).
    let streams: Vec<io::Result<std::net::TcpStream>> = conns
        .iter()
        .map(|conn| {
            let stream = conn.writer.try_clone()?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })
        .collect();
    thread::scope(|s| {
        let (shared_ref, barrier_ref) = (&shared, &barrier);
        let driver = s.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            barrier_ref.wait();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(error) => {
                    let mut stats = Stats::new();
                    stats.fail(&error);
                    return vec![stats];
                }
            };
            // Every connection a future of one task, polled when its socket is ready.
            let connections = (0..).zip(streams).map(|(i, stream)| async move {
                match stream.and_then(tokio::net::TcpStream::from_std) {
                    Ok(stream) => run_conn_async(stream, args, shared_ref, i).await,
                    Err(error) => {
                        let mut stats = Stats::new();
                        stats.fail(&error);
                        shared_ref.running.fetch_sub(1, Relaxed);
                        stats
                    }
                }
            });
            runtime.block_on(futures::future::join_all(connections))
        });
        let prober = probe.map(|probe| {
            let (shared, barrier) = (&shared, &barrier);
            s.spawn(move || {
                barrier.wait();
                probe.run(shared)
            })
        });
        barrier.wait();
        let start = Instant::now();
        if io::stderr().is_terminal() {
            show_progress(&shared, start);
        }
        let mut totals = Stats::new();
        totals.finished = start;
        match driver.join() {
            Ok(all) => all.iter().for_each(|stats| totals.merge(stats)),
            Err(_) => totals.fail(&"the client's event loop panicked"),
        }
        let lag = prober.map(|prober| prober.join().unwrap_or_else(|_| Lag::panicked()));
        (start, totals, lag)
    })
}

/// Connect, optionally prefill, measure, report.
fn main() -> ExitCode {
    let args = Args::parse();
    let mut conns = match connect_all(&args) {
        Ok(conns) => conns,
        Err(code) => return code,
    };
    let mut probe = match connect_probe(&args) {
        Ok(probe) => probe,
        Err(code) => return code,
    };
    if args.prefill {
        if let Err(error) = prefill_all(&mut conns, &args) {
            eprintln!("kvbench: prefill failed: {error}");
            return ExitCode::FAILURE;
        }
    }
    let (start, totals, lag) = measure(&mut conns, probe.as_mut(), &args);
    totals.print(&args, start, lag.as_ref());
    let lag_failed = lag.is_some_and(|lag| lag.failure.is_some());
    if totals.errors > 0 || lag_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

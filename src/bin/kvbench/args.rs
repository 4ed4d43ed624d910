//! The command line: what to send, how much, over which protocol, and how to report it.
//!
//! Everything a run can vary is an option here, checked by clap before anything connects,
//! so that a mistyped number is a one-line usage error rather than a strange benchmark.

use clap::{Parser, ValueEnum};
use kvstore::tls_client::TlsArgs;

/// `--requests` when neither it nor `--duration` is given.
pub const DEFAULT_REQUESTS: u64 = 100_000;

/// A load generator for kvstore nodes and Redis (PUT/GET over the line protocol, or SET/GET
/// over RESP).
#[derive(Debug, Parser)]
#[command(name = "kvbench", version)]
pub struct Args {
    /// Host of the node.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the node.
    #[arg(long, short, default_value_t = 12345)]
    pub port: u16,
    /// Connections, all driven by one event loop on one thread.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub conns: u64,
    /// Requests in flight per connection. Keep pipeline x value size well under the socket
    /// buffers (a few MiB): requests are all written before any reply is read.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub pipeline: u64,
    /// Total requests to send [default: 100000].
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Send requests for this many seconds instead of a fixed number.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,
    /// Keys are `key:0` to `key:<K-1>`, picked uniformly at random.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keyspace: u64,
    /// Bytes in each PUT value.
    #[arg(long, value_name = "B", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub value_size: u64,
    /// What to send: PUTs, GETs, a random mix of both (see --set-ratio), or cycles of a
    /// write and a read of it (the `ryw-*` workloads, and `set-wait`).
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Send at most this many requests a second in all, spread evenly over the connections
    /// (each sends its next batch when it is due, or at once if it is late), rather than as
    /// fast as replies come back: latency and replication lag at a load below the maximum.
    /// Latencies then count from when each batch was due, so a server falling behind shows
    /// in them (no coordinated omission).
    #[arg(long, value_name = "REQ/S", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Share of PUTs in the mixed workload, from 0 to 1.
    #[arg(long, default_value_t = 0.5, value_parser = parse_ratio)]
    pub set_ratio: f64,
    /// PUT every key of the keyspace once before measuring, so that GETs find values.
    #[arg(long)]
    pub prefill: bool,
    /// Print the results as one JSON object on one line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Wire protocol: kvstore's line protocol, or RESP2 (the Redis protocol), which drives
    /// Redis as well. The lag probe speaks it too.
    #[arg(long, value_enum, default_value_t = Proto::Line)]
    pub proto: Proto,
    /// Also measure replication lag to this replica of the node while the load runs: PUT a
    /// fresh key on the node, then GET it from the replica until it is there (at most 250
    /// probes a second).
    #[arg(long, value_name = "HOST:PORT")]
    pub lag_probe: Option<String>,
    /// A replica of the node, where the `ryw-*` workloads read back what they wrote on the
    /// node: each connection opens a second connection, to it. Other workloads ignore it.
    #[arg(long, value_name = "HOST:PORT", required_if_eq_any = [
        ("workload", "ryw-plain"), ("workload", "ryw-after"),
        ("workload", "ryw-waitpos"), ("workload", "ryw-wait"),
    ])]
    pub replica: Option<String>,
    /// Send every GET as `GET key AFTER <TOKEN> <--wait-timeout>` (a position token, as
    /// LASTPOS answers it): what a token costs a read that need not wait.
    #[arg(long, value_name = "TOKEN")]
    pub after: Option<String>,
    /// The timeout, in ms, of every position wait (AFTER, WAITPOS) and WAIT.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub wait_timeout: u64,
    /// The replicas every WAIT asks for (`set-wait`, `ryw-wait`).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub wait_replicas: u32,
    /// The user every connection logs in as, on a node that asks for a login (with --pass);
    /// without it, `default`.
    #[arg(long, value_name = "NAME", env = "KVSTORE_USER", requires = "pass")]
    pub user: Option<String>,
    /// The password every connection logs in with (`AUTH`) before the run, on a node (or a
    /// Redis) started with a password. A flag shows in `ps`: prefer KVSTORE_PASSWORD.
    #[arg(
        long,
        short = 'a',
        value_name = "PASSWORD",
        env = "KVSTORE_PASSWORD",
        hide_env_values = true
    )]
    pub pass: Option<String>,
    /// TLS to the node and the replicas (the handshakes happen before the clock starts).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The request mix, named as redis-benchmark's tests are.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Workload {
    /// Only `PUT key:<n> <value>`: the write path, through the log and its fsync policy.
    Set,
    /// Only `GET key:<n>`: the read path, which never touches the disk.
    Get,
    /// PUTs with probability `--set-ratio`, GETs otherwise.
    Mixed,
    /// Cycles of `PUT` + `WAIT <--wait-replicas> <--wait-timeout>`, pipelined: a write made
    /// safe the way Redis does it, with no read.
    SetWait,
    /// Cycles of a `PUT` on the node, then a plain `GET` of that key on `--replica`: no
    /// guarantee, so the read may miss the write (counted as stale).
    RywPlain,
    /// Cycles of `PUT` + `LASTPOS` on the node, then `GET key AFTER <token> <timeout>` on
    /// `--replica`: reading one's write with a position token, in one round trip.
    RywAfter,
    /// As `ryw-after`, but the read is `WAITPOS <token> <timeout>` + `GET key`, pipelined.
    RywWaitpos,
    /// Cycles of `PUT` + `WAIT <n> <timeout>` on the node, then a plain `GET` on `--replica`:
    /// reading one's write the way Redis does it.
    RywWait,
}

impl Args {
    /// What clap cannot check: the options a workload takes. A cycle's read depends on its
    /// write, so a cycle workload pipelines nothing, and `--after` is for plain GETs.
    pub fn check(&self) -> Result<(), String> {
        let cycle = self.workload.is_cycle();
        if cycle && self.pipeline != 1 {
            return Err("a cycle workload (set-wait, ryw-*) runs at --pipeline 1".into());
        }
        if cycle && self.rate.is_some() {
            return Err("--rate is for the set, get and mixed workloads".into());
        }
        if cycle && self.after.is_some() {
            return Err("--after is for GETs of the get and mixed workloads".into());
        }
        Ok(())
    }
}

impl Workload {
    /// Whether each request is a cycle of a write and, but for `set-wait`, a read of it,
    /// on connections of its own (see `cycle`), rather than a single command.
    pub fn is_cycle(self) -> bool {
        !matches!(self, Workload::Set | Workload::Get | Workload::Mixed)
    }

    /// Whether the workload reads on `--replica`: all the `ryw-*` workloads.
    pub fn reads_replica(self) -> bool {
        self.is_cycle() && self != Workload::SetWait
    }

    /// Whether every read of the workload must see its cycle's own write (in a cycle with
    /// no error): all the `ryw-*` workloads but `ryw-plain`.
    pub fn promises_own_writes(self) -> bool {
        matches!(
            self,
            Workload::RywAfter | Workload::RywWaitpos | Workload::RywWait
        )
    }
}

/// The wire protocol of every connection.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Proto {
    /// `PUT key value` / `GET key`, one line each; replies are lines.
    Line,
    /// RESP2: `SET key value` / `GET key` as arrays of bulk strings; replies are RESP values.
    Resp,
}

/// `--set-ratio` must be a probability, or the mix means nothing.
fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

/// `--rate` must be a positive number of requests a second.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a positive number of requests a second"
        )),
    }
}

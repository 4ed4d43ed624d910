//! `kvnode`'s command line and the node configuration it becomes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kv_actors::storage::durability::FsyncPolicy;
use kv_actors::storage::recovery::RecoveryOptions;
use kv_actors::storage::writer::WriterConfig;

use crate::auth::{AuthArgs, AuthConfig, AuthConfigError, HashPasswordArgs};
use crate::logging::LogLevel;
use crate::tls_args::{TlsArgs, TlsConfig, TlsConfigError};

/// The most either flag bounding a value may allow (512 MiB, as Redis's default
/// proto-max-bulk-len): a key and a value at this limit still fit in one log record.
pub const MAX_VALUE_LIMIT: u64 = 512 * 1024 * 1024;

/// The port a primary listens on unless told otherwise, as the C++ store did.
pub const PRIMARY_PORT: u16 = 12345;
/// The port a replica listens on unless told otherwise.
pub const REPLICA_PORT: u16 = 12346;

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Accepts reads and writes.
    Primary,
    /// Read-only: serves reads and applies its primary's replication stream.
    Replica,
    /// A whole local cluster in one process: a primary and two replicas (ports 12345, 12346
    /// and 12347 by default; data under --data-dir/primary, replica1 and replica2).
    Cluster,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Cluster => "cluster",
        }
    }
}

/// When the log is forced to disk (as Redis's appendfsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// Before every write is acknowledged: nothing acknowledged is ever lost.
    Always,
    /// Once a second: a crash loses at most about a second of writes.
    Everysec,
    /// Never explicitly: the operating system decides.
    No,
}

impl From<Fsync> for FsyncPolicy {
    fn from(fsync: Fsync) -> Self {
        match fsync {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Everysec => FsyncPolicy::EverySec,
            Fsync::No => FsyncPolicy::No,
        }
    }
}

/// A node of kvstore: a key-value store speaking a line protocol over TCP
/// (`PUT key value`, `GET key`, `DEL key`, `PING`, `EXIT`).
///
/// Run with no subcommand to serve; `kvnode import` loads a seed file into a data directory.
#[derive(Debug, Clone, Parser)]
#[command(name = "kvnode", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// What `kvnode` does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum NodeCommand {
    /// Load a `key=value` seed file of the C++ store into a data directory, then exit.
    Import(ImportArgs),
    /// Read a password (from the terminal without showing it, or the first line of stdin) and
    /// print its Argon2 hash for the users file (--users-file), or with --user and --rights
    /// the user's whole line.
    HashPassword(HashPasswordArgs),
}

/// `kvnode import`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The C++ store's text file: one `key=value` pair a line, split at the first `=`.
    #[arg(long, value_name = "FILE")]
    pub seed_file: PathBuf,
    /// The data directory to load into (its node must not be running).
    #[arg(long, value_name = "DIR", default_value = "kvdata/primary")]
    pub data_dir: PathBuf,
    /// How much to log to stderr.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
}

/// The flags of a serving node.
#[derive(Debug, Clone, Parser)]
#[command(name = "kvnode")]
pub struct NodeArgs {
    /// Whether this node is the primary (takes writes) or a replica (read-only).
    #[arg(long, value_enum, default_value_t = Role::Primary)]
    pub role: Role,

    /// Address to listen on for clients (an IP address or a host name, and a port). Defaults
    /// to 127.0.0.1:12345 for a primary and 127.0.0.1:12346 for a replica; use 0.0.0.0:PORT to
    /// accept remote clients, or port 0 to let the system pick a free port (the bound address
    /// is logged).
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub listen: Option<SocketAddr>,

    /// Directory holding this node's data (created if missing). Defaults to ./kvdata/<role>.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of a replica to stream every write to (repeatable; primary only). The
    /// primary connects to it, and reconnects after any outage, forever.
    #[arg(long = "replica", value_name = "HOST:PORT", value_parser = host_port)]
    pub replicas: Vec<String>,

    /// Run as a member of a failover cluster: the client addresses of every member, this
    /// node's included, in the same order on every node (a member's id is its position).
    /// The members elect a primary (Raft, on each member's port + 10000, as Redis Cluster's
    /// bus), the others replicate it, and a new primary is elected when it stops answering.
    /// Replaces --role and --replica.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',', value_parser = host_port)]
    pub peers: Vec<String>,

    /// This node's address as it appears in --peers, when that is not --listen (for example
    /// when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    pub advertise: Option<String>,

    /// In a failover cluster, how long the primary may stop answering before a new one is
    /// elected. Its lease (how long a cut-off primary keeps acknowledging) is shorter, so a
    /// deposed primary has stopped before its successor starts.
    #[arg(long, value_name = "MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(60..=60_000))]
    pub failover_timeout_ms: u64,

    /// Acknowledge a write (and answer a read that could show it) only once this many
    /// replicas have it durable (Redis's name). With 1 in a three-node cluster, no
    /// acknowledged write is lost by any single failure, failover included.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=16))]
    pub min_replicas_to_write: u64,

    /// How long a reply waits for --min-replicas-to-write replicas before it answers
    /// `NOREPLICAS` (the write is then applied here, its survival unknown).
    #[arg(long, value_name = "MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub min_replicas_timeout_ms: u64,

    /// The name `SENTINEL get-master-addr-by-name` answers to, for clients with Sentinel
    /// support.
    #[arg(long, value_name = "NAME", default_value = "kvstore")]
    pub sentinel_name: String,

    /// The local address this node's connections to its peers (the replication stream it
    /// sends as a primary, the failover control plane's RPCs) come from, as Redis 7's
    /// `bind-source-addr`: on a host with several addresses, the one peers and firewalls know
    /// the node by. Default: the system's choice.
    #[arg(long, value_name = "IP")]
    pub source_addr: Option<std::net::IpAddr>,

    /// A shared secret that authenticates replication links both ways: a primary streams only
    /// to a replica that proves it knows the secret, and a replica takes a stream only from a
    /// primary that proves it (HMAC challenge and response; the secret never crosses the
    /// wire). Give the same secret to the primary and its replicas. Without it, links are not
    /// authenticated.
    #[arg(
        long,
        value_name = "SECRET",
        env = "KV_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,

    /// How many bytes of recent writes the primary keeps so that a replica that reconnects
    /// can resume where it stopped (partial resync) rather than receive everything again.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub repl_backlog_bytes: u64,

    /// Of the backlog, how many bytes a primary keeps of what a connected replica has already
    /// made durable (as Redis's 1 MiB backlog): a caught-up cluster holds this much per
    /// replica, not `--repl-backlog-bytes`. Set it to the backlog's size to keep it all.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub repl_backlog_min_bytes: u64,

    /// The most bytes of writes a primary keeps for one replica while its full resync is sent
    /// and until it catches up (as Redis's replica output buffer limit), so that a full resync
    /// under load converges. A replica that needs more is dropped and tried again.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub repl_full_sync_buffer_bytes: u64,

    /// A replication link with no sign of life for this long is closed and reconnected.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub repl_timeout_ms: u64,

    /// A primary that opens a replication stream must finish the handshake (prove it knows
    /// the cluster secret) within this long, or the connection is closed.
    #[arg(long, value_name = "MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub repl_handshake_timeout_ms: u64,

    /// Close a client connection that sends nothing for this many seconds (0: never, the
    /// default, as Redis's `timeout`). A client waiting for a reply is not idle.
    #[arg(long, value_name = "SECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub timeout: u64,

    /// How much to log to stderr.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Longest request line accepted; a longer one gets an error and the connection closes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(16..=MAX_VALUE_LIMIT))]
    pub max_line_bytes: u64,

    /// Most client connections open at once; more are refused with an error.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_clients: u64,

    /// Largest value a RESP client may send (as Redis's proto-max-bulk-len).
    #[arg(long, value_name = "BYTES", default_value_t = MAX_VALUE_LIMIT,
          value_parser = clap::value_parser!(u64).range(16..=MAX_VALUE_LIMIT))]
    pub max_value_bytes: u64,

    /// Most reply bytes one client may have queued for one batch of pipelined requests;
    /// past it the client is told so and disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub client_output_limit: u64,

    /// Most bytes all client connections' buffers may hold together (read buffers, requests
    /// read and not answered, replies not written yet), as Redis's `maxmemory-clients`; past
    /// it, the clients holding the most are disconnected until the rest fit. Replication links
    /// are not counted. A number of bytes, or with a unit: `KiB`, `MiB`, `GiB` (`kb`, `mb`,
    /// `gb` mean the same). 0, the default as in Redis, is no cap: a right cap depends on the
    /// machine's memory, which the node does not know; see docs/security.md.
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = byte_size)]
    pub maxmemory_clients: u64,

    /// When the log is forced to disk: `always` acknowledges a write only once it is on disk;
    /// `everysec` fsyncs once a second; `no` leaves it to the operating system.
    #[arg(long, value_enum, default_value_t = Fsync::Everysec)]
    pub fsync: Fsync,

    /// Compact (snapshot the data and drop the logs it covers) once the logs hold at least
    /// this many bytes and at least --compact-ratio times the last snapshot's size.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub compact_min_bytes: u64,

    /// See --compact-min-bytes.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub compact_ratio: u64,

    /// At start-up, accept losing everything from the first damaged log record on, even when
    /// the damage is not at the end of the log (normally start-up stops with an error there).
    #[arg(long)]
    pub truncate_corrupt_tail: bool,

    /// Threads serving client connections; the first is the Store's own thread, so with 1
    /// (the default) a request never crosses threads. More help only when parsing and
    /// encoding, not the Store, is what keeps a core busy (large values, many cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub io_threads: Option<u64>,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Everything a node needs to start, with every default resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub role: Role,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub replicas: Vec<String>,
    pub max_line_bytes: usize,
    pub max_value_bytes: usize,
    pub max_clients: usize,
    pub client_output_limit: usize,
    /// `--maxmemory-clients` in bytes (0: no cap).
    pub maxmemory_clients: usize,
    pub io_threads: usize,
    pub writer: WriterConfig,
    pub recovery: RecoveryOptions,
    pub cluster_secret: Option<String>,
    pub repl_backlog_bytes: usize,
    pub repl_backlog_min_bytes: usize,
    pub repl_full_sync_buffer_bytes: usize,
    pub repl_timeout: std::time::Duration,
    pub repl_handshake_timeout: std::time::Duration,
    /// `--timeout`: `None` for never.
    pub idle_timeout: Option<std::time::Duration>,
    /// `--peers`: empty unless this node is a member of a failover cluster.
    pub peers: Vec<String>,
    /// This node's entry in `peers`.
    pub advertise: String,
    /// `--failover-timeout-ms`.
    pub failover_timeout: std::time::Duration,
    /// `--min-replicas-to-write`.
    pub min_replicas_to_write: usize,
    /// `--min-replicas-timeout-ms`.
    pub min_replicas_timeout: std::time::Duration,
    /// `--sentinel-name`.
    pub sentinel_name: String,
    /// `--source-addr`.
    pub source_addr: Option<std::net::IpAddr>,
    /// `--requirepass` (from the flag, its file or its variable) and `--users-file`.
    pub auth: AuthConfig,
    /// `--tls-cert` and the other TLS flags; `None` without TLS.
    pub tls: Option<TlsConfig>,
}

/// A combination of flags that cannot work together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--client-output-limit ({output}) must be larger than --max-line-bytes and \
         --max-value-bytes ({largest}), or a value that could be stored could never be read back"
    )]
    OutputBelowValue { output: u64, largest: u64 },
    #[error("--peers runs a failover cluster, whose members find their replicas themselves; leave out --role and --replica")]
    PeersWithRole,
    #[error("this node's address {me} is not in --peers ({peers}); give --advertise with the entry that is this node")]
    NotAPeer { me: String, peers: String },
    #[error("a member of a failover cluster needs a fixed --listen port of at most 55535: its control plane listens on that port + 10000 (got {0})")]
    ControlPort(u16),
    #[error("--peers lists {0} more than once")]
    DuplicatePeer(String),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

impl NodeConfig {
    /// The configuration of a node with `role` and every default.
    pub fn new(role: Role) -> Self {
        let args = NodeArgs::parse_from(["kvnode", "--role", role.as_str()]);
        Self::try_from(args).expect("the defaults are consistent")
    }
}

/// Check that an address is `host:port` with a valid port; the host is resolved later, at
/// every connection attempt, so a replica's address may change.
fn host_port(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(text.to_string())
        }
        _ => Err(format!(
            "'{text}' is not HOST:PORT (for example 10.0.0.2:12346 or db2:12346)"
        )),
    }
}

/// `--listen`: `IP:PORT`, or `HOST:PORT` with the host name resolved now (its first address).
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    host_port_any(text)?;
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{text}': {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("'{text}' resolves to no address"))
}

/// `host_port`, but port 0 allowed (let the system pick one).
fn host_port_any(text: &str) -> Result<(), String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!(
            "'{text}' is not HOST:PORT (for example 127.0.0.1:12345 or localhost:12345)"
        )),
    }
}

/// A size in bytes: a number, or a number and a unit (`KiB`, `MiB`, `GiB`, or as Redis writes
/// them `kb`, `mb`, `gb`: all powers of 1024, in any case).
fn byte_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "kb" => 1 << 10,
        "mib" | "mb" => 1 << 20,
        "gib" | "gb" => 1 << 30,
        _ => return Err(format!("'{unit}' is not a unit of bytes (KiB, MiB, GiB)")),
    };
    let number: u64 = digits.trim().parse().map_err(|_| {
        format!("'{text}' is not a size in bytes (for example 268435456 or 256MiB)")
    })?;
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl TryFrom<NodeArgs> for NodeConfig {
    type Error = ConfigError;

    fn try_from(args: NodeArgs) -> Result<Self, ConfigError> {
        let largest = args.max_line_bytes.max(args.max_value_bytes);
        if args.client_output_limit <= largest {
            return Err(ConfigError::OutputBelowValue {
                output: args.client_output_limit,
                largest,
            });
        }
        let default_port = match args.role {
            Role::Primary | Role::Cluster => PRIMARY_PORT,
            Role::Replica => REPLICA_PORT,
        };
        let listen = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port)));
        let advertise = args.advertise.clone().unwrap_or_else(|| listen.to_string());
        if !args.peers.is_empty() {
            if listen.port() == 0 || listen.port() > u16::MAX - 10_000 {
                return Err(ConfigError::ControlPort(listen.port()));
            }
            if args.role != Role::Primary || !args.replicas.is_empty() {
                return Err(ConfigError::PeersWithRole);
            }
            if !args.peers.contains(&advertise) {
                return Err(ConfigError::NotAPeer {
                    me: advertise,
                    peers: args.peers.join(","),
                });
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = args.peers.iter().find(|p| !seen.insert(*p)) {
                return Err(ConfigError::DuplicatePeer(twice.clone()));
            }
        }
        // A replica checks its primary's certificate, as a primary checks its replicas'.
        let has_peers = !args.peers.is_empty()
            || !args.replicas.is_empty()
            || matches!(args.role, Role::Cluster | Role::Replica);
        let tls = args.tls.resolve(has_peers)?;
        Ok(NodeConfig {
            tls,
            role: args.role,
            listen,
            data_dir: args
                .data_dir
                .unwrap_or_else(|| PathBuf::from("kvdata").join(args.role.as_str())),
            replicas: args.replicas,
            max_line_bytes: to_usize(args.max_line_bytes),
            max_value_bytes: to_usize(args.max_value_bytes),
            max_clients: to_usize(args.max_clients),
            client_output_limit: to_usize(args.client_output_limit),
            maxmemory_clients: to_usize(args.maxmemory_clients),
            io_threads: args.io_threads.map_or(1, to_usize),
            writer: WriterConfig {
                fsync: args.fsync.into(),
                compact_min_bytes: args.compact_min_bytes,
                compact_ratio: args.compact_ratio,
            },
            recovery: RecoveryOptions {
                truncate_corrupt_tail: args.truncate_corrupt_tail,
            },
            cluster_secret: args.cluster_secret,
            repl_backlog_bytes: to_usize(args.repl_backlog_bytes),
            repl_backlog_min_bytes: to_usize(args.repl_backlog_min_bytes),
            repl_full_sync_buffer_bytes: to_usize(args.repl_full_sync_buffer_bytes),
            repl_timeout: std::time::Duration::from_millis(args.repl_timeout_ms),
            repl_handshake_timeout: std::time::Duration::from_millis(
                args.repl_handshake_timeout_ms,
            ),
            idle_timeout: (args.timeout > 0).then(|| std::time::Duration::from_secs(args.timeout)),
            peers: args.peers,
            advertise,
            failover_timeout: std::time::Duration::from_millis(args.failover_timeout_ms),
            min_replicas_to_write: to_usize(args.min_replicas_to_write),
            min_replicas_timeout: std::time::Duration::from_millis(args.min_replicas_timeout_ms),
            sentinel_name: args.sentinel_name,
            source_addr: args.source_addr,
            auth: args.auth.resolve()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_role() {
        let primary = NodeConfig::new(Role::Primary);
        assert_eq!(primary.listen, "127.0.0.1:12345".parse().unwrap());
        assert_eq!(primary.data_dir, PathBuf::from("kvdata/primary"));
        let replica = NodeConfig::new(Role::Replica);
        assert_eq!(replica.listen, "127.0.0.1:12346".parse().unwrap());
        assert_eq!(replica.max_line_bytes, 1024 * 1024);
        assert_eq!(replica.max_clients, 10_000);
        assert_eq!(
            replica.maxmemory_clients, 0,
            "no cap unless asked for, as Redis"
        );
    }

    #[test]
    fn import_is_a_subcommand() {
        let cli = Cli::parse_from(["kvnode", "import", "--seed-file", "seed.txt"]);
        let Some(NodeCommand::Import(args)) = cli.command else {
            panic!("expected the import subcommand");
        };
        assert_eq!(args.seed_file, PathBuf::from("seed.txt"));
        assert_eq!(args.data_dir, PathBuf::from("kvdata/primary"));
        assert!(Cli::try_parse_from(["kvnode", "import"]).is_err());
        let cli = Cli::parse_from(["kvnode", "--fsync", "always"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.node.fsync, Fsync::Always);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(NodeArgs::try_parse_from(["kvnode", "--fsync", "sometimes"]).is_err());
        assert!(NodeArgs::try_parse_from(["kvnode", "--role", "leader"]).is_err());
        assert!(NodeArgs::try_parse_from(["kvnode", "--listen", "nowhere"]).is_err());
        assert!(
            NodeArgs::try_parse_from(["kvnode", "--listen", "no-such-host.invalid:1"]).is_err()
        );
        let named = NodeArgs::parse_from(["kvnode", "--listen", "localhost:13000"]);
        assert_eq!(named.listen.map(|a| a.port()), Some(13000));
        assert!(named.listen.is_some_and(|a| a.ip().is_loopback()));
        assert!(NodeArgs::try_parse_from(["kvnode", "--max-clients", "0"]).is_err());
        let args = NodeArgs::parse_from(["kvnode", "--client-output-limit", "4096"]);
        assert!(NodeConfig::try_from(args).is_err());
        let peers = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
        let args = NodeArgs::parse_from(["kvnode", "--peers", peers, "--listen", "127.0.0.1:7004"]);
        let error = NodeConfig::try_from(args).unwrap_err().to_string();
        assert!(error.contains("not in --peers"), "{error}");
        let args = NodeArgs::parse_from(["kvnode", "--peers", peers, "--role", "replica"]);
        assert!(NodeConfig::try_from(args).is_err());
        let twice = "127.0.0.1:7001,127.0.0.1:7001";
        let args = NodeArgs::parse_from(["kvnode", "--peers", twice, "--listen", "127.0.0.1:7001"]);
        assert!(NodeConfig::try_from(args).is_err());
    }

    #[test]
    fn client_memory_takes_sizes_with_units() {
        let cap = |text: &str| {
            NodeArgs::try_parse_from(["kvnode", "--maxmemory-clients", text])
                .map(|args| args.maxmemory_clients)
        };
        assert_eq!(cap("0").unwrap(), 0);
        assert_eq!(cap("4096").unwrap(), 4096);
        assert_eq!(cap("32MiB").unwrap(), 32 << 20);
        assert_eq!(cap("32mb").unwrap(), 32 << 20);
        assert_eq!(cap("2GiB").unwrap(), 2 << 30);
        assert_eq!(cap("64kib").unwrap(), 64 << 10);
        for bad in ["", "MiB", "32 parsecs", "-1", "99999999999GiB"] {
            assert!(cap(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_member_of_a_failover_cluster_finds_itself_in_peers() {
        let peers = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
        let args = NodeArgs::parse_from(["kvnode", "--peers", peers, "--listen", "127.0.0.1:7002"]);
        let config = NodeConfig::try_from(args).unwrap();
        assert_eq!(config.peers.len(), 3);
        assert_eq!(config.advertise, "127.0.0.1:7002");
        assert_eq!(config.min_replicas_to_write, 0);
    }
}

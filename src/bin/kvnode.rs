//! `kvnode`: run one node of kvstore. See `kvnode --help`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kvstore::cluster::Cluster;
use kvstore::config::{Cli, ImportArgs, NodeArgs, NodeCommand, NodeConfig, Role};
use kvstore::logging::stderr_logger;
use kvstore::node::Node;
use slog::{error, info, Logger};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// jemalloc, as Redis uses: a node allocates on one thread (the Store's: every key and value)
/// and frees on another (the writer drops what it has persisted), which glibc's malloc
/// handles poorly. It bought ~15% more SET/s on a three-node cluster; see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at start-up: a background thread hands freed pages back to the
/// system within about a second (Redis does the same), rather than keeping them resident for
/// ten, so the RSS of a node follows its data. The `_RJEM_MALLOC_CONF` environment variable
/// overrides them.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// How long in-flight requests get to finish once a stop signal arrives.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why `kvnode` could not run, as one line for the operator.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Config(#[from] kvstore::config::ConfigError),
    #[error(transparent)]
    Node(#[from] kvstore::node::NodeError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(NodeCommand::Import(args)) => import(&args),
        Some(NodeCommand::HashPassword(args)) => hash_password(&args),
        None => serve(cli.node),
    }
}

/// `kvnode hash-password`: print the hash (or the users file's line), then exit.
fn hash_password(args: &kvstore::auth::HashPasswordArgs) -> ExitCode {
    match kvstore::auth::hash_password(args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kvnode hash-password: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `kvnode import`: load a seed file, then exit.
fn import(args: &ImportArgs) -> ExitCode {
    let (log, _log_thread) = stderr_logger(args.log_level);
    match kvstore::import::import(&args.seed_file, &args.data_dir, &log) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!(log, "import failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run a node until SIGINT or SIGTERM.
fn serve(args: NodeArgs) -> ExitCode {
    // Dropped last, after the final records: it writes what is queued before the exit.
    let (log, _log_thread) = stderr_logger(args.log_level);
    let system = actix_rt::System::new();
    let result = system.block_on(async {
        let config = NodeConfig::try_from(args)?;
        // Handlers first, so that a signal during start-up still means a clean stop.
        let signals = StopSignals::install().map_err(RunError::Signals)?;
        if config.role == Role::Cluster {
            let cluster = Cluster::start(&config, &log).await?;
            let signal = signals.wait(&log, || cluster.reload_tls()).await;
            info!(log, "stop signal received"; "signal" => signal);
            cluster.shutdown(SHUTDOWN_GRACE).await;
            return Ok(());
        }
        let node = Node::start(&config, &log).await?;
        let signal = signals.wait(&log, || node.reload_tls()).await;
        info!(log, "stop signal received"; "signal" => signal);
        node.shutdown(SHUTDOWN_GRACE).await;
        Ok::<_, RunError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(log, "cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment they are installed; and SIGHUP, which
/// reloads the TLS certificates (as Redis 8 does for its TLS files).
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    /// SIGXFSZ is caught (and ignored) so that a file size limit makes a log write fail with
    /// an error the writer handles, rather than kill the process.
    _file_size: Signal,
}

/// SIGXFSZ on Linux.
const SIGXFSZ: i32 = 25;

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            _file_size: signal(SignalKind::from_raw(SIGXFSZ))?,
        })
    }

    /// Resolves on the first stop signal, naming it; runs `reload_tls` at every SIGHUP
    /// meanwhile (which logs how it went; a node without TLS says it has none to reload).
    async fn wait<R>(mut self, log: &Logger, reload_tls: impl Fn() -> Option<R>) -> &'static str {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.terminate.recv() => return "SIGTERM",
                _ = self.hangup.recv() => {
                    if reload_tls().is_none() {
                        info!(log, "SIGHUP: this node has no TLS to reload");
                    }
                }
            }
        }
    }
}

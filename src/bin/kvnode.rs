//! `kvnode`: run one node of kvstore. See `kvnode --help`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kvstore::config::{NodeArgs, NodeConfig};
use kvstore::logging::stderr_logger;
use kvstore::node::Node;
use slog::{error, info};

/// How long in-flight requests get to finish once a stop signal arrives.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = NodeArgs::parse();
    let log = stderr_logger(args.log_level);
    let config = NodeConfig::from(args);
    let system = actix_rt::System::new();
    let result = system.block_on(async {
        let node = Node::start(&config, &log).await?;
        let signal = wait_for_stop_signal().await;
        info!(log, "stop signal received"; "signal" => signal);
        node.shutdown(SHUTDOWN_GRACE).await;
        Ok::<_, kvstore::node::NodeError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(log, "cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, naming the signal.
async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        // Without a SIGTERM handler the node still stops on Ctrl-C.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

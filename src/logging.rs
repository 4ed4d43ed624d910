//! The node's logger: slog records formatted by slog-term, written to stderr by a thread of
//! their own (slog-async).
//!
//! Two rules: a logging failure never stops the node, and a log write never blocks the
//! thread that logs. stderr can go away under a running node (`kvnode ... 2>&1 | tee log`
//! and then Ctrl-C, a log shipper that restarts); its writes then fail, and are ignored. And
//! stderr can be slow (a pipe whose reader lags), so records go through a bounded queue to
//! the `kv-log` thread: the Store's thread never waits for a terminal, and when the queue is
//! full, records are dropped and their number reported once there is room again.

use clap::ValueEnum;
use std::time::Duration;

use slog::{o, Drain, Logger};
use slog_async::{AsyncGuard, OverflowStrategy};

/// How many records may wait for the log thread before new ones are dropped (and counted).
const LOG_QUEUE: usize = 4096;

/// How much the node logs, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Only failures the node cannot carry on from.
    Critical,
    /// Also failures the node carries on from (a disk error, a refused replica).
    Error,
    /// Also what an operator should look at (a lost link, a refused connection).
    Warning,
    /// Also the node's life: start, recovery, links, shutdown (the default).
    Info,
    /// Also every connection.
    Debug,
    /// Everything.
    Trace,
}

impl From<LogLevel> for slog::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Critical => slog::Level::Critical,
            LogLevel::Error => slog::Level::Error,
            LogLevel::Warning => slog::Level::Warning,
            LogLevel::Info => slog::Level::Info,
            LogLevel::Debug => slog::Level::Debug,
            LogLevel::Trace => slog::Level::Trace,
        }
    }
}

/// How long the program waits at exit for the log thread to write what is queued: a stderr
/// that has stalled (a pipe nobody reads) must not keep the process from exiting.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(2);

/// Keeps the log thread: dropping it writes every queued record (waiting at most
/// [`FLUSH_AT_EXIT`]), then stops the thread. Hold it until the program exits, so that the
/// last lines (a shutdown, a `cannot start`) are out.
pub struct LogGuard(
    /// The log thread's handle, taken when dropped.
    Option<AsyncGuard>,
);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else {
            return;
        };
        // Joined on a thread of its own, so that a stalled stderr costs a bounded wait.
        let (done, flushed) = std::sync::mpsc::channel();
        let joined = std::thread::Builder::new()
            .name("kv-log-exit".into())
            .spawn(move || {
                drop(guard);
                let _ = done.send(());
            });
        if joined.is_ok() {
            let _ = flushed.recv_timeout(FLUSH_AT_EXIT);
        }
    }
}

/// A logger writing one line per record to stderr, from the `kv-log` thread.
pub fn stderr_logger(level: LogLevel) -> (Logger, LogGuard) {
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    // A failed write (stderr closed) is dropped: nothing a logger does may stop the node.
    let format = slog_term::FullFormat::new(decorator).build().ignore_res();
    // Filtered before the queue, so that records nobody wants cost no queue slot.
    let filtered = format.filter_level(level.into()).ignore_res();
    let (drain, guard) = slog_async::Async::new(filtered)
        .chan_size(LOG_QUEUE)
        .overflow_strategy(OverflowStrategy::DropAndReport)
        .thread_name("kv-log".into())
        .build_with_guard();
    (
        Logger::root(drain.ignore_res(), o!()),
        LogGuard(Some(guard)),
    )
}

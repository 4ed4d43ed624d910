//! The node's logger: slog records written by slog-term to stderr.

use clap::ValueEnum;
use slog::{o, Drain, Logger};

/// How much the node logs, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Critical,
    Error,
    Warning,
    Info,
    Debug,
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

/// A logger writing one line per record to stderr, synchronously, so that nothing logged
/// before a crash or exit is lost.
pub fn stderr_logger(level: LogLevel) -> Logger {
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = drain.filter_level(level.into()).fuse();
    Logger::root(drain, o!())
}

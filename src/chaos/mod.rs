//! The fault-injection suite's library (issue 13): the link-cutting proxy, the history the
//! `kvchaos` clients record, and the checks that decide whether a history was possible: per
//! key, the primary's answers must be linearizable and lose no acknowledged write, and the
//! replicas' answers must show written values and never go back in time on one connection;
//! a client that reads with a position token must read its own writes and never go back in
//! time, whichever node answers.
//! [`check`] runs them all over a whole history and says what is wrong, and where.

pub mod checker;
pub mod history;
pub mod lost;
pub mod proxy;
pub mod read_your_writes;
pub mod replica;
pub mod report;
#[cfg(test)]
mod testing;
pub mod window;

pub use report::{check, Report};

//! The fault-injection suite's parts that need no running node: the history clients record,
//! and the checker that decides whether a history was possible (issue 13; the `kvchaos`
//! program that runs nodes, injects faults and records histories is still to come).

pub mod checker;
pub mod history;
pub mod lost;
pub mod proxy;

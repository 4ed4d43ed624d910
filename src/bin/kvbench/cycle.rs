//! The cycle workloads: each request is a write on the node and, but for `set-wait`, a read
//! of that very write on `--replica`, the two steps timed apart: what reading one's own
//! writes from a replica costs, with a position token or with `WAIT`, against not asking.
//!
//! A cycle of connection `i` writes a value naming the connection and the cycle to a key
//! only `i` writes (`key:<n>` with `n` congruent to `i` modulo `--conns`), so the read can
//! tell the cycle's own write from an older one. The steps, each one write of its requests
//! pipelined and then their replies:
//!
//! | workload | write step, on the node | read step, on the replica |
//! |---|---|---|
//! | `set-wait` | `PUT` + `WAIT n t` | none |
//! | `ryw-plain` | `PUT` | `GET` |
//! | `ryw-wait` | `PUT` + `WAIT n t` | `GET` |
//! | `ryw-after` | `PUT` + `LASTPOS` | `GET key AFTER <token> t` |
//! | `ryw-waitpos` | `PUT` + `LASTPOS` | `WAITPOS <token> t` + `GET` |
//!
//! (`SET` over RESP, so that `set-wait`, `ryw-plain` and `ryw-wait` drive Redis too.) A
//! `WAIT` that answers fewer replicas than asked counts as an error reply, as a timed-out
//! position wait is one; a read that misses the cycle's write, in a cycle with no error, is
//! counted as stale.

use std::io::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::args::{Args, Proto, Workload};
use crate::load::{Budget, Link, Shared};
use crate::reply::Reply;
use crate::request::{push_command, set_verb};
use crate::stats::{Stats, Steps};

/// What the write step sends after the write.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    /// Nothing: a plain write.
    Nothing,
    /// `WAIT <n> <timeout>`.
    Wait,
    /// `LASTPOS`, for the read step's token.
    LastPos,
}

/// What one cycle's replies showed.
#[derive(Default)]
struct Outcome {
    /// Error replies, short WAITs included.
    errors: u64,
    /// Whether the read did not see the cycle's write.
    stale: bool,
}

/// One connection's cycles, on its link to the node and, if the workload reads, to the
/// replica; `index` is the connection's number, from 0. Runs until the budget is spent or a
/// link fails.
pub async fn run(
    mut node: Link,
    mut replica: Option<Link>,
    index: u64,
    args: &Args,
    shared: &Shared,
) -> Stats {
    let mut r = Stats::new();
    let mut steps = Steps::new();
    let budget = Budget::new(args);
    let mut cycle = Cycle::new(index, args);
    while budget.claim(shared, 1) == 1 {
        cycle.next(args);
        let started = Instant::now();
        let mut outcome = Outcome::default();
        if let Err(error) = cycle.write_step(&mut node, args, &mut outcome).await {
            r.fail(&error);
            break;
        }
        let written = Instant::now();
        if let Some(replica) = replica.as_mut() {
            if let Err(error) = cycle.read_step(replica, args, &mut outcome).await {
                r.fail(&error);
                break;
            }
            steps
                .read
                .saturating_record(written.elapsed().as_micros() as u64);
        }
        steps
            .write
            .saturating_record((written - started).as_micros() as u64);
        r.latency
            .saturating_record(started.elapsed().as_micros() as u64);
        r.done += 1;
        r.errors += outcome.errors;
        steps.stale += u64::from(outcome.stale && outcome.errors == 0);
        shared.answered.fetch_add(1, Relaxed);
    }
    r.steps = Some(steps);
    r.finished = Instant::now();
    shared.running.fetch_sub(1, Relaxed);
    r
}

/// A connection's cycle in the making: its key and value, the requests of a step, and the
/// replies' texts, all reused from one cycle to the next.
struct Cycle {
    /// The connection's number, from 0.
    index: u64,
    /// Cycles begun so far on this connection.
    count: u64,
    /// Keys this connection owns: `key:<k * conns + index>` for `k` below this.
    own_keys: u64,
    /// The current cycle's key.
    key: Vec<u8>,
    /// The current cycle's value: `<index>.<count>.` padded with `x` to `--value-size`.
    value: Vec<u8>,
    /// The requests of the current step.
    buf: Vec<u8>,
    /// The position token `LASTPOS` answered in the current cycle.
    token: Vec<u8>,
    /// The text of the last reply read.
    text: Vec<u8>,
    /// `--wait-replicas` and `--wait-timeout`, as words of a request.
    wait_replicas: String,
    /// See `wait_replicas`.
    wait_timeout: String,
}

impl Cycle {
    /// Connection `index`'s cycles, none begun.
    fn new(index: u64, args: &Args) -> Cycle {
        Cycle {
            index,
            count: 0,
            own_keys: (args.keyspace / args.conns).max(1),
            key: Vec::new(),
            value: Vec::new(),
            buf: Vec::new(),
            token: Vec::new(),
            text: Vec::new(),
            wait_replicas: args.wait_replicas.to_string(),
            wait_timeout: args.wait_timeout.to_string(),
        }
    }

    /// Begin the next cycle: the connection's next key, in turn, and a value no other cycle
    /// writes.
    fn next(&mut self, args: &Args) {
        let (index, count) = (self.index, self.count);
        let key = (count % self.own_keys) * args.conns + index;
        self.key.clear();
        let _ = write!(self.key, "key:{key}"); // writing into a Vec cannot fail
        self.value.clear();
        let _ = write!(self.value, "{index}.{count}.");
        let size = self.value.len().max(args.value_size as usize);
        self.value.resize(size, b'x');
        self.count += 1;
    }

    /// The write step on the node: the write, and the WAIT or LASTPOS the workload pairs with
    /// it, pipelined; keeps the token LASTPOS answers.
    async fn write_step(
        &mut self,
        node: &mut Link,
        args: &Args,
        outcome: &mut Outcome,
    ) -> std::io::Result<()> {
        let proto = args.proto;
        self.buf.clear();
        push_command(
            &mut self.buf,
            proto,
            &[set_verb(proto), &self.key, &self.value],
        );
        let then = match args.workload {
            Workload::SetWait | Workload::RywWait => {
                let (replicas, timeout) =
                    (self.wait_replicas.as_bytes(), self.wait_timeout.as_bytes());
                push_command(&mut self.buf, proto, &[b"WAIT", replicas, timeout]);
                Then::Wait
            }
            Workload::RywAfter | Workload::RywWaitpos => {
                push_command(&mut self.buf, proto, &[b"LASTPOS"]);
                Then::LastPos
            }
            _ => Then::Nothing,
        };
        node.send(&self.buf).await?;
        let reply = node.reply(proto, None).await?;
        outcome.errors += u64::from(reply == Reply::Error);
        if then == Then::Nothing {
            return Ok(());
        }
        let reply = node.reply(proto, Some(&mut self.text)).await?;
        let good = match then {
            Then::Wait => matches!(count(proto, &self.text), Some(n) if n >= args.wait_replicas),
            _ => {
                std::mem::swap(&mut self.token, &mut self.text);
                reply == Reply::Value
            }
        };
        outcome.errors += u64::from(!good);
        Ok(())
    }

    /// The read step on the replica: the GET, with the position wait the workload asks for
    /// before it; notes whether it missed the cycle's write.
    async fn read_step(
        &mut self,
        replica: &mut Link,
        args: &Args,
        outcome: &mut Outcome,
    ) -> std::io::Result<()> {
        let (proto, timeout) = (args.proto, self.wait_timeout.as_bytes());
        let token = &self.token[..];
        self.buf.clear();
        let mut replies = 1;
        match args.workload {
            Workload::RywAfter => {
                let words = [&b"GET"[..], &self.key, b"AFTER", token, timeout];
                push_command(&mut self.buf, proto, &words);
            }
            Workload::RywWaitpos => {
                push_command(&mut self.buf, proto, &[b"WAITPOS", token, timeout]);
                push_command(&mut self.buf, proto, &[b"GET", &self.key]);
                replies = 2;
            }
            _ => push_command(&mut self.buf, proto, &[b"GET", &self.key]),
        }
        replica.send(&self.buf).await?;
        for _ in 1..replies {
            let reply = replica.reply(proto, None).await?;
            outcome.errors += u64::from(reply == Reply::Error);
        }
        let reply = replica.reply(proto, Some(&mut self.text)).await?;
        outcome.errors += u64::from(reply == Reply::Error);
        outcome.stale = reply != Reply::Value || self.text != self.value;
        Ok(())
    }
}

/// The number a WAIT answered: a line's decimal, or a RESP integer (`:<n>`).
fn count(proto: Proto, text: &[u8]) -> Option<u32> {
    let digits = match proto {
        Proto::Line => text,
        Proto::Resp => text.strip_prefix(b":")?,
    };
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_reply_is_read_as_its_count_in_either_protocol() {
        assert_eq!(count(Proto::Line, b"1"), Some(1));
        assert_eq!(count(Proto::Resp, b":2"), Some(2));
        assert_eq!(count(Proto::Resp, b"2"), None);
        assert_eq!(
            count(Proto::Line, b"ERROR: WAIT cannot be used on a replica"),
            None
        );
    }
}

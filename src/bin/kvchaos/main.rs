//! `kvchaos`: run kvstore nodes, drive them with concurrent clients while injecting faults,
//! record every operation, and check afterwards whether the whole history was possible.
//!
//! It starts a primary and its replicas (ours, or Redis as a reference), each behind a proxy
//! of ours, drives them with concurrent clients on a few keys, injects faults at seeded random
//! times (`kill -9`, `SIGSTOP`, partitions and one-way cuts, a full or slow disk), then heals
//! everything, reads every key once more, waits for the replicas to converge, and checks the
//! history. Exit status: 0 when the history is valid, 1 when the checker found a violation,
//! 2 for bad arguments, a run that could not start, or a fault that could not be injected.
//! The last line printed is the verdict.

mod clients;
mod cluster;
mod connection;
mod failovers;
mod faults;
mod members;
mod node;
mod route;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kvstore::chaos::check;
use kvstore::chaos::history::{Node, Operation, Outcome};
use kvstore::chaos::report::Violation;
use kvstore::chaos::window::Window;

use crate::clients::{Opened, Plan};
use crate::cluster::Cluster;
use crate::connection::Protocol;
use crate::faults::{FaultError, FaultKind, FaultRecord, Injector};
use crate::node::Program;

/// How long the replicas get to converge once the faults are healed.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

/// Which store to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// Our `kvnode`.
    Kvstore,
    /// Debian's `redis-server`, as a reference (RESP clients; `--fsync` is `appendfsync`,
    /// `off` means no AOF at all).
    Redis,
    /// A failover cluster of our `kvnode`s (`--peers`): `--replicas` + 1 members that elect
    /// their primary, which clients find and follow.
    Cluster,
}

/// Run a store under faults and check the history of what clients saw.
#[derive(Debug, Parser)]
#[command(name = "kvchaos", version)]
struct Args {
    /// The faults to inject, at random times from the seed.
    #[arg(long, value_enum, default_value_t = FaultKind::Kill)]
    fault: FaultKind,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// The seed of the fault schedule and the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The nodes' `--fsync` policy (`off`: Redis with no AOF).
    #[arg(long, default_value = "always", value_parser = ["always", "everysec", "no", "off"])]
    fsync: String,
    /// The store to run.
    #[arg(long, value_enum, default_value_t = Target::Kvstore)]
    target: Target,
    /// Replicas besides the primary (0: one node).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=4))]
    replicas: u64,
    /// The share of reads, in percent, each client sends to its replica (one of them) rather
    /// than to the primary.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    replica_reads: u8,
    /// The clients' protocol (default: the line protocol for our node, RESP for Redis).
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    clients: u64,
    /// The most operations each client makes per second (0: as fast as it can). The checker's
    /// work grows with the history, so runs are paced by default.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    rate: u64,
    /// Keys the clients share: few, so that operations contend, yet enough that most have no
    /// write in flight at a given instant (one could explain a loss away).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    keys: u64,
    /// Where the history, the faults and the nodes' logs go (default: target/chaos/<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `kvnode` to run (default: the one next to this program).
    #[arg(long)]
    kvnode: Option<PathBuf>,
    /// The `redis-server` to run with `--target redis`.
    #[arg(long, default_value = "redis-server")]
    redis_server: PathBuf,
    /// `--target cluster`: the members' failover timeout.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(60..=60_000))]
    failover_timeout_ms: u64,
    /// `--target cluster`: the members' `--min-replicas-to-write` (1: no acknowledged write
    /// may be lost; 0: asynchronous replication, whose losses are counted).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=4))]
    min_replicas_to_write: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("kvchaos: {error}");
            ExitCode::from(2)
        }
    }
}

/// What the arguments ask for, checked: the program to run and the clients' protocol.
fn program(args: &Args) -> Result<(Program, Protocol), String> {
    match args.target {
        Target::Kvstore | Target::Cluster => {
            if args.target == Target::Cluster && args.protocol == Some(Protocol::Resp) {
                return Err(
                    "--target cluster speaks the line protocol: leave out --protocol \
                            resp"
                        .into(),
                );
            }
            if args.target == Target::Cluster && args.replicas < 2 {
                return Err("--target cluster needs --replicas 2 or more (3 members)".into());
            }
            if args.fsync == "off" {
                return Err(
                    "--fsync off is for --target redis (no AOF); our node always \
                            keeps a log"
                        .into(),
                );
            }
            let kvnode = match &args.kvnode {
                Some(path) => path.clone(),
                None => std::env::current_exe()
                    .map_err(|e| format!("cannot find kvnode: {e}"))?
                    .with_file_name("kvnode"),
            };
            Ok((
                Program::Kvnode(kvnode),
                args.protocol.unwrap_or(Protocol::Line),
            ))
        }
        Target::Redis => {
            if args.protocol == Some(Protocol::Line) {
                return Err("Redis speaks RESP only: leave out --protocol line".into());
            }
            Ok((Program::Redis(args.redis_server.clone()), Protocol::Resp))
        }
    }
}

/// Run, record, check; answers whether the history is valid.
fn run(args: &Args) -> Result<bool, String> {
    let (program, protocol) = program(args)?;
    check_tools(args.fault)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/chaos").join(seed.to_string()));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut cluster = match args.target {
        Target::Cluster => {
            let options = members::Options {
                failover_timeout_ms: args.failover_timeout_ms,
                min_replicas_to_write: args.min_replicas_to_write,
            };
            let members = args.replicas as usize + 1;
            members::start(&program, &args.fsync, members, options, &out)?
        }
        _ => Cluster::start(&program, &args.fsync, args.replicas as usize, &out)?,
    };
    let start = Instant::now();
    let plan = Plan {
        members: (0..cluster.nodes.len())
            .map(|i| cluster.client_addr(i))
            .collect(),
        failover: cluster.failover(),
        replica_reads: args.replica_reads,
        keys: args.keys as usize,
        pace: (args.rate > 0).then(|| Duration::from_secs(1) / args.rate as u32),
        protocol,
        start,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let workers = clients::start(&plan, args.clients as usize, seed, stop.clone());
    let failover_timeout = Duration::from_millis(args.failover_timeout_ms);
    let mut injector = Injector::new(seed, start, failover_timeout);
    let mut faults: Vec<FaultRecord> = Vec::new();
    // What went wrong with the nodes themselves: crashes, failed restarts, unclean stops.
    let mut problems: Vec<String> = Vec::new();
    // A fault that could not be injected: the run did not do what it was asked (exit 2).
    let mut tool_failure: Option<String> = None;
    let deadline = start + Duration::from_secs(args.duration);
    loop {
        // Faults at random times, from the seed.
        std::thread::sleep(injector.gap());
        match cluster.restart_crashed() {
            Ok(crashed) => problems.extend(crashed),
            Err(error) => problems.push(format!("the run stopped early: {error}")),
        }
        if Instant::now() >= deadline || !problems.is_empty() {
            break;
        }
        match injector.inject(args.fault, &mut cluster) {
            Ok(fault) => faults.extend(fault),
            Err(FaultError::Node(error)) => {
                problems.push(format!("the run stopped early: {error}"));
            }
            Err(FaultError::Tool(error)) => {
                tool_failure = Some(error);
                break;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let end = start.elapsed().as_nanos() as u64;
    let mut history: Vec<Operation> = Vec::new();
    let mut opened: HashMap<u64, Opened> = HashMap::new();
    for worker in workers {
        let (operations, connections) = worker.join().map_err(|_| "a client thread panicked")?;
        history.extend(operations);
        opened.extend(connections);
    }
    let keys: Vec<String> = (0..args.keys).map(|k| format!("k{k}")).collect();
    let converged = match cluster.heal() {
        Ok(crashed) => {
            problems.extend(crashed);
            let (reads, connections) = clients::final_reads(&plan, args.clients as usize);
            history.extend(reads);
            opened.extend(connections);
            converge(&cluster, &keys, protocol)
        }
        Err(error) => Err(format!("the cluster could not be healed: {error}")),
    };
    problems.extend(cluster.stop());
    // Saved as the clients saw it; the bounds below are what the checker is told.
    clients::save(&history, &opened, &out.join("history.txt"))?;
    save_faults(&faults, &out.join("faults.txt"))?;
    let failovers = cluster
        .failover()
        .then(|| failovers::report(&failovers::measure(&history, &opened, &faults, end)));
    bound_unknowns(&mut history, &opened, &faults);
    if let Some(error) = tool_failure {
        return Err(format!(
            "a fault could not be injected, so the run is not a test: {error} (the history \
             so far is in {})",
            out.display()
        ));
    }
    let checked = Checked {
        problems,
        converged,
        failovers,
    };
    Ok(verdict(&history, &faults, checked, &out))
}

/// Fail early, as a run that cannot start, when a program the faults need is missing.
fn check_tools(fault: FaultKind) -> Result<(), String> {
    let needs: &[&str] = match fault {
        FaultKind::None => &[],
        FaultKind::Kill => &[],
        FaultKind::Pause => &["kill"],
        FaultKind::Partition => &[],
        FaultKind::DiskFull => &["prlimit"],
        FaultKind::SlowDisk => &["strace"],
        FaultKind::Mixed => &["kill", "prlimit", "strace"],
    };
    for tool in needs {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(format!(
                "--fault {fault:?} needs `{tool}`, which is not installed"
            ));
        }
    }
    Ok(())
}

/// Give each operation sent to the primary whose answer never came the latest time it can
/// have taken effect: the moment the process its connection reached (the primary's, or in a
/// failover cluster the member's it was sent to) was certainly dead, if it was killed. A
/// connection through a proxy reaches one process, the one running when it was opened, and
/// is never dialled again, so nothing sent on it can reach the node that starts after. One
/// sent after that process was already dead did not happen at all. In a failover cluster,
/// also the first write another member acknowledged after it was sent (a paused or cut-off
/// primary that comes back has been deposed; see below). Without the bound an old unanswered
/// write could be "maybe applied later" forever and explain away any later loss.
fn bound_unknowns(
    history: &mut [Operation],
    opened: &HashMap<u64, Opened>,
    faults: &[FaultRecord],
) {
    let deaths: Vec<(usize, u64)> = faults.iter().filter_map(|fault| fault.killed).collect();
    let member_of = |op: &Operation| opened.get(&op.connection).map_or(0, |o| o.member);
    // Writes a primary acknowledged, by when and on which member. A member acknowledges only
    // while it holds its lease, and a new primary is named only after the old one's has
    // ended; so once another member has acknowledged a write, a write sent earlier to member
    // m either took effect before that (m applied it while it still led, and the new
    // primary's history forks after it) or never will (m's tail past the fork is discarded).
    let mut acknowledged: Vec<(u64, usize)> = history
        .iter()
        .filter(|op| op.node == Node::Primary)
        .filter(|op| matches!(op.outcome, Outcome::Written | Outcome::Deleted(_)))
        .map(|op| (op.completed, member_of(op)))
        .collect();
    acknowledged.sort_unstable();
    for op in history
        .iter_mut()
        .filter(|op| op.outcome == Outcome::Unknown)
    {
        let Node::Primary = op.node else {
            // Reads have no effect; their bound does not matter, and none is claimed.
            op.completed = u64::MAX;
            continue;
        };
        // A connection not in the map reached the primary of a run without failover.
        let Opened { at: since, member } = opened.get(&op.connection).copied().unwrap_or(Opened {
            at: op.invoked,
            member: 0,
        });
        let death = deaths
            .iter()
            .filter(|&&(node, _)| node == member)
            .map(|&(_, dead)| dead)
            .find(|&dead| dead > since);
        let elsewhere = acknowledged
            .iter()
            .find(|&&(at, by)| at > op.invoked && by != member)
            .map(|&(at, _)| at);
        match death {
            Some(dead) if dead < op.invoked => op.outcome = Outcome::Failed,
            Some(dead) => op.completed = dead.min(elsewhere.unwrap_or(u64::MAX)),
            None => op.completed = elsewhere.unwrap_or(u64::MAX),
        }
    }
}

/// Wait until every replica shows what the primary shows; the last difference if they do not
/// within the deadline.
fn converge(cluster: &Cluster, keys: &[String], protocol: Protocol) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match cluster.compare(keys, protocol) {
            Ok(()) => return Ok(()),
            Err(difference) if start.elapsed() > CONVERGE_DEADLINE => return Err(difference),
            // Poll interval of the deadline-bounded wait for the replicas to catch up.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Write the faults, one a line.
fn save_faults(faults: &[FaultRecord], path: &Path) -> Result<(), String> {
    let text: String = faults.iter().map(|fault| format!("{fault}\n")).collect();
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// What the run found besides the history: problems with the nodes, convergence, and in a
/// failover cluster what each failover cost.
struct Checked {
    /// Crashes, failed restarts, unclean stops.
    problems: Vec<String>,
    /// Whether the replicas converged, or their last difference.
    converged: Result<(), String>,
    /// The failovers' report (`failovers::report`), in a failover cluster.
    failovers: Option<String>,
}

/// Check the history; print every violation with the faults around it, the failovers'
/// costs, and the verdict as the last line; all of it is kept in `out/report.txt` too.
fn verdict(history: &[Operation], faults: &[FaultRecord], checked: Checked, out: &Path) -> bool {
    use std::fmt::Write as _;
    let Checked {
        problems,
        converged,
        failovers,
    } = checked;
    let report = check(history);
    // Writing to a String cannot fail.
    let mut text = String::new();
    for violation in report.violations() {
        let _ = write!(text, "{violation}");
        text.push_str(&faults_around(window_of(&violation).span(), faults));
    }
    for problem in &problems {
        let _ = writeln!(text, "{problem}");
    }
    text.push_str(failovers.as_deref().unwrap_or_default());
    // A run in which nothing was answered checked nothing (every operation unknown), however
    // its history checks out.
    let answered = history
        .iter()
        .filter(|op| !matches!(op.outcome, Outcome::Unknown | Outcome::Failed))
        .count();
    if answered == 0 {
        let _ = writeln!(text, "no operation was answered: the run checked nothing");
    }
    if let Err(difference) = &converged {
        let _ = writeln!(
            text,
            "the replicas did not converge within {CONVERGE_DEADLINE:?}: {difference}"
        );
    }
    let valid = report.is_valid() && problems.is_empty() && converged.is_ok() && answered > 0;
    let _ = writeln!(
        text,
        "kvchaos: {} operations={} answered={answered} faults={} \
         lost_acknowledged_writes={} not_linearizable_keys={} replica_violations={} \
         crashes={} converged={} out={}",
        if valid { "valid" } else { "INVALID" },
        history.len(),
        faults.len(),
        report.lost_writes(),
        report.non_linearizable_keys(),
        report.replica_violations(),
        problems.len(),
        if converged.is_ok() { "yes" } else { "no" },
        out.display()
    );
    print!("{text}");
    if let Err(error) = std::fs::write(out.join("report.txt"), &text) {
        eprintln!(
            "kvchaos: cannot write the report into {}: {error}",
            out.display()
        );
    }
    valid
}

/// The operations that show a violation.
fn window_of<'a>(violation: &Violation<'a>) -> &'a Window {
    match violation {
        Violation::LostWrite(lost) => &lost.window,
        Violation::NotLinearizable(window) => window,
        Violation::Replica(replica) => &replica.window,
    }
}

/// The faults active during `span`, or if none was, the last one before it: what a reader of
/// a violation looks at first.
fn faults_around(span: Range<u64>, faults: &[FaultRecord]) -> String {
    let during: Vec<String> = faults
        .iter()
        .filter(|fault| fault.from <= span.end && fault.to >= span.start)
        .map(|fault| format!("    {fault}\n"))
        .collect();
    if !during.is_empty() {
        format!("  faults during it:\n{}", during.concat())
    } else if let Some(before) = faults.iter().rev().find(|fault| fault.to < span.start) {
        format!("  no fault during it; the last one before it: {before}\n")
    } else {
        "  no fault during it or before it\n".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvstore::chaos::history::Call;

    fn unknown(node: Node, invoked: u64, connection: u64) -> Operation {
        Operation {
            client: 0,
            connection,
            node,
            key: "k".into(),
            call: Call::Put("v".into()),
            invoked,
            completed: invoked + 1,
            outcome: Outcome::Unknown,
        }
    }

    fn kill(node: usize, dead: u64) -> FaultRecord {
        FaultRecord {
            from: dead - 1,
            to: dead + 10,
            what: String::new(),
            killed: Some((node, dead)),
            primary: None,
        }
    }

    #[test]
    fn an_unanswered_write_is_bounded_by_the_death_of_the_primary_its_connection_reached() {
        let mut history = vec![
            unknown(Node::Primary, 5, 1),
            unknown(Node::Primary, 25, 2),
            unknown(Node::Primary, 45, 3),
            unknown(Node::Replica(1), 5, 4),
            // Sent at 22 on a connection opened at 15, to the process that died at 20.
            unknown(Node::Primary, 22, 5),
        ];
        let opened = HashMap::from([(1, 4), (2, 24), (3, 44), (4, 4), (5, 15)])
            .into_iter()
            .map(|(connection, at)| (connection, Opened { at, member: 0 }))
            .collect();
        // The primary died at 20 and 40; a replica's death at 30 bounds nothing.
        let faults = [kill(0, 20), kill(1, 30), kill(0, 40)];
        bound_unknowns(&mut history, &opened, &faults);
        let bounds: Vec<u64> = history[..4].iter().map(|op| op.completed).collect();
        assert_eq!(bounds, [20, 40, u64::MAX, u64::MAX]);
        // It never reached a live process: it did not happen.
        assert_eq!(history[4].outcome, Outcome::Failed);
    }

    /// In a failover cluster, a write sent to a primary that was then paused or cut off is
    /// bounded by the first write another member acknowledged after it was sent.
    #[test]
    fn an_unanswered_write_is_bounded_by_the_next_primary_acknowledging() {
        let acked = |invoked, completed, connection| Operation {
            completed,
            outcome: Outcome::Written,
            ..unknown(Node::Primary, invoked, connection)
        };
        let mut history = vec![
            unknown(Node::Primary, 10, 1),
            acked(11, 12, 1),
            acked(40, 50, 2),
            unknown(Node::Primary, 60, 2),
        ];
        let opened = HashMap::from([(1, (1, 0)), (2, (30, 1))])
            .into_iter()
            .map(|(connection, (at, member))| (connection, Opened { at, member }))
            .collect();
        bound_unknowns(&mut history, &opened, &[]);
        // Member 0's own acknowledgement bounds nothing; member 1's, at 50, does.
        assert_eq!(history[0].completed, 50);
        // Nothing acknowledged elsewhere after it: no bound.
        assert_eq!(history[3].completed, u64::MAX);
    }
}

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

mod bounds;
mod clients;
mod cluster;
mod connection;
mod failovers;
mod faults;
mod members;
mod node;
mod route;
mod token_reads;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kvstore::chaos::check;
use kvstore::chaos::history::{Operation, Outcome};
use kvstore::chaos::report::Violation;
use kvstore::chaos::window::Window;

use crate::clients::{Opened, Plan};
use crate::cluster::Cluster;
use crate::connection::Protocol;
use crate::faults::{FaultError, FaultKind, FaultRecord, FaultTarget, Injector};
use crate::node::Program;
use crate::token_reads::{ReadYourWrites, TokenCounts};

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
    /// Which nodes the faults hit.
    #[arg(long, value_enum, default_value_t = FaultTarget::Any)]
    fault_target: FaultTarget,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// The seed of the fault schedule and the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// A password the nodes of the run require (kvnode's default user, Redis's
    /// `requirepass`), with which every client logs in. A flag shows in `ps`: prefer the
    /// KVSTORE_PASSWORD environment variable.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "KVSTORE_PASSWORD",
        hide_env_values = true
    )]
    pass: Option<String>,
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
    /// Every client reads its own writes from the replicas: it keeps the position token
    /// `LASTPOS` gives it after each operation and reads with it (`GET key AFTER token`),
    /// and the checker holds each client's reads to its own writes and earlier reads.
    /// `without-tokens` leaves the token out of the reads: a deliberate bug the checker must
    /// catch. Our node only (`--target kvstore` or `cluster`).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "tokens")]
    read_your_writes: Option<ReadYourWrites>,
    /// `--read-your-writes`: how long a replica may wait for a client's token before it
    /// answers `TIMEOUT` (then the client reads from the primary).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1_500))]
    token_timeout_ms: u64,
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
    if let Some(password) = &args.pass {
        connection::set_password(password.clone());
    }
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
    if args.pass.is_some() && args.target == Target::Redis {
        // A Redis replica given `requirepass` and `masterauth` did not stop within 15 s of
        // SIGTERM in our runs: the reference is run without one.
        return Err(
            "--pass (KVSTORE_PASSWORD) is for our node (--target kvstore or cluster)".into(),
        );
    }
    if args.read_your_writes.is_some() && (args.target == Target::Redis || args.replicas == 0) {
        return Err(
            "--read-your-writes needs our node (--target kvstore or cluster) and --replicas 1 \
             or more"
                .into(),
        );
    }
    if args.fault_target == FaultTarget::Replicas && args.replicas == 0 {
        return Err("--fault-target replicas needs --replicas 1 or more".into());
    }
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
        read_your_writes: args.read_your_writes,
        token_timeout_ms: args.token_timeout_ms,
        start,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let workers = clients::start(&plan, args.clients as usize, seed, stop.clone());
    let failover_timeout = Duration::from_millis(args.failover_timeout_ms);
    let mut injector = Injector::new(seed, start, args.fault_target, failover_timeout);
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
    let mut tokens = TokenCounts::default();
    for worker in workers {
        let recorded = worker.join().map_err(|_| "a client thread panicked")?;
        history.extend(recorded.operations);
        opened.extend(recorded.connections);
        tokens.add(&recorded.tokens);
    }
    let keys: Vec<String> = (0..args.keys).map(|k| format!("k{k}")).collect();
    let converged = match cluster.heal() {
        Ok(crashed) => {
            problems.extend(crashed);
            let reads = clients::final_reads(&plan, args.clients as usize);
            history.extend(reads.operations);
            opened.extend(reads.connections);
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
    bounds::bound_unknowns(&mut history, &opened, &faults);
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
        tokens: args.read_your_writes.map(|_| tokens),
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
    /// With `--read-your-writes`: what became of the replica reads with a token.
    tokens: Option<TokenCounts>,
}

/// Check the history; print every violation with the faults around it, the failovers'
/// costs, and the verdict as the last line; all of it is kept in `out/report.txt` too.
fn verdict(history: &[Operation], faults: &[FaultRecord], checked: Checked, out: &Path) -> bool {
    use std::fmt::Write as _;
    let Checked {
        problems,
        converged,
        failovers,
        tokens,
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
    if let Some(tokens) = tokens {
        let _ = writeln!(text, "kvchaos: {tokens}");
    }
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
         read_your_writes_violations={} monotonic_read_violations={} crashes={} converged={} \
         out={}",
        if valid { "valid" } else { "INVALID" },
        history.len(),
        faults.len(),
        report.lost_writes(),
        report.non_linearizable_keys(),
        report.replica_violations(),
        report.read_your_writes_violations(),
        report.monotonic_read_violations(),
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
        Violation::Session(session) => &session.window,
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

//! `kvchaos`: run kvstore nodes, drive them with concurrent clients while injecting faults,
//! record every operation, and check afterwards whether the whole history was possible.
//!
//! This first version runs one primary and injects `kill -9` (then a restart) or
//! `SIGSTOP`/`SIGCONT` pauses; issue 13 lists what is still to come (replicas, partitions,
//! full disks, Redis as a reference). Exit status: 0 when the history is valid, 1 when the
//! checker found a violation, 2 for bad arguments or a run that could not start.

mod clients;
mod node;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kvstore::chaos::checker::linearizable;
use kvstore::chaos::history::Operation;
use kvstore::chaos::lost::lost_writes;

/// Which fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Fault {
    /// None: a baseline.
    None,
    /// `kill -9` the node, then restart it on the same data directory.
    Kill,
    /// `SIGSTOP` the node for a while, then `SIGCONT`.
    Pause,
}

/// Run kvstore under faults and check the history of what clients saw.
#[derive(Debug, Parser)]
#[command(name = "kvchaos", version)]
struct Args {
    /// The fault to inject, at random times from the seed.
    #[arg(long, value_enum, default_value_t = Fault::Kill)]
    fault: Fault,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// The seed of the fault schedule and the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The node's `--fsync` policy.
    #[arg(long, default_value = "always", value_parser = ["always", "everysec", "no"])]
    fsync: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    clients: u64,
    /// The most operations each client makes per second (0: as fast as it can). The checker's
    /// search grows faster than the history (a key with tens of thousands of operations takes
    /// minutes), so runs are paced by default.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Keys the clients share (few, so that operations contend).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    keys: u64,
    /// Where the history and the node's log go (default: target/chaos/<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `kvnode` to run (default: the one next to this program).
    #[arg(long)]
    kvnode: Option<PathBuf>,
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

/// Run, record, check; answers whether the history is valid.
fn run(args: &Args) -> Result<bool, String> {
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
    let kvnode = match &args.kvnode {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find kvnode: {e}"))?
            .with_file_name("kvnode"),
    };
    let mut node = node::Node::start(&kvnode, &out, &args.fsync)?;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = clients::start(
        node.addr,
        args.clients as usize,
        args.keys as usize,
        args.rate,
        seed,
        start,
        stop.clone(),
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut faults = 0;
    let deadline = start + Duration::from_secs(args.duration);
    while Instant::now() < deadline {
        // Faults at random times, 0.5 to 2 s apart, from the seed.
        std::thread::sleep(Duration::from_millis(rng.u64(500..2000)));
        if Instant::now() >= deadline {
            break;
        }
        match args.fault {
            Fault::None => continue,
            Fault::Kill => node.kill_and_restart()?,
            Fault::Pause => node.pause(Duration::from_millis(rng.u64(300..1500)))?,
        }
        faults += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let mut history: Vec<Operation> = Vec::new();
    for worker in workers {
        history.extend(worker.join().map_err(|_| "a client thread panicked")?);
    }
    node.stop();
    clients::save(&history, &out.join("history.txt"))?;
    Ok(verdict(&history, faults, &out))
}

/// Check every key's history; print what was found and the verdict as the last line.
fn verdict(history: &[Operation], faults: usize, out: &std::path::Path) -> bool {
    let mut keys: Vec<&str> = history.iter().map(|op| op.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut invalid = Vec::new();
    let mut lost = 0;
    for key in keys {
        let ops: Vec<Operation> = history.iter().filter(|op| op.key == key).cloned().collect();
        let gone = lost_writes(&ops);
        for write in &gone {
            println!("lost acknowledged write: {write:?}");
        }
        lost += gone.len();
        if !linearizable(&ops) {
            println!("key {key}: not linearizable ({} operations)", ops.len());
            invalid.push(key.to_string());
        }
    }
    let valid = invalid.is_empty() && lost == 0;
    println!(
        "kvchaos: {} operations={} faults={faults} lost_acknowledged_writes={lost} history={}",
        if valid { "valid" } else { "INVALID" },
        history.len(),
        out.join("history.txt").display()
    );
    valid
}

//! `kvbench`: a load generator for kvstore nodes, in the spirit of redis-benchmark.
//!
//! It speaks kvstore's line protocol (`PUT`/`GET`), or with `--proto resp` RESP2, the Redis
//! protocol (`SET`/`GET` as arrays of bulk strings, every reply type parsed), so that the same
//! tool, with the same pipelining and latency measurement, can drive a node and Redis alike.
//!
//! It opens `--conns` connections, all driven by one event loop on one thread (as
//! redis-benchmark does, so the client leaves the other cores to the server), and keeps
//! `--pipeline` requests in flight on each: it writes a batch of requests with one write, then
//! reads their replies. (Prefill and the lag probe use blocking connections of their own.)
//! A request's latency is the time from its batch's write to its reply, so with a pipeline
//! it includes the wait behind the earlier requests of the batch, as a real client sees it.
//! With `--tls` every connection is TLS, its handshake made before the clock starts (the
//! event loop goes on with the session the blocking connection opened), so that a run
//! measures what encrypting the traffic costs, not connecting.
//!
//! With `--lag-probe HOST:PORT` (a replica of the node), one more thread measures replication
//! lag while the load runs (see `lag`). The cycle workloads (`set-wait`, `ryw-*`) time a write
//! on the node and a read of it on `--replica` instead of single requests (see `cycle`).
//!
//! Exit status: 0 when every request got a reply that is not an `ERROR` (and the lag probe, if
//! any, did not fail, and no read of a `ryw-*` workload that promises to see its own write
//! missed it), 1 when some did not (the results are still printed), 2 when the options do not
//! go together or the node or the replica could not be reached at all.
//!
//! This file wires the run together: connect, prefill, measure, report. The modules:
//! `args` (the command line), `request` (encoding requests), `reply` (the one reply parser),
//! `read_buf` (reading replies into it), `conn` (blocking connections), `prefill`, `load`
//! (the measured connections' event loop), `cycle` (the cycle workloads' loop), `lag` (the
//! lag probe) and `stats` (results).

mod args;
mod conn;
mod cycle;
mod lag;
mod load;
mod prefill;
mod read_buf;
mod reply;
mod request;
mod stats;

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Barrier;
use std::thread;
use std::time::Instant;

use clap::Parser;
use kvstore::client::ClientError;
use kvstore::tls_client::ClientTls;

use args::Args;
use conn::Conn;
use lag::{Lag, LagProbe};
use load::{Shared, Sockets};
use stats::Stats;

/// Open every connection before anything is measured, so that a node that is not there is
/// reported at once, as one line, with exit status 2: `--conns` to the node, and as many to
/// `--replica` if the workload reads there (else none). Over TLS, every handshake is done
/// here, outside the measurement.
fn connect_all(args: &Args, tls: Option<&ClientTls>) -> Result<(Vec<Conn>, Vec<Conn>), ExitCode> {
    let open = |addr: &str, count: u64| {
        let conns = (0..count).map(|_| Conn::open_as(addr, args, tls));
        conns.collect::<Result<Vec<_>, _>>().map_err(|error| {
            match error {
                ClientError::Auth(refusal) => {
                    eprintln!("kvbench: {addr} refused the login: {refusal} (see --user, --pass)")
                }
                error => eprintln!("kvbench: {error}"),
            }
            ExitCode::from(2)
        })
    };
    let node = open(&format!("{}:{}", args.host, args.port), args.conns)?;
    let replica = match &args.replica {
        Some(replica) if args.workload.reads_replica() => open(replica, args.conns)?,
        _ => Vec::new(),
    };
    Ok((node, replica))
}

/// With `--lag-probe`, open the probe's two connections; as in `connect_all`, a node or a
/// replica that is not there ends the run at once, with exit status 2.
fn connect_probe(args: &Args, tls: Option<&ClientTls>) -> Result<Option<LagProbe>, ExitCode> {
    let Some(replica) = &args.lag_probe else {
        return Ok(None);
    };
    let unreachable = |error: ClientError| {
        eprintln!("kvbench: the lag probe: {error}");
        ExitCode::from(2)
    };
    let node = format!("{}:{}", args.host, args.port);
    let primary = Conn::open_as(&node, args, tls).map_err(unreachable)?;
    let replica = Conn::open_as(replica, args, tls).map_err(unreachable)?;
    let proto = args.proto;
    Ok(Some(LagProbe {
        primary,
        replica,
        proto,
    }))
}

/// Run every connection's loop, and the lag probe if there is one, started together behind a
/// barrier, and return the time the clock started with the merged results and the lag.
fn measure(
    conns: Vec<Conn>,
    replicas: Vec<Conn>,
    probe: Option<&mut LagProbe>,
    args: &Args,
) -> (Instant, Stats, Option<Lag>) {
    let shared = Shared {
        issued: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        running: AtomicUsize::new(conns.len()),
    };
    let barrier = Barrier::new(2 + usize::from(probe.is_some()));
    // The connections, handed over to the event loop.
    let mut replicas = replicas.into_iter();
    let streams: Vec<io::Result<Sockets>> = conns
        .into_iter()
        .map(|conn| {
            let node = conn.into_parts()?;
            let replica = replicas.next().map(Conn::into_parts).transpose()?;
            Ok(Sockets { node, replica })
        })
        .collect();
    thread::scope(|s| {
        let (shared, barrier) = (&shared, &barrier);
        let driver = s.spawn(move || load::drive(streams, args, shared, barrier));
        let prober = probe.map(|probe| {
            s.spawn(move || {
                barrier.wait();
                probe.run(shared)
            })
        });
        barrier.wait();
        let start = Instant::now();
        if io::stderr().is_terminal() {
            stats::show_progress(shared, start);
        }
        let mut totals = Stats::new();
        totals.finished = start;
        match driver.join() {
            Ok(all) => all.iter().for_each(|stats| totals.merge(stats)),
            Err(_) => totals.fail(&"the client's event loop panicked"),
        }
        let lag = prober.map(|prober| prober.join().unwrap_or_else(|_| Lag::panicked()));
        (start, totals, lag)
    })
}

/// Connect, optionally prefill, measure, report.
fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = args.check() {
        eprintln!("kvbench: {message}");
        return ExitCode::from(2);
    }
    let tls = match args.tls.for_program("kvbench") {
        Ok(tls) => tls,
        Err(code) => return code,
    };
    let (mut conns, replicas) = match connect_all(&args, tls.as_ref()) {
        Ok(conns) => conns,
        Err(code) => return code,
    };
    let mut probe = match connect_probe(&args, tls.as_ref()) {
        Ok(probe) => probe,
        Err(code) => return code,
    };
    if args.prefill {
        if let Err(error) = prefill::prefill_all(&mut conns, &args) {
            eprintln!("kvbench: prefill failed: {error}");
            return ExitCode::FAILURE;
        }
    }
    let (start, totals, lag) = measure(conns, replicas, probe.as_mut(), &args);
    totals.print(&args, start, lag.as_ref());
    let lag_failed = lag.is_some_and(|lag| lag.failure.is_some());
    if totals.errors > 0 || lag_failed || totals.broke_a_promise(&args) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

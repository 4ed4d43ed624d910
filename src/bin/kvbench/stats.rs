//! What the run measured, and how it is shown: counts and latency percentiles, as text or
//! one JSON line, and the progress line while the run lasts.

use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use clap::ValueEnum;

use crate::args::Args;
use crate::lag::Lag;
use crate::load::Shared;

/// Highest latency the histogram tells apart (60 s in µs); slower replies are clamped to it
/// rather than dropped, so that every request is counted.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Counts and latencies of answered requests: each connection keeps its own, and they are
/// merged into the run's at the end, so that the hot loop shares nothing but two counters.
pub struct Stats {
    /// Latency of every answered request, in µs.
    pub latency: Histogram<u64>,
    /// Requests answered.
    pub done: u64,
    /// Error replies (`ERROR ...`, RESP `-...`), plus failed connections.
    pub errors: u64,
    /// Connections that failed (a write, a read, a close or a timeout) before the end.
    pub failures: u64,
    /// `NOT_FOUND` replies (RESP: nil): not errors, but a GET run that sees many was not
    /// prefilled.
    pub not_found: u64,
    /// When the last reply came: the run ends with the last connection's.
    pub finished: Instant,
    /// For the cycle workloads, their steps timed apart (a "request" is then a cycle).
    pub steps: Option<Steps>,
}

/// The two steps of the cycles of a cycle workload, timed apart, and what their reads found.
pub struct Steps {
    /// Each cycle's write step on the node (the write, with its WAIT or LASTPOS), in µs.
    pub write: Histogram<u64>,
    /// Each cycle's read step on the replica (its position wait, if any, and the GET), in µs.
    pub read: Histogram<u64>,
    /// Reads, in cycles with no error reply, that did not see the cycle's own write (an older
    /// value, or none): expected of `ryw-plain`, a broken promise in the other workloads.
    pub stale: u64,
}

impl Steps {
    /// Nothing timed yet.
    pub fn new() -> Steps {
        let (write, read) = (latency_histogram(), latency_histogram());
        Steps {
            write,
            read,
            stale: 0,
        }
    }

    /// The steps' results as JSON fields, each after a comma.
    fn json_fields(&self) -> String {
        let q = |h: &Histogram<u64>, quantile| h.value_at_quantile(quantile);
        let (w, r, stale) = (&self.write, &self.read, self.stale);
        format!(
            ",\"write_p50_us\":{},\"write_p99_us\":{},\"write_mean_us\":{:.0},\
             \"read_p50_us\":{},\"read_p99_us\":{},\"read_mean_us\":{:.0},\"stale\":{stale}",
            q(w, 0.5),
            q(w, 0.99),
            w.mean(),
            q(r, 0.5),
            q(r, 0.99),
            r.mean()
        )
    }

    /// The steps' results as text lines, under the cycles'.
    fn print_text(&self) {
        let ms = |h: &Histogram<u64>, quantile| h.value_at_quantile(quantile) as f64 / 1000.0;
        for (name, h) in [("write step", &self.write), ("read step", &self.read)] {
            if !h.is_empty() {
                println!(
                    "  {name} (ms): p50 {:.3}  p99 {:.3}  mean {:.3}",
                    ms(h, 0.5),
                    ms(h, 0.99),
                    h.mean() / 1000.0
                );
            }
        }
        if !self.read.is_empty() {
            println!("  reads that missed their own write: {}", self.stale);
        }
    }
}

/// An empty histogram of latencies in µs, from 1 µs to `MAX_LATENCY_US`.
pub fn latency_histogram() -> Histogram<u64> {
    // Three significant digits, as redis-benchmark keeps; the bounds are constant.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds")
}

impl Stats {
    /// Nothing answered yet.
    pub fn new() -> Stats {
        let latency = latency_histogram();
        let (done, errors, failures, not_found) = (0, 0, 0, 0);
        let finished = Instant::now();
        Stats {
            latency,
            done,
            errors,
            failures,
            not_found,
            finished,
            steps: None,
        }
    }

    /// Count a connection that stopped early, and say why on stderr.
    pub fn fail(&mut self, error: &dyn std::fmt::Display) {
        eprintln!("kvbench: a connection failed: {error}");
        (self.failures, self.errors) = (self.failures + 1, self.errors + 1);
    }

    /// Add another connection's results to these.
    pub fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("histograms share their bounds");
        self.done += other.done;
        self.errors += other.errors;
        self.failures += other.failures;
        self.not_found += other.not_found;
        self.finished = self.finished.max(other.finished);
        if let Some(other) = &other.steps {
            let steps = self.steps.get_or_insert_with(Steps::new);
            for (mine, theirs) in [
                (&mut steps.write, &other.write),
                (&mut steps.read, &other.read),
            ] {
                mine.add(theirs).expect("histograms share their bounds");
            }
            steps.stale += other.stale;
        }
    }

    /// Whether a read of a workload that promises to see its own write missed it.
    pub fn broke_a_promise(&self, args: &Args) -> bool {
        let stale = self.steps.as_ref().map_or(0, |steps| steps.stale);
        args.workload.promises_own_writes() && stale > 0
    }

    /// Print the results, and the lag probe's if there was one, as text, or as one JSON
    /// object (for scripts: flat, numbers only).
    pub fn print(&self, args: &Args, start: Instant, lag: Option<&Lag>) {
        let seconds = self.finished.duration_since(start).as_secs_f64().max(1e-9);
        let rps = self.done as f64 / seconds;
        let q = |quantile| self.latency.value_at_quantile(quantile);
        let (p50, p90, p99, p999) = (q(0.5), q(0.9), q(0.99), q(0.999));
        let (max, mean) = (self.latency.max(), self.latency.mean());
        let Stats {
            done,
            errors,
            failures,
            not_found,
            ..
        } = *self;
        let workload = args
            .workload
            .to_possible_value()
            .map_or(String::new(), |value| value.get_name().to_string());
        let proto = format!("{:?}", args.proto).to_lowercase();
        let (conns, pipeline, keyspace, size) =
            (args.conns, args.pipeline, args.keyspace, args.value_size);
        if args.json {
            let lag = lag.map_or(String::new(), Lag::json_fields);
            let steps = self
                .steps
                .as_ref()
                .map_or(String::new(), Steps::json_fields);
            println!(
                "{{\"proto\":\"{proto}\",\"workload\":\"{workload}\",\"conns\":{conns},\"pipeline\":{pipeline},\
                 \"keyspace\":{keyspace},\"value_size\":{size},\"set_ratio\":{},\"requests\":{done},\
                 \"errors\":{errors},\"conn_failures\":{failures},\"not_found\":{not_found},\
                 \"seconds\":{seconds:.3},\"rps\":{rps:.0},\"p50_us\":{p50},\"p90_us\":{p90},\
                 \"p99_us\":{p99},\"p999_us\":{p999},\"max_us\":{max},\"mean_us\":{mean:.0}{steps}{lag}}}",
                args.set_ratio
            );
            return;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        println!("{workload} ({proto}): {conns} conns, pipeline {pipeline}, keyspace {keyspace}, values of {size} B");
        let unit = if self.steps.is_some() {
            "cycles"
        } else {
            "requests"
        };
        println!("  {done} {unit} in {seconds:.2} s: {rps:.0} {unit}/s");
        println!(
            "  latency (ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(p50),
            ms(p90),
            ms(p99),
            ms(p999),
            ms(max)
        );
        println!(
            "  errors: {errors} ({failures} failed connections); NOT_FOUND or nil replies: {not_found}"
        );
        if let Some(steps) = &self.steps {
            steps.print_text();
        }
        if let (Some(lag), Some(replica)) = (lag, &args.lag_probe) {
            lag.print_text(replica);
        }
    }
}

/// Once a second until every connection is done, print the progress so far (only called
/// when stderr is a terminal, so that logs of scripted runs stay clean).
pub fn show_progress(shared: &Shared, start: Instant) {
    let (mut last_count, mut last_print) = (0, start);
    while shared.running.load(Relaxed) > 0 {
        thread::sleep(Duration::from_millis(50));
        if last_print.elapsed() >= Duration::from_secs(1) {
            let count = shared.answered.load(Relaxed);
            let rate = (count - last_count) as f64 / last_print.elapsed().as_secs_f64();
            eprintln!(
                "kvbench: {:.0} s: {count} requests, {rate:.0} req/s",
                start.elapsed().as_secs_f64()
            );
            (last_count, last_print) = (count, Instant::now());
        }
    }
}

//! The replication lag probe (`--lag-probe`): how long a write takes to show on a replica
//! while the load runs.
//!
//! It runs on a thread of its own with two blocking connections: it PUTs a fresh key
//! `__lag:<n>` on the node, and once the `OK` is back, polls the replica with `GET __lag:<n>`
//! until the replica serves the value just written. The lag is the time from the `OK` to the
//! reply that carries the value, so it is at least one round trip to the replica, and
//! overstates the true lag by at most one; the number of GETs per probe tells how many round
//! trips the lag spanned. The probe keys stay in the data set.

use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::args::Proto;
use crate::conn::Conn;
use crate::load::Shared;
use crate::reply::Reply;
use crate::request::push_probe;
use crate::stats::latency_histogram;

/// Shortest time from the start of one lag probe to the start of the next: at most 250 probes
/// a second, so that the probe stays a small part of the load it measures.
const LAG_PROBE_INTERVAL: Duration = Duration::from_millis(4);
/// A probe value the replica has not served this long after the node's `OK` is taken as lost
/// (a replica that is not connected, or the address of some other node): the probe stops.
const LAG_TIMEOUT: Duration = Duration::from_secs(30);

/// The lag probe's two connections: to the node, which takes its PUTs, and to the replica,
/// which it polls.
pub struct LagProbe {
    /// Connection to the node (`--host`, `--port`), apart from the load's.
    pub primary: Conn,
    /// Connection to the replica (`--lag-probe`).
    pub replica: Conn,
    /// The protocol of both connections (`--proto`).
    pub proto: Proto,
}

/// What the lag probe measured.
pub struct Lag {
    /// Per probe, the time from the node's `OK` to the replica's reply with the value, in µs.
    latency: Histogram<u64>,
    /// GETs sent to the replica over all probes: one per probe means that every value was
    /// already there at the first look.
    polls: u64,
    /// Why the probe stopped before the load did, if it did.
    pub failure: Option<String>,
}

impl LagProbe {
    /// Probe until every load connection is done, starting a probe every
    /// `LAG_PROBE_INTERVAL` at most; a failed probe ends the probing (and fails the run).
    pub fn run(&mut self, shared: &Shared) -> Lag {
        let mut lag = Lag {
            latency: latency_histogram(),
            polls: 0,
            failure: None,
        };
        // Part of every value, so that a key an earlier run left on the replica never counts.
        let nonce = fastrand::u64(..);
        let mut line = Vec::new();
        for n in 0u64.. {
            if shared.running.load(Relaxed) == 0 {
                break;
            }
            let next = Instant::now() + LAG_PROBE_INTERVAL;
            let (key, value) = (format!("__lag:{n}"), format!("{nonce:016x}-{n}"));
            match self.probe(&key, &value, &mut line, &mut lag.polls) {
                Ok(elapsed) => lag.latency.saturating_record(elapsed.as_micros() as u64),
                Err(error) => {
                    eprintln!("kvbench: the lag probe failed: {error}");
                    lag.failure = Some(error);
                    break;
                }
            }
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        lag
    }

    /// One probe: PUT `key` with `value` on the node, then GET `key` from the replica until it
    /// answers `value`, counting the GETs in `polls`. Returns the time from the node's `OK` to
    /// that answer.
    fn probe(
        &mut self,
        key: &str,
        value: &str,
        line: &mut Vec<u8>,
        polls: &mut u64,
    ) -> Result<Duration, String> {
        let text = |line: &[u8]| String::from_utf8_lossy(line).into_owned();
        let (proto, mut request) = (self.proto, Vec::new());
        push_probe(&mut request, proto, key, Some(value));
        let reply = self
            .primary
            .request(proto, &request, line)
            .map_err(|error| format!("the node: {error}"))?;
        let acked = Instant::now();
        if reply != Reply::Value || line != b"OK" {
            return Err(format!("the node answered {:?} to PUT {key}", text(line)));
        }
        push_probe(&mut request, proto, key, None);
        loop {
            let reply = self
                .replica
                .request(proto, &request, line)
                .map_err(|error| format!("the replica: {error}"))?;
            let seen = Instant::now();
            *polls += 1;
            if reply == Reply::Value && line == value.as_bytes() {
                return Ok(seen - acked);
            }
            if reply == Reply::Error {
                let reply = text(line);
                return Err(format!("the replica answered {reply:?} to GET {key}"));
            }
            if seen - acked > LAG_TIMEOUT {
                let secs = LAG_TIMEOUT.as_secs();
                return Err(format!("the replica lacked {key} {secs} s after the OK"));
            }
        }
    }
}

impl Lag {
    /// A probe whose thread panicked: nothing measured.
    pub fn panicked() -> Lag {
        let failure = Some("its thread panicked".to_string());
        Lag {
            latency: latency_histogram(),
            polls: 0,
            failure,
        }
    }

    /// The lag percentiles (µs): p50, p99, p99.9 and max.
    fn percentiles(&self) -> (u64, u64, u64, u64) {
        let q = |quantile| self.latency.value_at_quantile(quantile);
        (q(0.5), q(0.99), q(0.999), self.latency.max())
    }

    /// The probe's results as JSON fields, each after a comma, to end the run's object with.
    pub fn json_fields(&self) -> String {
        let (p50, p99, p999, max) = self.percentiles();
        let (probes, polls, mean) = (self.latency.len(), self.polls, self.latency.mean());
        let errors = u8::from(self.failure.is_some());
        format!(
            ",\"lag_probes\":{probes},\"lag_errors\":{errors},\"lag_polls\":{polls},\
             \"lag_p50_us\":{p50},\"lag_p99_us\":{p99},\"lag_p999_us\":{p999},\
             \"lag_max_us\":{max},\"lag_mean_us\":{mean:.0}"
        )
    }

    /// The probe's results as text lines, under the load's.
    pub fn print_text(&self, replica: &str) {
        let (p50, p99, p999, max) = self.percentiles();
        let probes = self.latency.len();
        let polls = self.polls as f64 / probes.max(1) as f64;
        println!(
            "  replication lag to {replica} (µs, {probes} probes, {polls:.2} GETs each): \
             p50 {p50}  p99 {p99}  p99.9 {p999}  max {max}"
        );
        if let Some(failure) = &self.failure {
            println!("  the lag probe stopped early: {failure}");
        }
    }
}

//! The faults: what each does to the cluster, for how long, and the record of when it was
//! active, so that a violation can be shown with the faults around it.
//!
//! Every choice (which fault, which node or link, how long) comes from the run's seed, so a
//! seed repeats the schedule (the timing of the clients around it varies from run to run).

use std::fmt;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use kvstore::chaos::proxy::Mode;

use crate::cluster::Cluster;

/// Which faults a run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FaultKind {
    /// None: a baseline.
    None,
    /// `kill -9` a node, then start it again on the same data directory.
    Kill,
    /// `SIGSTOP` a node for a while, then `SIGCONT`.
    Pause,
    /// Cut a node off, or cut one replication link both ways or one way, then heal it.
    Partition,
    /// Make every file write of a node fail (a file size limit of 0, as a full disk), then
    /// lift the limit.
    DiskFull,
    /// Delay every `fdatasync` and `fsync` of a node (strace's fault injection), then stop.
    SlowDisk,
    /// Any of the above, chosen at random each time.
    Mixed,
}

/// Which nodes the faults hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FaultTarget {
    /// The primary half the time, otherwise a random replica (in a failover cluster, the
    /// primary of the moment four times in five).
    Any,
    /// The primary (of the moment) only.
    Primary,
    /// The replicas only (in a failover cluster, the members that are not the primary), one
    /// at random each time: what a client reading from replicas must ride out.
    Replicas,
}

/// One fault as it happened: when (ns from the start of the run) and what.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// When it began.
    pub from: u64,
    /// When it was healed.
    pub to: u64,
    /// What it was, in words: `kill -9 primary (down 420 ms)`.
    pub what: String,
    /// For a `kill -9`: the node killed, and when it was certainly dead. An operation sent to
    /// it before then whose answer never came cannot take effect after it.
    pub killed: Option<(usize, u64)>,
    /// In a failover cluster, the member that was the primary when the fault hit it: the
    /// fault that should make the others elect a new one.
    pub primary: Option<usize>,
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3}s-{:.3}s {}",
            self.from as f64 / 1e9,
            self.to as f64 / 1e9,
            self.what
        )
    }
}

/// Why a fault could not be injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultError {
    /// The node did not come back (a restart after `kill -9` failed): a finding about the
    /// node, reported with the run's verdict.
    Node(String),
    /// The means failed (a signal, `prlimit`, strace): the run could not do what it was
    /// asked, which says nothing about the node.
    Tool(String),
}

/// Injects faults into a cluster from a seeded random source.
pub struct Injector {
    /// The seeded source of every choice.
    rng: fastrand::Rng,
    /// The run's clock.
    start: Instant,
    /// Which nodes the faults hit.
    aim: FaultTarget,
    /// In a failover cluster, the members' failover timeout: a pause or a cut of the primary
    /// is made to last longer than it (or, for some cuts, about as long, to heal during the
    /// election).
    failover_timeout: Duration,
}

impl Injector {
    /// An injector for a run that started at `start`, aiming at `aim`.
    pub fn new(
        seed: u64,
        start: Instant,
        aim: FaultTarget,
        failover_timeout: Duration,
    ) -> Injector {
        Injector {
            rng: fastrand::Rng::with_seed(seed),
            start,
            aim,
            failover_timeout,
        }
    }

    /// The node a fault hits: by default the primary half the time (it is the node whose
    /// faults can lose acknowledged writes), otherwise a random replica; in a failover
    /// cluster the primary of the moment four times in five (its faults are the failovers),
    /// and whether it is that. `--fault-target` narrows it to the primary or the replicas.
    fn target(&mut self, cluster: &Cluster) -> (usize, bool) {
        let n = cluster.nodes.len();
        if !cluster.failover() {
            let primary = match self.aim {
                FaultTarget::Any => n == 1 || self.rng.bool(),
                FaultTarget::Primary => true,
                FaultTarget::Replicas => n == 1,
            };
            let node = if primary { 0 } else { self.rng.usize(1..n) };
            return (node, false);
        }
        let hit_primary = match self.aim {
            FaultTarget::Any => self.rng.u8(0..5) > 0,
            FaultTarget::Primary => true,
            FaultTarget::Replicas => false,
        };
        let other = self.rng.usize(1..n);
        match cluster.wait_primary(2 * self.failover_timeout) {
            Some(primary) if hit_primary => (primary, true),
            Some(primary) => ((primary + other) % n, false),
            None => (other, false),
        }
    }

    /// How long a pause or a cut lasts: 0.3-2 s, or in a failover cluster 2-3.5 failover
    /// timeouts, past the election (which takes 1.5-2 timeouts: see docs/consensus.md).
    fn hold(&mut self, cluster: &Cluster) -> Duration {
        match cluster.failover() {
            true => self.failover_timeout.mul_f64(2.0 + 1.5 * self.rng.f64()),
            false => Duration::from_millis(self.rng.u64(300..2000)),
        }
    }

    /// Nanoseconds since the run started.
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// A random wait before the next fault.
    pub fn gap(&mut self) -> Duration {
        Duration::from_millis(self.rng.u64(500..2000))
    }

    /// Inject one fault of `kind` (waiting while it lasts, then healing it), and say what it
    /// was; `None` for the baseline.
    pub fn inject(
        &mut self,
        kind: FaultKind,
        cluster: &mut Cluster,
    ) -> Result<Option<FaultRecord>, FaultError> {
        let kind = match kind {
            FaultKind::None => return Ok(None),
            FaultKind::Mixed => *self
                .rng
                .choice(&[
                    FaultKind::Kill,
                    FaultKind::Pause,
                    FaultKind::Partition,
                    FaultKind::DiskFull,
                    FaultKind::SlowDisk,
                ])
                .unwrap_or(&FaultKind::Kill),
            kind => kind,
        };
        let (node, hit_primary) = self.target(cluster);
        let name = match hit_primary {
            true => format!("{} (the primary)", cluster.name(node)),
            false => cluster.name(node).to_string(),
        };
        let hold = self.hold(cluster);
        let from = self.now();
        let mut killed = None;
        let what = match kind {
            FaultKind::Kill => {
                cluster.nodes[node].kill().map_err(FaultError::Tool)?;
                killed = Some((node, self.now()));
                let down = Duration::from_millis(self.rng.u64(0..1000));
                std::thread::sleep(down);
                cluster.restart(node).map_err(FaultError::Node)?;
                format!("kill -9 {name} (down {} ms)", down.as_millis())
            }
            FaultKind::Pause => {
                cluster.nodes[node]
                    .signal("STOP")
                    .map_err(FaultError::Tool)?;
                std::thread::sleep(hold);
                cluster.nodes[node]
                    .signal("CONT")
                    .map_err(FaultError::Tool)?;
                format!("SIGSTOP {name} for {} ms", hold.as_millis())
            }
            FaultKind::DiskFull => {
                cluster.nodes[node]
                    .limit_file_size(Some(0))
                    .map_err(FaultError::Tool)?;
                std::thread::sleep(hold);
                cluster.nodes[node]
                    .limit_file_size(None)
                    .map_err(FaultError::Tool)?;
                format!("disk full on {name} for {} ms", hold.as_millis())
            }
            FaultKind::SlowDisk => {
                let delay = Duration::from_millis(self.rng.u64(20..300));
                cluster.nodes[node]
                    .slow_disk(delay, hold)
                    .map_err(FaultError::Tool)?;
                let idle = if cluster.nodes[node].spec.fsync == "always" {
                    ""
                } else {
                    " (few or no fsyncs under this policy)"
                };
                format!(
                    "slow disk on {name}: every fsync {} ms late, for {} ms{idle}",
                    delay.as_millis(),
                    hold.as_millis()
                )
            }
            _ if cluster.failover() => self.cut_off(cluster, node, &name, hold),
            _ => self.partition(cluster, node, hold),
        };
        Ok(Some(FaultRecord {
            from,
            to: self.now(),
            what,
            killed,
            primary: hit_primary.then_some(node),
        }))
    }

    /// Cut failover cluster member `node` off from the other members (its clients still reach
    /// it), dropping or blackholing the connections between them, for `hold`; or, one time in
    /// three, for 1-2 failover timeouts, so that the cut heals during the election.
    fn cut_off(&mut self, cluster: &Cluster, node: usize, name: &str, hold: Duration) -> String {
        let cut = if self.rng.bool() {
            Mode::Blackhole
        } else {
            Mode::Drop
        };
        let (hold, during) = match self.rng.u8(0..3) {
            0 => (
                self.failover_timeout.mul_f64(1.0 + self.rng.f64()),
                ", healed during the election",
            ),
            _ => (hold, ""),
        };
        cluster.cut_off(node, cut);
        std::thread::sleep(hold);
        cluster.forward_all();
        format!(
            "{cut:?} {name} from the other members for {} ms{during}",
            hold.as_millis()
        )
    }

    /// Cut node `node` off (dropping its connections, or blackholing them), or, with
    /// replicas, cut one replication link both ways or one way; hold it, then heal it.
    fn partition(&mut self, cluster: &mut Cluster, node: usize, hold: Duration) -> String {
        let cut = if self.rng.bool() {
            Mode::Blackhole
        } else {
            Mode::Drop
        };
        let what = match self.rng.u8(0..3) {
            0 if !cluster.links.is_empty() => {
                let link = self.rng.usize(0..cluster.links.len());
                let to_replica = self.rng.bool();
                let link = &cluster.links[link];
                link.proxy.set(link.one_way(to_replica));
                let replica = cluster.name(link.replica);
                if to_replica {
                    format!("one-way cut primary -> {replica}")
                } else {
                    format!("one-way cut {replica} -> primary")
                }
            }
            1 if !cluster.links.is_empty() => {
                let link = &cluster.links[self.rng.usize(0..cluster.links.len())];
                link.proxy.set(cut);
                format!("{cut:?} link primary <-> {}", cluster.name(link.replica))
            }
            _ => {
                cluster.isolate(node, cut);
                format!("{cut:?} {} from everyone", cluster.name(node))
            }
        };
        std::thread::sleep(hold);
        cluster.forward_all();
        format!("{what} for {} ms", hold.as_millis())
    }
}

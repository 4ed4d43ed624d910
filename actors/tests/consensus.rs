//! The failover control plane with three nodes on loopback, through its public API only:
//! failover with a growing epoch, the data-aware vote, whole-cluster restart from disk, the
//! lease that fences a cut-off leader, and running inside an actix System.
//!
//! Timing is short (heartbeat 50 ms, elections after 150..300 ms) so the file runs in seconds;
//! every wait polls a condition against a deadline, never a bare sleep.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv_actors::consensus::handshake::Greeting;
use kv_actors::consensus::wire::{read_frame, write_frame, OPENING};
use kv_actors::consensus::{
    Consensus, ConsensusConfig, ConsensusError, DataPosition, Member, NodeId,
};
use kv_actors::replication::auth::ClusterSecret;
use slog::Drain;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How long any wait may take before the test fails: generous for a loaded 2-core machine; a
/// passing test never waits this long.
const DEADLINE: Duration = Duration::from_secs(20);

/// Heartbeat 50 ms, elections after 150..300 ms: lease 250 ms.
fn config() -> ConsensusConfig {
    ConsensusConfig {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(150),
        election_max: Duration::from_millis(300),
        secret: None,
        tls: None,
    }
}

/// Log lines go to the test's captured output, shown when it fails.
fn logger() -> slog::Logger {
    let decorator = slog_term::PlainSyncDecorator::new(slog_term::TestStdoutWriter);
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    slog::Logger::root(drain, slog::o!())
}

/// Polls `f` until it returns `Some`, failing the test with `what` at the deadline.
async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // The poll interval of a wait with a deadline, not a wait for time to pass.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Retries `f` until it succeeds (an election may be under way), failing at the deadline.
async fn retry<T, F: Future<Output = Result<T, ConsensusError>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => assert!(Instant::now() < deadline, "{what}: {e}"),
        }
        // The retry interval of an attempt bounded by a deadline, not a wait for time to pass.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three nodes, their directories, addresses and settable data positions.
struct Cluster {
    base: TempDir,
    addrs: Vec<SocketAddr>,
    positions: Vec<Arc<Mutex<DataPosition>>>,
    nodes: Vec<Option<Consensus>>,
    /// Each node's cluster secret (all `None` unless a test says otherwise).
    secrets: [Option<&'static str>; 3],
    log: slog::Logger,
}

impl Cluster {
    /// Binds three listeners on port 0 and starts a node on each.
    async fn start() -> Cluster {
        Cluster::start_with_secrets([None; 3]).await
    }

    /// As [`Cluster::start`], each node with its own cluster secret.
    async fn start_with_secrets(secrets: [Option<&'static str>; 3]) -> Cluster {
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut cluster = Cluster {
            base: TempDir::new().unwrap(),
            addrs,
            positions: (0..3).map(|_| Arc::default()).collect(),
            nodes: vec![None, None, None],
            secrets,
            log: logger(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            cluster.start_node(i as NodeId + 1, listener).await;
        }
        cluster
    }

    /// The membership every node starts with: ids 1..=3 at their addresses.
    fn members(&self) -> BTreeMap<NodeId, Member> {
        (1..)
            .zip(&self.addrs)
            .map(|(id, a)| {
                (
                    id,
                    Member {
                        addr: a.to_string(),
                        control: String::new(),
                    },
                )
            })
            .collect()
    }

    /// Starts node `id` serving on `listener`, with its position read from `positions`.
    async fn start_node(&mut self, id: NodeId, listener: TcpListener) {
        let i = id as usize - 1;
        let cell = self.positions[i].clone();
        let node = Consensus::start(
            id,
            &self.base.path().join(format!("n{id}")),
            config().with_secret(self.secrets[i].map(ClusterSecret::new)),
            self.members(),
            Arc::new(move || *cell.lock().unwrap()),
            &self.log,
        )
        .await
        .unwrap();
        node.spawn_listener(listener);
        self.nodes[i] = Some(node);
    }

    /// Restarts a stopped node on its old address (the membership names it).
    async fn restart(&mut self, id: NodeId) {
        let listener = TcpListener::bind(self.addrs[id as usize - 1])
            .await
            .unwrap();
        self.start_node(id, listener).await;
    }

    /// Running node `id`.
    fn node(&self, id: NodeId) -> &Consensus {
        self.nodes[id as usize - 1].as_ref().unwrap()
    }

    /// The nodes not stopped.
    fn running(&self) -> Vec<&Consensus> {
        self.nodes.iter().flatten().collect()
    }

    /// Sets node `id`'s data position, as its data plane would report it.
    fn set_position(&self, id: NodeId, epoch: u64, offset: u64) {
        *self.positions[id as usize - 1].lock().unwrap() = DataPosition { epoch, offset };
    }

    /// The leader every node in `among` agrees on, once there is one.
    fn agreed_leader(among: &[&Consensus]) -> Option<NodeId> {
        let views: Vec<_> = among.iter().map(|n| *n.leadership().borrow()).collect();
        let leader = among
            .iter()
            .zip(&views)
            .find(|(_, l)| l.is_self)
            .map(|(n, _)| n.id())?;
        views
            .iter()
            .all(|l| l.leader == Some(leader))
            .then_some(leader)
    }

    /// The leader all running nodes agree on, once there is one.
    async fn wait_leader(&self) -> NodeId {
        poll("an agreed leader", || Self::agreed_leader(&self.running())).await
    }

    /// Names the leader primary, retrying while an election settles; returns (leader, epoch).
    async fn name_primary(&self, offset: u64) -> (NodeId, u64) {
        retry("name the leader primary", || async {
            let leader = self.wait_leader().await;
            Ok((leader, self.node(leader).name_self_primary(offset).await?))
        })
        .await
    }

    /// Waits until every running node has applied `epoch` with `primary`.
    async fn wait_applied(&self, epoch: u64, primary: NodeId) {
        poll("the epoch applied everywhere", || {
            self.running()
                .iter()
                .all(|n| {
                    let s = n.state().borrow().clone();
                    s.epoch == epoch && s.primary == Some(primary)
                })
                .then_some(())
        })
        .await
    }

    /// Shuts node `id` down (as a crash would, to its peers: it stops answering).
    async fn stop(&mut self, id: NodeId) {
        if let Some(node) = self.nodes[id as usize - 1].take() {
            node.shutdown().await;
        }
    }

    /// Shuts every running node down.
    async fn stop_all(&mut self) {
        for id in 1..=3 {
            self.stop(id).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_names_a_new_primary_in_a_higher_epoch() {
    let mut cluster = Cluster::start().await;
    let (first, epoch) = cluster.name_primary(0).await;
    assert!(
        cluster.node(first).lease_valid(epoch),
        "lease right after naming"
    );
    assert!(cluster.node(first).lease_deadline().is_some());
    assert!(!cluster.node(first).lease_valid(epoch + 1));
    cluster.wait_applied(epoch, first).await;
    let state = cluster.node(first).state().borrow().clone();
    assert_eq!(state.members, cluster.members());

    let follower = (1..=3).find(|id| *id != first).unwrap();
    assert!(matches!(
        cluster.node(follower).name_self_primary(0).await,
        Err(ConsensusError::NotLeader { .. })
    ));
    assert!(!cluster.node(follower).lease_valid(epoch));

    // A connection that does not open with the Raft line is closed without an answer (the
    // stray line is as long as the opening, so all of it is read and the close is clean).
    let mut stray = TcpStream::connect(cluster.addrs[0]).await.unwrap();
    stray.write_all(b"PUT a1\n").await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(stray.read(&mut buf).await.unwrap(), 0);

    // Each survivor tells its data plane when it grants a vote (which fences its follower).
    let granted: Vec<Arc<std::sync::atomic::AtomicUsize>> =
        (0..3).map(|_| Arc::default()).collect();
    for id in (1..=3).filter(|id| *id != first) {
        let count = granted[id as usize - 1].clone();
        cluster.node(id).on_vote_granted(Box::new(move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    cluster.stop(first).await;
    let (second, new_epoch) = cluster.name_primary(42).await;
    assert_ne!(second, first);
    assert!(new_epoch > epoch, "{new_epoch} > {epoch}");
    let voter = 6 - first - second;
    assert!(
        granted[voter as usize - 1].load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the member that elected {second} was told it granted its vote"
    );
    cluster.wait_applied(new_epoch, second).await;
    for node in cluster.running() {
        assert_eq!(node.state().borrow().primary_since_offset, 42);
    }
    assert!(cluster.node(second).lease_valid(new_epoch));

    // The old primary comes back as a follower and learns the new epoch.
    cluster.restart(first).await;
    cluster.wait_applied(new_epoch, second).await;
    assert!(!cluster.node(first).lease_valid(epoch));
    cluster.stop_all().await;
}

/// Kills the leader after putting follower `ahead` ahead of follower `behind` in data (epochs
/// counted from 1 for the epoch named at the start), and checks that `ahead` is elected and
/// `behind` never leads.
async fn data_ahead_wins(ahead_is_lower_id: bool, ahead: (u64, u64), behind: (u64, u64)) {
    let mut cluster = Cluster::start().await;
    let (leader, named) = cluster.name_primary(0).await;
    let followers: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    let (b, c) = if ahead_is_lower_id {
        (followers[0], followers[1])
    } else {
        (followers[1], followers[0])
    };
    // Epochs count from the one just named: data of an older epoch than the newest named
    // counts only up to where that epoch's history starts (here 0).
    cluster.set_position(b, named + ahead.0 - 1, ahead.1);
    cluster.set_position(c, named + behind.0 - 1, behind.1);

    // Watch C from now on: it must never become leader while B is reachable.
    let mut c_view = cluster.node(c).leadership();
    let c_led = tokio::spawn(async move {
        loop {
            if c_view.borrow_and_update().is_self {
                return true;
            }
            if c_view.changed().await.is_err() {
                return false;
            }
        }
    });

    cluster.stop(leader).await;
    let (elected, epoch) = cluster.name_primary(0).await;
    assert_eq!(elected, b, "the node whose data is ahead is elected");
    cluster.wait_applied(epoch, b).await;
    cluster.stop_all().await;
    assert!(!c_led.await.unwrap(), "node {c}, behind in data, led");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_whose_data_is_ahead_wins_the_election() {
    data_ahead_wins(true, (1, 100), (1, 50)).await;
    data_ahead_wins(false, (1, 100), (1, 50)).await;
    // A later epoch is ahead whatever the offsets.
    data_ahead_wins(true, (2, 0), (1, 1_000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restarts_from_disk() {
    let mut cluster = Cluster::start().await;
    // Enough commands for a snapshot (every 32 entries), so recovery needs snapshot and log.
    let mut last = (0, 0);
    for offset in 0..40 {
        last = cluster.name_primary(offset).await;
    }
    let (primary, epoch) = last;
    cluster.wait_applied(epoch, primary).await;
    poll("a snapshot on every node", || {
        (1..=3)
            .all(|id| cluster.base.path().join(format!("n{id}/snapshot")).exists())
            .then_some(())
    })
    .await;

    cluster.stop_all().await;
    let restarting = Instant::now();
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    // Each node held a vote, so each waited out a possible lease before starting Raft.
    assert!(restarting.elapsed() >= 3 * config().election_max);
    // Committed entries are applied again from snapshot and log, before any election.
    cluster.wait_applied(epoch, primary).await;
    for node in cluster.running() {
        assert_eq!(node.state().borrow().primary_since_offset, 39);
    }
    let (_, new_epoch) = cluster.name_primary(40).await;
    assert!(new_epoch > epoch, "{new_epoch} > {epoch}");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_loses_its_lease_before_another_is_named() {
    let mut cluster = Cluster::start().await;
    let (old, epoch) = cluster.name_primary(0).await;
    let old_node = cluster.node(old).clone();
    poll("the keeper holds the lease", || {
        old_node.lease_valid(epoch).then_some(())
    })
    .await;

    // Sample the old leader's lease until told to stop; report the latest deadline seen.
    let sampler = {
        let node = old_node.clone();
        let (done_tx, mut done) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut latest: Option<Instant> = None;
            let mut valid_after_cut = false;
            loop {
                latest = latest.max(node.lease_deadline());
                valid_after_cut |= node.lease_valid(epoch);
                tokio::select! {
                    _ = &mut done => return (latest, valid_after_cut),
                    // Sampling interval of the lease while the cut lasts (bounded by `done`).
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        });
        (done_tx, task)
    };

    let cut = Instant::now();
    old_node.set_isolated(true);
    let others: Vec<&Consensus> = cluster
        .running()
        .into_iter()
        .filter(|n| n.id() != old)
        .collect();
    let (new, new_epoch) = retry("name a successor", || async {
        let leader = poll("a successor", || Cluster::agreed_leader(&others)).await;
        Ok((leader, cluster.node(leader).name_self_primary(0).await?))
    })
    .await;
    let named = Instant::now();
    assert_ne!(new, old);
    assert!(new_epoch > epoch);
    assert!(
        !old_node.lease_valid(epoch),
        "old primary fenced once a successor is named"
    );
    assert_eq!(old_node.lease_deadline(), None);
    sampler.0.send(()).unwrap();
    let (latest, _) = sampler.1.await.unwrap();
    let latest = latest.expect("the old leader held a lease after the cut");
    assert!(
        latest < named,
        "the old lease ran to {:?} after the cut, the successor was named {:?} after it",
        latest - cut,
        named - cut
    );
    // openraft 0.9 leaves the cut-off node believing it leads: the lease is the only fence.
    assert!(old_node.leadership().borrow().is_self);

    // Healing: the old leader sees the higher term, follows, and learns the new epoch.
    old_node.set_isolated(false);
    cluster.wait_applied(new_epoch, new).await;
    poll("the old leader follows", || {
        (!old_node.leadership().borrow().is_self).then_some(())
    })
    .await;
    assert!(!old_node.lease_valid(epoch));
    drop(others);
    cluster.stop_all().await;
}

#[actix_rt::test]
async fn the_control_plane_runs_inside_an_actix_system() {
    // actix-rt runs a current-thread tokio runtime with a LocalSet, as the node's arbiters do.
    let mut cluster = Cluster::start().await;
    let (leader, epoch) = cluster.name_primary(7).await;
    cluster.wait_applied(epoch, leader).await;
    assert!(cluster.node(leader).lease_valid(epoch));
    cluster.stop_all().await;
}

/// A deposed primary's tail does not block elections: a node whose data is of an older epoch
/// counts only up to where the newest known epoch's history starts. The scenario the cap is
/// for: B misses the naming of a new primary (its Raft log falls behind), the new primary dies
/// before streaming to anyone, and B holds a longer tail of the older epoch than C. C's
/// longer Raft log wins B's vote only if B does not count its tail past the new start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_the_newest_epoch_discards_does_not_block_an_election() {
    let mut cluster = Cluster::start().await;
    // B (node 3) is cut off from the start: it sees none of the namings below.
    let b: NodeId = 3;
    cluster.node(b).set_isolated(true);
    let leader_of = |cluster: &Cluster| {
        [1, 2]
            .into_iter()
            .find(|id| cluster.node(*id).leadership().borrow().is_self)
            .ok_or(ConsensusError::NotLeader { leader: None })
    };
    let name = |offset: u64| {
        let cluster = &cluster;
        retry("name a primary without B", move || async move {
            let leader = leader_of(cluster)?;
            let epoch = cluster.node(leader).name_self_primary(offset).await?;
            Ok((leader, epoch))
        })
    };
    let (_, first_epoch) = name(0).await;
    let (first, epoch) = name(10).await;
    let c = 3 - first;
    poll("C applied the new epoch", || {
        (cluster.node(c).state().borrow().epoch == epoch).then_some(())
    })
    .await;
    // The primary of that epoch dies before streaming anything; B holds the old epoch's
    // data up to 50, C up to 10.
    cluster.set_position(b, first_epoch, 50);
    cluster.set_position(c, first_epoch, 10);
    cluster.node(first).set_isolated(true);
    cluster.stop(first).await;
    cluster.node(b).set_isolated(false);
    let (elected, _) = cluster.name_primary(10).await;
    assert_eq!(elected, c, "only C's Raft log is complete");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_the_cluster_secret_takes_no_part_in_the_control_plane() {
    let mut cluster =
        Cluster::start_with_secrets([Some("s3cret"), Some("s3cret"), Some("guess")]).await;
    fn pair(c: &Cluster) -> Vec<&Consensus> {
        vec![c.node(1), c.node(2)]
    }
    let (leader, epoch) = retry(
        "name a primary among the members with the secret",
        || async {
            let leader = poll("a leader of the two", || {
                Cluster::agreed_leader(&pair(&cluster))
            })
            .await;
            Ok((leader, cluster.node(leader).name_self_primary(0).await?))
        },
    )
    .await;
    assert_ne!(leader, 3);
    poll("the epoch applied on both", || {
        pair(&cluster)
            .iter()
            .all(|n| n.state().borrow().epoch == epoch)
            .then_some(())
    })
    .await;
    // The third member heard nothing: no leader, no epoch, although the other two were
    // elected and named a primary over several heartbeats.
    assert_eq!(cluster.node(3).state().borrow().epoch, 0);
    assert_ne!(cluster.node(3).leadership().borrow().leader, Some(leader));

    // Someone without the secret who speaks the protocol gets a challenge, a refusal and a
    // closed connection, never an answer to a request.
    let mut intruder = TcpStream::connect(cluster.addrs[leader as usize - 1])
        .await
        .unwrap();
    intruder.write_all(OPENING).await.unwrap();
    let challenge: Option<Greeting> = read_frame(&mut intruder).await.unwrap();
    assert!(
        matches!(challenge, Some(Greeting::Challenge { .. })),
        "{challenge:?}"
    );
    let guess = Greeting::Proof {
        nonce: "00".repeat(16),
        proof: Some("ab".repeat(32)),
    };
    write_frame(&mut intruder, false, &guess).await.unwrap();
    let answer: Option<Greeting> = read_frame(&mut intruder).await.unwrap();
    assert!(
        matches!(&answer, Some(Greeting::Refused(why)) if why.contains("--cluster-secret")),
        "{answer:?}"
    );
    let mut rest = Vec::new();
    intruder.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "nothing after the refusal");
    cluster.stop_all().await;
}

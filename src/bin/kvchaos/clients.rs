//! The clients: each a thread with its own connection, doing `PUT` (of values no one else
//! writes), `GET` and `DEL` on a few shared keys, and recording every operation with its
//! invocation and completion times and what it heard.
//!
//! In a failover cluster the primary moves: each client keeps its own idea of where it is,
//! learnt from the refusals and `ROLE` answers of the members (`route.rs`), and moves on to
//! the next member when the one it believed primary does not answer.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvstore::chaos::history::{Call, Node, Operation, Outcome};

use crate::connection::{Connection, Protocol};
use crate::route;
use crate::token_reads::{ReadYourWrites, TokenCounts, NOTHING_SEEN};

mod tokens;

/// What every client is told: where to go, how fast, how to speak.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every node's address (its front proxy): the primary first, then the replicas; in a
    /// failover cluster, the members, any of which may be the primary.
    pub members: Vec<SocketAddr>,
    /// Whether the nodes are a failover cluster: the primary moves, and clients follow it.
    pub failover: bool,
    /// The share of reads (in percent) sent to a replica rather than the primary.
    pub replica_reads: u8,
    /// How many keys the clients share.
    pub keys: usize,
    /// The pause between one client's operations (`None`: as fast as it can).
    pub pace: Option<Duration>,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Whether each client reads its own writes from the replicas with position tokens
    /// (`--read-your-writes`), and how.
    pub read_your_writes: Option<ReadYourWrites>,
    /// How long a replica may wait for a client's token before it answers `TIMEOUT`.
    pub token_timeout_ms: u64,
    /// The run's clock.
    pub start: Instant,
}

/// Start `clients` clients; each records until `stop`, and answers its history.
pub fn start(
    plan: &Plan,
    clients: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<Recorded>> {
    (0..clients)
        .map(|client| {
            let stop = stop.clone();
            let plan = plan.clone();
            std::thread::spawn(move || {
                let rng = fastrand::Rng::with_seed(seed ^ ((client as u64 + 1) << 32));
                Client::new(client, plan, rng).run(&stop)
            })
        })
        .collect()
}

/// When a connection was opened (the node had answered a `PING` through it) and which node
/// (an index into the plan's `members`) it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Nanoseconds from the start of the run.
    pub at: u64,
    /// The node, by index.
    pub member: usize,
}

/// What a client recorded.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Its operations.
    pub operations: Vec<Operation>,
    /// Each of its connections, by number.
    pub connections: HashMap<u64, Opened>,
    /// What became of its reads with a token (`--read-your-writes`).
    pub tokens: TokenCounts,
}

/// One client: a connection to each node it sends operations to.
struct Client {
    /// Its number.
    client: usize,
    /// What it was told.
    plan: Plan,
    /// Its seeded choices.
    rng: fastrand::Rng,
    /// Its open connections, by node (an index into `plan.members`).
    connections: HashMap<usize, (Connection, u64)>,
    /// Which node it believes is the primary now (always the first without failover).
    primary: usize,
    /// Connections opened so far (`client << 32` onwards, so they are unique in the run).
    opened: u64,
    /// Values written so far, to make the next one unique.
    written: u64,
    /// What it saw.
    history: Vec<Operation>,
    /// Its connections, by number.
    opened_at: HashMap<u64, Opened>,
    /// With `--read-your-writes`: the last token `LASTPOS` gave it, which covers every write
    /// it had acknowledged and everything its reads had shown (`0:-:0` before anything);
    /// `None` once a `LASTPOS` answer was lost, until it has one again.
    token: Option<String>,
    /// What became of its reads with a token.
    tokens: TokenCounts,
}

impl Client {
    fn new(client: usize, plan: Plan, rng: fastrand::Rng) -> Client {
        Client {
            client,
            primary: if plan.failover {
                client % plan.members.len()
            } else {
                0
            },
            plan,
            rng,
            connections: HashMap::new(),
            opened: (client as u64) << 32,
            written: 0,
            history: Vec::new(),
            opened_at: HashMap::new(),
            token: Some(NOTHING_SEEN.to_string()),
            tokens: TokenCounts::default(),
        }
    }

    /// Make operations until `stop`; answer the history.
    fn run(mut self, stop: &AtomicBool) -> Recorded {
        while !stop.load(Ordering::SeqCst) {
            if let Some(pace) = self.plan.pace {
                // The client's pace (--rate), not a wait for a condition.
                std::thread::sleep(pace);
            }
            let key = format!("k{}", self.rng.usize(0..self.plan.keys));
            let call = match self.rng.u8(0..10) {
                0..=3 => {
                    self.written += 1;
                    Call::Put(format!("c{}-{}", self.client, self.written))
                }
                4..=7 => Call::Get,
                _ => Call::Del,
            };
            if let Some(mode) = self.plan.read_your_writes {
                if !self.with_token(key, call, mode) {
                    // Pacing of reconnection attempts while the node cannot be reached.
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            let others = self.plan.members.len() - 1;
            let to_replica = self.rng.u8(0..100) < self.plan.replica_reads;
            let member = if call == Call::Get && others > 0 && to_replica {
                // The client's own replica: another node than the one it writes to.
                (self.primary + 1 + self.client % others) % self.plan.members.len()
            } else {
                self.primary
            };
            if !self.call(member, key, call) {
                // Pacing of reconnection attempts while the node cannot be reached.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.recorded()
    }

    /// What it recorded.
    fn recorded(self) -> Recorded {
        Recorded {
            operations: self.history,
            connections: self.opened_at,
            tokens: self.tokens,
        }
    }

    /// The number of its connection to node `member`, opened now if it has none (the node
    /// must answer a `PING` through it); `None` if it cannot be opened.
    fn connect(&mut self, member: usize) -> Option<u64> {
        if let Entry::Vacant(slot) = self.connections.entry(member) {
            let connection = Connection::open(self.plan.members[member], self.plan.protocol)?;
            self.opened += 1;
            slot.insert((connection, self.opened));
            let at = self.plan.start.elapsed().as_nanos() as u64;
            self.opened_at.insert(self.opened, Opened { at, member });
        }
        self.connections.get(&member).map(|(_, id)| *id)
    }

    /// Make one operation on node `member` and record it; false if no connection could be
    /// opened. In a failover cluster, a refusal that names the primary, or a read answered
    /// with the node's role, tells the client where the primary is; a node that does not
    /// answer makes it try the next.
    fn call(&mut self, member: usize, key: String, call: Call) -> bool {
        let Some(connection_id) = self.connect(member) else {
            self.lost(member);
            return false;
        };
        let Some((connection, _)) = self.connections.get_mut(&member) else {
            return false;
        };
        let invoked = self.plan.start.elapsed().as_nanos() as u64;
        let (outcome, node, answered) = match (&call, self.plan.failover) {
            (Call::Get, true) => {
                let (outcome, role) = connection.get_with_role(&key);
                let node = route::read_by(member, role.as_deref());
                let members = &self.plan.members;
                if let Some(primary) = role
                    .as_deref()
                    .and_then(|r| route::primary_from_role(member, r, members))
                {
                    self.primary = primary;
                }
                (outcome, node, role.is_some())
            }
            (_, failover) => {
                let outcome = connection.call(&key, &call);
                let node = match member {
                    _ if failover || call != Call::Get => Node::Primary,
                    0 => Node::Primary,
                    n => Node::Replica(n),
                };
                if failover {
                    let refusal = connection.last_error.clone();
                    if let Some(primary) = refusal.as_deref().and_then(|e| self.named(e)) {
                        self.primary = primary;
                    } else if refusal.is_some() {
                        self.lost(member);
                    }
                }
                (outcome.clone(), node, outcome != Outcome::Unknown)
            }
        };
        let completed = self.plan.start.elapsed().as_nanos() as u64;
        if !answered || outcome == Outcome::Unknown {
            // The answer may still come on this connection: start afresh.
            self.connections.remove(&member);
            self.lost(member);
        }
        self.history.push(Operation {
            client: self.client,
            connection: connection_id,
            node,
            key,
            call,
            invoked,
            completed,
            outcome,
            token: None,
        });
        true
    }

    /// The node `text` (a refusal or a `ROLE` answer) names as the primary, if it names one
    /// of ours.
    fn named(&self, text: &str) -> Option<usize> {
        route::named_primary(text, &self.plan.members)
    }

    /// Node `member` did not answer, or knows no primary: in a failover cluster, try the next
    /// one as the primary.
    fn lost(&mut self, member: usize) {
        if self.plan.failover && member == self.primary {
            self.primary = (self.primary + 1) % self.plan.members.len();
        }
    }
}

/// After the run, one read of every key on the primary (retried until the primary answers
/// one), so a write lost in the last moments is seen; recorded as the operations of client
/// `client`.
pub fn final_reads(plan: &Plan, client: usize) -> Recorded {
    let mut reader = Client::new(client, plan.clone(), fastrand::Rng::with_seed(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    for key in 0..plan.keys {
        while Instant::now() < deadline {
            let before = reader.history.len();
            reader.call(reader.primary, format!("k{key}"), Call::Get);
            let answered = reader.history[before..]
                .iter()
                .any(|op| matches!(op.outcome, Outcome::Read(_)) && op.node == Node::Primary);
            if answered {
                break;
            }
            // Pacing of retries while the primary does not answer.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    reader.recorded()
}

/// Write the history, one operation a line, in invocation order, with the node each
/// operation's connection reached and the token its client held.
pub fn save(
    history: &[Operation],
    opened: &HashMap<u64, Opened>,
    path: &Path,
) -> Result<(), String> {
    let mut ops: Vec<&Operation> = history.iter().collect();
    ops.sort_by_key(|op| op.invoked);
    let mut text = String::new();
    for op in ops {
        // Which node the connection reached, by index (the checker's node is its role).
        let member = opened
            .get(&op.connection)
            .map_or("?".to_string(), |o| o.member.to_string());
        // The token the client held as it sent it (`--read-your-writes`).
        let token = op
            .token
            .as_deref()
            .map_or(String::new(), |t| format!(" token={t}"));
        text.push_str(&format!(
            "{} {} client={} connection={} member={member} node={:?} key={} {:?} -> {:?}{token}\n",
            op.invoked,
            op.completed,
            op.client,
            op.connection,
            op.node,
            op.key,
            op.call,
            op.outcome
        ));
    }
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

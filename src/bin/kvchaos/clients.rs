//! The clients: each a thread with its own connection, doing `PUT` (of values no one else
//! writes), `GET` and `DEL` on a few shared keys, and recording every operation with its
//! invocation and completion times and what it heard.

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

/// What every client is told: where to go, how fast, how to speak.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The primary's address (its proxy).
    pub primary: SocketAddr,
    /// The replicas' addresses (their proxies), for reads; empty: all reads on the primary.
    pub replicas: Vec<SocketAddr>,
    /// The share of reads (in percent) sent to a replica rather than the primary.
    pub replica_reads: u8,
    /// How many keys the clients share.
    pub keys: usize,
    /// The pause between one client's operations (`None`: as fast as it can).
    pub pace: Option<Duration>,
    /// The wire protocol.
    pub protocol: Protocol,
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

/// What a client recorded: its operations, and when each of its connections was opened (the
/// node had answered a `PING` through it), by connection number.
pub type Recorded = (Vec<Operation>, HashMap<u64, u64>);

/// One client: a connection to the primary, and one to its replica if reads go to replicas.
struct Client {
    /// Its number.
    client: usize,
    /// What it was told.
    plan: Plan,
    /// Its seeded choices.
    rng: fastrand::Rng,
    /// Its open connections: to the primary, and to its replica.
    connections: [Option<(Connection, u64)>; 2],
    /// Connections opened so far (`client << 32` onwards, so they are unique in the run).
    opened: u64,
    /// Values written so far, to make the next one unique.
    written: u64,
    /// What it saw.
    history: Vec<Operation>,
    /// When each connection was opened, by number.
    opened_at: HashMap<u64, u64>,
}

impl Client {
    fn new(client: usize, plan: Plan, rng: fastrand::Rng) -> Client {
        Client {
            client,
            plan,
            rng,
            connections: [None, None],
            opened: (client as u64) << 32,
            written: 0,
            history: Vec::new(),
            opened_at: HashMap::new(),
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
            let replicas = self.plan.replicas.len();
            let to_replica = self.rng.u8(0..100) < self.plan.replica_reads;
            let node = if call == Call::Get && replicas > 0 && to_replica {
                Node::Replica(1 + self.client % replicas)
            } else {
                Node::Primary
            };
            if !self.call(node, key, call) {
                // Pacing of reconnection attempts while the node cannot be reached.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        (self.history, self.opened_at)
    }

    /// Make one operation on `node` and record it; false if no connection could be opened.
    fn call(&mut self, node: Node, key: String, call: Call) -> bool {
        let (slot, addr) = match node {
            Node::Primary => (0, self.plan.primary),
            Node::Replica(n) => (1, self.plan.replicas[n - 1]),
        };
        if self.connections[slot].is_none() {
            let Some(connection) = Connection::open(addr, self.plan.protocol) else {
                return false;
            };
            self.opened += 1;
            self.connections[slot] = Some((connection, self.opened));
            self.opened_at
                .insert(self.opened, self.plan.start.elapsed().as_nanos() as u64);
        }
        let Some((connection, id)) = self.connections[slot].as_mut() else {
            return false;
        };
        let invoked = self.plan.start.elapsed().as_nanos() as u64;
        let outcome = connection.call(&key, &call);
        let completed = self.plan.start.elapsed().as_nanos() as u64;
        let connection = *id;
        if outcome == Outcome::Unknown {
            // The answer may still come on this connection: start afresh.
            self.connections[slot] = None;
        }
        self.history.push(Operation {
            client: self.client,
            connection,
            node,
            key,
            call,
            invoked,
            completed,
            outcome,
        });
        true
    }
}

/// After the run, one read of every key on the primary (retried until one is answered), so a
/// write lost in the last moments is seen; recorded as the operations of client `client`.
pub fn final_reads(plan: &Plan, client: usize) -> Recorded {
    let mut reader = Client::new(client, plan.clone(), fastrand::Rng::with_seed(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    for key in 0..plan.keys {
        while Instant::now() < deadline {
            let before = reader.history.len();
            reader.call(Node::Primary, format!("k{key}"), Call::Get);
            let answered = reader.history[before..]
                .iter()
                .any(|op| matches!(op.outcome, Outcome::Read(_)));
            if answered {
                break;
            }
            // Pacing of retries while the primary does not answer.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (reader.history, reader.opened_at)
}

/// Write the history, one operation a line, in invocation order.
pub fn save(history: &[Operation], path: &Path) -> Result<(), String> {
    let mut ops: Vec<&Operation> = history.iter().collect();
    ops.sort_by_key(|op| op.invoked);
    let mut text = String::new();
    for op in ops {
        text.push_str(&format!(
            "{} {} client={} connection={} node={:?} key={} {:?} -> {:?}\n",
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

//! The clients: each a thread with its own connection, doing `PUT` (of values no one else
//! writes), `GET` and `DEL` on a few shared keys, and recording every operation with its
//! invocation and completion times and what it heard.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvstore::chaos::history::{Call, Node, Operation, Outcome};

/// How long a client waits for an answer before it counts the operation as unknown.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Start `clients` clients on `keys` keys; each records until `stop`, and answers its history.
pub fn start(
    addr: SocketAddr,
    clients: usize,
    keys: usize,
    rate: u64,
    seed: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<Vec<Operation>>> {
    (0..clients)
        .map(|client| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let rng = fastrand::Rng::with_seed(seed ^ ((client as u64 + 1) << 32));
                let pace = (rate > 0).then(|| Duration::from_secs(1) / rate as u32);
                run(client, addr, keys, pace, rng, start, &stop)
            })
        })
        .collect()
}

/// One client's loop.
fn run(
    client: usize,
    addr: SocketAddr,
    keys: usize,
    pace: Option<Duration>,
    mut rng: fastrand::Rng,
    start: Instant,
    stop: &AtomicBool,
) -> Vec<Operation> {
    let now = || start.elapsed().as_nanos() as u64;
    let mut history = Vec::new();
    let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut written = 0u64;
    // Connections opened so far, numbered per client (`client << 32` keeps them unique).
    let mut connections = (client as u64) << 32;
    while !stop.load(Ordering::SeqCst) {
        if let Some(pace) = pace {
            // The client's pace (--rate), not a wait for a condition.
            std::thread::sleep(pace);
        }
        let (stream, reader) = match connection.as_mut() {
            Some(connection) => connection,
            None => match connect(addr) {
                Some(connected) => {
                    connections += 1;
                    connection.insert(connected)
                }
                None => {
                    // Pacing of reconnection attempts while the node is down.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let key = format!("k{}", rng.usize(0..keys));
        let call = match rng.u8(0..10) {
            0..=3 => {
                written += 1;
                Call::Put(format!("c{client}-{written}"))
            }
            4..=7 => Call::Get,
            _ => Call::Del,
        };
        let line = match &call {
            Call::Put(value) => format!("PUT {key} {value}\n"),
            Call::Get => format!("GET {key}\n"),
            Call::Del => format!("DEL {key}\n"),
        };
        let invoked = now();
        let mut reply = String::new();
        let answered = stream.write_all(line.as_bytes()).is_ok()
            && matches!(reader.read_line(&mut reply), Ok(n) if n > 0);
        let completed = now();
        let outcome = if answered {
            outcome(&call, reply.trim_end_matches('\n'))
        } else {
            Outcome::Unknown
        };
        if outcome == Outcome::Unknown {
            // The answer may still come on this connection: start afresh.
            connection = None;
        }
        history.push(Operation {
            client,
            connection: connections,
            node: Node::Primary,
            key,
            call,
            invoked,
            completed,
            outcome,
        });
    }
    history
}

/// A connection with the answer timeout, and its reader.
fn connect(addr: SocketAddr) -> Option<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    let reader = BufReader::new(stream.try_clone().ok()?);
    Some((stream, reader))
}

/// What a reply line means for `call`. An error that says the operation was not done is
/// `Failed`; `persistence failed` is not one of them (the write's durability is unknown).
fn outcome(call: &Call, reply: &str) -> Outcome {
    if let Some(error) = reply.strip_prefix("ERROR: ") {
        return if error.starts_with("persistence failed") {
            Outcome::Unknown
        } else {
            Outcome::Failed
        };
    }
    match (call, reply) {
        (Call::Put(_), "OK") => Outcome::Written,
        (Call::Del, "OK") => Outcome::Deleted(true),
        (Call::Del, "NOT_FOUND") => Outcome::Deleted(false),
        (Call::Get, "NOT_FOUND") => Outcome::Read(None),
        (Call::Get, value) => Outcome::Read(Some(value.to_string())),
        _ => Outcome::Unknown,
    }
}

/// Write the history, one operation a line, in invocation order.
pub fn save(history: &[Operation], path: &Path) -> Result<(), String> {
    let mut ops: Vec<&Operation> = history.iter().collect();
    ops.sort_by_key(|op| op.invoked);
    let mut text = String::new();
    for op in ops {
        text.push_str(&format!(
            "{} {} client={} key={} {:?} -> {:?}\n",
            op.invoked, op.completed, op.client, op.key, op.call, op.outcome
        ));
    }
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

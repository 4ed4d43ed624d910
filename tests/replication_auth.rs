//! The replication link is authenticated both ways, and nobody can hold a node's connections
//! for free: the handshake proves knowledge of the cluster secret without sending it, a
//! recorded handshake cannot be replayed, an impostor replica is sent nothing, a handshake
//! must finish in time, unauthenticated streams past the client limit are few, and idle
//! clients are closed after `--timeout`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{read_to_close, NodeProcess, DEADLINE};

/// A secret that would be easy to spot on the wire.
const SECRET: &str = "correct-horse-battery-staple";

/// Start a replica with `flags`.
fn replica(flags: &[&str]) -> NodeProcess {
    let mut all = vec!["--role", "replica"];
    all.extend_from_slice(flags);
    NodeProcess::start(&all)
}

/// Copy `from` to `to` until either closes, recording what passes.
fn relay(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 || to.write_all(&chunk[..n]).is_err() {
            break;
        }
        record.lock().unwrap().extend_from_slice(&chunk[..n]);
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// A listener that relays its connections to `target`; answers its address and what passed
/// each way (towards the target, and back).
fn recording_relay(target: SocketAddr) -> (SocketAddr, [Arc<Mutex<Vec<u8>>>; 2]) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let records: [Arc<Mutex<Vec<u8>>>; 2] = [Arc::default(), Arc::default()];
    let (forth, back) = (records[0].clone(), records[1].clone());
    thread::spawn(move || {
        // Every connection (the primary reconnects after any hiccup), recorded in order.
        for client in listener.incoming() {
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(target)) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (forth, back) = (forth.clone(), back.clone());
            thread::spawn(move || relay(c2, s2, forth));
            thread::spawn(move || relay(server, client, back));
        }
    });
    (addr, records)
}

/// One line from `reader`, without its `\n`.
fn line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read a line");
    line.trim_end_matches('\n').to_string()
}

#[test]
fn the_secret_never_crosses_the_wire_and_a_recorded_handshake_cannot_be_replayed() {
    let real = replica(&["--cluster-secret", SECRET]);
    let (relay_addr, [to_replica, to_primary]) = recording_relay(real.addr);
    let primary = NodeProcess::start(&[
        "--replica",
        &relay_addr.to_string(),
        "--cluster-secret",
        SECRET,
    ]);
    let mut client = primary.client();
    client.put(b"k", b"v").unwrap();
    assert_eq!(client.request(b"WAIT 1 60000").unwrap(), b"1");
    let sent = to_replica.lock().unwrap().clone();
    let answered = to_primary.lock().unwrap().clone();
    assert!(sent.starts_with(b"REPLICATE ") && answered.starts_with(b"CHALLENGE "));
    for bytes in [&sent, &answered] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the cluster secret crossed the wire"
        );
    }

    // Everything the primary sent, replayed to another replica with the same secret: its
    // challenge is new, so the recorded proof is worth nothing.
    let other = replica(&["--cluster-secret", SECRET]);
    let mut replay = other.raw();
    let reply = String::from_utf8_lossy(&common::exchange(&mut replay, &sent)).into_owned();
    assert!(reply.starts_with("CHALLENGE "), "{reply}");
    assert!(
        reply.contains("ERROR: replication refused: wrong cluster secret"),
        "{reply}"
    );
    assert_eq!(
        other.client().get(b"k").unwrap(),
        None,
        "the replay wrote nothing"
    );
}

#[test]
fn an_impostor_replica_is_sent_nothing() {
    let impostor = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = impostor.local_addr().unwrap();
    let received = thread::spawn(move || {
        let (stream, _) = impostor.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let opening = line(&mut reader);
        // It does not know the secret: its proof is made up.
        let challenge = format!("CHALLENGE {} {}\n", "0".repeat(32), "ab".repeat(32));
        (&stream).write_all(challenge.as_bytes()).unwrap();
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        (opening, rest)
    });
    let primary = NodeProcess::start(&["--replica", &addr.to_string(), "--cluster-secret", SECRET]);
    primary.client().put(b"k", b"secret data").unwrap();
    let (opening, rest) = received.join().unwrap();
    assert!(opening.starts_with("REPLICATE "), "{opening}");
    assert!(
        rest.is_empty(),
        "the primary sent an impostor {:?}",
        String::from_utf8_lossy(&rest)
    );
    primary.wait_for_log("did not prove it knows the cluster secret");
}

#[test]
fn a_replication_handshake_must_finish_in_time() {
    let node = replica(&[
        "--cluster-secret",
        SECRET,
        "--repl-handshake-timeout-ms",
        "300",
    ]);
    let mut stream = node.raw();
    stream
        .write_all(format!("REPLICATE {}\n", "1".repeat(32)).as_bytes())
        .unwrap();
    // The challenge comes, and then, with no proof, the end of the connection.
    let answer = String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned();
    assert!(answer.starts_with("CHALLENGE "), "{answer}");
    assert_eq!(answer.lines().count(), 1, "{answer}");
    node.wait_for_log("replication handshake not finished in time");
}

#[test]
fn replication_openings_past_the_client_limit_are_few() {
    let node = replica(&["--cluster-secret", SECRET, "--max-clients", "1"]);
    // The one client place, taken (a round trip: its session is counted by then).
    let mut only_client = node.client();
    assert!(only_client.ping().is_ok());
    // Many connections over the limit, each opening a replication stream and never proving
    // itself: only a few are let in (and challenged) at once.
    let mut challenged = 0;
    let mut streams: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(node.addr).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let opening = format!("REPLICATE {}\n", "2".repeat(32));
            stream.write_all(opening.as_bytes()).unwrap();
            stream
        })
        .collect();
    for stream in &mut streams {
        let mut first = [0u8; 10];
        let n = stream.read(&mut first).unwrap_or(0);
        if first[..n].starts_with(b"CHALLENGE") {
            challenged += 1;
        }
    }
    assert!(
        (1..=8).contains(&challenged),
        "{challenged} unauthenticated streams were let past the client limit"
    );
}

#[test]
fn an_idle_client_is_closed_after_the_timeout_and_a_busy_one_is_not() {
    let node = NodeProcess::start(&["--timeout", "1"]);
    let mut idle = node.raw();
    let mut busy = node.client();
    // The busy client sends something every 200 ms until the idle one is closed.
    let closed = thread::spawn(move || read_to_close(&mut idle));
    while !closed.is_finished() {
        assert!(busy.ping().is_ok(), "a busy client was closed");
        // Pacing of the busy client: it must stay under the 1 s timeout between requests.
        thread::sleep(Duration::from_millis(200));
    }
    assert!(closed.join().unwrap().is_empty());
    assert!(busy.ping().is_ok());
}

#[test]
fn a_client_waiting_for_its_reply_is_not_idle() {
    // A replica that is never there: `WAIT 1 2500` takes its whole timeout.
    let node = NodeProcess::start(&["--timeout", "1", "--replica", "127.0.0.1:1"]);
    let mut client = node.client();
    assert_eq!(client.request(b"WAIT 1 2500").unwrap(), b"0");
    // Answered at once after its reply: idle time counts from the reply, not the request.
    assert!(client.ping().is_ok(), "closed right after a long WAIT");
}

#[test]
fn impostors_past_the_client_limit_cannot_lock_the_primary_out() {
    let node = replica(&["--max-clients", "1", "--repl-handshake-timeout-ms", "500"]);
    let mut only_client = node.client();
    assert!(only_client.ping().is_ok());
    // Connections that look like a primary's stream to get past the limit, and then are not
    // (a bad opening, or a good one never proved): each is closed, none keeps its place.
    let mut impostors: Vec<TcpStream> = (0..10)
        .map(|i| {
            let mut stream = TcpStream::connect(node.addr).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let opening = match i % 2 {
                0 => "REPLICATE\n".to_string(),
                _ => format!("REPLICATE {}\n", "3".repeat(32)),
            };
            stream.write_all(opening.as_bytes()).unwrap();
            stream
        })
        .collect();
    for stream in &mut impostors {
        read_to_close(stream);
    }
    // The real primary still gets in and streams.
    let primary = NodeProcess::start(&["--replica", &node.addr.to_string()]);
    let mut client = primary.client();
    client.put(b"k", b"v").unwrap();
    assert_eq!(client.request(b"WAIT 1 60000").unwrap(), b"1");
}

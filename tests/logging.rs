//! Logging never stops the node: when its stderr goes away (`kvnode ... | tee log`, then
//! Ctrl-C; a log shipper that restarts), the node goes on serving and still stops cleanly.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::DEADLINE;

/// A `kvnode` whose stderr the test holds, killed on every path.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Send `PING` on a new connection; answers the reply line.
fn ping(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to kvnode");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"PING\n").unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).expect("a reply to PING");
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn a_node_whose_stderr_goes_away_keeps_serving_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "debug",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kvnode");
    let stderr = child.stderr.take().expect("kvnode's stderr");
    let mut node = Node(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("kvnode logs until it listens")
            .expect("read kvnode's stderr");
        if let Some(rest) = line.split("addr: ").nth(1) {
            if line.contains("listening") {
                let end = rest.find([',', ' ']).unwrap_or(rest.len());
                break rest[..end].parse().expect("the listening address");
            }
        }
    };
    // The reader goes away: every log write from now on fails (EPIPE).
    drop(lines);

    // Each connection logs (debug level), after the pipe is gone; the node must not mind.
    for _ in 0..20 {
        assert_eq!(ping(addr), "PONG\n");
    }
    let status = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = node.0.try_wait().expect("poll kvnode") {
            break exit;
        }
        assert!(start.elapsed() < DEADLINE, "kvnode did not stop");
        // Poll interval of the deadline-bounded wait for the process to exit.
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exit.success(), "a clean stop exits 0, not {exit}");
}

//! The `kvnode` process under test: started on a fixed port and data directory, so that it
//! can be killed and started again where the clients look for it; killed on every path.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node gets to start answering.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A running node.
pub struct Node {
    /// The process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// How to start it again.
    command: (PathBuf, PathBuf, String),
}

impl Node {
    /// Start `kvnode` with its data and log under `out`, on a free loopback port.
    pub fn start(kvnode: &Path, out: &Path, fsync: &str) -> Result<Node, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let command = (kvnode.to_path_buf(), out.to_path_buf(), fsync.to_string());
        let child = spawn(&command, addr)?;
        let node = Node {
            child,
            addr,
            command,
        };
        node.wait_ready()?;
        Ok(node)
    }

    /// Wait until the node answers `PING`.
    fn wait_ready(&self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < START_DEADLINE {
            if ping(self.addr) {
                return Ok(());
            }
            // Poll interval of the deadline-bounded wait for the node to listen.
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("the node did not answer within {START_DEADLINE:?}"))
    }

    /// `kill -9`, then start it again on the same port and data.
    pub fn kill_and_restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.command, self.addr)?;
        self.wait_ready()
    }

    /// `SIGSTOP` for `pause`, then `SIGCONT`.
    pub fn pause(&mut self, pause: Duration) -> Result<(), String> {
        signal(self.child.id(), "STOP")?;
        std::thread::sleep(pause);
        signal(self.child.id(), "CONT")
    }

    /// Stop it (SIGTERM, then wait).
    pub fn stop(&mut self) {
        let _ = signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the process, its log appended to `out/node.log`.
fn spawn(
    (kvnode, out, fsync): &(PathBuf, PathBuf, String),
    addr: SocketAddr,
) -> Result<Child, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("node.log"))
        .map_err(|e| format!("cannot open the node's log: {e}"))?;
    Command::new(kvnode)
        .args([
            "--listen",
            &addr.to_string(),
            "--fsync",
            fsync,
            "--data-dir",
        ])
        .arg(out.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kvnode.display()))
}

/// Send a signal with procps' `kill`.
fn signal(pid: u32, name: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("kill -{name} {pid} failed"))
}

/// Whether the node answers `PING` on a new connection.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 5];
    stream.write_all(b"PING\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"PONG\n"
}

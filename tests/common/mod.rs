//! Helpers shared by the process-level tests: a `kvnode` child process that is always killed,
//! raw connections with deadlines, and polling.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kvstore::client::Client;
use tempfile::TempDir;

/// How long any single wait in a test may take before the test fails. Generous, because the
/// suite must pass on a loaded 2-core machine; a passing test never waits this long.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub mod certs;
pub mod redis_server;
pub mod strace;
pub mod tls;

/// Run `redis-cli` against `node` with `args`; answers its stdout.
pub fn redis_cli(node: &NodeProcess, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &node.addr.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli (CI installs redis-tools)");
    assert!(output.status.success(), "redis-cli {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Every key and value of a snapshot, sorted, for comparing data sets.
pub fn sorted_pairs(
    snapshot: &kv_actors::store::keyspace::Snapshot,
) -> Vec<(bytes::Bytes, bytes::Bytes)> {
    let mut pairs: Vec<_> = snapshot
        .iter()
        .map(|pair| {
            (
                bytes::Bytes::copy_from_slice(pair.key()),
                pair.value_bytes(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// The control plane listens on the client port + 10000.
pub const CONTROL_OFFSET: u16 = 10_000;

/// Free client ports whose control ports (+10000) are free too. A port found free may be
/// taken before the node binds it; the ports are drawn at random from a range the system
/// does not hand out for outgoing connections (both below 32768), which makes that unlikely.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = fastrand::u16(12_000..22_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !ports.contains(&port) && free(port) && free(port + CONTROL_OFFSET) {
            ports.push(port);
        }
    }
    ports
}

/// Poll `condition` until it holds, failing the test with `what` at the deadline.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        // The poll interval of a wait with a deadline, not a wait for time to pass.
        thread::sleep(Duration::from_millis(10));
    }
}

/// A `kvnode` process on a free port with a data dir of its own, killed when dropped.
pub struct NodeProcess {
    child: Child,
    pub addr: SocketAddr,
    /// The port clients reach over TLS, when the node has TLS (`--tls-port`, or the client
    /// port when it speaks TLS only), read from its listening line.
    pub tls_port: Option<u16>,
    pub data_dir: PathBuf,
    /// The data dir's owner when the node made its own.
    _own_dir: Option<TempDir>,
    log: Arc<Mutex<Vec<String>>>,
}

/// How a node that was expected to start ended instead.
#[derive(Debug)]
pub struct StartFailure {
    pub status: ExitStatus,
    pub log: String,
}

impl NodeProcess {
    /// Start a primary with `extra` flags and a data dir of its own.
    pub fn start(extra: &[&str]) -> NodeProcess {
        let data_dir = tempfile::tempdir().expect("temporary data dir");
        let mut node = NodeProcess::start_in(data_dir.path(), extra);
        node._own_dir = Some(data_dir);
        node
    }

    /// Start a primary on `data_dir` with `extra` flags.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        NodeProcess::try_start_in(data_dir, extra).unwrap_or_else(|failure| {
            panic!(
                "kvnode did not start ({}):\n{}",
                failure.status, failure.log
            )
        })
    }

    /// Start a primary on `data_dir`, or report how it exited instead of listening.
    pub fn try_start_in(data_dir: &Path, extra: &[&str]) -> Result<NodeProcess, StartFailure> {
        NodeProcess::try_start_at("127.0.0.1:0", data_dir, extra)
    }

    /// Start a node listening on `listen` (a restarted replica keeps its port).
    pub fn start_at(listen: &str, data_dir: &Path, extra: &[&str]) -> NodeProcess {
        NodeProcess::try_start_at(listen, data_dir, extra).unwrap_or_else(|failure| {
            panic!(
                "kvnode did not start ({}):\n{}",
                failure.status, failure.log
            )
        })
    }

    /// Start a node on `listen` and `data_dir`, or report how it exited instead.
    pub fn try_start_at(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<NodeProcess, StartFailure> {
        NodeProcess::try_start_with(listen, data_dir, extra, &[])
    }

    /// Start a node on `listen` and `data_dir` with `env` set in its environment (a password
    /// that must not be on its command line), or report how it exited instead.
    pub fn try_start_with(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<NodeProcess, StartFailure> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kvnode"))
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kvnode");
        let stderr = child.stderr.take().expect("kvnode stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, addr) = mpsc::channel();
        let lines = log.clone();
        let stderr_done = Arc::new(AtomicBool::new(false));
        let done = stderr_done.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Record the line before announcing it, so that once a node is reported
                // started, every line up to its listening line is in its log.
                let listening = line
                    .contains("INFO listening")
                    .then(|| listening_addr(&line).map(|addr| (addr, listening_tls_port(&line))));
                lines.lock().unwrap().push(line);
                if let Some(addr) = listening {
                    let _ = found.send(addr);
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut node = NodeProcess {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            tls_port: None,
            data_dir: data_dir.to_path_buf(),
            _own_dir: None,
            log,
        };
        let start = Instant::now();
        loop {
            match addr.recv_timeout(Duration::from_millis(20)) {
                Ok(Some((addr, tls_port))) => {
                    node.addr = addr;
                    node.tls_port = tls_port;
                    return Ok(node);
                }
                Ok(None) => panic!("unreadable listening line; log:\n{}", node.log()),
                Err(_) => {}
            }
            if let Some(status) = node.child.try_wait().expect("poll kvnode") {
                // Let the log reader catch the last lines.
                wait_until("the node's stderr is read to its end", || {
                    stderr_done.load(Ordering::SeqCst)
                });
                return Err(StartFailure {
                    status,
                    log: node.log(),
                });
            }
            assert!(
                start.elapsed() < DEADLINE,
                "kvnode did not start; log:\n{}",
                node.log()
            );
        }
    }

    /// Wait until the node has logged a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        wait_until(&format!("the node logs {needle:?}"), || {
            self.log().contains(needle)
        });
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client connected to the node.
    pub fn client(&self) -> Client {
        Client::connect(&self.addr.to_string(), DEADLINE).expect("connect to kvnode")
    }

    /// A raw connection to the node, with read and write deadlines.
    pub fn raw(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to kvnode");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    /// Send a signal (`TERM`, `INT`, `KILL`, ...) to the node.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait for the node to exit, failing the test at the deadline.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll kvnode") {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "kvnode did not exit");
            // Poll interval of the deadline-bounded wait for the process to exit.
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The node's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Whether the node still answers PING on a new connection.
    pub fn answers_ping(&self) -> bool {
        let mut client = self.client();
        client.ping().is_ok()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `tls_port` of a listening line, if the node has TLS.
fn listening_tls_port(line: &str) -> Option<u16> {
    let start = line.find("tls_port: ")? + "tls_port: ".len();
    let rest = &line[start..];
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let start = line.find("addr: ")? + "addr: ".len();
    let rest = &line[start..];
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Send `request` on a raw connection, close the sending side, and read every reply byte until
/// the node closes the connection.
///
/// A node closes a connection whose request it refuses (malformed RESP, a line too long) at
/// once, so sending the rest, or closing the sending side, may find the connection reset: that
/// is the node's answer, not the test's failure, and the replies sent before it are read all
/// the same.
pub fn exchange(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    if stream.write_all(request).is_ok() {
        let _ = stream.shutdown(Shutdown::Write);
    }
    read_to_close(stream)
}

/// Read until the node closes the connection (a reset counts as closed).
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut replies = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return replies,
            Ok(n) => replies.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return replies,
            Err(e) => panic!("reading replies failed after {} bytes: {e}", replies.len()),
        }
    }
}

/// Send `requests` pipelined on one connection and answer the reply lines, in order.
pub fn pipeline(node: &NodeProcess, requests: &[String]) -> Vec<String> {
    let stream = node.raw();
    let mut writer = stream.try_clone().unwrap();
    let body: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let sender = thread::spawn(move || writer.write_all(body.as_bytes()).unwrap());
    let mut reader = BufReader::new(stream);
    let replies = (0..requests.len())
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line.trim_end_matches('\n').to_string()
        })
        .collect();
    sender.join().unwrap();
    replies
}

/// Run `kvcli` with `args`, `stdin` piped in; answers how it ended and what it printed.
pub fn kvcli(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvcli"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kvcli");
    // Feed stdin from a thread: kvcli may print replies before it has read all its input.
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let output = child.wait_with_output().expect("kvcli output");
    feeder.join().unwrap();
    output
}

/// Stop `node` with SIGTERM and check that it exits cleanly.
pub fn stop(mut node: NodeProcess) {
    node.signal("TERM");
    assert!(node.wait_exit().success());
}

/// The log files in a data directory, oldest first.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kvl"))
        .collect();
    logs.sort();
    logs
}

/// Run `script` with redis-py from PyPI, as a new user would install it: CI installs it in a
/// virtual environment (`.ci/run`); the interpreter is `KV_REDIS_PY`, or
/// `target/pyenv/bin/python`. Answers the script's output; fails the test if the script does.
pub fn redis_py(script: &str) -> String {
    let python = std::env::var("KV_REDIS_PY").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python").to_string()
    });
    let output = Command::new(&python)
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("run {python} (redis-py from PyPI; see .ci/run): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

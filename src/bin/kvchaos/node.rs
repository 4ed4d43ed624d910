//! One server process under test: a `kvnode` or a `redis-server` with its own data directory,
//! started on a fresh loopback port each time (the proxies in front of it are pointed there),
//! so that it can be killed and started again on the same data, and killed on every path (its
//! `Drop`, and a parent-death signal if kvchaos itself dies).
//!
//! Its stderr and stdout are copied into `<name>.log` by a thread of ours rather than written
//! by the process itself, so that a file size limit standing in for a full disk does not also
//! silence the log that says what the node did about it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::connection::password;

/// How long a node gets to start answering.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How many times a node that exits at start is tried (each time on another port).
const START_ATTEMPTS: u32 = 3;

/// Why a start failed.
enum Exit {
    /// The process exited before it answered: perhaps its port was taken, worth another try.
    AtStart(String),
    /// Anything else.
    Other(String),
}

/// How long a node gets to stop after `SIGTERM` before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// Which store a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Our `kvnode`, at this path.
    Kvnode(PathBuf),
    /// Debian's `redis-server` (or the one at this path), as a reference.
    Redis(PathBuf),
}

/// How a node is started: what it runs, its role and durability.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its name in logs and fault descriptions: `primary`, `replica1`, ...
    pub name: String,
    /// The program.
    pub program: Program,
    /// The `--fsync` policy (`off`: Redis without an AOF).
    pub fsync: String,
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    /// Replication: for a kvnode primary, the addresses it streams to (`--replica`); for a
    /// Redis replica, the one address it follows (`--replicaof`).
    pub links: Vec<SocketAddr>,
    /// Whether it is a replica.
    pub replica: bool,
    /// The shared secret of the kvnode cluster's replication links.
    pub secret: String,
    /// As a member of a failover cluster: how it is started (`--peers` and the rest).
    pub member: Option<Member>,
}

/// The control plane of a failover cluster member listens on its client port plus this.
pub const CONTROL_OFFSET: u16 = 10_000;

/// What makes a kvnode a member of a failover cluster.
#[derive(Debug, Clone)]
pub struct Member {
    /// Every member's advertised address (its front proxy), the same list on every member for
    /// the whole run.
    pub peers: String,
    /// This member's entry in `peers`.
    pub advertise: SocketAddr,
    /// The address its connections to the other members come from (`--source-addr`), so
    /// that the proxies can cut it off from them and not from the clients.
    pub source: IpAddr,
    /// `--failover-timeout-ms`.
    pub failover_timeout_ms: u64,
    /// `--min-replicas-to-write`.
    pub min_replicas_to_write: u64,
}

/// A running node.
pub struct Node {
    /// How it was started, to start it again.
    pub spec: Spec,
    /// Where it listens now: a fresh port at every start, as a port left free by a killed
    /// process can be taken by any outgoing connection before the restart binds it again.
    /// Clients and peers reach it through proxies that are told the new address.
    pub addr: SocketAddr,
    /// The process (`None` between a kill and the restart).
    child: Option<Child>,
    /// Its log file, shared by the threads that copy its output.
    log: Arc<Mutex<File>>,
}

impl Node {
    /// Start a node on a free loopback port with an empty data directory (an earlier run's
    /// data, in an output folder used again, would make a history this run cannot explain),
    /// its log in `out/<name>.log`.
    pub fn start(spec: Spec, out: &Path) -> Result<Node, String> {
        match std::fs::remove_dir_all(&spec.data_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot empty {}: {e}", spec.data_dir.display()));
            }
            _ => {}
        }
        // kvnode creates its data directory; redis-server needs it to exist.
        std::fs::create_dir_all(&spec.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", spec.data_dir.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(out.join(format!("{}.log", spec.name)))
            .map_err(|e| format!("cannot open {}'s log: {e}", spec.name))?;
        let addr = fresh_addr(&spec)?;
        let mut node = Node {
            spec,
            addr,
            child: None,
            log: Arc::new(Mutex::new(log)),
        };
        node.spawn()?;
        Ok(node)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start the process (on a fresh port after the first time) and wait until it answers
    /// `PING`.
    ///
    /// A free port is found by binding port 0 and letting it go, so another process (a test
    /// running beside this one) can take it before the node binds it, and the node then exits
    /// at start. So a node that exits at start is tried again on another port, up to
    /// `START_ATTEMPTS` times; one that cannot start at all still fails, and says why.
    pub fn spawn(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err(format!("{} is already running", self.spec.name));
        }
        let mut attempt = 1;
        loop {
            match self.spawn_once() {
                // Its log keeps why it exited.
                Err(Exit::AtStart(_)) if attempt < START_ATTEMPTS => {
                    attempt += 1;
                    self.addr = fresh_addr(&self.spec)?;
                }
                Err(Exit::AtStart(why) | Exit::Other(why)) => return Err(why),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// One try at starting the process on `self.addr`.
    fn spawn_once(&mut self) -> Result<(), Exit> {
        let mut command = self.command();
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe system calls (signal, prctl, getppid).
        unsafe {
            command.pre_exec(prepare_child);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Exit::Other(format!("cannot start {}: {e}", self.spec.name)))?;
        copy_output(child.stdout.take(), child.stderr.take(), &self.log);
        self.child = Some(child);
        self.wait_ready()
    }

    /// The command line that starts this node.
    fn command(&self) -> Command {
        let spec = &self.spec;
        match &spec.program {
            Program::Kvnode(path) => {
                let mut command = Command::new(path);
                command
                    .args(["--listen", &self.addr.to_string(), "--fsync", &spec.fsync])
                    .args(["--cluster-secret", &spec.secret]);
                if let Some(member) = &spec.member {
                    command
                        .args(["--peers", &member.peers])
                        .args(["--advertise", &member.advertise.to_string()])
                        .args(["--source-addr", &member.source.to_string()])
                        .arg("--failover-timeout-ms")
                        .arg(member.failover_timeout_ms.to_string())
                        .arg("--min-replicas-to-write")
                        .arg(member.min_replicas_to_write.to_string());
                } else {
                    command.args(["--role", if spec.replica { "replica" } else { "primary" }]);
                }
                command.arg("--data-dir").arg(&spec.data_dir);
                if let Some(password) = password() {
                    // From the environment, so it is not in `ps` output.
                    command.env("KVSTORE_REQUIREPASS", password);
                }
                for link in &spec.links {
                    command.args(["--replica", &link.to_string()]);
                }
                command
            }
            Program::Redis(path) => {
                let mut command = Command::new(path);
                let aof = spec.fsync != "off";
                command
                    .args([
                        "--port",
                        &self.addr.port().to_string(),
                        "--bind",
                        "127.0.0.1",
                    ])
                    .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
                    .args(["--appendonly", if aof { "yes" } else { "no" }])
                    .args(["--logfile", ""])
                    .arg("--dir")
                    .arg(&spec.data_dir);
                if aof {
                    command.args(["--appendfsync", &spec.fsync]);
                }

                if let Some(primary) = spec.links.first() {
                    command.args([
                        "--replicaof",
                        &primary.ip().to_string(),
                        &primary.port().to_string(),
                    ]);
                }
                command
            }
        }
    }

    /// Wait until the node answers `PING` (both stores answer an inline `PING`); a process
    /// that exited is noticed first, so that nothing else on its port can answer for it.
    fn wait_ready(&mut self) -> Result<(), Exit> {
        let start = Instant::now();
        while start.elapsed() < START_DEADLINE {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(Exit::AtStart(format!(
                    "{} exited at start: {status}",
                    self.spec.name
                )));
            }
            if ping(self.addr) {
                return Ok(());
            }
            // Poll interval of the deadline-bounded wait for the node to listen.
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Exit::Other(format!(
            "{} did not answer within {START_DEADLINE:?}",
            self.spec.name
        )))
    }

    /// `kill -9`, and wait for the process to be gone; the next start takes a fresh port.
    pub fn kill(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.addr = fresh_addr(&self.spec)?;
        Ok(())
    }

    /// If the process has exited by itself (a crash the run did not cause): how. The next
    /// start takes a fresh port.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                self.child = None;
                self.addr = fresh_addr(&self.spec)?;
                Ok(Some(status))
            }
            _ => Ok(None),
        }
    }

    /// Send `SIGSTOP` (or `SIGCONT`) to the process.
    pub fn signal(&self, name: &str) -> Result<(), String> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        run(Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string()))
    }

    /// Set the process's file size limit (`prlimit --fsize`): `Some(0)` makes every write to a
    /// file fail with `EFBIG`, as a full disk fails it with `ENOSPC`; `None` lifts it.
    pub fn limit_file_size(&self, limit: Option<u64>) -> Result<(), String> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let soft = limit.map_or("unlimited".to_string(), |n| n.to_string());
        run(Command::new("prlimit")
            .args(["--pid", &pid.to_string()])
            .arg(format!("--fsize={soft}:unlimited")))
    }

    /// Delay every `fdatasync` and `fsync` of the process by `delay` for `hold` (strace's fault
    /// injection, attached to the running process: a slow disk without root or a special
    /// file system), then detach.
    pub fn slow_disk(&self, delay: Duration, hold: Duration) -> Result<(), String> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let mut command = Command::new("strace");
        // SAFETY: as for the node: only async-signal-safe system calls before exec.
        unsafe {
            command.pre_exec(prepare_child);
        }
        let mut strace = command
            .args(["-f", "-o", "/dev/null", "-e", "trace=fdatasync,fsync"])
            .arg(format!(
                "--inject=fdatasync,fsync:delay_enter={}",
                delay.as_micros()
            ))
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run strace (needed for a slow disk): {e}"))?;
        // strace says it attached on its stderr; the rest of what it says is read and dropped
        // so that it never blocks on a full pipe.
        let attached = strace.stderr.take().map(|stderr| {
            let (tell, told) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
                let first = lines.next().and_then(Result::ok).unwrap_or_default();
                let _ = tell.send(first);
                for _ in lines {}
            });
            told.recv_timeout(Duration::from_secs(10))
                .unwrap_or_default()
        });
        let result = match attached {
            Some(line) if line.contains("attached") => {
                std::thread::sleep(hold);
                Ok(())
            }
            other => Err(format!(
                "strace did not attach to {}: {other:?}",
                self.spec.name
            )),
        };
        // SIGINT makes strace detach, leaving the node running; one that does not exit soon is
        // killed (its tracee is then detached by the kernel).
        let _ = run(Command::new("kill").args(["-INT", &strace.id().to_string()]));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = strace.try_wait() {
                return result;
            }
            // Poll interval of the bounded wait for strace to detach.
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = strace.kill();
        let _ = strace.wait();
        result
    }

    /// Stop it gracefully (SIGTERM, then wait a while, then `kill -9`); a problem if it did
    /// not stop cleanly.
    pub fn stop(&mut self) -> Result<(), String> {
        let _ = self.signal("CONT");
        let _ = self.signal("TERM");
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let start = Instant::now();
        while start.elapsed() < STOP_DEADLINE {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!(
                        "{} stopped badly on SIGTERM: {status}",
                        self.spec.name
                    ))
                }
                // Poll interval of the bounded wait for a clean stop.
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "{} did not stop within {STOP_DEADLINE:?} of SIGTERM",
            self.spec.name
        ))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (the system's choice).
fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// A fresh address for a node: for a failover cluster member, a port whose control port
/// (+10000) is free too.
fn fresh_addr(spec: &Spec) -> Result<SocketAddr, String> {
    match spec.member {
        Some(_) => free_pair(),
        None => free_port(),
    }
}

/// A free loopback port `p` with `p + CONTROL_OFFSET` free too. Both are drawn below the
/// range the system hands out for outgoing connections (32768 and up on Linux), so that
/// neither is taken by a connection between the check and the bind; what another process
/// takes meanwhile makes the node exit at start, and it is tried again on another pair.
pub fn free_pair() -> Result<SocketAddr, String> {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..1000 {
        let port = fastrand::u16(12_000..22_000);
        if free(port) && free(port + CONTROL_OFFSET) {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    Err("no free pair of ports (p, p + 10000) below 32000".into())
}

/// Set up a started process before it runs its program: it dies with kvchaos (so that an
/// interrupted run leaves no node behind), a file size limit makes its writes fail rather
/// than killing it (Redis, unlike kvnode, does not ignore `SIGXFSZ` itself; an ignored
/// signal stays ignored across exec), and strace, a sibling rather than its parent, may
/// attach to it for a slow disk where Yama restricts tracing to parents.
fn prepare_child() -> std::io::Result<()> {
    // SAFETY: plain system calls with constant arguments, allowed between fork and exec.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The parent may have died before the line above took effect.
        if libc::getppid() == 1 {
            return Err(std::io::Error::other("kvchaos exited"));
        }
        // Best effort: only matters where Yama's ptrace_scope is 1.
        libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY);
    }
    Ok(())
}

/// Run a helper command (`kill`, `prlimit`) and say whether it worked.
fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{command:?} failed"))
}

/// Copy the process's output into its log until it closes.
fn copy_output(stdout: Option<ChildStdout>, stderr: Option<ChildStderr>, log: &Arc<Mutex<File>>) {
    fn pump(mut from: impl Read + Send + 'static, log: Arc<Mutex<File>>) {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                let mut file = log.lock().unwrap_or_else(PoisonError::into_inner);
                // A log that cannot be written loses lines, not the run.
                let _ = file.write_all(&buf[..n]);
            }
        });
    }
    if let Some(stdout) = stdout {
        pump(stdout, log.clone());
    }
    if let Some(stderr) = stderr {
        pump(stderr, log.clone());
    }
}

/// Whether the node answers an inline `PING` on a new connection (a node that requires a
/// login answers `NOAUTH`, which shows it is up just as well).
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 4];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && (&reply == b"PONG" || &reply == b"+PON" || &reply == b"-NOA")
}

//! A `redis-server` child process speaking TLS only, for the tests of the clients' TLS against
//! a server nobody here wrote. It is killed when dropped, on every path a test can take.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use tempfile::TempDir;

use super::certs::CertFiles;
use super::{free_ports, DEADLINE};

/// A `redis-server` on a TLS port of its own (its plain port off), killed when dropped.
pub struct RedisServer {
    child: Child,
    /// The TLS port.
    pub port: u16,
    /// The log file, to show when something goes wrong.
    log: PathBuf,
    /// Its working directory, removed after it.
    _dir: TempDir,
}

impl RedisServer {
    /// Start one with the certificate `server`, trusting `ca` for client certificates;
    /// `auth_clients` is `--tls-auth-clients` (`yes`, `no`, `optional`). A port taken between
    /// finding it free and binding it is tried again with another.
    pub fn start_tls(server: &CertFiles, ca: &Path, auth_clients: &str) -> RedisServer {
        let started = Instant::now();
        loop {
            let dir = tempfile::tempdir().expect("redis-server's directory");
            let log = dir.path().join("redis.log");
            let port = free_ports(1)[0];
            let child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(&server.cert)
                .arg("--tls-key-file")
                .arg(&server.key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", auth_clients])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server (Debian's, built with TLS)");
            let mut redis = RedisServer {
                child,
                port,
                log,
                _dir: dir,
            };
            if redis.wait_ready() {
                return redis;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "redis-server did not start:\n{}",
                redis.log()
            );
        }
    }

    /// Wait until the server is ready (true) or has exited (false: its port was taken).
    fn wait_ready(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if self.log().contains("Ready to accept connections") {
                return true;
            }
            if self.child.try_wait().expect("poll redis-server").is_some() {
                return false;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "redis-server is not ready:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

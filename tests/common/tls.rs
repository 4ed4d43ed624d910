//! Helpers of the TLS tests: a world of certificates in a temporary directory, and
//! `redis-cli --tls`, redis-py with `ssl` and Python's `ssl` sockets to talk to a node over
//! TLS as users would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use super::certs::{CertFiles, TestCa};

/// A certificate authority with its files in a directory of its own.
pub struct TlsWorld {
    /// Where the CA's and the issued certificates' files are.
    pub dir: TempDir,
    /// The authority.
    pub ca: TestCa,
    /// Its certificate's file (what `--tls-ca` and `--cacert` take).
    pub ca_file: PathBuf,
}

impl TlsWorld {
    /// A new authority called `name`.
    pub fn new(name: &str) -> TlsWorld {
        let dir = tempfile::tempdir().expect("a directory for certificates");
        let ca = TestCa::new(name);
        let ca_file = ca.write_ca(dir.path());
        TlsWorld { dir, ca, ca_file }
    }

    /// A certificate for `name`, signed by this authority.
    pub fn issue(&self, name: &str) -> CertFiles {
        self.ca.issue(self.dir.path(), name)
    }
}

/// The flags of a node showing `files`, checking peers and clients against `ca` if given.
pub fn node_flags(files: &CertFiles, ca: Option<&Path>) -> Vec<String> {
    let mut flags = vec![
        "--tls-cert".to_string(),
        files.cert.display().to_string(),
        "--tls-key".to_string(),
        files.key.display().to_string(),
    ];
    if let Some(ca) = ca {
        flags.extend(["--tls-ca".to_string(), ca.display().to_string()]);
    }
    flags
}

/// Run `redis-cli --tls` against `port`, trusting `ca` and showing `identity` if given.
pub fn redis_cli_tls(port: u16, ca: &Path, identity: Option<&CertFiles>, args: &[&str]) -> Output {
    let mut command = Command::new("redis-cli");
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--tls",
            "--cacert",
        ])
        .arg(ca);
    if let Some(identity) = identity {
        command.arg("--cert").arg(&identity.cert);
        command.arg("--key").arg(&identity.key);
    }
    command
        .args(args)
        .output()
        .expect("run redis-cli (CI installs redis-tools)")
}

/// What `redis-cli --tls ... args` printed, failing the test if it could not run them.
pub fn tls_cli(port: u16, ca: &Path, identity: Option<&CertFiles>, args: &[&str]) -> String {
    let output = redis_cli_tls(port, ca, identity, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "redis-cli --tls {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Whether `redis-cli --tls` trusting `ca` (showing `identity`) gets `PONG` from `port`.
pub fn pongs(port: u16, ca: &Path, identity: Option<&CertFiles>) -> bool {
    let output = redis_cli_tls(port, ca, identity, &["PING"]);
    String::from_utf8_lossy(&output.stdout).trim() == "PONG"
}

/// Run `script` with the system's Python 3 (Debian's python3-redis for redis-py); answers
/// its output, failing the test if it fails.
pub fn python(script: &str) -> String {
    let output = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .output()
        .expect("run /usr/bin/python3 (CI installs python3-redis)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// Send `line` (the line protocol) over TLS to `port`, trusting `ca`, and answer the reply
/// line.
pub fn tls_line(port: u16, ca: &Path, line: &str) -> String {
    python(&format!(
        r#"
import socket, ssl
context = ssl.create_default_context(cafile={ca:?})
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall({line:?}.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            reply += chunk
        print(reply.decode().strip())
"#,
        ca = ca.display().to_string(),
    ))
    .trim()
    .to_string()
}

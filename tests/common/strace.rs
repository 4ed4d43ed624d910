//! `strace` attached to a running node: to watch the order of its system calls, and to inject
//! faults into them (a delayed `fdatasync`), without root or a special file system.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long strace gets to detach and exit before it is killed.
const DETACH_WAIT: Duration = Duration::from_secs(3);

/// `strace` attached to a running node, recording the calls it is asked to (and injecting
/// the faults it is asked to); detached and reaped when dropped.
pub struct Strace {
    child: Child,
    /// Kept open until strace has exited, so that its last lines (detaching) have a reader.
    _stderr: Option<BufReader<ChildStderr>>,
}

impl Strace {
    /// Attach to every thread of `pid` with `options` (which calls, which faults), writing
    /// the trace to `output`; answers once attached.
    pub fn attach(pid: u32, output: &Path, options: &[&str]) -> Strace {
        let mut child = Command::new("strace")
            .arg("-f")
            .args(options)
            .arg("-o")
            .arg(output)
            .args(["-p", &pid.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strace (the tests need it: .ci/run installs it)");
        let stderr = child.stderr.take().map(BufReader::new);
        // Owned from here on, so that it is reaped on every path.
        let mut strace = Strace {
            child,
            _stderr: stderr,
        };
        let mut first = String::new();
        if let Some(stderr) = strace._stderr.as_mut() {
            stderr.read_line(&mut first).expect("read strace's stderr");
        }
        assert!(first.contains("attached"), "strace did not attach: {first}");
        strace
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        // SIGINT makes strace detach and exit, leaving the node running. A strace whose
        // tracee was killed under it can hang instead: after a while, it is killed.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < DETACH_WAIT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            // Poll interval of the bounded wait for strace to exit.
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A TCP proxy for tests: forwards, drops, or blackholes the connections through it, so a test
//! can cut and stall a replication link and then heal it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Pass everything through.
    Forward = 0,
    /// Close every connection, and every new one at once.
    Drop = 1,
    /// Keep connections open but pass nothing, as a network that lost its route.
    Blackhole = 2,
}

/// A proxy in front of `target`, stopped when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (m, st, o) = (mode.clone(), stop.clone(), open.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if m.load(Ordering::SeqCst) == Mode::Drop as u8 {
                    continue; // dropped: closed at once
                }
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                let mut open = o.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(upstream.try_clone().unwrap());
                drop(open);
                pump(
                    client.try_clone().unwrap(),
                    upstream.try_clone().unwrap(),
                    m.clone(),
                );
                pump(upstream, client, m.clone());
            }
        });
        Proxy {
            addr,
            mode,
            stop,
            open,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        if mode == Mode::Drop {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copy `from` to `to` until either side closes; hold data while blackholed.
fn pump(mut from: TcpStream, mut to: TcpStream, mode: Arc<AtomicU8>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Infrastructure, not a test wait: a blackholed link holds its bytes until the
            // mode changes, polling the switch.
            while mode.load(Ordering::SeqCst) == Mode::Blackhole as u8 {
                thread::sleep(Duration::from_millis(5));
            }
            if mode.load(Ordering::SeqCst) == Mode::Drop as u8 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set(Mode::Drop);
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(self.addr);
    }
}

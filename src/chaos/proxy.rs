//! A TCP proxy that can cut a link: it forwards, drops, or blackholes the connections through
//! it, both ways or one way. `kvchaos` puts one in front of every node and on every replication
//! link, so partitions and one-way cuts need neither root nor iptables; the process tests use
//! it to cut and stall a link and then heal it.
//!
//! A blackholed direction holds its bytes (the proxy stops reading, so the sender's socket
//! buffer fills and its writes block), as a network that lost its route does until TCP gives
//! up; the bytes flow again, in order, when the link heals. A dropped link closes every
//! connection through it and every new one at once, as a network that answers with resets.
//!
//! A link can also be slowed ([`Proxy::set_delay`]): every chunk of bytes is held for a while
//! before it is passed on, whatever the mode, so a test can make a replica lag behind its
//! primary on purpose (a slow network) without cutting anything.
//!
//! A cut can also be limited to the connections that come from some source addresses (their
//! peer IP): the members of a failover cluster dial each other from addresses of their own
//! (`kvnode --source-addr`), so one proxy in front of a member can cut it off from the other
//! members while the clients, dialling from another address, still reach it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Pass everything through.
    Forward = 0,
    /// Close every connection, and every new one at once.
    Drop = 1,
    /// Keep connections open but pass nothing either way.
    Blackhole = 2,
    /// Pass only what the target sends back: requests (connector to target) are held.
    BlackholeRequests = 3,
    /// Pass only what the connector sends: answers (target to connector) are held.
    BlackholeAnswers = 4,
}

impl Mode {
    /// The mode a switch holds.
    fn load(switch: &AtomicU8) -> Mode {
        match switch.load(Ordering::SeqCst) {
            1 => Mode::Drop,
            2 => Mode::Blackhole,
            3 => Mode::BlackholeRequests,
            4 => Mode::BlackholeAnswers,
            _ => Mode::Forward,
        }
    }

    /// Whether bytes going `direction` are held in this mode.
    fn holds(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (Mode::Blackhole, _)
                | (Mode::BlackholeRequests, Direction::Requests)
                | (Mode::BlackholeAnswers, Direction::Answers)
        )
    }
}

/// Which way bytes go through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From whoever connected to the proxy, to the target.
    Requests,
    /// From the target back.
    Answers,
}

/// The cuts that apply to connections from some source addresses only, by source.
type Blocked = Arc<Mutex<HashMap<IpAddr, Mode>>>;

/// What decides a connection's mode: the proxy's, unless its source is blocked.
#[derive(Clone)]
struct Switch {
    /// The proxy's mode, for every connection.
    mode: Arc<AtomicU8>,
    /// The cuts of some sources, which win over the proxy's mode.
    blocked: Blocked,
    /// The connection's source (its connector's address).
    source: IpAddr,
    /// How long each chunk is held before it is passed on, in milliseconds (0: not at all).
    delay_ms: Arc<AtomicU64>,
}

impl Switch {
    /// The mode this connection is in now.
    fn load(&self) -> Mode {
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked
            .get(&self.source)
            .copied()
            .unwrap_or_else(|| Mode::load(&self.mode))
    }

    /// How long a chunk read now is held before it is passed on.
    fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }
}

/// A proxy in front of `target`, stopped (every connection closed) when dropped.
pub struct Proxy {
    /// Where it listens: connect here instead of to the target.
    pub addr: SocketAddr,
    /// The current `Mode`, shared with every pump.
    mode: Arc<AtomicU8>,
    /// The cuts of connections from some sources.
    blocked: Blocked,
    /// Set when the proxy is dropped, so the accept loop ends.
    stop: Arc<AtomicBool>,
    /// Every connection through it (both ends), with its source, so `Drop` can close them.
    open: Arc<Mutex<Vec<(IpAddr, TcpStream)>>>,
    /// Where new connections go: changed when the node behind it restarts elsewhere.
    target: Arc<Mutex<SocketAddr>>,
    /// The delay of every chunk, shared with every pump (`set_delay`).
    delay_ms: Arc<AtomicU64>,
}

impl Proxy {
    /// Listen on a free loopback port and forward to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Proxy> {
        Proxy::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), target)
    }

    /// Listen on `addr` and forward to `target`: for an address fixed for a whole run (a
    /// failover cluster member's advertised address, and its control port 10000 above).
    pub fn start_on(addr: SocketAddr, target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let proxy = Proxy {
            addr,
            mode: Arc::new(AtomicU8::new(Mode::Forward as u8)),
            blocked: Arc::new(Mutex::new(HashMap::new())),
            stop: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
            target: Arc::new(Mutex::new(target)),
            delay_ms: Arc::new(AtomicU64::new(0)),
        };
        let (mode, stop, open) = (proxy.mode.clone(), proxy.stop.clone(), proxy.open.clone());
        let (target, blocked) = (proxy.target.clone(), proxy.blocked.clone());
        let delay_ms = proxy.delay_ms.clone();
        thread::spawn(move || {
            for connector in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(connector) = connector else { continue };
                let Ok(source) = connector.peer_addr().map(|a| a.ip()) else {
                    continue;
                };
                let switch = Switch {
                    mode: mode.clone(),
                    blocked: blocked.clone(),
                    source,
                    delay_ms: delay_ms.clone(),
                };
                if switch.load() == Mode::Drop {
                    continue; // dropped: closed at once
                }
                // A connection that cannot be set up is closed, as a refused one would be.
                let to = *target.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = connect(connector, to, switch, &open);
            }
        });
        Ok(proxy)
    }

    /// Switch what the proxy does; `Drop` also closes every open connection.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        if mode == Mode::Drop {
            self.close(|_| true);
        }
    }

    /// Slow the link: from now on every chunk of bytes, either way and on every connection, is
    /// held for `delay` before it is passed on (zero: passed on at once). A pump reads again
    /// only once its chunk is passed on, so a byte arrives between one and two delays late
    /// while the link carries less than a 64 KiB chunk per delay.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Cut the connections from `source` only (`Drop` or a blackhole), old and new; the
    /// proxy's own mode goes on applying to every other source.
    pub fn block(&self, source: IpAddr, mode: Mode) {
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(source, mode);
        if mode == Mode::Drop {
            self.close(|from| from == source);
        }
    }

    /// Lift every cut of a source.
    pub fn unblock_all(&self) {
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Close the open connections whose source `which` picks.
    fn close(&self, which: impl Fn(IpAddr) -> bool) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(source, stream)| {
            if which(*source) {
                let _ = stream.shutdown(Shutdown::Both);
            }
            !which(*source)
        });
    }

    /// Send new connections to `target` from now on. Connections already open stay with the
    /// old target: a connection reaches one process only and is never dialled again, so
    /// whatever was sent on it can reach no other (kvchaos relies on this to bound when an
    /// operation without an answer can have taken effect).
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
    }
}

/// Open the upstream connection for `connector` and start pumping both ways.
fn connect(
    connector: TcpStream,
    target: SocketAddr,
    switch: Switch,
    open: &Mutex<Vec<(IpAddr, TcpStream)>>,
) -> io::Result<()> {
    // Bounded, so that a target that does not answer cannot stall the accept loop for long.
    let upstream = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
    let _ = connector.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    {
        let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, stream)| stream.peer_addr().is_ok());
        open.push((switch.source, connector.try_clone()?));
        open.push((switch.source, upstream.try_clone()?));
    }
    // A `Drop` that came while this connection was being set up did not see it.
    if switch.load() == Mode::Drop {
        let _ = connector.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return Ok(());
    }
    let (connector2, upstream2) = (connector.try_clone()?, upstream.try_clone()?);
    pump(connector, upstream, Direction::Requests, switch.clone());
    pump(upstream2, connector2, Direction::Answers, switch);
    Ok(())
}

/// Copy `from` to `to` until either side closes; hold bytes while this direction is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, direction: Direction, switch: Switch) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // A held direction stops reading, so the sender's buffers fill as on a dead route.
            // Infrastructure, not a test wait: the switch is polled.
            while switch.load().holds(direction) {
                thread::sleep(Duration::from_millis(5));
            }
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // A slowed link: the chunk is passed on only once its delay is over.
            let due = Instant::now() + switch.delay();
            while let Some(left) = due.checked_duration_since(Instant::now()) {
                if left.is_zero() {
                    break;
                }
                thread::sleep(left);
            }
            // Bytes read just before a cut are held too.
            while switch.load().holds(direction) {
                thread::sleep(Duration::from_millis(5));
            }
            if switch.load() == Mode::Drop || to.write_all(&buf[..n]).is_err() {
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
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    /// An echo server on a free port: every line sent comes back.
    fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut writer = stream;
                    let mut line = String::new();
                    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                        if writer.write_all(line.as_bytes()).is_err() {
                            return;
                        }
                        line.clear();
                    }
                });
            }
        });
        addr
    }

    /// A connection through the proxy, with one reader kept for its whole life.
    struct Client {
        /// Where lines are sent.
        writer: TcpStream,
        /// Where answers are read.
        reader: BufReader<TcpStream>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let writer = TcpStream::connect(addr).expect("connect");
            let reader = BufReader::new(writer.try_clone().expect("clone"));
            Client { writer, reader }
        }

        /// Send `line`, then one line back, or `None` if nothing came within `wait`.
        fn round_trip(&mut self, line: &str, wait: Duration) -> Option<String> {
            self.writer.write_all(line.as_bytes()).ok()?;
            self.writer.set_read_timeout(Some(wait)).ok()?;
            let mut answer = String::new();
            self.reader.read_line(&mut answer).ok()?;
            (!answer.is_empty()).then_some(answer)
        }
    }

    #[test]
    fn a_blackholed_direction_holds_its_bytes_until_the_link_heals() {
        let proxy = Proxy::start(echo()).expect("proxy");
        let mut stream = Client::connect(proxy.addr);
        assert_eq!(
            stream.round_trip("a\n", Duration::from_secs(10)).as_deref(),
            Some("a\n")
        );
        for cut in [
            Mode::Blackhole,
            Mode::BlackholeRequests,
            Mode::BlackholeAnswers,
        ] {
            proxy.set(cut);
            assert_eq!(
                stream.round_trip("b\n", Duration::from_millis(200)),
                None,
                "{cut:?} passed a round trip"
            );
            proxy.set(Mode::Forward);
            // The held line arrives once the link heals, then the next one.
            let healed = Instant::now();
            assert_eq!(
                stream.round_trip("c\n", Duration::from_secs(10)).as_deref(),
                Some("b\n"),
                "after {cut:?}"
            );
            assert!(healed.elapsed() < Duration::from_secs(10));
            assert_eq!(
                stream.round_trip("", Duration::from_secs(10)).as_deref(),
                Some("c\n")
            );
        }
    }

    #[test]
    fn a_delayed_link_passes_bytes_late_and_in_order() {
        let proxy = Proxy::start(echo()).expect("proxy");
        let mut stream = Client::connect(proxy.addr);
        let delay = Duration::from_millis(150);
        proxy.set_delay(delay);
        let sent = Instant::now();
        assert_eq!(
            stream
                .round_trip("a\nb\n", Duration::from_secs(10))
                .as_deref(),
            Some("a\n")
        );
        // Held once on the way there and once on the way back.
        assert!(sent.elapsed() >= 2 * delay, "{:?}", sent.elapsed());
        assert_eq!(
            stream.round_trip("", Duration::from_secs(10)).as_deref(),
            Some("b\n")
        );
        proxy.set_delay(Duration::ZERO);
        assert_eq!(
            stream.round_trip("c\n", Duration::from_secs(10)).as_deref(),
            Some("c\n")
        );
    }

    #[test]
    fn a_retargeted_proxy_sends_new_connections_to_the_new_target_only() {
        let proxy = Proxy::start(echo()).expect("proxy");
        let mut old = Client::connect(proxy.addr);
        assert!(old.round_trip("a\n", Duration::from_secs(10)).is_some());
        // A target that closes every connection at once.
        let closing = TcpListener::bind("127.0.0.1:0").expect("bind");
        let closing_addr = closing.local_addr().expect("addr");
        thread::spawn(move || for _ in closing.incoming() {});
        proxy.retarget(closing_addr);
        let mut new = Client::connect(proxy.addr);
        assert_eq!(new.round_trip("b\n", Duration::from_secs(10)), None);
        // The old connection still reaches the old target, and only it.
        assert_eq!(
            old.round_trip("c\n", Duration::from_secs(10)).as_deref(),
            Some("c\n")
        );
    }

    #[test]
    fn a_blocked_source_is_cut_and_others_pass() {
        let proxy = Proxy::start(echo()).expect("proxy");
        let mut client = Client::connect(proxy.addr);
        let from = |ip: [u8; 4]| {
            let socket = connect_from(IpAddr::from(ip), proxy.addr);
            let reader = BufReader::new(socket.try_clone().expect("clone"));
            Client {
                writer: socket,
                reader,
            }
        };
        let mut peer = from([127, 0, 0, 21]);
        assert!(peer.round_trip("a\n", Duration::from_secs(10)).is_some());
        proxy.block(IpAddr::from([127, 0, 0, 21]), Mode::Drop);
        assert_eq!(peer.round_trip("b\n", Duration::from_secs(10)), None);
        assert_eq!(
            from([127, 0, 0, 21]).round_trip("c\n", Duration::from_secs(10)),
            None
        );
        // Another source, and the existing client, still pass.
        assert!(from([127, 0, 0, 22])
            .round_trip("d\n", Duration::from_secs(10))
            .is_some());
        assert!(client.round_trip("e\n", Duration::from_secs(10)).is_some());
        proxy.unblock_all();
        assert!(from([127, 0, 0, 21])
            .round_trip("f\n", Duration::from_secs(10))
            .is_some());
    }

    /// A connection to `to` from the loopback address `ip`.
    fn connect_from(ip: IpAddr, to: SocketAddr) -> TcpStream {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(SocketAddr::new(ip, 0)).expect("bind");
            let stream = socket.connect(to).await.expect("connect");
            let stream = stream.into_std().expect("std stream");
            stream.set_nonblocking(false).expect("blocking");
            stream
        })
    }

    #[test]
    fn a_dropped_link_closes_connections_old_and_new() {
        let proxy = Proxy::start(echo()).expect("proxy");
        let mut stream = Client::connect(proxy.addr);
        proxy.set(Mode::Drop);
        assert_eq!(stream.round_trip("a\n", Duration::from_secs(10)), None);
        let mut fresh = Client::connect(proxy.addr);
        assert_eq!(fresh.round_trip("a\n", Duration::from_secs(10)), None);
        proxy.set(Mode::Forward);
        let mut again = Client::connect(proxy.addr);
        assert_eq!(
            again.round_trip("a\n", Duration::from_secs(10)).as_deref(),
            Some("a\n")
        );
    }
}

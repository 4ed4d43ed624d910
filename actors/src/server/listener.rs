//! The Listener actor: accepts connections and starts a [`Session`] for each.
//!
//! Sessions are placed on a set of arbiters (threads) in turn: by default just the Store's own,
//! so a request never crosses threads; with `--io-threads` above 1, further arbiters share the
//! parsing and socket work. The Listener also enforces the client limit and, at shutdown,
//! stops accepting and waits for every session to finish.
//!
//! One Listener serves every client port of a node (the plain `--listen` port and the TLS
//! `--tls-port`), so the client limit counts them together. On a port that speaks TLS, the
//! handshake runs on the session's arbiter before the session starts, off the accept loop; the
//! connection holds its place among the clients meanwhile.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use bytes::BytesMut;
use futures::channel::oneshot;
use futures::stream;
use slog::{debug, info, warn, Logger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::session::{self, Session, SessionClosed, SessionOwner, SessionReplicating};
use super::session_config::SessionConfig;
use crate::protocol::codec::protocol_of;
use crate::protocol::reply::{ErrorReply, Protocol, Reply};
use crate::replication::wire::Replicate;
use crate::store::Store;
use crate::tls::accept::{self, PortMode, HANDSHAKE_BYTE};
use crate::tls::TlsContext;

/// How long to back off after `accept` fails (for example when out of file descriptors), so
/// the failure does not turn into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a refused connection is given to show which protocol it speaks.
const REFUSE_PEEK: Duration = Duration::from_millis(500);
/// How long a refused connection's input is read before it is closed.
const REFUSE_DRAIN: Duration = Duration::from_millis(100);
/// The most connections admitted past the client limit because they opened a replication
/// stream, and that have not proved they know the cluster secret yet. Each must prove it
/// within the handshake timeout or is closed.
const MAX_UNAUTHENTICATED: usize = 8;
/// The most refused connections waiting (`REFUSE_PEEK`, `REFUSE_DRAIN`) at once: each holds a
/// file descriptor, and a flood of them must not take the node's last ones. Past it, refusals
/// are answered at once, in the line protocol.
const MAX_REFUSING: usize = 64;

/// What a Listener needs to start sessions.
pub struct ListenerConfig {
    /// Sessions are placed on these arbiters, in turn.
    pub arbiters: Vec<ArbiterHandle>,
    /// At most this many client connections at once.
    pub max_clients: usize,
    /// The settings every session of the node shares, handed to each one it starts.
    pub session: Arc<SessionConfig>,
    /// Kept equal to the number of open client connections, for `INFO`.
    pub clients: Arc<AtomicUsize>,
    /// The node's TLS, for the ports that speak it; `None`: every port is plain.
    pub tls: Option<TlsContext>,
}

/// Stop accepting, ask every session to finish, and answer once all have.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

/// Answers how many client connections are open.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ClientCount;

/// A session started on its arbiter and can now be reached: sent from that arbiter to the
/// Listener, which records the address so that it can ask the session to shut down.
#[derive(Message)]
#[rtype(result = "()")]
struct SessionStarted {
    /// The id the Listener gave the connection when it accepted it.
    id: u64,
    /// The session, told to finish ([`session::Shutdown`]) when the node shuts down.
    addr: Addr<Session>,
}

/// Accepts client connections on one socket.
pub struct Listener {
    /// The node's Store, handed to every session.
    store: Addr<Store>,
    /// Where sessions go, how many clients may be open, and what sessions are given.
    config: ListenerConfig,
    /// The node's logger; each session makes its own from it.
    log: Logger,
    /// Every open session; `None` while it is still starting on its arbiter.
    sessions: HashMap<u64, Option<Addr<Session>>>,
    /// The sessions that are a primary's replication stream rather than a client.
    replicating: HashSet<u64>,
    /// Sessions admitted past the client limit for a replication handshake that has not
    /// finished yet (at most [`MAX_UNAUTHENTICATED`]).
    unauthenticated: HashSet<u64>,
    /// The id given to the last session started; ids are never reused.
    next_id: u64,
    /// Which arbiter the next session goes to (modulo their number), so they take turns.
    next_arbiter: usize,
    /// The streams of accepted connections, one per port; `None` once shutdown began, so
    /// none is accepted.
    accepting: Option<Vec<SpawnHandle>>,
    /// Who waits for the last session to end, once shutdown began.
    drained: Vec<oneshot::Sender<()>>,
    /// Refused connections waiting to show which protocol they speak.
    refusing: Arc<AtomicUsize>,
}

impl Listener {
    /// Start accepting on `sockets`, each speaking what its mode says, on the current arbiter.
    pub fn start(
        sockets: Vec<(TcpListener, PortMode)>,
        store: Addr<Store>,
        config: ListenerConfig,
        log: &Logger,
    ) -> Addr<Listener> {
        let log = log.clone();
        Listener::create(move |ctx| {
            let handles = sockets.into_iter().map(|(socket, mode)| {
                let incoming = stream::unfold(socket, move |socket| async move {
                    let accepted = socket.accept().await;
                    Some(((mode, accepted), socket))
                });
                ctx.add_stream(incoming)
            });
            let accepting = Some(handles.collect());
            Listener {
                store,
                config,
                log,
                sessions: HashMap::new(),
                replicating: HashSet::new(),
                unauthenticated: HashSet::new(),
                next_id: 0,
                next_arbiter: 0,
                accepting,
                drained: Vec::new(),
                refusing: Arc::new(AtomicUsize::new(0)),
            }
        })
    }

    fn accept(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        mode: PortMode,
        ctx: &mut Context<Self>,
    ) {
        if self.client_count() >= self.config.max_clients {
            warn!(self.log, "refusing connection: max clients reached";
                "peer" => %peer, "max_clients" => self.config.max_clients);
            // Waiting to see a refused client's protocol holds its socket; only so many wait.
            let peek = (self.refusing.load(Ordering::Relaxed) < MAX_REFUSING)
                .then(|| Refusing::new(self.refusing.clone()));
            let tls = mode != PortMode::Plain && self.config.tls.is_some();
            actix_rt::spawn(refuse(stream, peer, peek, tls, ctx.address()));
            return;
        }
        let _ = self.start_session(stream, peer, false, mode, ctx);
    }

    /// Start a session for `stream` (accepted on a port in `mode`) on the next arbiter in
    /// turn, after its TLS handshake if it has one; answers its id, or `None` if the
    /// connection was lost first.
    fn start_session(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        replication_only: bool,
        mode: PortMode,
        ctx: &mut Context<Self>,
    ) -> Option<u64> {
        // Move the socket to the session's arbiter as a std socket, so that it registers with
        // that thread's own reactor rather than this one's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                warn!(self.log, "dropping connection"; "peer" => %peer, "error" => %error);
                return None;
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        self.sessions.insert(id, None);
        self.count_clients();
        let arbiters = &self.config.arbiters;
        let arbiter = arbiters[self.next_arbiter % arbiters.len()].clone();
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let store = self.store.clone();
        let me = ctx.address();
        let session_config = self.config.session.clone();
        let log = self.log.clone();
        // Taken now: a connection gets the certificates current when it arrives.
        let acceptor = self.config.tls.as_ref().map(TlsContext::client_acceptor);
        let spawned = arbiter.spawn(async move {
            let tcp = TcpStream::from_std(stream);
            let stream = match tcp {
                Ok(tcp) => accept::accept(tcp, mode, acceptor).await,
                Err(error) => {
                    debug!(log, "connection lost before its session started"; "peer" => %peer, "error" => %error);
                    return me.do_send(SessionClosed { id });
                }
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    warn!(log, "closing a connection that did not set up TLS"; "peer" => %peer, "reason" => %error);
                    return me.do_send(SessionClosed { id });
                }
            };
            let started = {
                let owner = SessionOwner {
                    closed: me.clone().recipient(),
                    replicating: me.clone().recipient(),
                };
                Session::start(
                    id,
                    stream,
                    store,
                    owner,
                    session_config,
                    replication_only,
                    &log,
                )
            };
            match started {
                Ok(addr) => me.do_send(SessionStarted { id, addr }),
                Err(error) => {
                    debug!(log, "connection lost before its session started"; "peer" => %peer, "error" => %error);
                    me.do_send(SessionClosed { id });
                }
            }
        });
        if !spawned {
            warn!(self.log, "I/O arbiter is gone; dropping connection"; "peer" => %peer);
            self.sessions.remove(&id);
            self.count_clients();
            return None;
        }
        Some(id)
    }

    /// Open sessions that are clients (a primary's replication stream is not one).
    fn client_count(&self) -> usize {
        self.sessions.len() - self.replicating.len()
    }

    fn count_clients(&self) {
        self.config
            .clients
            .store(self.client_count(), Ordering::Relaxed);
    }

    fn notify_if_drained(&mut self) {
        if self.accepting.is_none() && self.sessions.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// One refused connection waiting to show its protocol, counted while it lives.
struct Refusing(Arc<AtomicUsize>);

impl Refusing {
    fn new(count: Arc<AtomicUsize>) -> Refusing {
        count.fetch_add(1, Ordering::Relaxed);
        Refusing(count)
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection over the client limit that opened with `REPLICATE`: a primary's replication
/// stream, which takes no client's place, so it gets a session anyway. Sent by [`refuse`] back
/// to the Listener.
#[derive(Message)]
#[rtype(result = "()")]
struct AdmitReplication {
    /// The connection, nothing read from it yet (its opening was only peeked at).
    stream: TcpStream,
    /// The primary's address, for the logs.
    peer: SocketAddr,
    /// `TlsOnly` when it opened a TLS handshake (its `REPLICATE` is then checked by the
    /// session, after the handshake), `Plain` when its `REPLICATE` was seen.
    mode: PortMode,
}

/// Tell a client over the limit why it is refused, then close: in RESP if what arrives within
/// [`REFUSE_PEEK`] says it speaks RESP by the codec's rule ([`protocol_of`]: `redis-cli`,
/// client libraries and redis-benchmark send their first command at once), in the line
/// protocol otherwise (nothing, or not yet a whole first line, included), or at once when
/// `peek` is `None` (too many refusals are waiting already). A connection that opens with
/// `REPLICATE` is handed back to the `listener` instead: a replica whose clients fill its
/// places must still let its primary reconnect. On a port with `tls`, so is one that opens a
/// TLS handshake: its session then admits only a replication stream, and tells a client that
/// it is refused over TLS, where it can read it.
async fn refuse(
    mut stream: TcpStream,
    peer: SocketAddr,
    peek: Option<Refusing>,
    tls: bool,
    listener: Addr<Listener>,
) {
    let mut protocol = Protocol::Line;
    if let Some(_waiting) = &peek {
        let mut head = [0u8; 64];
        let peeked = tokio::time::timeout(REFUSE_PEEK, stream.peek(&mut head)).await;
        let head = match peeked {
            Ok(Ok(n)) => &head[..n],
            _ => &[][..],
        };
        let mode = match head.first() {
            Some(&HANDSHAKE_BYTE) if tls => Some(PortMode::TlsOnly),
            _ if Replicate::opens(&head[..head.len().min(10)]) => Some(PortMode::Plain),
            _ => None,
        };
        if let Some(mode) = mode {
            listener.do_send(AdmitReplication { stream, peer, mode });
            return;
        }
        protocol = protocol_of(head).unwrap_or(Protocol::Line);
    }
    let mut reply = BytesMut::new();
    Reply::Error(ErrorReply::MaxClients).encode(protocol, &mut reply);
    // The client may already be gone; there is nobody left to tell.
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
    if peek.is_some() {
        // Read what the client sent, briefly, so that closing does not reset the connection
        // (a reset can make the client drop the error unread).
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(REFUSE_DRAIN, async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

impl Actor for Listener {
    type Context = Context<Self>;
}

/// A connection accepted on a port in the given mode.
type Accepted = (PortMode, io::Result<(TcpStream, SocketAddr)>);

impl StreamHandler<Accepted> for Listener {
    fn handle(&mut self, (mode, item): Accepted, ctx: &mut Self::Context) {
        match item {
            Ok((stream, peer)) => self.accept(stream, peer, mode, ctx),
            Err(error) => {
                warn!(self.log, "accept failed; backing off"; "error" => %error);
                ctx.wait(actix::clock::sleep(ACCEPT_BACKOFF).into_actor(self));
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The stream of connections never ends by itself; it is only cancelled at shutdown.
    }
}

impl Handler<SessionStarted> for Listener {
    type Result = ();

    fn handle(&mut self, msg: SessionStarted, _: &mut Self::Context) {
        if self.accepting.is_none() {
            msg.addr.do_send(session::Shutdown);
        }
        if let Some(slot) = self.sessions.get_mut(&msg.id) {
            *slot = Some(msg.addr);
        }
    }
}

impl Handler<SessionClosed> for Listener {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _: &mut Self::Context) {
        self.sessions.remove(&msg.id);
        self.replicating.remove(&msg.id);
        self.unauthenticated.remove(&msg.id);
        self.count_clients();
        self.notify_if_drained();
    }
}

impl Handler<SessionReplicating> for Listener {
    type Result = ();

    fn handle(&mut self, msg: SessionReplicating, _: &mut Self::Context) {
        self.unauthenticated.remove(&msg.id);
        if self.sessions.contains_key(&msg.id) {
            self.replicating.insert(msg.id);
            self.count_clients();
        }
    }
}

impl Handler<AdmitReplication> for Listener {
    type Result = ();

    fn handle(&mut self, msg: AdmitReplication, ctx: &mut Self::Context) {
        if self.accepting.is_none() {
            return;
        }
        // Until it proves it knows the cluster secret, it may be anyone: only a few such
        // connections get past the client limit at once.
        if self.unauthenticated.len() >= MAX_UNAUTHENTICATED {
            warn!(self.log, "refusing a replication stream: too many unauthenticated ones";
                "peer" => %msg.peer, "limit" => MAX_UNAUTHENTICATED);
            return;
        }
        info!(self.log, "a replication stream arrives while client places are full; admitting it";
            "peer" => %msg.peer);
        if let Some(id) = self.start_session(msg.stream, msg.peer, true, msg.mode, ctx) {
            self.unauthenticated.insert(id);
        }
    }
}

impl Handler<ClientCount> for Listener {
    type Result = usize;

    fn handle(&mut self, _: ClientCount, _: &mut Self::Context) -> usize {
        self.client_count()
    }
}

impl Handler<StopAccepting> for Listener {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopAccepting, ctx: &mut Self::Context) -> Self::Result {
        if let Some(handles) = self.accepting.take() {
            // Dropping an accept stream closes its listening socket.
            for handle in handles {
                ctx.cancel_future(handle);
            }
            info!(self.log, "stopped accepting connections"; "open_sessions" => self.sessions.len());
            for addr in self.sessions.values().flatten() {
                addr.do_send(session::Shutdown);
            }
        }
        let (done, drained) = oneshot::channel();
        self.drained.push(done);
        self.notify_if_drained();
        Box::pin(async move {
            // An error only means the Listener itself stopped, which is as good as drained.
            let _ = drained.await;
        })
    }
}

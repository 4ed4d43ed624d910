//! The node's registry of client connections, for `CLIENT LIST`, `CLIENT INFO` and
//! `CLIENT KILL`: each session joins it when it starts and leaves it when it ends (or turns
//! into a primary's replication stream, which is not a client).
//!
//! It is kept off the hot path: the registry's lock is taken once when a connection opens,
//! once when it closes, and by the rare commands that list or kill. What changes per request
//! (the last command, when it ran, the protocol) lives in the connection's own [`Client`],
//! behind a lock that only its session and those rare commands take.
//!
//! The registry also counts what the connections' buffers hold, against
//! `--maxmemory-clients` ([`ClientMemory`]): a connection is counted while it is registered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use actix::prelude::*;
use actix::WeakRecipient;
use bytes::Bytes;
use slog::Logger;

use super::client_memory::{ClientBuffers, ClientMemory, Evict};
use crate::protocol::client_commands::{ClientFilter, ClientKind};
use crate::protocol::reply::Protocol;

/// Asks a session to close its connection: `CLIENT KILL`. Like a shutdown, it is handled
/// between batches, so a client in the middle of a request (a `WAIT`) is closed once that
/// request is answered.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Kill;

/// Every client connection of a node, by id (ids grow, so this is connection order).
#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<u64, Arc<Client>>>,
    /// What the registered connections' buffers hold, and the cap on it.
    memory: Arc<ClientMemory>,
}

/// One client connection as `CLIENT LIST` shows it.
#[derive(Debug)]
pub struct Client {
    /// The connection's id (the session's: `HELLO` and the logs show the same).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address of the node's socket it connected to.
    pub local: SocketAddr,
    /// The socket's file descriptor, or -1 where there is none to show.
    pub fd: i64,
    /// When it connected.
    pub since: Instant,
    /// Closes the session; weak, so the registry never keeps a session alive.
    kill: WeakRecipient<Kill>,
    /// What its buffers hold (`qbuf`, `omem`, `tot-mem`), counted against
    /// `--maxmemory-clients`.
    pub buffers: Arc<ClientBuffers>,
    /// What changes while it is connected.
    state: Mutex<ClientState>,
}

/// What changes about a connection while it is open.
#[derive(Debug)]
struct ClientState {
    /// `CLIENT SETNAME`'s name (empty: none).
    name: Bytes,
    /// `CLIENT SETINFO LIB-NAME`.
    lib_name: Bytes,
    /// `CLIENT SETINFO LIB-VER`.
    lib_ver: Bytes,
    /// The last command it sent (the last of a batch), as Redis names it.
    last_command: &'static str,
    /// When its last batch of requests was read.
    last_active: Instant,
    /// How it speaks.
    protocol: Protocol,
    /// The user it logged in as (`default` until it logs in, as Redis shows it).
    user: Arc<str>,
}

/// A session's place in the registry: leaves it when dropped (with the session).
#[derive(Debug)]
pub struct Registration {
    registry: Arc<ClientRegistry>,
    client: Arc<Client>,
}

/// How a registered session is told to close: by `CLIENT KILL`, or evicted for memory.
#[derive(Debug)]
pub struct Closers {
    /// `CLIENT KILL`.
    pub kill: WeakRecipient<Kill>,
    /// `--maxmemory-clients`.
    pub evict: WeakRecipient<Evict>,
}

impl ClientRegistry {
    /// Add connection `id` (from `peer` to `local`, socket `fd`), closed through `closers`;
    /// its eviction, if it comes, is logged to `log`.
    pub fn join(
        self: &Arc<Self>,
        id: u64,
        (peer, local): (SocketAddr, SocketAddr),
        fd: i64,
        closers: Closers,
        log: Logger,
    ) -> Registration {
        let now = Instant::now();
        let client = Arc::new(Client {
            id,
            peer,
            local,
            fd,
            since: now,
            kill: closers.kill,
            buffers: self.memory.join(id, closers.evict, log),
            state: Mutex::new(ClientState {
                name: Bytes::new(),
                lib_name: Bytes::new(),
                lib_ver: Bytes::new(),
                last_command: "NULL",
                last_active: now,
                protocol: Protocol::Line,
                user: "default".into(),
            }),
        });
        self.lock().insert(id, client.clone());
        Registration {
            registry: self.clone(),
            client,
        }
    }

    /// The connections that pass `filter`, in id order; `me` is the one asking (which
    /// `SKIPME` leaves out).
    pub fn matching(&self, filter: &ClientFilter, me: u64) -> Vec<Arc<Client>> {
        let now = Instant::now();
        let clients = self.lock();
        let candidates: Vec<&Arc<Client>> = match filter.ids.is_empty() {
            true => clients.values().collect(),
            false => filter.ids.iter().filter_map(|id| clients.get(id)).collect(),
        };
        candidates
            .into_iter()
            .filter(|client| client.passes(filter, me, now))
            .cloned()
            .collect()
    }

    /// What the connections' buffers hold, and the cap on it.
    pub fn memory(&self) -> &ClientMemory {
        &self.memory
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Client>>> {
        // A panic while holding it cannot leave the map half-changed: use it as it is.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The file descriptor of `socket`, as `CLIENT LIST` shows it (`fd=`); -1 where sockets have
/// none.
pub fn fd(socket: &tokio::net::TcpStream) -> i64 {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        i64::from(socket.as_raw_fd())
    }
    #[cfg(not(unix))]
    {
        let _ = socket;
        -1
    }
}

impl Client {
    /// Whether the connection passes `filter`, asked by connection `me`.
    fn passes(&self, filter: &ClientFilter, me: u64, now: Instant) -> bool {
        let same = |want: &Option<Bytes>, addr: &SocketAddr| {
            want.as_ref()
                .is_none_or(|want| want[..] == *addr.to_string().as_bytes())
        };
        !(filter.skip_me && self.id == me)
            && same(&filter.addr, &self.peer)
            && same(&filter.laddr, &self.local)
            && filter.kind.is_none_or(|kind| kind == ClientKind::Normal)
            && filter
                .user
                .as_ref()
                .is_none_or(|user| user[..] == *self.state().user.as_bytes())
            && filter
                .max_age
                .is_none_or(|max| now.duration_since(self.since).as_secs() > max)
    }

    /// Close the connection (once it has answered what it is answering). Answers whether the
    /// session was still there to be told.
    pub fn kill(&self) -> bool {
        let Some(session) = self.kill.upgrade() else {
            return false;
        };
        match session.try_send(Kill) {
            Ok(()) => true,
            // A busy session's mailbox: queued past its bound, as a kill must not be lost.
            Err(SendError::Full(kill)) => {
                session.do_send(kill);
                true
            }
            Err(SendError::Closed(_)) => false,
        }
    }

    /// Record a batch read now, whose last command is `command`, on a connection speaking
    /// `protocol`.
    pub fn note(&self, command: Option<&'static str>, protocol: Protocol) {
        let mut state = self.state();
        state.last_active = Instant::now();
        state.protocol = protocol;
        if let Some(command) = command {
            state.last_command = command;
        }
    }

    /// `CLIENT GETNAME`: the name, if one is set.
    pub fn name(&self) -> Option<Bytes> {
        Some(self.state().name.clone()).filter(|name| !name.is_empty())
    }

    /// `CLIENT SETNAME` (an empty name removes it).
    pub fn set_name(&self, name: Bytes) {
        self.state().name = name;
    }

    /// The user the connection logged in as (`user=`, `CLIENT KILL USER`).
    pub fn set_user(&self, user: Arc<str>) {
        self.state().user = user;
    }

    /// `CLIENT SETINFO`: the library's name (`version` false) or version.
    pub fn set_library(&self, version: bool, value: Bytes) {
        let mut state = self.state();
        match version {
            true => state.lib_ver = value,
            false => state.lib_name = value,
        }
    }

    /// The connection's `CLIENT LIST` line (without its `\n`), in Redis 7's field order. The
    /// fields a node has no counterpart for hold the value Redis shows for an ordinary idle
    /// client: see docs/protocol.md.
    pub fn line(&self, now: Instant) -> String {
        let (qbuf, argv, omem) = (
            self.buffers.input(),
            self.buffers.parsed(),
            self.buffers.output(),
        );
        let state = self.state();
        let text = |bytes: &Bytes| String::from_utf8_lossy(bytes).into_owned();
        let resp = match state.protocol {
            Protocol::Line => 0,
            Protocol::Resp => 2,
            Protocol::Resp3 => 3,
        };
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags=N db=0 sub=0 psub=0 \
             ssub=0 multi=-1 watch=0 qbuf={} qbuf-free=0 argv-mem={} multi-mem=0 rbs=0 rbp=0 \
             obl=0 oll=0 omem={} tot-mem={} events=r cmd={} user={} redir=-1 resp={} \
             lib-name={} lib-ver={}",
            self.id,
            self.peer,
            self.local,
            self.fd,
            text(&state.name),
            now.saturating_duration_since(self.since).as_secs(),
            now.saturating_duration_since(state.last_active).as_secs(),
            qbuf,
            argv,
            omem,
            qbuf + argv + omem,
            state.last_command,
            state.user,
            resp,
            text(&state.lib_name),
            text(&state.lib_ver),
        )
    }

    fn state(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registration {
    /// The connection as the registry holds it.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The registry it is in.
    pub fn registry(&self) -> &ClientRegistry {
        &self.registry
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.client.id);
        self.registry.memory.leave(self.client.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Stands in for a session: counts the kills it is sent, and stops.
    struct Session(Arc<std::sync::atomic::AtomicUsize>);

    impl Actor for Session {
        type Context = Context<Self>;
    }

    impl Handler<Kill> for Session {
        type Result = ();

        fn handle(&mut self, _: Kill, ctx: &mut Context<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ctx.stop();
        }
    }

    impl Handler<Evict> for Session {
        type Result = ();

        fn handle(&mut self, _: Evict, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    #[test]
    fn connections_are_listed_while_registered_filtered_and_killed() {
        System::new().block_on(async {
            let kills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let session = Session(kills.clone()).start();
            let registry = Arc::new(ClientRegistry::default());
            let log = Logger::root(slog::Discard, slog::o!());
            let closers = || Closers {
                kill: session.downgrade().recipient(),
                evict: session.downgrade().recipient(),
            };
            let a = registry.join(1, (addr(5001), addr(6379)), 7, closers(), log.clone());
            let b = registry.join(2, (addr(5002), addr(6379)), 8, closers(), log);
            let ids = |filter: &ClientFilter, me| -> Vec<u64> {
                registry.matching(filter, me).iter().map(|c| c.id).collect()
            };
            assert_eq!(ids(&ClientFilter::default(), 1), vec![1, 2]);
            let by_addr = ClientFilter {
                addr: Some(Bytes::from_static(b"127.0.0.1:5002")),
                ..ClientFilter::default()
            };
            assert_eq!(ids(&by_addr, 1), vec![2]);
            let skip_me = ClientFilter {
                skip_me: true,
                ..ClientFilter::default()
            };
            assert_eq!(ids(&skip_me, 1), vec![2]);
            let others = ClientFilter {
                kind: Some(ClientKind::Other),
                ..ClientFilter::default()
            };
            assert!(ids(&others, 1).is_empty());
            b.client().set_name(Bytes::from_static(b"worker"));
            b.client().note(Some("client|list"), Protocol::Resp3);
            let line = b.client().line(Instant::now());
            assert!(
                line.starts_with(
                    "id=2 addr=127.0.0.1:5002 laddr=127.0.0.1:6379 fd=8 name=worker age=0 idle=0 "
                ),
                "{line}"
            );
            assert!(
                line.contains(" cmd=client|list ") && line.contains(" resp=3 "),
                "{line}"
            );
            drop(b);
            assert_eq!(ids(&ClientFilter::default(), 1), vec![1]);
            assert!(a.client().kill());
            wait_for(|| kills.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
            drop(session);
            wait_for(|| !a.client().kill()).await;
        });
    }

    /// Poll `condition` until it holds (the test's deadline ends it otherwise).
    async fn wait_for(mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out");
            actix::clock::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

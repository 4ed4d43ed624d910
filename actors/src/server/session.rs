//! The Session actor: one per client connection.
//!
//! A session reads batches of requests from its socket (a `StreamHandler` over the connection codec),
//! answers what it can itself (PING, EXIT, errors, the read-only refusal of a replica), sends
//! the rest to the Store as one [`Batch`], and writes every reply in request order.
//!
//! Each batch is handled inside `ctx.wait`, which pauses the session's stream until the batch's
//! replies are written to the socket. That one rule gives three guarantees at once: replies
//! leave in request order, a client that pipelines but never reads stops being read as soon as
//! its socket is full (so what is queued for it stays bounded), and a mailbox message such as
//! [`Shutdown`] is only handled between batches, after everything read has been answered.
//!
//! A connection that opens with `REPLICATE` is a primary's replication stream: the session
//! hands what it reads to [`ReplicaLink`] (the replica's end of the link) and writes back the
//! lines it answers (`session/replication.rs`).
//!
//! A client's session is in the node's registry of connections (`CLIENT LIST`) while it lives.
//!
//! On a node with passwords, what a connection may run depends on who it has logged in as
//! ([`ConnectionAuth`]): refused requests are answered `NOAUTH` or `NOPERM` in their place. A
//! login (`AUTH`, `HELLO ... AUTH`, or `ACL LOAD`) is answered on its own once it is decided
//! (`session/login.rs`); the requests read after it wait until then.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use slog::{debug, info, warn, Logger};

use tokio_util::codec::FramedRead;

use super::auth::ConnectionAuth;
use super::batch::{Answered, BatchError, Step};
use super::client_memory::Evict;
use super::client_query;
use super::client_registry::{self, Closers, Kill, Registration};
use super::node_query;
use super::position_waits::PositionWaits;
use super::session_config::SessionConfig;
pub use super::session_owner::{SessionClosed, SessionOwner, SessionReplicating, Shutdown};
use super::transaction::{size_exec, Planned, Transaction};
use super::watched::Watched;
use crate::protocol::codec::{CodecError, ConnectionCodec, Frame, Request};
use crate::protocol::command::{Command, CommandError, Fold, Plan, PositionWait};
use crate::protocol::line::LineTooLong;
use crate::protocol::reply::{ErrorReply, Protocol, Reply};
use crate::replication::node_position::Observed;
use crate::replication::replica_link::{Handshake, ReplicaLink};
use crate::store::{Batch, Op, Seq, Store};
use crate::tls::{Stream, WriteHalf};

mod answer;
mod login;
mod replication;

/// An output buffer that grew past this for one batch is released afterwards.
const KEEP_BUFFER_BYTES: usize = 256 * 1024;

/// How long an evicted connection stays open, its input dropped unread, for its client to
/// read the error before the connection is closed.
const EVICTED_LINGER: Duration = Duration::from_millis(500);

/// One client connection.
pub struct Session {
    /// Its id among the node's sessions (HELLO shows it, logs carry it).
    id: u64,
    /// The client's address, for logs.
    peer: SocketAddr,
    /// The node's Store, which every batch goes to.
    store: Addr<Store>,
    /// The Listener, told when the session ends or turns into a replication stream.
    owner: SessionOwner,
    /// Settings every session of the node shares.
    config: Arc<SessionConfig>,
    /// Logs with `peer` and `session` fields.
    log: Logger,
    /// The socket's write half; `None` only while replies are being written.
    writer: Option<WriteHalf>,
    /// The output buffer replies are encoded into, kept between batches.
    out: BytesMut,
    /// The sequence number of this connection's latest write, for `WAIT`.
    last_write: Seq,
    /// What this connection's replies have shown it (its writes, its reads), for `LASTPOS`.
    observed: Observed,
    /// The position waits of the batch being planned (`WAITPOS`, `GET ... AFTER`).
    waits: Option<PositionWaits>,
    /// When the last batch was answered: with `last_read`, what `--timeout` measures from.
    last_answered: Instant,
    /// Let in past the client limit for a replication stream: anything else closes it.
    replication_only: bool,
    /// A primary's handshake in progress: it opened, and has not proved itself yet.
    handshake: Option<Handshake>,
    /// Set once the connection is a primary's (authenticated) replication stream.
    replication: Option<ReplicaLink>,
    /// How replies are framed: the line protocol, or RESP once the client spoke it.
    protocol: Protocol,
    /// When bytes last arrived: a replication stream is alive while bytes flow, even in the
    /// middle of a record too large to arrive within the timeout.
    last_read: Rc<Cell<Instant>>,
    /// In a failover cluster, the epoch this node was primary of when the batch being
    /// answered was accepted (its replies leave only while that still holds).
    serving: Option<u64>,
    /// `MULTI`/`EXEC` state, and where the batch being answered has `EXEC` replies to gather
    /// into arrays (the first step, and how many).
    transaction: Transaction,
    exec_groups: Vec<(usize, usize)>,
    /// Its place in the node's registry of client connections; `None` for a replication stream.
    client: Option<Registration>,
    /// Who the connection has logged in as, and its failed logins.
    auth: ConnectionAuth,
    /// Requests read after a login, planned once it is decided.
    pending: Vec<Request>,
    /// On a node with passwords, whether the connection has logged in, as its codec reads it
    /// (which takes only small requests until it has); set after every batch.
    logged_in: Option<Arc<AtomicBool>>,
    /// Whether the connection is TLS: a node with TLS takes a replication stream only so.
    tls: bool,
}

impl Session {
    /// Start a session for `stream` on the current arbiter. With `replication_only` (let in
    /// past the client limit for opening with `REPLICATE`), it must be a primary's stream and
    /// finish its handshake in time, or it is closed.
    pub fn start(
        id: u64,
        stream: Stream,
        store: Addr<Store>,
        owner: SessionOwner,
        config: Arc<SessionConfig>,
        replication_only: bool,
        log: &Logger,
    ) -> io::Result<Addr<Session>> {
        let tcp = stream.tcp();
        let peer = tcp.peer_addr()?;
        let (local, fd) = (tcp.local_addr()?, client_registry::fd(tcp));
        tcp.set_nodelay(true)?;
        let tls = stream.is_tls();
        let (reader, writer) = stream.into_split();
        let log = log.new(slog::o!("peer" => peer.to_string(), "session" => id));
        Ok(Session::create(move |ctx| {
            let client = (!replication_only).then(|| {
                let closers = Closers {
                    kill: ctx.address().downgrade().recipient(),
                    evict: ctx.address().downgrade().recipient(),
                };
                let registry = &config.node.client_registry;
                registry.join(id, (peer, local), fd, closers, log.clone())
            });
            let auth = ConnectionAuth::new(&config.node.accounts);
            // Only on a node with passwords does the codec check anything about logins.
            let logged_in = auth
                .user()
                .is_none()
                .then(|| Arc::new(AtomicBool::new(false)));
            let mut codec = ConnectionCodec::new(config.max_line_bytes, config.max_batch)
                .max_value(config.max_value_bytes);
            if let Some(client) = &client {
                codec = codec.metered(client.client().buffers.clone());
            }
            if let Some(logged_in) = &logged_in {
                codec = codec.login_required(logged_in.clone());
            }
            let last_read = Rc::new(Cell::new(Instant::now()));
            let reader = Watched {
                inner: reader,
                last_read: last_read.clone(),
            };
            ctx.add_stream(FramedRead::new(reader, codec));
            if replication_only {
                let timeout = config.node.handshake_timeout;
                ctx.run_later(timeout, move |act: &mut Session, ctx| {
                    if act.replication.is_none() {
                        warn!(act.log, "a connection let in for replication did not finish its handshake in time; closing";
                            "timeout_ms" => timeout.as_millis() as u64);
                        ctx.stop();
                    }
                });
            }
            if let Some(timeout) = config.idle_timeout {
                // Checked a few times per timeout. The check pauses while a batch is answered
                // (`ctx.wait`), and idle time counts from the later of the last bytes read
                // and the last batch answered, so a client waiting for its replies (a long
                // `WAIT`) is never idle.
                let every = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
                ctx.run_interval(every, move |act: &mut Session, ctx| {
                    let replicating = act.handshake.is_some() || act.replication.is_some();
                    let active = act.last_read.get().max(act.last_answered);
                    if !replicating && active.elapsed() >= timeout {
                        debug!(act.log, "closing an idle client";
                            "timeout_ms" => timeout.as_millis() as u64);
                        ctx.stop();
                    }
                });
            }
            Session {
                id,
                peer,
                store,
                owner,
                config,
                log,
                writer: Some(writer),
                out: BytesMut::with_capacity(4096),
                last_write: 0,
                observed: Observed::default(),
                waits: None,
                handshake: None,
                replication: None,
                replication_only,
                last_answered: Instant::now(),
                protocol: Protocol::Line,
                last_read,
                serving: None,
                transaction: Transaction::default(),
                exec_groups: Vec::new(),
                client,
                auth,
                logged_in,
                pending: Vec::new(),
                tls,
            }
        }))
    }

    /// Answer one batch of requests, in order; close afterwards when `close` is set.
    fn respond(&mut self, mut requests: Vec<Request>, mut close: bool, ctx: &mut Context<Self>) {
        if self.replication_only {
            // It took a place past the client limit by looking like a primary's stream.
            warn!(
                self.log,
                "a connection let in for replication sent requests; closing"
            );
            let refusal = Step::Reply(Reply::Error(ErrorReply::MaxClients));
            return self.answer(vec![refusal], Vec::new(), true, ctx);
        }
        if let Some(client) = &self.client {
            let last = requests.last().and_then(|r| r.as_ref().ok());
            client.client().note(last.map(Command::name), self.protocol);
        }
        if self.auth.refresh(&self.config.node.accounts, &self.log) {
            // Logged out by a reload: its transaction and watches go with its login, and
            // `CLIENT LIST` shows it as before any login.
            if let Some(client) = &self.client {
                client.client().set_user("default".into());
            }
            if self.transaction.watching() {
                self.store.do_send(Batch {
                    ops: vec![Op::Unwatch(self.id)],
                });
            }
            self.transaction = Transaction::default();
        }
        // A login is answered alone, once decided; the requests after it wait for it.
        let login = requests
            .iter()
            .position(|r| r.as_ref().is_ok_and(Command::is_login));
        if let Some(at) = login {
            self.pending = requests.split_off(at.max(1));
            // Inside `MULTI` it is planned, and refused, as the transaction's.
            if let (0, false, Some(Ok(command))) =
                (at, self.transaction.queuing(), requests.first())
            {
                let command = command.clone();
                return self.log_in(command, ctx);
            }
        }
        let mut steps = Vec::with_capacity(requests.len());
        let mut ops = Vec::with_capacity(requests.len());
        let refuse_writes = self.config.durability.failure();
        let not_primary = self.config.node.write_refusal(self.config.read_only);
        self.serving = self.config.node.serving_epoch();
        let stale = self.config.node.read_refusal();
        let auth = &self.auth;
        // Checked as a command is queued, and again at EXEC (rights may have been reloaded).
        let refused = |command: &Command| match command.is_write() {
            _ if command.is_login() => Some(ErrorReply::Command(CommandError::Redis(
                "ERR Command not allowed inside a transaction".into(),
            ))),
            _ if auth.refusal(command).is_some() => auth.refusal(command),
            true => not_primary.clone().or_else(|| {
                let reason = refuse_writes.clone()?;
                Some(ErrorReply::WritesRefused(reason))
            }),
            false => None,
        };
        // The `Op::Exec` of an `EXEC` being planned (its position in `ops`), and how many of its
        // commands are still to come: it is told how many ops they came to.
        let mut exec: Option<(usize, usize)> = None;
        let admitted = requests.into_iter().map(|request| match request {
            Ok(command) => auth.refusal(&command).map_or(Ok(command), Err),
            Err(error) => Err(ErrorReply::from(error)),
        });
        for planned in self.transaction.plan(admitted, refused) {
            if let Some((at, 0)) = exec {
                exec = None;
                size_exec(&mut ops, at, self.id);
            }
            let command = match planned {
                Planned::Run(command) => command,
                Planned::Reply(reply) => {
                    steps.push(Step::Reply(reply));
                    continue;
                }
                Planned::Unwatch(reply) => {
                    ops.push(Op::Unwatch(self.id));
                    steps.push(Step::AfterOne(reply));
                    continue;
                }
                Planned::Exec(n) => {
                    self.exec_groups.push((steps.len(), n));
                    exec = Some((ops.len(), n));
                    ops.push(Op::Exec(self.id, 0));
                    steps.push(Step::Store {
                        ops: 1,
                        fold: Fold::ExecCheck,
                        after: None,
                    });
                    continue;
                }
            };
            if let Some((_, left)) = exec.as_mut() {
                *left = left.saturating_sub(1);
            }
            let step = if let (true, Some(refusal)) = (command.is_write(), &not_primary) {
                Step::Reply(Reply::Error(refusal.clone()))
            } else if let (true, Some(reason)) = (command.is_write(), &refuse_writes) {
                Step::Reply(Reply::Error(ErrorReply::WritesRefused(reason.clone())))
            } else {
                let (plan, after) = match command.plan(&mut ops) {
                    Plan::After(wait, plan) => (*plan, Some(self.wait_for(wait))),
                    plan => (plan, None),
                };
                match plan {
                    Plan::Store { ops: n, .. } if stale.is_some() => {
                        // No command of the batch reaches the Store: this node's data may
                        // hold writes the current epoch discards. (What the session adds for
                        // WATCH, EXEC and UNWATCH still does: the watches must be kept right.)
                        ops.truncate(ops.len().saturating_sub(n));
                        Step::Reply(Reply::Error(stale.clone().unwrap_or(ErrorReply::NoPrimary)))
                    }
                    Plan::Store { ops, fold } => Step::Store { ops, fold, after },
                    Plan::WaitPos(wait) => Step::WaitPos(self.wait_for(wait)),
                    Plan::LastPos => Step::LastPos(self.config.node.position.clone()),
                    // Not nested: `AFTER` wraps a read.
                    Plan::After(..) => Step::Reply(Reply::Error(ErrorReply::Command(
                        CommandError::Invalid("AFTER cannot be nested".into()),
                    ))),
                    Plan::Reply(reply) => Step::Reply(reply),
                    Plan::Node(query) => Step::Node(query, self.store.clone(), self.config.clone()),
                    Plan::Hello { version, name } => {
                        if let (Some(name), Some(client)) = (name, &self.client) {
                            client.client().set_name(name);
                        }
                        let hello = node_query::hello(version, self.id, not_primary.is_some());
                        // `HELLO 3` switches the connection to RESP3, its own reply included.
                        self.protocol = node_query::hello_protocol(version, self.protocol);
                        Step::Reply(hello)
                    }
                    Plan::Watch(keys) => {
                        ops.push(Op::Watch(self.id, keys));
                        Step::Store {
                            ops: 1,
                            fold: Fold::AllOk,
                            after: None,
                        }
                    }
                    Plan::Unwatch => {
                        ops.push(Op::Unwatch(self.id));
                        Step::Store {
                            ops: 1,
                            fold: Fold::AllOk,
                            after: None,
                        }
                    }
                    Plan::WhoAmI => Step::Reply(match self.auth.user() {
                        Some(user) => Reply::Value(user.as_bytes().to_vec().into()),
                        None => Reply::Error(ErrorReply::NoAuth),
                    }),
                    Plan::Client(command) => Step::Reply(client_query::answer(
                        command,
                        self.client.as_ref(),
                        self.protocol,
                    )),
                    Plan::Exit => {
                        steps.push(Step::Reply(Reply::Goodbye));
                        close = true;
                        break;
                    }
                }
            };
            steps.push(step);
        }
        if let Some((at, _)) = exec {
            // The last command of the batch was the transaction's last.
            size_exec(&mut ops, at, self.id);
        }
        self.answer(steps, ops, close, ctx);
    }

    /// Add a position wait to the batch being planned; answers its index among the waits.
    fn wait_for(&mut self, wait: PositionWait) -> usize {
        PositionWaits::add(&mut self.waits, &self.config.node, wait)
    }

    /// Take the writer back after a batch; close if asked or if the batch failed.
    fn answered(&mut self, result: Result<Answered, BatchError>, ctx: &mut Context<Self>) {
        if self.config.idle_timeout.is_some() {
            self.last_answered = Instant::now();
        }
        if let Some(logged_in) = &self.logged_in {
            logged_in.store(self.auth.user().is_some(), Ordering::Relaxed);
        }
        match result {
            Ok(mut answered) => {
                if answered.out.capacity() > KEEP_BUFFER_BYTES {
                    answered.out = BytesMut::with_capacity(4096);
                }
                self.writer = Some(answered.writer);
                self.out = answered.out;
                self.last_write = answered.last_write;
                self.observed = answered.observed;
                if answered.close {
                    ctx.stop();
                } else if !self.pending.is_empty() {
                    let next = std::mem::take(&mut self.pending);
                    self.respond(next, false, ctx);
                }
            }
            Err(error) => {
                debug!(self.log, "closing connection"; "reason" => %error);
                ctx.stop();
            }
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        debug!(self.log, "client connected");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        debug!(self.log, "client disconnected");
        if let Some(link) = &self.replication {
            link.detach();
        }
        if self.transaction.watching() {
            self.store.do_send(Batch {
                ops: vec![Op::Unwatch(self.id)],
            });
        }
        self.owner.closed.do_send(SessionClosed { id: self.id });
    }
}

impl StreamHandler<Result<Frame, CodecError>> for Session {
    fn handle(&mut self, item: Result<Frame, CodecError>, ctx: &mut Self::Context) {
        match item {
            Ok(Frame::Requests(requests)) => self.respond(requests, false, ctx),
            Ok(Frame::Resp(requests)) => {
                if self.protocol == Protocol::Line {
                    self.protocol = Protocol::Resp;
                }
                self.respond(requests, false, ctx)
            }
            Ok(Frame::Replicate(opening)) => self.start_replication(opening, ctx),
            Ok(Frame::Stream(frame)) => self.replicate(frame, ctx),
            Err(CodecError::LineTooLong(LineTooLong { limit })) => {
                warn!(self.log, "line too long; closing connection"; "limit" => limit);
                let refusal = Step::Reply(Reply::Error(ErrorReply::LineTooLong { limit }));
                self.answer(vec![refusal], Vec::new(), true, ctx);
            }
            Err(CodecError::LineTooLongBeforeLogin(LineTooLong { limit })) => {
                warn!(self.log, "line too long before login; closing connection"; "limit" => limit);
                let refusal = ErrorReply::LineTooLongBeforeLogin { limit };
                self.answer(
                    vec![Step::Reply(Reply::Error(refusal))],
                    Vec::new(),
                    true,
                    ctx,
                );
            }
            Err(CodecError::Resp(error)) => {
                debug!(self.log, "malformed RESP; closing connection"; "error" => %error);
                self.protocol = Protocol::Resp;
                let text = format!("ERR {error}");
                let refusal =
                    Step::Reply(Reply::Error(ErrorReply::Command(CommandError::Redis(text))));
                self.answer(vec![refusal], Vec::new(), true, ctx);
            }
            Err(CodecError::Replication(error)) => {
                warn!(self.log, "bad replication stream; closing it"; "error" => %error);
                ctx.stop();
            }
            Err(CodecError::Io(error)) => {
                debug!(self.log, "read failed"; "error" => %error);
                ctx.stop();
            }
        }
    }

    /// The client closed its side: everything it sent has been answered (batches finish
    /// before the stream is polled again), so the session ends.
    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Kill> for Session {
    type Result = ();

    fn handle(&mut self, _: Kill, ctx: &mut Self::Context) {
        info!(self.log, "closing connection: CLIENT KILL");
        ctx.stop();
    }
}

impl Handler<Evict> for Session {
    type Result = ();

    /// Evicted for memory (`server/client_memory.rs` logged it): the client is told, if its
    /// socket takes the line at once, and gets the end of the stream; what it still sends is
    /// dropped unread (its codec sees it evicted) until it closes, or for [`EVICTED_LINGER`],
    /// so that the line is not lost to a reset.
    fn handle(&mut self, _: Evict, ctx: &mut Self::Context) {
        let buffers = self.client.as_ref().map(|c| c.client().buffers.clone());
        let resp = buffers.is_some_and(|b| b.speaks_resp());
        if let Some(mut writer) = self.writer.take() {
            let protocol = match (self.protocol, resp) {
                (Protocol::Line, true) => Protocol::Resp,
                (protocol, _) => protocol,
            };
            let mut line = BytesMut::new();
            Reply::Error(ErrorReply::Evicted).encode(protocol, &mut line);
            // Never waits: a client that reads nothing is not waited for.
            let _ = writer.try_write(&line);
            // Dropping the write half ends the stream to the client.
            drop(writer);
        }
        self.client = None;
        ctx.run_later(EVICTED_LINGER, |_, ctx| ctx.stop());
    }
}

impl Handler<Shutdown> for Session {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        debug!(self.log, "closing connection for shutdown"; "peer" => %self.peer);
        ctx.stop();
    }
}

//! The Session actor: one per client connection.
//!
//! A session reads batches of requests from its socket (a `StreamHandler` over the line codec),
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
//! hands what it reads to the node's [`Follower`] and writes back its acknowledgements.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use slog::{debug, info, warn, Logger};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::codec::{CodecError, Frame, LineCodec, Request, SyncStart};
use crate::command::Command;
use crate::command::CommandError;
use crate::durability::{Durability, FsyncPolicy};
use crate::follower::{Ack, Attach, CurrentAck, Detach, Follower, Stream};
use crate::info::{self, NodeContext};
use crate::record::Entry;
use crate::reply::{ErrorReply, Protocol, Reply};
use crate::resp;
use crate::store::{Batch, Op, Outcome, Seq, Stats, Store, TakeSnapshot};

/// Settings every session of a node shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Refuse PUT and DEL (the node is a replica).
    pub read_only: bool,
    /// The longest request line accepted, in bytes.
    pub max_line_bytes: usize,
    /// The most requests handled as one batch.
    pub max_batch: usize,
    /// The largest value a RESP client may send.
    pub max_value_bytes: usize,
    /// The most reply bytes one batch may produce before the client is disconnected
    /// (a client output buffer hard limit, as Redis has).
    pub output_limit: usize,
    /// The persistence writer's progress: writes wait on it under `--fsync always`, and are
    /// refused while it reports a failure.
    pub durability: Durability,
    /// What the node reports about itself (INFO, DIGEST, WAIT) and its replication wiring.
    pub node: NodeContext,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            read_only: false,
            max_line_bytes: 1024 * 1024,
            max_batch: 1024,
            max_value_bytes: 512 * 1024 * 1024,
            output_limit: 1024 * 1024 * 1024,
            durability: Durability::none(),
            node: NodeContext {
                role: "primary",
                replication_timeout: Duration::from_secs(10),
                ..NodeContext::default()
            },
        }
    }
}

/// Tells a session's owner that it has ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub id: u64,
}

/// Tells a session's owner that the connection is a primary's replication stream, not a
/// client: it no longer counts as one (`connected_clients`, `--max-clients`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionReplicating {
    pub id: u64,
}

/// Who a session reports to: the Listener that accepted it.
#[derive(Clone)]
pub struct SessionOwner {
    pub closed: Recipient<SessionClosed>,
    pub replicating: Recipient<SessionReplicating>,
}

/// Asks a session to finish: it closes once every request it has read is answered.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Reply bytes are handed to the socket whenever this many are buffered, so a batch with large
/// replies is written in pieces rather than copied whole into memory.
const FLUSH_BYTES: usize = 64 * 1024;
/// An output buffer that grew past this for one batch is released afterwards.
const KEEP_BUFFER_BYTES: usize = 256 * 1024;
/// How often a replication stream acknowledges, and checks that its primary is alive.
const REPLICATION_TICK: Duration = Duration::from_secs(1);

/// One client connection.
pub struct Session {
    id: u64,
    peer: SocketAddr,
    store: Addr<Store>,
    owner: SessionOwner,
    config: Arc<SessionConfig>,
    log: Logger,
    /// `None` only while replies are being written.
    writer: Option<OwnedWriteHalf>,
    out: BytesMut,
    /// The sequence number of this connection's latest write, for `WAIT`.
    last_write: Seq,
    /// Set once the connection is a primary's replication stream.
    replication: Option<Replication>,
    /// How replies are framed: the line protocol, or RESP once the client spoke it.
    protocol: Protocol,
    /// When bytes last arrived: a replication stream is alive while bytes flow, even in the
    /// middle of a record too large to arrive within the timeout.
    last_read: Rc<Cell<Instant>>,
}

/// A read half that notes when bytes last arrived.
struct Watched<R> {
    inner: R,
    last_read: Rc<Cell<Instant>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last_read.set(Instant::now());
        }
        polled
    }
}

/// A replication stream's state.
struct Replication {
    follower: Addr<Follower>,
    link: u64,
}

/// What answers one request.
enum Step {
    /// The Store, through the batch's next `ops` outcomes, folded into one reply.
    Store {
        ops: usize,
        fold: Fold,
    },
    /// The rarer steps carry what they need, so a batch of plain reads and writes clones
    /// nothing for them.
    DbSize(Addr<Store>),
    /// The session itself, with this reply.
    Reply(Reply),
    Info(Addr<Store>, Arc<SessionConfig>),
    Digest(Addr<Store>, Arc<tokio::sync::Mutex<()>>),
    Wait {
        replicas: usize,
        timeout_ms: u64,
        config: Arc<SessionConfig>,
    },
}

/// How the outcomes of one request's ops become its reply.
#[derive(Clone, Copy)]
enum Fold {
    /// One op: its value, `OK` or not found.
    One,
    /// RESP `DEL`: how many keys were removed.
    CountApplied,
    /// RESP `EXISTS`: how many keys were found.
    CountFound,
    /// RESP `MGET`: each value or nil.
    Values,
    /// RESP `MSET`: `OK`.
    AllOk,
}

/// Why a batch could not be answered; each ends the session.
#[derive(Debug, Error)]
enum BatchError {
    #[error("the store is gone: {0}")]
    Store(#[from] MailboxError),
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Replication(String),
}

/// What a batch's work hands back to the session.
struct Answered {
    writer: OwnedWriteHalf,
    out: BytesMut,
    close: bool,
    last_write: Seq,
}

impl Session {
    /// Start a session for `stream` on the current arbiter.
    pub fn start(
        id: u64,
        stream: TcpStream,
        store: Addr<Store>,
        owner: SessionOwner,
        config: Arc<SessionConfig>,
        log: &Logger,
    ) -> io::Result<Addr<Session>> {
        let peer = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let log = log.new(slog::o!("peer" => peer.to_string(), "session" => id));
        Ok(Session::create(move |ctx| {
            let codec = LineCodec::new(config.max_line_bytes, config.max_batch)
                .max_value(config.max_value_bytes);
            let last_read = Rc::new(Cell::new(Instant::now()));
            let reader = Watched {
                inner: reader,
                last_read: last_read.clone(),
            };
            ctx.add_stream(FramedRead::new(reader, codec));
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
                replication: None,
                protocol: Protocol::Line,
                last_read,
            }
        }))
    }

    /// Answer one batch of requests, in order; close afterwards when `close` is set.
    fn respond(&mut self, requests: Vec<Request>, mut close: bool, ctx: &mut Context<Self>) {
        let mut steps = Vec::with_capacity(requests.len());
        let mut ops = Vec::with_capacity(requests.len());
        let refuse_writes = self.config.durability.failure();
        for request in requests {
            let step = match request {
                Ok(command) if command.is_write() && self.config.read_only => {
                    Step::Reply(Reply::Error(ErrorReply::ReadOnly))
                }
                Ok(command) if command.is_write() && refuse_writes.is_some() => {
                    let reason = refuse_writes.clone().unwrap_or_default();
                    Step::Reply(Reply::Error(ErrorReply::PersistenceFailed(reason)))
                }
                Ok(Command::Get { key }) => store_step(&mut ops, [Op::Get(key)], Fold::One),
                Ok(Command::Put { key, value }) => {
                    store_step(&mut ops, [Op::Put(key, value)], Fold::One)
                }
                Ok(Command::Del { key }) => store_step(&mut ops, [Op::Del(key)], Fold::One),
                Ok(Command::DelMany(keys)) => {
                    store_step(&mut ops, keys.into_iter().map(Op::Del), Fold::CountApplied)
                }
                Ok(Command::Exists(keys)) => {
                    store_step(&mut ops, keys.into_iter().map(Op::Get), Fold::CountFound)
                }
                Ok(Command::MGet(keys)) => {
                    store_step(&mut ops, keys.into_iter().map(Op::Get), Fold::Values)
                }
                Ok(Command::MSet(pairs)) => {
                    let puts = pairs.into_iter().map(|(k, v)| Op::Put(k, v));
                    store_step(&mut ops, puts, Fold::AllOk)
                }
                Ok(Command::DbSize) => Step::DbSize(self.store.clone()),
                Ok(Command::Echo(message)) => Step::Reply(Reply::Value(message)),
                Ok(Command::CommandDocs) => Step::Reply(Reply::Array(Vec::new())),
                Ok(Command::Accept) => Step::Reply(Reply::Ok),
                Ok(Command::Hello { version }) => Step::Reply(self.hello(version)),
                Ok(Command::Ping) => Step::Reply(Reply::Pong),
                Ok(Command::Info) => Step::Info(self.store.clone(), self.config.clone()),
                Ok(Command::Digest) => {
                    Step::Digest(self.store.clone(), self.config.node.digest_turn.clone())
                }
                Ok(Command::Wait { .. }) if self.config.node.follower.is_some() => {
                    Step::Reply(Reply::Error(ErrorReply::WaitOnReplica))
                }
                Ok(Command::Wait {
                    replicas,
                    timeout_ms,
                }) => Step::Wait {
                    replicas: replicas as usize,
                    timeout_ms,
                    config: self.config.clone(),
                },
                // The codec turns REPLICATE into a frame of its own; never a request.
                Ok(Command::Replicate { .. }) => Step::Reply(Reply::Error(ErrorReply::NotAReplica)),
                Ok(Command::Exit) => {
                    steps.push(Step::Reply(Reply::Goodbye));
                    close = true;
                    break;
                }
                Err(error) => Step::Reply(Reply::Error(error.into())),
            };
            steps.push(step);
        }
        self.answer(steps, ops, close, ctx);
    }

    /// Send `ops` to the Store, resolve every step in order, write the replies, and only then
    /// let the session read again.
    fn answer(&mut self, steps: Vec<Step>, ops: Vec<Op>, close: bool, ctx: &mut Context<Self>) {
        let Some(mut writer) = self.writer.take() else {
            // Unreachable by construction: batches never overlap.
            ctx.stop();
            return;
        };
        let mut out = std::mem::take(&mut self.out);
        let store_reply = (!ops.is_empty()).then(|| self.store.send(Batch { ops }));
        let limit = self.config.output_limit;
        // Only `--fsync always` makes a batch wait for the writer.
        let mut durability = (self.config.durability.policy() == FsyncPolicy::Always)
            .then(|| self.config.durability.clone());
        let mut last_write = self.last_write;
        let protocol = self.protocol;
        let work = async move {
            let (outcomes, last_seq) = match store_reply {
                Some(reply) => {
                    let result = reply.await?;
                    (result.outcomes, result.last_seq)
                }
                None => (Vec::new(), None),
            };
            // Under `--fsync always`, a write is acknowledged only once it is on disk.
            let not_durable = match (last_seq, durability.as_mut()) {
                (Some(seq), Some(durability)) => Box::pin(durability.wait_synced(seq)).await.err(),
                _ => None,
            };
            let mut outcomes = outcomes.into_iter();
            let mut replies = Vec::with_capacity(steps.len());
            for step in steps {
                let reply = match step {
                    Step::Reply(reply) => reply,
                    Step::Store { ops, fold } => {
                        let taken: Vec<Outcome> = outcomes.by_ref().take(ops).collect();
                        let mut wrote = false;
                        for outcome in &taken {
                            if let Outcome::Applied(seq) = outcome {
                                last_write = last_write.max(*seq);
                                wrote = true;
                            }
                        }
                        match (&not_durable, wrote) {
                            // Under `--fsync always`, a write that is not on disk is an error.
                            (Some(reason), true) => {
                                Reply::Error(ErrorReply::PersistenceFailed(reason.clone()))
                            }
                            _ => fold_outcomes(fold, taken),
                        }
                    }
                    // The rarer steps' futures are boxed, so that the common batch's future
                    // (allocated for every batch) stays small.
                    Step::DbSize(store) => {
                        Reply::Integer(Box::pin(store.send(Stats)).await?.keys as i64)
                    }
                    Step::Info(store, config) => {
                        let stats = Box::pin(store.send(Stats)).await?;
                        let follower = match &config.node.follower {
                            Some(follower) => Box::pin(info::follower_info(follower)).await,
                            None => None,
                        };
                        let line = config.node.info_line(stats, follower);
                        Reply::Text(match protocol {
                            Protocol::Line => line,
                            // Redis clients read INFO as `field:value` lines under a heading.
                            Protocol::Resp => info::redis_style(&line),
                        })
                    }
                    Step::Digest(store, turn) => {
                        Reply::Text(Box::pin(digest(&store, &turn)).await?)
                    }
                    Step::Wait {
                        replicas,
                        timeout_ms,
                        config,
                    } => {
                        // As in Redis, a timeout of 0 waits for as long as it takes.
                        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
                        let count =
                            Box::pin(config.node.wait_for_replicas(last_write, replicas, timeout))
                                .await;
                        Reply::Text(count.to_string())
                    }
                };
                replies.push(reply);
            }
            let mut close = close;
            let bytes = reply_bytes(&replies);
            if bytes > limit {
                replies = vec![Reply::Error(ErrorReply::OutputLimit { limit })];
                close = true;
            }
            if bytes < FLUSH_BYTES {
                // The common case: every reply encoded into the buffer, one write.
                for reply in &replies {
                    reply.encode(protocol, &mut out);
                    // Many small replies (nils, integers) add up too.
                    if out.len() >= FLUSH_BYTES {
                        flush(&mut writer, &mut out).await?;
                    }
                }
                flush(&mut writer, &mut out).await?;
            } else {
                // Boxed: its future is large, and only batches with large values need it.
                Box::pin(write_replies(&mut writer, &mut out, &replies, protocol)).await?;
            }
            Ok::<_, BatchError>(Answered {
                writer,
                out,
                close,
                last_write,
            })
        };
        ctx.wait(
            work.into_actor(self)
                .map(|result, act, ctx| act.answered(result, ctx)),
        );
    }

    /// Take the writer back after a batch; close if asked or if the batch failed.
    fn answered(&mut self, result: Result<Answered, BatchError>, ctx: &mut Context<Self>) {
        match result {
            Ok(mut answered) => {
                if answered.out.capacity() > KEEP_BUFFER_BYTES {
                    answered.out = BytesMut::with_capacity(4096);
                }
                self.writer = Some(answered.writer);
                self.out = answered.out;
                self.last_write = answered.last_write;
                if answered.close {
                    ctx.stop();
                }
            }
            Err(error) => {
                debug!(self.log, "closing connection"; "reason" => %error);
                ctx.stop();
            }
        }
    }

    /// `HELLO`: RESP3 is refused with `NOPROTO`, so clients fall back to RESP2; otherwise the
    /// server's description, as Redis gives it.
    fn hello(&self, version: Option<u64>) -> Reply {
        if version.is_some_and(|v| v != 2) {
            let text = "NOPROTO sorry, this protocol version is not supported".to_string();
            return Reply::Error(ErrorReply::Command(CommandError::Redis(text)));
        }
        let text = |s: &str| Reply::Value(bytes::Bytes::copy_from_slice(s.as_bytes()));
        let role = if self.config.read_only {
            "replica"
        } else {
            "master"
        };
        Reply::Array(vec![
            text("server"),
            text("kvstore"),
            text("version"),
            text(env!("CARGO_PKG_VERSION")),
            text("proto"),
            Reply::Integer(2),
            text("id"),
            Reply::Integer(self.id as i64),
            text("mode"),
            text("standalone"),
            text("role"),
            text(role),
            text("modules"),
            Reply::Array(Vec::new()),
        ])
    }

    /// A primary opened a replication stream on this connection.
    fn start_replication(&mut self, secret: &[u8], ctx: &mut Context<Self>) {
        let refuse = |reply: ErrorReply| vec![Step::Reply(Reply::Error(reply))];
        let Some(follower) = self.config.node.follower.clone() else {
            return self.answer(refuse(ErrorReply::NotAReplica), Vec::new(), true, ctx);
        };
        if let Some(expected) = &self.config.node.cluster_secret {
            if secret != expected.as_bytes() {
                warn!(
                    self.log,
                    "replication handshake refused: wrong cluster secret"
                );
                return self.answer(refuse(ErrorReply::WrongSecret), Vec::new(), true, ctx);
            }
        }
        info!(self.log, "primary connected for replication");
        // Before the primary hears back, so that by the time it streams, this connection no
        // longer takes a client's place.
        self.owner
            .replicating
            .do_send(SessionReplicating { id: self.id });
        let me = ctx.address().recipient();
        let Some(mut writer) = self.writer.take() else {
            return ctx.stop();
        };
        let work = async move {
            let position = follower.send(Attach { session: me }).await?;
            let id = position
                .replication_id
                .as_deref()
                .unwrap_or("-")
                .to_string();
            let line = format!("POSITION {id} {}\n", position.offset);
            writer.write_all(line.as_bytes()).await?;
            Ok::<_, BatchError>((writer, follower, position.link))
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok((writer, follower, link)) => {
                act.writer = Some(writer);
                act.replication = Some(Replication { follower, link });
                ctx.run_interval(REPLICATION_TICK, |act, ctx| act.replication_tick(ctx));
            }
            Err(error) => {
                warn!(act.log, "replication handshake failed"; "error" => %error);
                ctx.stop();
            }
        }));
    }

    /// Hand part of the primary's stream to the follower; acknowledge what it applied.
    fn replicate(
        &mut self,
        start: Option<SyncStart>,
        records: Vec<Entry>,
        ctx: &mut Context<Self>,
    ) {
        let Some(replication) = self.replication.as_ref() else {
            return ctx.stop();
        };
        let request = replication.follower.send(Stream {
            link: replication.link,
            start,
            records,
        });
        self.acknowledge(
            async move {
                request
                    .await
                    .map_err(BatchError::from)?
                    .map_err(BatchError::Replication)
            },
            ctx,
        );
    }

    /// Write `ACK <applied> <durable>` once `ack` resolves.
    fn acknowledge(
        &mut self,
        ack: impl std::future::Future<Output = Result<Ack, BatchError>> + 'static,
        ctx: &mut Context<Self>,
    ) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let out = std::mem::take(&mut self.out);
        let last_write = self.last_write;
        let work = async move {
            let ack = ack.await?;
            let line = format!("ACK {} {}\n", ack.applied, ack.durable);
            writer.write_all(line.as_bytes()).await?;
            Ok(Answered {
                writer,
                out,
                close: false,
                last_write,
            })
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| {
            if let Err(error) = &result {
                warn!(act.log, "replication stream closed"; "reason" => %error);
            }
            act.answered(result, ctx)
        }));
    }

    fn replication_tick(&mut self, ctx: &mut Context<Self>) {
        let Some(replication) = self.replication.as_ref() else {
            return;
        };
        if self.last_read.get().elapsed() > self.config.node.replication_timeout {
            warn!(self.log, "the primary went silent; closing its stream";
                "timeout_ms" => self.config.node.replication_timeout.as_millis() as u64);
            return ctx.stop();
        }
        let request = replication.follower.send(CurrentAck);
        self.acknowledge(async move { Ok(request.await?) }, ctx);
    }
}

/// Add a request's ops to the batch; answers the step that folds their outcomes back into
/// the request's one reply.
fn store_step(ops: &mut Vec<Op>, new: impl IntoIterator<Item = Op>, fold: Fold) -> Step {
    let before = ops.len();
    ops.extend(new);
    Step::Store {
        ops: ops.len() - before,
        fold,
    }
}

/// The reply to one request from the outcomes of its ops.
fn fold_outcomes(fold: Fold, outcomes: Vec<Outcome>) -> Reply {
    match fold {
        Fold::One => outcomes
            .into_iter()
            .next()
            .map_or(Reply::NotFound, Reply::from),
        Fold::CountApplied => Reply::Integer(
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Applied(_)))
                .count() as i64,
        ),
        Fold::CountFound => Reply::Integer(
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Value(_)))
                .count() as i64,
        ),
        Fold::Values => Reply::Array(outcomes.into_iter().map(Reply::from).collect()),
        Fold::AllOk => Reply::Ok,
    }
}

/// `DIGEST`: hash a snapshot of the data on a thread of its own, so the Store and this
/// session's arbiter keep serving while it runs; one at a time per node (`turn`).
async fn digest(store: &Addr<Store>, turn: &tokio::sync::Mutex<()>) -> Result<String, BatchError> {
    let _turn = turn.lock().await;
    let snapshot = store.send(TakeSnapshot).await?;
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("kv-digest".into())
        .spawn(move || {
            let digest = info::digest(&snapshot.data);
            let _ = done.send(format!(
                "digest={digest:016x} offset={} keys={}",
                snapshot.seq,
                snapshot.data.len()
            ));
        })?;
    result
        .await
        .map_err(|_| BatchError::Replication("the digest thread failed".into()))
}

/// The bytes a set of replies will occupy on the wire, counting values only, which is all that
/// can be large.
fn reply_bytes(replies: &[Reply]) -> usize {
    replies
        .iter()
        .map(|reply| match reply {
            Reply::Array(items) => reply_bytes(items),
            reply => reply.value().map_or(0, |value| value.len() + 1),
        })
        .sum()
}

/// Encode `replies` into `out` and write them, handing large values to the socket directly
/// instead of copying them, inside arrays too.
async fn write_replies(
    writer: &mut OwnedWriteHalf,
    out: &mut BytesMut,
    replies: &[Reply],
    protocol: Protocol,
) -> io::Result<()> {
    for reply in replies {
        match (reply, protocol) {
            (Reply::Array(items), Protocol::Resp) => {
                resp::array_header(out, items.len());
                for item in items {
                    write_reply(writer, out, item, protocol).await?;
                }
            }
            _ => write_reply(writer, out, reply, protocol).await?,
        }
    }
    flush(writer, out).await
}

/// Write one reply (not an array of large values: arrays inside arrays are small).
async fn write_reply(
    writer: &mut OwnedWriteHalf,
    out: &mut BytesMut,
    reply: &Reply,
    protocol: Protocol,
) -> io::Result<()> {
    match (reply.value(), protocol) {
        (Some(value), Protocol::Line) if value.len() >= FLUSH_BYTES && !value.contains(&b'\n') => {
            flush(writer, out).await?;
            writer.write_all(value).await?;
            out.extend_from_slice(b"\n");
        }
        (Some(value), Protocol::Resp) if value.len() >= FLUSH_BYTES => {
            resp::bulk_header(out, value.len());
            flush(writer, out).await?;
            writer.write_all(value).await?;
            out.extend_from_slice(b"\r\n");
        }
        _ => reply.encode(protocol, out),
    }
    if out.len() >= FLUSH_BYTES {
        flush(writer, out).await?;
    }
    Ok(())
}

async fn flush(writer: &mut OwnedWriteHalf, out: &mut BytesMut) -> io::Result<()> {
    if !out.is_empty() {
        writer.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        debug!(self.log, "client connected");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        debug!(self.log, "client disconnected");
        if let Some(replication) = &self.replication {
            replication.follower.do_send(Detach {
                link: replication.link,
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
                self.protocol = Protocol::Resp;
                self.respond(requests, false, ctx)
            }
            Ok(Frame::Replicate { secret }) => self.start_replication(&secret, ctx),
            Ok(Frame::SyncStart(start)) => self.replicate(Some(start), Vec::new(), ctx),
            Ok(Frame::Records(records)) => self.replicate(None, records, ctx),
            Err(CodecError::LineTooLong { limit }) => {
                warn!(self.log, "line too long; closing connection"; "limit" => limit);
                let refusal = Step::Reply(Reply::Error(ErrorReply::LineTooLong { limit }));
                self.answer(vec![refusal], Vec::new(), true, ctx);
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
                warn!(self.log, "bad replication stream; closing it"; "error" => error);
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

impl Handler<Shutdown> for Session {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        debug!(self.log, "closing connection for shutdown"; "peer" => %self.peer);
        ctx.stop();
    }
}

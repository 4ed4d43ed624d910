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

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bytes::BytesMut;
use slog::{debug, warn, Logger};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::codec::{CodecError, LineCodec, Request};
use crate::command::Command;
use crate::durability::Durability;
use crate::reply::{ErrorReply, Reply};
use crate::store::{Batch, Op, Outcome, Store};

/// Settings every session of a node shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Refuse PUT and DEL (the node is a replica).
    pub read_only: bool,
    /// The longest request line accepted, in bytes.
    pub max_line_bytes: usize,
    /// The most requests handled as one batch.
    pub max_batch: usize,
    /// The most reply bytes one batch may produce before the client is disconnected
    /// (a client output buffer hard limit, as Redis has).
    pub output_limit: usize,
    /// The persistence writer's progress: writes wait on it under `--fsync always`, and are
    /// refused while it reports a failure.
    pub durability: Durability,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            read_only: false,
            max_line_bytes: 1024 * 1024,
            max_batch: 1024,
            output_limit: 256 * 1024 * 1024,
            durability: Durability::none(),
        }
    }
}

/// Tells a session's owner that it has ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub id: u64,
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

/// One client connection.
pub struct Session {
    id: u64,
    peer: SocketAddr,
    store: Addr<Store>,
    owner: Recipient<SessionClosed>,
    config: Arc<SessionConfig>,
    log: Logger,
    /// `None` only while a batch's replies are being written.
    writer: Option<OwnedWriteHalf>,
    out: BytesMut,
}

/// What answers one request: the Store, or the session itself.
enum Step {
    Store,
    Reply(Reply),
}

/// Why a batch could not be answered; each ends the session.
#[derive(Debug, Error)]
enum BatchError {
    #[error("the store is gone: {0}")]
    Store(#[from] MailboxError),
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
}

impl Session {
    /// Start a session for `stream` on the current arbiter.
    pub fn start(
        id: u64,
        stream: TcpStream,
        store: Addr<Store>,
        owner: Recipient<SessionClosed>,
        config: Arc<SessionConfig>,
        log: &Logger,
    ) -> io::Result<Addr<Session>> {
        let peer = stream.peer_addr()?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let log = log.new(slog::o!("peer" => peer.to_string(), "session" => id));
        Ok(Session::create(move |ctx| {
            let codec = LineCodec::new(config.max_line_bytes, config.max_batch);
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
            }
        }))
    }

    /// Answer one batch of requests, in order; close afterwards when `close` is set.
    fn respond(&mut self, requests: Vec<Request>, mut close: bool, ctx: &mut Context<Self>) {
        let mut steps = Vec::with_capacity(requests.len());
        let mut ops = Vec::new();
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
                Ok(Command::Get { key }) => {
                    ops.push(Op::Get(key));
                    Step::Store
                }
                Ok(Command::Put { key, value }) => {
                    ops.push(Op::Put(key, value));
                    Step::Store
                }
                Ok(Command::Del { key }) => {
                    ops.push(Op::Del(key));
                    Step::Store
                }
                Ok(Command::Ping) => Step::Reply(Reply::Pong),
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

    /// Send `ops` to the Store, merge its outcomes into `steps`, write the replies, and only
    /// then let the session read again.
    fn answer(&mut self, steps: Vec<Step>, ops: Vec<Op>, close: bool, ctx: &mut Context<Self>) {
        let Some(mut writer) = self.writer.take() else {
            // Unreachable by construction: batches never overlap.
            ctx.stop();
            return;
        };
        let mut out = std::mem::take(&mut self.out);
        let store_reply = (!ops.is_empty()).then(|| self.store.send(Batch { ops }));
        let limit = self.config.output_limit;
        let mut durability = self.config.durability.clone();
        let work = async move {
            let (outcomes, last_seq) = match store_reply {
                Some(reply) => {
                    let result = reply.await?;
                    (result.outcomes, result.last_seq)
                }
                None => (Vec::new(), None),
            };
            // Under `--fsync always`, a write is acknowledged only once it is on disk.
            let not_durable = match last_seq {
                Some(seq) => durability.wait_synced(seq).await.err(),
                None => None,
            };
            let mut outcomes = outcomes.into_iter();
            let mut replies: Vec<Reply> = steps
                .into_iter()
                .map(|step| match (step, &not_durable) {
                    (Step::Store, Some(reason)) => match outcomes.next() {
                        Some(Outcome::Applied(_)) => {
                            Reply::Error(ErrorReply::PersistenceFailed(reason.clone()))
                        }
                        outcome => outcome.map_or(Reply::NotFound, Reply::from),
                    },
                    (Step::Store, None) => outcomes.next().map_or(Reply::NotFound, Reply::from),
                    (Step::Reply(reply), _) => reply,
                })
                .collect();
            let mut close = close;
            if reply_bytes(&replies) > limit {
                replies = vec![Reply::Error(ErrorReply::OutputLimit { limit })];
                close = true;
            }
            let written = write_replies(&mut writer, &mut out, &replies).await;
            Ok::<_, BatchError>((writer, out, written.map(|()| close)?))
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok((writer, mut out, close)) => {
                if out.capacity() > KEEP_BUFFER_BYTES {
                    out = BytesMut::with_capacity(4096);
                }
                act.writer = Some(writer);
                act.out = out;
                if close {
                    ctx.stop();
                }
            }
            Err(error) => {
                debug!(act.log, "closing connection"; "reason" => %error);
                ctx.stop();
            }
        }));
    }
}

/// The bytes a set of replies will occupy on the wire, counting values only, which is all that
/// can be large.
fn reply_bytes(replies: &[Reply]) -> usize {
    replies
        .iter()
        .map(|reply| match reply {
            Reply::Value(value) => value.len() + 1,
            _ => 0,
        })
        .sum()
}

/// Encode `replies` into `out` and write them, handing large values to the socket directly
/// instead of copying them.
async fn write_replies(
    writer: &mut OwnedWriteHalf,
    out: &mut BytesMut,
    replies: &[Reply],
) -> io::Result<()> {
    for reply in replies {
        match reply {
            Reply::Value(value) if value.len() >= FLUSH_BYTES => {
                flush(writer, out).await?;
                writer.write_all(value).await?;
                out.extend_from_slice(b"\n");
            }
            _ => reply.encode(out),
        }
        if out.len() >= FLUSH_BYTES {
            flush(writer, out).await?;
        }
    }
    flush(writer, out).await
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
        self.owner.do_send(SessionClosed { id: self.id });
    }
}

impl StreamHandler<Result<Vec<Request>, CodecError>> for Session {
    fn handle(&mut self, item: Result<Vec<Request>, CodecError>, ctx: &mut Self::Context) {
        match item {
            Ok(requests) => self.respond(requests, false, ctx),
            Err(CodecError::LineTooLong { limit }) => {
                warn!(self.log, "line too long; closing connection"; "limit" => limit);
                let refusal = Step::Reply(Reply::Error(ErrorReply::LineTooLong { limit }));
                self.answer(vec![refusal], Vec::new(), true, ctx);
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

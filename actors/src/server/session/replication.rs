//! A session whose connection turned out to be a primary's replication stream (it opened
//! with `REPLICATE`): the handshake, then handing what it reads to [`ReplicaLink`] (the
//! replica's end of the link) and writing back the lines it answers. Kept apart from the
//! client side of the session (`session.rs`), which hands the stream's frames here.

use std::future::Future;
use std::time::Duration;

use super::{Session, SessionReplicating};
use crate::replication::follower::Superseded;
use crate::replication::replica_link::{self, ReplicaLink};
use crate::replication::wire::{Prove, Refusal, ReplicaLine, Replicate, StreamFrame};
use crate::server::batch::{Answered, BatchError};
use actix::prelude::*;
use slog::{info, warn};

/// How often a replication stream acknowledges, and checks that its primary is alive.
const REPLICATION_TICK: Duration = Duration::from_secs(1);

impl Session {
    /// A primary opened a replication stream on this connection: admit it (or refuse and
    /// close) and answer the challenge. The primary must prove itself within the handshake
    /// timeout.
    pub(super) fn start_replication(&mut self, opening: Replicate, ctx: &mut Context<Self>) {
        let node = &self.config.node;
        if node.tls.is_some() && !self.tls {
            return self.refuse_stream(Refusal::NotTls, ctx);
        }
        // In a failover cluster, the primary takes no stream.
        let follower = node
            .follower
            .as_ref()
            .filter(|_| node.role_now() != "primary");
        let admitted = replica_link::admit(follower, node.cluster_secret.as_ref(), &opening);
        let (handshake, challenge) = match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => return self.refuse_stream(refusal, ctx),
        };
        self.handshake = Some(handshake);
        let timeout = node.handshake_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            if act.handshake.is_some() {
                warn!(act.log, "replication handshake not finished in time; closing";
                    "timeout_ms" => timeout.as_millis() as u64);
                ctx.stop();
            }
        });
        self.send_line(async move { Ok(challenge) }, false, ctx);
    }

    /// Tell the primary why its stream is refused, and close.
    fn refuse_stream(&mut self, refusal: Refusal, ctx: &mut Context<Self>) {
        warn!(self.log, "replication handshake refused"; "reason" => %refusal);
        let line = ReplicaLine::refused(refusal).encode();
        self.send_line(async move { Ok(line) }, true, ctx);
    }

    /// The primary's proof arrived: check it, attach the stream to the Follower, and answer
    /// `POSITION`.
    fn finish_handshake(&mut self, prove: Prove, ctx: &mut Context<Self>) {
        let Some(handshake) = self.handshake.take() else {
            return ctx.stop();
        };
        let from = prove.from;
        let (follower, epoch) = match handshake.prove(&prove) {
            Ok(proved) => proved,
            Err(refusal) => return self.refuse_stream(refusal, ctx),
        };
        info!(self.log, "primary connected for replication");
        // Before the primary hears back, so that by the time it streams, this connection no
        // longer takes a client's place.
        self.owner
            .replicating
            .do_send(SessionReplicating { id: self.id });
        // Nor is it listed among the clients (`CLIENT LIST`), or closed by `CLIENT KILL`.
        self.client = None;
        let me = ctx.address().recipient();
        let Some(mut writer) = self.writer.take() else {
            return ctx.stop();
        };
        let work = async move {
            let (link, position) = ReplicaLink::attach(follower, me, from, epoch).await?;
            if let Err(error) = writer.send(&position).await {
                // The Follower must not keep waiting for a stream that will never start.
                link.detach();
                return Err(error.into());
            }
            Ok::<_, BatchError>((writer, link))
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok((writer, link)) => {
                act.writer = Some(writer);
                act.replication = Some(link);
                ctx.run_interval(REPLICATION_TICK, |act, ctx| act.replication_tick(ctx));
            }
            Err(error) => {
                warn!(act.log, "replication handshake failed"; "error" => %error);
                ctx.stop();
            }
        }));
    }

    /// Hand part of the primary's stream to the Follower; acknowledge what it applied.
    pub(super) fn replicate(&mut self, frame: StreamFrame, ctx: &mut Context<Self>) {
        if let StreamFrame::Prove(prove) = frame {
            return self.finish_handshake(prove, ctx);
        }
        let Some(link) = self.replication.as_ref() else {
            return ctx.stop();
        };
        let ack = link.stream(frame);
        self.send_line(async move { Ok(ack.await?) }, false, ctx);
    }

    /// Write the line `line` resolves to, reading nothing meanwhile; then close, if `close`.
    fn send_line(
        &mut self,
        line: impl Future<Output = Result<Vec<u8>, BatchError>> + 'static,
        close: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let out = std::mem::take(&mut self.out);
        let (last_write, observed) = (self.last_write, self.observed);
        let work = async move {
            let line = line.await?;
            writer.send(&line).await?;
            Ok(Answered {
                writer,
                out,
                close,
                last_write,
                observed,
            })
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| {
            if let (Err(error), Some(_)) = (&result, &act.replication) {
                warn!(act.log, "replication stream closed"; "reason" => %error);
            }
            act.answered(result, ctx)
        }));
    }

    /// Once a second on a replication stream: close it if the primary went silent, otherwise
    /// acknowledge (which also tells the primary this replica is alive).
    fn replication_tick(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.replication.as_ref() else {
            return;
        };
        if self.last_read.get().elapsed() > self.config.node.replication_timeout {
            warn!(self.log, "the primary went silent; closing its stream";
                "timeout_ms" => self.config.node.replication_timeout.as_millis() as u64);
            return ctx.stop();
        }
        let ack = link.current_ack();
        self.send_line(async move { Ok(ack.await?) }, false, ctx);
    }
}

impl Handler<Superseded> for Session {
    type Result = ();

    fn handle(&mut self, _: Superseded, ctx: &mut Self::Context) {
        info!(
            self.log,
            "a newer stream from the primary supersedes this one; closing it"
        );
        ctx.stop();
    }
}

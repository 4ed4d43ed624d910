//! A session's logins: `AUTH`, `HELLO ... AUTH`, and `ACL LOAD` (which changes who every
//! connection is). Each is answered on its own, once decided, and the requests read after it
//! are planned only then (`session.rs` keeps them), so that they run as the user it logs in.
//!
//! The password check runs in the batch's future (`auth/accounts.rs` takes an Argon2 check off
//! the node's threads), and so does the delay before a failed login is answered
//! (`server/auth.rs`): the session reads nothing meanwhile, and no thread waits.

use std::future::Future;

use actix::prelude::*;
use bytes::Bytes;
use slog::{info, warn};

use super::Session;
use crate::auth::accounts::Verdict;
use crate::protocol::command::{AclCommand, Command, Login};
use crate::protocol::error::CommandError;
use crate::protocol::reply::{ErrorReply, Protocol, Reply};
use crate::server::batch::{Answered, BatchError, Step};
use crate::server::node_query::{self, hello_protocol};
use crate::server::output;

impl Session {
    /// Answer `command`, a login (`Command::is_login`), alone.
    pub(super) fn log_in(&mut self, command: Command, ctx: &mut Context<Self>) {
        match command {
            Command::Auth(login) => self.check_login(login, None, ctx),
            Command::Hello {
                version,
                name,
                auth: Some(login),
            } => match version {
                // An unknown protocol is refused before any password is checked, as in Redis.
                Some(v) if v != 2 && v != 3 => {
                    let refusal = node_query::hello(version, self.id, false);
                    self.answer(vec![Step::Reply(refusal)], Vec::new(), false, ctx)
                }
                _ => self.check_login(*login, Some((version, name)), ctx),
            },
            Command::Acl(AclCommand::Load) => self.reload_users(ctx),
            other => self.respond(vec![Ok(other)], false, ctx),
        }
    }

    /// Check `login` and answer it (`OK`, or with `hello`, `HELLO`'s reply in the protocol it
    /// picks; `WRONGPASS`). A login from an address with recent failures waits first, right
    /// password or wrong (`auth/throttle.rs`).
    fn check_login(
        &mut self,
        login: Login,
        hello: Option<(Option<u64>, Option<Bytes>)>,
        ctx: &mut Context<Self>,
    ) {
        let accounts = self.config.node.accounts.clone();
        let address = self.peer.ip();
        let delay = accounts.throttle.delay(address);
        let user = login.user.clone();
        let protocol = self.protocol;
        let read_only = self
            .config
            .node
            .write_refusal(self.config.read_only)
            .is_some();
        let id = self.id;
        let version = hello.as_ref().and_then(|(version, _)| *version);
        let work = async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let verdict = accounts.clone().verify(login.user, login.password.0).await;
            let failures = match verdict {
                Verdict::Refused => accounts.throttle.failed(address),
                _ => 0,
            };
            let (reply, protocol) = match (&verdict, hello.is_some()) {
                (Verdict::Accepted(_), false) => (Reply::Ok, protocol),
                (Verdict::Accepted(_), true) => (
                    node_query::hello(version, id, read_only),
                    hello_protocol(version, protocol),
                ),
                (Verdict::Refused, _) => (Reply::Error(ErrorReply::WrongPass), protocol),
                (Verdict::Busy, _) => {
                    let busy = "too many logins are being checked right now; retry shortly";
                    let busy = ErrorReply::Command(CommandError::Invalid(busy.into()));
                    (Reply::Error(busy), protocol)
                }
                (Verdict::NotConfigured, _) => (Reply::Error(ErrorReply::NoPassword), protocol),
            };
            let name = hello.and_then(|(_, name)| name);
            (reply, protocol, (verdict, name, failures))
        };
        self.answer_later(
            work,
            move |act, (verdict, name, failures)| {
                if let (Verdict::Accepted(identity), Some(client)) = (&verdict, &act.client) {
                    client.client().set_user(identity.user.clone());
                    if let Some(name) = name {
                        client.client().set_name(name);
                    }
                }
                act.auth
                    .settle(verdict, user.as_deref(), failures, &act.log);
            },
            ctx,
        );
    }

    /// `ACL LOAD`: read the users file again and put it in force (admin only). Every
    /// connection, this one included, sees the new users from its next batch on.
    fn reload_users(&mut self, ctx: &mut Context<Self>) {
        if let Some(refusal) = self.auth.refusal(&Command::Acl(AclCommand::Load)) {
            let refusal = Step::Reply(Reply::Error(refusal));
            return self.answer(vec![refusal], Vec::new(), false, ctx);
        }
        let accounts = self.config.node.accounts.clone();
        let log = self.log.clone();
        let protocol = self.protocol;
        let work = async move {
            let file = accounts.file().map(|f| f.display().to_string());
            let reply = match accounts.clone().reload().await {
                Ok(users) => {
                    info!(log, "users file reloaded (ACL LOAD)"; "users" => users,
                        "file" => file.unwrap_or_default());
                    Reply::Ok
                }
                Err(error) => {
                    warn!(log, "ACL LOAD failed"; "error" => %error);
                    Reply::Error(ErrorReply::UsersNotLoaded(error.to_string().into()))
                }
            };
            (reply, protocol, ())
        };
        self.answer_later(work, |_, ()| {}, ctx);
    }

    /// Write the reply `work` resolves to, in the protocol it names, reading nothing meanwhile;
    /// then let `then` take what else it resolved to, and make that protocol the connection's.
    fn answer_later<T: 'static>(
        &mut self,
        work: impl Future<Output = (Reply, Protocol, T)> + 'static,
        then: impl FnOnce(&mut Session, T) + 'static,
        ctx: &mut Context<Self>,
    ) {
        let Some(mut writer) = self.writer.take() else {
            return ctx.stop();
        };
        let mut out = std::mem::take(&mut self.out);
        let (last_write, observed) = (self.last_write, self.observed);
        let buffers = self.buffers.take();
        let work = async move {
            let (reply, protocol, taken) = work.await;
            let replies = [reply];
            let bytes = output::reply_bytes(&replies);
            output::write(&mut writer, &mut out, &replies, bytes, protocol).await?;
            let answered = Answered {
                writer,
                out,
                close: false,
                last_write,
                observed,
                buffers,
            };
            Ok::<_, BatchError>((answered, protocol, taken))
        };
        ctx.wait(work.into_actor(self).map(|result, act, ctx| match result {
            Ok((answered, protocol, taken)) => {
                act.protocol = protocol;
                then(act, taken);
                act.answered(Ok(answered), ctx)
            }
            Err(error) => act.answered(Err(error), ctx),
        }));
    }
}

//! The session's side of authentication: who its connection has proved to be, what that lets
//! it run (`NOAUTH`, `NOPERM`), and how failed logins are slowed down.
//!
//! On a node with passwords, a connection starts as nobody: until it logs in (`AUTH`, or
//! `HELLO ... AUTH`), everything but `AUTH`, `HELLO` and `QUIT`/`EXIT` answers `NOAUTH`. Once
//! logged in, a command its user has not the rights for answers `NOPERM`. Logins from an
//! address with recent failures wait before they are checked (`auth/throttle.rs`, node-wide);
//! the wait is part of the batch's future, so it holds no thread, only that connection. The
//! login checks themselves are `auth/accounts.rs`.

use std::sync::Arc;

use slog::{debug, info, warn, Logger};

use crate::auth::accounts::{Accounts, Identity, Verdict};
use crate::auth::rights::Rights;
use crate::auth::throttle;
use crate::protocol::command::Command;
use crate::protocol::error::ErrorReply;
use crate::protocol::words::printable;

/// What one connection has proved.
#[derive(Debug)]
pub struct ConnectionAuth {
    /// Who the connection is; `None` until it logs in, on a node with passwords.
    identity: Option<Identity>,
}

impl ConnectionAuth {
    /// A new connection of a node with `accounts`.
    pub fn new(accounts: &Accounts) -> ConnectionAuth {
        ConnectionAuth {
            identity: accounts.initial(),
        }
    }

    /// The connection's user, once it has one.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.identity.as_ref().map(|identity| &identity.user)
    }

    /// Take a reload of the users (`ACL LOAD`) into account, at the start of a batch: the
    /// user's rights as the users file says now, or no user at all if it is gone. Costs one
    /// atomic read when nothing was reloaded.
    /// Answers whether the connection was logged out by it.
    pub fn refresh(&mut self, accounts: &Accounts, log: &Logger) -> bool {
        let Some(identity) = &self.identity else {
            return false;
        };
        if identity.generation == accounts.generation() {
            return false;
        }
        match accounts.refresh(identity) {
            Some(now) => {
                if now.rights != identity.rights {
                    info!(log, "the users file was reloaded: this connection's rights changed";
                        "user" => %now.user, "rights" => %now.rights);
                }
                self.identity = Some(now);
                false
            }
            None => {
                warn!(log, "the users file was reloaded without this connection's user: it must log in again";
                    "user" => %identity.user);
                self.identity = None;
                true
            }
        }
    }

    /// Why `command` may not run on this connection now, if it may not: `NOAUTH` before a
    /// login, `NOPERM` for a right its user lacks.
    pub fn refusal(&self, command: &Command) -> Option<ErrorReply> {
        let Some(identity) = &self.identity else {
            return match command {
                Command::Auth(_) | Command::Exit | Command::Hello { auth: Some(_), .. } => None,
                Command::Hello { .. } => Some(ErrorReply::NoAuthHello),
                _ => Some(ErrorReply::NoAuth),
            };
        };
        if identity.rights == Rights::ALL {
            return None;
        }
        let missing = identity.rights.missing(command.rights());
        (!missing.is_none()).then(|| ErrorReply::NoPerm {
            user: identity.user.clone(),
            command: command.name(),
            missing,
        })
    }

    /// Take a login's verdict: the connection is its user now, or a failure, the
    /// `failures`th recent one of its address (logged, with the peer the session's logger
    /// names, at the first and each doubling: a guesser cannot flood the log). A failed login
    /// leaves a connection that was logged in as it was, as in Redis.
    pub fn settle(&mut self, verdict: Verdict, user: Option<&[u8]>, failures: u32, log: &Logger) {
        let user = printable(user.unwrap_or(b"default"));
        match verdict {
            Verdict::Accepted(identity) => {
                debug!(log, "logged in"; "user" => %identity.user, "rights" => %identity.rights);
                self.identity = Some(identity);
            }
            Verdict::Refused if throttle::worth_logging(failures) => {
                warn!(log, "authentication failed"; "user" => user,
                    "recent_failures_of_this_address" => failures);
            }
            Verdict::Refused | Verdict::Busy | Verdict::NotConfigured => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::auth_commands::Secret;
    use crate::protocol::command::Login;

    fn identity(rights: Rights) -> Identity {
        Identity {
            user: "app".into(),
            rights,
            generation: 0,
        }
    }

    #[test]
    fn nothing_but_logging_in_or_leaving_before_a_login() {
        let auth = ConnectionAuth { identity: None };
        let login = Login {
            user: None,
            password: Secret(Bytes::from_static(b"pw")),
        };
        assert_eq!(auth.refusal(&Command::Auth(login.clone())), None);
        assert_eq!(auth.refusal(&Command::Exit), None);
        let hello = |auth| Command::Hello {
            version: Some(3),
            name: None,
            auth,
        };
        assert_eq!(auth.refusal(&hello(Some(Box::new(login)))), None);
        assert_eq!(auth.refusal(&hello(None)), Some(ErrorReply::NoAuthHello));
        assert_eq!(auth.refusal(&Command::Ping), Some(ErrorReply::NoAuth));
        assert_eq!(auth.refusal(&Command::Multi), Some(ErrorReply::NoAuth));
    }

    #[test]
    fn a_user_runs_what_its_rights_allow() {
        let reader = ConnectionAuth {
            identity: Some(identity(Rights::READ)),
        };
        let key = Bytes::from_static(b"k");
        assert_eq!(reader.refusal(&Command::Get { key: key.clone() }), None);
        assert_eq!(reader.refusal(&Command::Ping), None);
        let put = Command::Put {
            key,
            value: Bytes::new(),
        };
        assert_eq!(
            reader.refusal(&put),
            Some(ErrorReply::NoPerm {
                user: "app".into(),
                command: "set",
                missing: Rights::WRITE
            })
        );
        assert!(reader.refusal(&Command::Info).is_some());
    }
}

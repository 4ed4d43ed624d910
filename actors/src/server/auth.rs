//! The session's side of authentication: who its connection has proved to be, what that lets
//! it run (`NOAUTH`, `NOPERM`), and how failed logins are slowed down.
//!
//! On a node with passwords, a connection starts as nobody: until it logs in (`AUTH`, or
//! `HELLO ... AUTH`), everything but `AUTH`, `HELLO` and `QUIT`/`EXIT` answers `NOAUTH`. Once
//! logged in, a command its user has not the rights for answers `NOPERM`. A failed login is
//! answered only after a delay that doubles with each failure in a row on the connection
//! ([`FIRST_DELAY`] up to [`MAX_DELAY`]); the wait is part of the batch's future, so it holds
//! no thread, only that connection. The login checks themselves are `auth/accounts.rs`.

use std::sync::Arc;
use std::time::Duration;

use slog::{debug, info, warn, Logger};

use crate::auth::accounts::{Accounts, Identity, Verdict};
use crate::auth::rights::Rights;
use crate::protocol::command::Command;
use crate::protocol::error::ErrorReply;
use crate::protocol::words::printable;

/// How long the first failed login of a connection waits before it is answered.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest a failed login waits, however many came before it.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// What one connection has proved.
#[derive(Debug)]
pub struct ConnectionAuth {
    /// Who the connection is; `None` until it logs in, on a node with passwords.
    identity: Option<Identity>,
    /// Failed logins in a row on this connection.
    failures: u32,
}

impl ConnectionAuth {
    /// A new connection of a node with `accounts`.
    pub fn new(accounts: &Accounts) -> ConnectionAuth {
        ConnectionAuth {
            identity: accounts.initial(),
            failures: 0,
        }
    }

    /// The connection's user, once it has one.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.identity.as_ref().map(|identity| &identity.user)
    }

    /// Take a reload of the users (`ACL LOAD`) into account, at the start of a batch: the
    /// user's rights as the users file says now, or no user at all if it is gone. Costs one
    /// atomic read when nothing was reloaded.
    pub fn refresh(&mut self, accounts: &Accounts, log: &Logger) {
        let Some(identity) = &self.identity else {
            return;
        };
        if identity.generation == accounts.generation() {
            return;
        }
        match accounts.refresh(identity) {
            Some(now) => {
                if now.rights != identity.rights {
                    info!(log, "the users file was reloaded: this connection's rights changed";
                        "user" => %now.user, "rights" => %now.rights);
                }
                self.identity = Some(now);
            }
            None => {
                warn!(log, "the users file was reloaded without this connection's user: it must log in again";
                    "user" => %identity.user);
                self.identity = None;
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

    /// How long the next login, if it fails, waits before it is answered.
    pub fn failure_delay(&self) -> Duration {
        let doubled = FIRST_DELAY.saturating_mul(1 << self.failures.min(16));
        doubled.min(MAX_DELAY)
    }

    /// Take a login's verdict: the connection is its user now, or one more failure (logged,
    /// with the peer the session's logger names, and the delay it was answered after). A
    /// failed login leaves a connection that was logged in as it was, as in Redis.
    pub fn settle(&mut self, verdict: Verdict, user: Option<&[u8]>, delay: Duration, log: &Logger) {
        let user = printable(user.unwrap_or(b"default"));
        match verdict {
            Verdict::Accepted(identity) => {
                debug!(log, "logged in"; "user" => %identity.user, "rights" => %identity.rights);
                self.failures = 0;
                self.identity = Some(identity);
            }
            Verdict::Refused => {
                self.failures = self.failures.saturating_add(1);
                warn!(log, "authentication failed"; "user" => user,
                    "failures_in_a_row" => self.failures, "delay_ms" => delay.as_millis() as u64);
            }
            Verdict::NotConfigured => {}
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
        let auth = ConnectionAuth {
            identity: None,
            failures: 0,
        };
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
        assert_eq!(auth.refusal(&hello(Some(login))), None);
        assert_eq!(auth.refusal(&hello(None)), Some(ErrorReply::NoAuthHello));
        assert_eq!(auth.refusal(&Command::Ping), Some(ErrorReply::NoAuth));
        assert_eq!(auth.refusal(&Command::Multi), Some(ErrorReply::NoAuth));
    }

    #[test]
    fn a_user_runs_what_its_rights_allow() {
        let reader = ConnectionAuth {
            identity: Some(identity(Rights::READ)),
            failures: 0,
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

    #[test]
    fn each_failure_in_a_row_waits_twice_as_long_up_to_a_limit() {
        let mut auth = ConnectionAuth {
            identity: None,
            failures: 0,
        };
        let log = Logger::root(slog::Discard, slog::o!());
        assert_eq!(auth.failure_delay(), FIRST_DELAY);
        auth.settle(Verdict::Refused, Some(b"app"), FIRST_DELAY, &log);
        assert_eq!(auth.failure_delay(), FIRST_DELAY * 2);
        for _ in 0..40 {
            auth.settle(Verdict::Refused, None, MAX_DELAY, &log);
        }
        assert_eq!(auth.failure_delay(), MAX_DELAY);
        auth.settle(
            Verdict::Accepted(identity(Rights::ALL)),
            None,
            MAX_DELAY,
            &log,
        );
        assert_eq!(auth.failure_delay(), FIRST_DELAY);
        assert_eq!(auth.user().map(|u| &**u), Some("app"));
    }
}

//! The authentication commands, in both protocols: `AUTH [<user>] <password>`, `ACL LOAD`
//! (read the users file again), `ACL WHOAMI`, and RESP's `HELLO [<protover> [AUTH <user>
//! <password>] [SETNAME <name>]]`, which can log in as it picks the protocol. `command.rs`
//! makes each a `Command`; docs/protocol.md, "Authentication", is their reference.

use std::fmt;

use bytes::Bytes;

use super::client_commands::{parse_resp_client, ClientCommand};
use super::command_table::{help, unknown_subcommand};
use super::error::CommandError;
use super::reply::Reply;
use super::words::{printable, token};

/// The line protocol's usage of `AUTH`.
const AUTH_USAGE: &str = "AUTH [<user>] <password>";
/// The line protocol's usage of `ACL`.
const ACL_USAGE: &str = "ACL LOAD | ACL WHOAMI";

/// A password as a request carries it: never shown (its `Debug` hides it), so that no log or
/// error message can ever print one.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(
    /// The password's bytes.
    pub Bytes,
);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A login: `AUTH`'s arguments, or `HELLO`'s `AUTH` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user; `None` for `AUTH <password>`, which logs in as `default`.
    pub user: Option<Bytes>,
    /// The password.
    pub password: Secret,
}

/// `ACL`'s subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclCommand {
    /// `ACL LOAD`: read the users file again and put its users in force (admin only).
    Load,
    /// `ACL WHOAMI`: the connection's user.
    WhoAmI,
    /// `ACL HELP`.
    Help,
}

/// An authentication command, parsed (`command.rs` makes it a `Command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthCommand {
    /// `AUTH`.
    Auth(Login),
    /// `ACL ...`.
    Acl(AclCommand),
    /// `HELLO`.
    Hello {
        /// The protocol version asked for, if any.
        version: Option<u64>,
        /// `SETNAME`'s name for the connection.
        name: Option<Bytes>,
        /// `AUTH`'s user and password.
        auth: Option<Login>,
    },
}

/// `ACL HELP`'s reply.
pub fn acl_help() -> Reply {
    help(&[
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD",
        "    Reload users from the users file (--users-file); admin only.",
        "WHOAMI",
        "    Return the current connection username.",
    ])
}

/// RESP `AUTH`, `ACL` and `HELLO` (`args[0]` is the verb, lower case in `name`).
pub fn parse_resp(name: &str, args: &mut Vec<Bytes>) -> Result<AuthCommand, CommandError> {
    let wrong = |name: &str| {
        CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    match (name, args.len()) {
        ("auth", 2) => Ok(AuthCommand::Auth(Login {
            user: None,
            password: Secret(args.swap_remove(1)),
        })),
        ("auth", 3) => {
            let password = Secret(args.swap_remove(2));
            let user = Some(args.swap_remove(1));
            Ok(AuthCommand::Auth(Login { user, password }))
        }
        ("auth", 1) => Err(wrong("auth")),
        ("auth", _) => Err(CommandError::Redis("ERR syntax error".into())),
        ("acl", 1) => Err(wrong("acl")),
        ("acl", n) => {
            let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            let acl = match sub.as_str() {
                "load" => AclCommand::Load,
                "whoami" => AclCommand::WhoAmI,
                "help" => AclCommand::Help,
                _ => return Err(unknown_subcommand("ACL", &args[1])),
            };
            match n {
                2 => Ok(AuthCommand::Acl(acl)),
                _ => Err(wrong(&format!("acl|{sub}"))),
            }
        }
        ("hello", 1) => Ok(AuthCommand::Hello {
            version: None,
            name: None,
            auth: None,
        }),
        ("hello", _) => parse_hello(args),
        _ => Err(wrong(name)),
    }
}

/// RESP `HELLO <protover> [AUTH <user> <password>] [SETNAME <name>]`.
fn parse_hello(args: &[Bytes]) -> Result<AuthCommand, CommandError> {
    let version = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            CommandError::Redis("ERR Protocol version is not an integer or out of range".into())
        })?;
    let mut rest = args[2..].iter();
    let (mut name, mut auth) = (None, None);
    while let Some(option) = rest.next() {
        let option = String::from_utf8_lossy(option).to_ascii_lowercase();
        match (option.as_str(), rest.next()) {
            ("setname", Some(given)) => {
                match parse_resp_client(&[args[0].clone(), "setname".into(), given.clone()])? {
                    ClientCommand::SetName(given) => name = Some(given),
                    _ => return Err(CommandError::Redis("ERR internal: SETNAME".into())),
                }
            }
            ("auth", Some(user)) => match rest.next() {
                Some(password) => {
                    auth = Some(Login {
                        user: Some(user.clone()),
                        password: Secret(password.clone()),
                    })
                }
                None => return Err(hello_syntax(&option)),
            },
            _ => return Err(hello_syntax(&option)),
        }
    }
    Ok(AuthCommand::Hello {
        version: Some(version),
        name,
        auth,
    })
}

/// Redis's error for a `HELLO` option it cannot read.
fn hello_syntax(option: &str) -> CommandError {
    CommandError::Redis(format!(
        "ERR Syntax error in HELLO option '{}'",
        printable(option.as_bytes())
    ))
}

/// The line protocol's `AUTH [<user>] <password>` and `ACL LOAD|WHOAMI`, from the words after
/// the verb (which ends at `verb_end`). A password is one word here: one with blanks can only
/// be given over RESP.
pub fn parse_line(verb: &[u8], line: &Bytes, verb_end: usize) -> Result<AuthCommand, CommandError> {
    let mut words = Vec::with_capacity(3);
    let mut at = verb_end;
    while let Some((start, end)) = token(line, at) {
        if words.len() == 3 {
            break;
        }
        words.push(line.slice(start..end));
        at = end;
    }
    if verb.eq_ignore_ascii_case(b"AUTH") {
        let mut words = words.into_iter();
        return match (words.next(), words.next(), words.next()) {
            (Some(password), None, None) => Ok(AuthCommand::Auth(Login {
                user: None,
                password: Secret(password),
            })),
            (Some(user), Some(password), None) => Ok(AuthCommand::Auth(Login {
                user: Some(user),
                password: Secret(password),
            })),
            _ => Err(CommandError::Usage(AUTH_USAGE)),
        };
    }
    match &words[..] {
        [sub] if sub.eq_ignore_ascii_case(b"LOAD") => Ok(AuthCommand::Acl(AclCommand::Load)),
        [sub] if sub.eq_ignore_ascii_case(b"WHOAMI") => Ok(AuthCommand::Acl(AclCommand::WhoAmI)),
        _ => Err(CommandError::Usage(ACL_USAGE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(words: &[&str]) -> Result<AuthCommand, CommandError> {
        let mut args: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
        let name = words[0].to_ascii_lowercase();
        parse_resp(&name, &mut args)
    }

    fn line(text: &str) -> Result<AuthCommand, CommandError> {
        let line = Bytes::from(text.to_string());
        let (start, end) = token(&line, 0).unwrap();
        parse_line(&line[start..end], &line, end)
    }

    fn login(user: Option<&str>, password: &str) -> AuthCommand {
        AuthCommand::Auth(Login {
            user: user.map(|u| Bytes::from(u.to_string())),
            password: Secret(Bytes::from(password.to_string())),
        })
    }

    #[test]
    fn auth_takes_a_password_and_maybe_a_user_in_both_protocols() {
        assert_eq!(resp(&["AUTH", "pw"]), Ok(login(None, "pw")));
        assert_eq!(resp(&["auth", "app", "pw"]), Ok(login(Some("app"), "pw")));
        assert_eq!(resp(&["AUTH", "a b c"]), Ok(login(None, "a b c")));
        assert!(resp(&["AUTH"]).is_err());
        assert_eq!(
            resp(&["AUTH", "a", "b", "c"]),
            Err(CommandError::Redis("ERR syntax error".into()))
        );
        assert_eq!(line("AUTH pw"), Ok(login(None, "pw")));
        assert_eq!(line("auth  app\tpw "), Ok(login(Some("app"), "pw")));
        assert_eq!(line("AUTH"), Err(CommandError::Usage(AUTH_USAGE)));
        assert_eq!(line("AUTH a b c"), Err(CommandError::Usage(AUTH_USAGE)));
        // A password is never shown, not even in a debug print.
        assert!(!format!("{:?}", login(Some("app"), "hunter2")).contains("hunter2"));
    }

    #[test]
    fn acl_load_and_whoami_in_both_protocols() {
        assert_eq!(
            resp(&["ACL", "load"]),
            Ok(AuthCommand::Acl(AclCommand::Load))
        );
        assert_eq!(
            resp(&["acl", "WHOAMI"]),
            Ok(AuthCommand::Acl(AclCommand::WhoAmI))
        );
        assert_eq!(
            resp(&["ACL", "LOAD", "x"]),
            Err(CommandError::Redis(
                "ERR wrong number of arguments for 'acl|load' command".into()
            ))
        );
        assert_eq!(
            resp(&["ACL", "SETUSER", "x"]),
            Err(CommandError::Redis(
                "ERR unknown subcommand 'SETUSER'. Try ACL HELP.".into()
            ))
        );
        assert_eq!(line("ACL LOAD"), Ok(AuthCommand::Acl(AclCommand::Load)));
        assert_eq!(line("acl whoami"), Ok(AuthCommand::Acl(AclCommand::WhoAmI)));
        assert_eq!(line("ACL"), Err(CommandError::Usage(ACL_USAGE)));
        assert_eq!(line("ACL LOAD now"), Err(CommandError::Usage(ACL_USAGE)));
    }

    #[test]
    fn hello_can_log_in_as_it_picks_the_protocol() {
        let hello = resp(&["HELLO", "3", "AUTH", "app", "pw", "SETNAME", "me"]).unwrap();
        let AuthCommand::Hello {
            version,
            name,
            auth,
        } = hello
        else {
            panic!("{hello:?}");
        };
        assert_eq!((version, name), (Some(3), Some(Bytes::from("me"))));
        assert_eq!(auth.map(AuthCommand::Auth), Some(login(Some("app"), "pw")));
        assert!(resp(&["HELLO", "3", "AUTH", "app"]).is_err());
        assert!(resp(&["HELLO", "three"]).is_err());
        assert_eq!(
            resp(&["HELLO"]),
            Ok(AuthCommand::Hello {
                version: None,
                name: None,
                auth: None
            })
        );
    }
}

//! `MULTI` / `EXEC` / `DISCARD` on one connection: the commands queued between `MULTI` and
//! `EXEC` are planned together when `EXEC` arrives, so their Store operations go to the Store
//! as one message: applied as one step (no other client's command in between) and published
//! together, so the log and the replicas see the whole transaction or none of it. A command
//! refused while queued (a syntax error) aborts the transaction at `EXEC` (`EXECABORT`), as
//! in Redis. `WATCH` keys are kept by the Store (which sees every change to them); the
//! session adds an `Op::Exec` before the transaction's ops, which the Store skips whole if a
//! watched key changed, and `EXEC` then answers a null array. `EXEC`, `DISCARD` and an aborted
//! transaction forget the watches, as in Redis.
//!
//! The queue is memory a client makes the node hold for as long as it likes: what its
//! commands hold ([`held_bytes`]) counts against `--maxmemory-clients` (`multi-mem`, the
//! session reports it), and one transaction may queue at most `--client-output-limit` bytes
//! (what it could answer anyway): past that it is discarded at once and `EXEC` answers
//! `EXECABORT`. Watched keys are not counted: the Store holds them (a copy of each key,
//! at most `--max-value-bytes` each, once per connection and key).

use bytes::Bytes;

use crate::protocol::client_commands::ClientCommand;
use crate::protocol::command::{Command, CommandError};
use crate::protocol::expiry_commands::LineExpiry;
use crate::protocol::reply::{ErrorReply, Reply};
use crate::store::watch::ClientId;
use crate::store::Op;

/// A connection's transaction state.
#[derive(Debug)]
pub struct Transaction {
    /// Between `MULTI` and `EXEC`/`DISCARD`: the commands queued, and whether one was refused
    /// (then nothing more is kept: the transaction will be discarded).
    queued: Option<(Vec<Command>, bool)>,
    /// What the queued commands hold, by [`held_bytes`].
    queued_bytes: usize,
    /// The most bytes one transaction may queue.
    max_queued: usize,
    /// Keys are watched: the Store must be told to forget them when the connection closes.
    watching: bool,
}

/// One request of a batch, as the transaction state makes of it.
#[derive(Debug)]
pub enum Planned {
    /// Run this command now.
    Run(Command),
    /// Answer this at once (`QUEUED`, `OK`, or an error).
    Reply(Reply),
    /// `EXEC`: the next `n` commands are the transaction, answered as one array (or a null
    /// array when a watched key changed).
    Exec(usize),
    /// Answer this, and have the Store forget the connection's watches (`DISCARD`, an aborted
    /// transaction).
    Unwatch(Reply),
}

/// An error reply worded as Redis words it.
fn error(text: &str) -> Reply {
    Reply::Error(ErrorReply::Command(CommandError::Redis(text.into())))
}

impl Transaction {
    /// No transaction yet; one may queue up to `max_queued` bytes of commands.
    pub fn new(max_queued: usize) -> Transaction {
        Transaction {
            queued: None,
            queued_bytes: 0,
            max_queued,
            watching: false,
        }
    }

    /// What the commands queued now hold, in bytes (`multi-mem`).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether the connection is between `MULTI` and `EXEC`, queuing commands.
    pub fn queuing(&self) -> bool {
        self.queued.is_some()
    }

    /// Whether the connection watches keys now.
    pub fn watching(&self) -> bool {
        self.watching
    }

    /// `reply`, and the watches forgotten if there are any.
    fn ending(&mut self, reply: Reply) -> Planned {
        match std::mem::take(&mut self.watching) {
            true => Planned::Unwatch(reply),
            false => Planned::Reply(reply),
        }
    }

    /// What to do with each request of a batch, in order (an `EXEC` expands into the commands
    /// it queued, after a [`Planned::Exec`] marker). `refused` says why a command would be
    /// refused on this node now (a write on a replica): inside `MULTI` that is answered at once
    /// and aborts the transaction, so a transaction runs whole or not at all. A request that is
    /// already an error (it did not parse, or the connection may not run it: `NOAUTH`,
    /// `NOPERM`) is answered with it, and inside `MULTI` aborts the transaction too.
    pub fn plan<E: Into<ErrorReply>>(
        &mut self,
        requests: impl IntoIterator<Item = Result<Command, E>>,
        refused: impl Fn(&Command) -> Option<ErrorReply>,
    ) -> Vec<Planned> {
        let requests = requests.into_iter();
        let mut planned = Vec::with_capacity(requests.size_hint().0);
        for request in requests {
            match (&mut self.queued, request) {
                (None, Ok(Command::Multi)) => {
                    self.queued = Some((Vec::new(), false));
                    planned.push(Planned::Reply(Reply::Ok));
                }
                (None, Ok(Command::Exec)) => {
                    planned.push(Planned::Reply(error("ERR EXEC without MULTI")))
                }
                (None, Ok(Command::Discard)) => {
                    planned.push(Planned::Reply(error("ERR DISCARD without MULTI")))
                }
                (None, Ok(command)) => {
                    match command {
                        Command::Watch(_) => self.watching = true,
                        Command::Unwatch => self.watching = false,
                        _ => {}
                    }
                    planned.push(Planned::Run(command))
                }
                (None, Err(e)) => planned.push(Planned::Reply(Reply::Error(e.into()))),
                (Some(_), Ok(Command::Multi)) => {
                    planned.push(Planned::Reply(error("ERR MULTI calls can not be nested")))
                }
                (Some(_), Ok(Command::Discard)) => {
                    self.queued = None;
                    planned.push(self.ending(Reply::Ok));
                }
                (Some((_, failed)), Ok(Command::Watch(_))) => {
                    *failed = true;
                    planned.push(Planned::Reply(error(
                        "ERR WATCH inside MULTI is not allowed",
                    )));
                }
                (Some(_), Ok(Command::Exec)) => match self.queued.take() {
                    Some((_, true)) => planned.push(self.ending(error(
                        "EXECABORT Transaction discarded because of previous errors.",
                    ))),
                    // Refused now (rights reloaded, the node closed to writes): discarded whole,
                    // as Redis's EXECABORT does.
                    Some((commands, false)) => match commands.iter().find_map(&refused) {
                        Some(why) => planned.push(self.ending(Reply::Error(why))),
                        None => {
                            self.watching = false;
                            planned.push(Planned::Exec(commands.len()));
                            planned.extend(commands.into_iter().map(Planned::Run));
                        }
                    },
                    None => {}
                },
                // QUIT inside a transaction ends the connection, as in Redis.
                (Some(_), Ok(Command::Exit)) => planned.push(Planned::Run(Command::Exit)),
                (Some((_, failed)), Err(e)) => {
                    *failed = true;
                    planned.push(Planned::Reply(Reply::Error(e.into())));
                }
                (Some((_, failed)), Ok(command))
                    if self.watching && acts_outside_the_store(&command) =>
                {
                    *failed = true;
                    planned.push(Planned::Reply(error(
                        "ERR this command cannot be queued in a transaction with WATCH: it would \
                         take effect even when EXEC finds a watched key changed",
                    )));
                }
                (Some((commands, failed)), Ok(command)) => match refused(&command) {
                    Some(error) => {
                        *failed = true;
                        planned.push(Planned::Reply(Reply::Error(error)));
                    }
                    // Discarded at `EXEC` whatever it is: not kept meanwhile.
                    None if *failed => planned.push(Planned::Reply(Reply::Queued)),
                    None => match self.queued_bytes + held_bytes(&command) {
                        bytes if bytes > self.max_queued => {
                            *failed = true;
                            *commands = Vec::new();
                            self.queued_bytes = 0;
                            planned.push(Planned::Reply(queue_too_large(self.max_queued)));
                        }
                        bytes => {
                            self.queued_bytes = bytes;
                            commands.push(command);
                            planned.push(Planned::Reply(Reply::Queued));
                        }
                    },
                },
            }
        }
        if self.queued.is_none() {
            self.queued_bytes = 0;
        }
        planned
    }
}

/// A transaction's queue would pass `limit` bytes: it is discarded now, and `EXEC` says so.
fn queue_too_large(limit: usize) -> Reply {
    Reply::Error(ErrorReply::Command(CommandError::Redis(format!(
        "ERR transaction queue over {limit} bytes (--client-output-limit): the transaction \
         is discarded, EXEC will answer EXECABORT"
    ))))
}

/// What a queued command holds: its keys, values and other arguments, and the command itself.
/// (Its arguments are slices of the buffer they were read into; what they keep of it beyond
/// their own bytes is not counted.)
pub fn held_bytes(command: &Command) -> usize {
    let keys = |keys: &[Bytes]| keys.iter().map(Bytes::len).sum::<usize>();
    let own = std::mem::size_of::<Command>();
    own + match command {
        Command::Put { key, value } => key.len() + value.len(),
        Command::Get { key } | Command::Del { key } => key.len(),
        Command::Echo(b) | Command::Type(b) => b.len(),
        Command::DelMany(k)
        | Command::Exists(k)
        | Command::MGet(k)
        | Command::ConfigGet(k)
        | Command::Watch(k) => keys(k),
        Command::MSet(pairs) => pairs.iter().map(|(k, v)| k.len() + v.len()).sum(),
        Command::StringOp(op) | Command::LineExpiry(LineExpiry::Expire(op)) => op.arg_bytes(),
        Command::LineExpiry(LineExpiry::Ttl(k) | LineExpiry::Persist(k)) => k.len(),
        Command::Client(ClientCommand::SetName(b) | ClientCommand::SetInfo(_, b)) => b.len(),
        Command::Hello { name, .. } => name.as_ref().map_or(0, Bytes::len),
        Command::Failover { to, .. } => to.as_ref().map_or(0, String::len),
        Command::After(_, command) => held_bytes(command),
        _ => 0,
    }
}

/// Whether `command` acts on the node or the connection when the session plans it, before the
/// Store checks the watched keys (`CLIENT SETNAME`/`KILL`, `HELLO`'s switch of protocol,
/// `FAILOVER`, `RESYNC`): in a watched transaction it would act even if `EXEC` then answered
/// that nothing ran, so it is refused there.
fn acts_outside_the_store(command: &Command) -> bool {
    matches!(
        command,
        Command::Client(_) | Command::Hello { .. } | Command::Failover { .. } | Command::Resync
    )
}

/// Tell the `Op::Exec` at `at` in a batch's `ops` how many ops follow it: its transaction's,
/// once they are all planned (no other command's can follow it in the same batch before that).
pub fn size_exec(ops: &mut [Op], at: usize, client: ClientId) {
    let count = ops.len().saturating_sub(at + 1);
    if let Some(op) = ops.get_mut(at) {
        *op = Op::Exec(client, count);
    }
}

/// Over RESP, `EXEC` answers one array of the replies of the commands it ran: gather each
/// group (the position of its watch check's reply, then its `n` commands' replies) into one
/// (the last first, so the positions before it still hold): a null array when the check
/// failed (a watched key changed, nothing ran). A group cut short (`QUIT` inside it) is left
/// as it is.
pub fn gather_exec_replies(replies: &mut Vec<Reply>, groups: &[(usize, usize)]) {
    for &(at, n) in groups.iter().rev() {
        if at + 1 + n <= replies.len() {
            let aborted = replies[at] == Reply::Integer(0);
            let items: Vec<Reply> = replies.drain(at..at + 1 + n).skip(1).collect();
            let reply = match aborted {
                true => Reply::NullArray,
                false => Reply::Array(items),
            };
            replies.insert(at, reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Request;
    use bytes::Bytes;

    fn get(key: &str) -> Request {
        Ok(Command::Get {
            key: Bytes::copy_from_slice(key.as_bytes()),
        })
    }

    #[test]
    fn commands_between_multi_and_exec_are_queued_then_run_together() {
        let mut transaction = Transaction::new(1 << 20);
        let planned = transaction.plan(vec![Ok(Command::Multi), get("a"), get("b")], |_| None);
        assert!(matches!(
            planned[..],
            [
                Planned::Reply(Reply::Ok),
                Planned::Reply(Reply::Queued),
                Planned::Reply(Reply::Queued)
            ]
        ));
        let planned = transaction.plan(vec![Ok(Command::Exec), get("c")], |_| None);
        assert!(matches!(
            planned[..],
            [
                Planned::Exec(2),
                Planned::Run(_),
                Planned::Run(_),
                Planned::Run(_)
            ]
        ));
    }

    #[test]
    fn a_command_refused_by_the_time_of_exec_discards_the_transaction_whole() {
        // Queued while the user could run it; its rights were reloaded away before EXEC.
        let mut transaction = Transaction::new(1 << 20);
        transaction.plan(vec![Ok(Command::Multi), get("a"), get("b")], |_| None);
        let planned = transaction.plan(vec![Ok(Command::Exec), get("c")], |command| {
            matches!(command, Command::Get { key } if key == "b").then_some(ErrorReply::NoAuth)
        });
        assert!(matches!(
            planned[..],
            [
                Planned::Reply(Reply::Error(ErrorReply::NoAuth)),
                Planned::Run(_)
            ]
        ));
        assert!(!transaction.queuing());
    }

    #[test]
    fn a_watched_transaction_refuses_commands_that_act_before_the_check() {
        let mut transaction = Transaction::new(1 << 20);
        let watch: Request = Ok(Command::Watch(vec![Bytes::from_static(b"k")]));
        let hello = Ok(Command::Hello {
            version: Some(3),
            name: None,
            auth: None,
        });
        let planned = transaction.plan(
            vec![watch, Ok(Command::Multi), hello, Ok(Command::Exec)],
            |_| None,
        );
        let Planned::Reply(Reply::Error(refusal)) = &planned[2] else {
            panic!("{planned:?}");
        };
        assert!(refusal.resp_text().contains("cannot be queued"));
        assert!(matches!(&planned[3], Planned::Unwatch(Reply::Error(_))));
        // Without WATCH nothing can abort the transaction, and HELLO is queued.
        let hello: Request = Ok(Command::Hello {
            version: Some(3),
            name: None,
            auth: None,
        });
        let planned = transaction.plan(vec![Ok(Command::Multi), hello], |_| None);
        assert!(matches!(planned[1], Planned::Reply(Reply::Queued)));
    }

    #[test]
    fn a_refused_command_aborts_the_transaction() {
        let mut transaction = Transaction::new(1 << 20);
        let bad: Request = Err(CommandError::Usage("GET <key>"));
        let planned = transaction.plan(
            vec![Ok(Command::Multi), bad, get("a"), Ok(Command::Exec)],
            |_| None,
        );
        let Planned::Reply(Reply::Error(abort)) = &planned[3] else {
            panic!("{planned:?}");
        };
        assert!(abort.resp_text().starts_with("EXECABORT"));
        // DISCARD ends a transaction; EXEC or DISCARD without one is an error.
        let requests = vec![
            Ok(Command::Multi),
            get("a"),
            Ok(Command::Discard),
            Ok(Command::Exec),
        ];
        let planned = transaction.plan(requests, |_| None);
        assert!(matches!(planned[2], Planned::Reply(Reply::Ok)));
        assert!(matches!(planned[3], Planned::Reply(Reply::Error(_))));
    }

    #[test]
    fn a_queue_past_its_limit_is_discarded_at_once_and_exec_aborts() {
        let mut transaction = Transaction::new(300);
        let set = |value: &str| {
            Ok::<_, CommandError>(Command::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::copy_from_slice(value.as_bytes()),
            })
        };
        let planned = transaction.plan(vec![Ok(Command::Multi), set("small")], |_| None);
        assert!(matches!(planned[1], Planned::Reply(Reply::Queued)));
        let held = transaction.queued_bytes();
        assert_eq!(held, held_bytes(&set("small").unwrap()));
        let big = "v".repeat(300);
        let planned = transaction.plan(vec![set(&big), set("after")], |_| None);
        let Planned::Reply(Reply::Error(refusal)) = &planned[0] else {
            panic!("{planned:?}");
        };
        assert!(refusal
            .resp_text()
            .contains("transaction queue over 300 bytes"));
        // What follows is answered as queued but not kept: the transaction is discarded.
        assert!(matches!(planned[1], Planned::Reply(Reply::Queued)));
        assert_eq!(transaction.queued_bytes(), 0);
        let planned = transaction.plan(vec![Ok::<_, CommandError>(Command::Exec)], |_| None);
        let Planned::Reply(Reply::Error(abort)) = &planned[0] else {
            panic!("{planned:?}");
        };
        assert!(abort.resp_text().starts_with("EXECABORT"));
    }
}

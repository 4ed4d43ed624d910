//! The command table's specification: each client command's parse, in both protocols, and
//! the errors worded for people who know the C++ store or Redis.

use super::*;
use crate::protocol::line_commands::{parse, DEL_USAGE, PUT_USAGE, WAIT_USAGE};
use crate::protocol::position_commands::GET_AFTER_USAGE as GET_USAGE;
use crate::protocol::words::MAX_ECHOED_VERB;

fn p(line: &str) -> Option<Result<Command, CommandError>> {
    parse(&Bytes::copy_from_slice(line.as_bytes()))
}

fn put(key: &str, value: &str) -> Option<Result<Command, CommandError>> {
    Some(Ok(Command::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }))
}

#[test]
fn put_value_is_the_rest_of_the_line() {
    assert_eq!(p("PUT name John  Smith "), put("name", "John  Smith "));
    assert_eq!(p("put\tk \t v"), put("k", "v"));
    assert_eq!(p("PUT k v\r"), put("k", "v"));
}

#[test]
fn verbs_are_case_insensitive() {
    let get = Some(Ok(Command::Get {
        key: Bytes::from_static(b"k"),
    }));
    assert_eq!(p("get k"), get);
    assert_eq!(p("GeT k"), get);
    assert_eq!(p("  pInG "), Some(Ok(Command::Ping)));
    assert_eq!(p("exit"), Some(Ok(Command::Exit)));
}

#[test]
fn blank_lines_are_ignored() {
    assert_eq!(p(""), None);
    assert_eq!(p(" \t "), None);
    assert_eq!(p("\r"), None);
}

#[test]
fn wrong_arguments_give_the_usage() {
    let usage = |u| Some(Err(CommandError::Usage(u)));
    assert_eq!(p("PUT"), usage(PUT_USAGE));
    assert_eq!(p("PUT k"), usage(PUT_USAGE));
    assert_eq!(p("PUT k   "), usage(PUT_USAGE));
    assert_eq!(p("GET"), usage(GET_USAGE));
    assert_eq!(p("GET a b"), usage(GET_USAGE));
    assert_eq!(p("DEL"), usage(DEL_USAGE));
    assert_eq!(p("PING x"), usage("PING"));
    assert_eq!(p("WAIT 1"), usage(WAIT_USAGE));
    assert_eq!(p("WAIT x 10"), usage(WAIT_USAGE));
    assert_eq!(p("WAIT 1 -5"), usage(WAIT_USAGE));
    assert_eq!(p("INFO now"), usage("INFO"));
}

#[test]
fn operator_commands() {
    assert_eq!(p("info"), Some(Ok(Command::Info)));
    assert_eq!(p("DIGEST"), Some(Ok(Command::Digest)));
    assert_eq!(
        p("wait 2 100"),
        Some(Ok(Command::Wait {
            replicas: 2,
            timeout_ms: 100
        }))
    );
}

#[test]
fn unknown_verbs_are_echoed_printably() {
    assert_eq!(
        p("FOO bar"),
        Some(Err(CommandError::Unknown("FOO".to_string())))
    );
    let long = "X".repeat(100);
    let Some(Err(CommandError::Unknown(shown))) = p(&long) else {
        panic!("expected an unknown-command error");
    };
    assert_eq!(shown.len(), MAX_ECHOED_VERB + 3);
    assert_eq!(
        parse(&Bytes::from_static(b"\x01\xff")),
        Some(Err(CommandError::Unknown("?\u{fffd}".to_string())))
    );
}

#[test]
fn keys_and_values_are_bytes() {
    assert_eq!(
        parse(&Bytes::from_static(b"PUT \xff\x00 \xfe v")),
        Some(Ok(Command::Put {
            key: Bytes::from_static(b"\xff\x00"),
            value: Bytes::from_static(b"\xfe v"),
        }))
    );
}

fn resp(args: &[&str]) -> Option<Result<Command, CommandError>> {
    let mut args = args
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    let command = from_resp(&mut args);
    assert!(args.is_empty(), "the argument list is left empty for reuse");
    command
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn redis_commands_map_onto_the_same_operations() {
    assert_eq!(
        resp(&["set", "k", "v"]),
        Some(Ok(Command::Put {
            key: b("k"),
            value: b("v")
        }))
    );
    assert_eq!(resp(&["GET", "k"]), Some(Ok(Command::Get { key: b("k") })));
    assert_eq!(
        resp(&["DEL", "a", "b"]),
        Some(Ok(Command::DelMany(vec![b("a"), b("b")])))
    );
    assert_eq!(
        resp(&["MSET", "a", "1", "b", "2"]),
        Some(Ok(Command::MSet(vec![(b("a"), b("1")), (b("b"), b("2"))])))
    );
    assert_eq!(resp(&["ping", "hi"]), Some(Ok(Command::Echo(b("hi")))));
    assert_eq!(resp(&["SELECT", "0"]), Some(Ok(Command::Accept)));
    assert_eq!(
        resp(&["CLIENT", "SETINFO", "lib-name", "x"]),
        Some(Ok(Command::Client(ClientCommand::SetInfo(
            crate::protocol::client_commands::LibraryField::Name,
            b("x")
        ))))
    );
    assert_eq!(
        resp(&["HELLO", "3"]),
        Some(Ok(Command::Hello {
            version: Some(3),
            name: None,
            auth: None
        }))
    );
    assert_eq!(resp(&[]), None);
}

#[test]
fn errors_are_worded_as_redis_words_them() {
    let err = |args: &[&str]| match resp(args) {
        Some(Err(CommandError::Redis(text))) => text,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(
        err(&["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&["MSET", "a"]),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err(&["SET", "k", "v", "EX", "ten"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err(&["SELECT", "1"]), "ERR DB index is out of range");
    assert_eq!(
        err(&["FOO", "a"]),
        "ERR unknown command 'FOO', with args beginning with: 'a'"
    );
}

#[test]
fn a_refused_write_says_it_was_not_applied_and_a_failed_one_does_not() {
    use crate::protocol::error::ErrorReply;
    let refused = ErrorReply::WritesRefused("disk full".into());
    assert_eq!(
        refused.to_string(),
        "writes refused until the disk recovers (not applied): disk full"
    );
    // Redis's word for writes stopped by failing persistence, so Redis clients treat it alike.
    assert!(refused.resp_text().starts_with("MISCONF writes refused"));
    let failed = ErrorReply::PersistenceFailed("disk full".into());
    assert_eq!(failed.resp_text(), "ERR persistence failed: disk full");
}

#[test]
fn failover_cluster_commands() {
    assert_eq!(p("ROLE"), Some(Ok(Command::Role)));
    assert_eq!(
        p("FAILOVER"),
        Some(Ok(Command::Failover {
            to: None,
            timeout_ms: 10_000
        }))
    );
    assert_eq!(
        p("failover to 10.0.0.2:7002"),
        Some(Ok(Command::Failover {
            to: Some("10.0.0.2:7002".into()),
            timeout_ms: 10_000
        }))
    );
    let usage = Some(Err(CommandError::Usage("FAILOVER [TO <host:port>]")));
    assert_eq!(p("FAILOVER TO"), usage);
    assert_eq!(p("FAILOVER now"), usage);
    assert_eq!(
        resp(&["FAILOVER", "TO", "10.0.0.2", "7002", "TIMEOUT", "500"]),
        Some(Ok(Command::Failover {
            to: Some("10.0.0.2:7002".into()),
            timeout_ms: 500
        }))
    );
    assert!(matches!(resp(&["FAILOVER", "FORCE"]), Some(Err(_))));
    assert!(matches!(resp(&["FAILOVER", "TIMEOUT", "0"]), Some(Err(_))));
    assert_eq!(
        resp(&["SENTINEL", "get-master-addr-by-name", "kvstore"]),
        Some(Ok(Command::Sentinel(SentinelQuery::GetMasterAddr(b(
            "kvstore"
        )))))
    );
    assert_eq!(
        resp(&["sentinel", "SLAVES", "kvstore"]),
        Some(Ok(Command::Sentinel(SentinelQuery::Replicas(b("kvstore")))))
    );
    assert_eq!(
        resp(&["SENTINEL", "masters"]),
        Some(Ok(Command::Sentinel(SentinelQuery::Masters)))
    );
    assert!(matches!(resp(&["SENTINEL", "reset", "*"]), Some(Err(_))));
    assert!(matches!(resp(&["SENTINEL", "master"]), Some(Err(_))));
}

#[test]
fn the_line_protocol_sets_and_reads_times_to_live() {
    use crate::protocol::expiry_commands::LineExpiry;
    use crate::store::expiry::{Expiry, SetArgs, SetCondition};
    assert_eq!(
        p("PUTEX k 10 a value"),
        Some(Ok(Command::StringOp(Op::Set(Box::new(SetArgs {
            key: b("k"),
            value: b("a value"),
            only: SetCondition::Always,
            expiry: Expiry::In(10_000),
            get: false,
        })))))
    );
    assert_eq!(
        p("TTL k"),
        Some(Ok(Command::LineExpiry(LineExpiry::Ttl(b("k")))))
    );
    assert_eq!(
        p("persist k"),
        Some(Ok(Command::LineExpiry(LineExpiry::Persist(b("k")))))
    );
    assert!(matches!(
        p("EXPIRE k -1"),
        Some(Ok(Command::LineExpiry(LineExpiry::Expire(Op::Expire(
            _,
            Expiry::In(-1000),
            _
        )))))
    ));
    for bad in [
        "PUTEX k 10",
        "PUTEX k ten v",
        "EXPIRE k",
        "EXPIRE k 1 2",
        "TTL",
    ] {
        assert!(matches!(p(bad), Some(Err(CommandError::Usage(_)))), "{bad}");
    }
    assert!(matches!(
        p("PUTEX k 0 v"),
        Some(Err(CommandError::Usage(text))) if text.contains("positive")
    ));
}

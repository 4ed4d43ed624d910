//! The line protocol, spoken to a real `kvnode` process.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::thread;

use common::{exchange, NodeProcess};

/// Every example transcript in docs/protocol.md (a ```text block: `> request` lines, each
/// followed by its reply lines) gets exactly the replies the docs show.
#[test]
fn every_example_in_the_protocol_docs_holds() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"))
        .expect("docs/protocol.md");
    let blocks = example_blocks(&docs);
    assert!(
        !blocks.is_empty(),
        "docs/protocol.md has no ```text examples"
    );
    for block in blocks {
        // A node of its own for every block, so each starts from an empty store.
        let node = NodeProcess::start(&[]);
        let mut client = node.client();
        for (request, expected) in block {
            client.send(request.as_bytes()).unwrap();
            let mut got = Vec::new();
            for _ in 0..expected.len() {
                got.push(String::from_utf8(client.read_reply().unwrap()).unwrap());
            }
            assert_eq!(got, expected, "reply to {request:?}");
        }
    }
}

/// The (request, replies) pairs of each ```text block.
fn example_blocks(docs: &str) -> Vec<Vec<(String, Vec<String>)>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<(String, Vec<String>)>> = None;
    for line in docs.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```text") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), line) => match line.strip_prefix("> ") {
                Some(request) => block.push((request.to_string(), Vec::new())),
                None => match block.last_mut() {
                    Some((_, replies)) => replies.push(line.to_string()),
                    None => panic!("reply line {line:?} before any request"),
                },
            },
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn one_connection_pipelining_100k_mixed_requests_gets_every_reply_in_order() {
    const REQUESTS: usize = 100_000;
    let node = NodeProcess::start(&[]);
    let mut stream = node.raw();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        thread::spawn(move || {
            let mut requests = Vec::new();
            for i in 0..REQUESTS {
                let key = i % 997;
                match i % 5 {
                    0 | 1 => writeln!(requests, "PUT key{key} value {i}").unwrap(),
                    2 | 3 => writeln!(requests, "GET key{key}").unwrap(),
                    _ => writeln!(requests, "DEL key{key}").unwrap(),
                }
            }
            stream.write_all(&requests).unwrap();
        })
    };
    // What a single client must see: the same requests applied in order to a map.
    let mut model: HashMap<usize, String> = HashMap::new();
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    for i in 0..REQUESTS {
        let key = i % 997;
        let expected = match i % 5 {
            0 | 1 => {
                model.insert(key, format!("value {i}"));
                "OK".to_string()
            }
            2 | 3 => model.get(&key).cloned().unwrap_or("NOT_FOUND".into()),
            _ => match model.remove(&key) {
                Some(_) => "OK".to_string(),
                None => "NOT_FOUND".to_string(),
            },
        };
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end_matches('\n'), expected, "reply {i}");
    }
    writer.join().unwrap();
}

#[test]
fn two_hundred_concurrent_connections_are_all_served() {
    const CONNECTIONS: usize = 200;
    const ROUNDS: usize = 25;
    let node = NodeProcess::start(&[]);
    let mut clients: Vec<_> = (0..CONNECTIONS).map(|_| node.client()).collect();
    // Every connection is open at once before any of them works.
    let workers: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(c, mut client)| {
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    let key = format!("c{c}-{}", round % 5);
                    let value = format!("v{round} from {c}");
                    client.put(key.as_bytes(), value.as_bytes()).unwrap();
                    assert_eq!(client.get(key.as_bytes()).unwrap(), Some(value.into()));
                }
                client.ping().unwrap();
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a connection failed");
    }
    let mut client = node.client();
    for c in 0..CONNECTIONS {
        let key = format!("c{c}-4");
        let value = format!("v{} from {c}", ROUNDS - 1);
        assert_eq!(client.get(key.as_bytes()).unwrap(), Some(value.into()));
    }
}

#[test]
fn a_replica_refuses_writes_and_serves_reads() {
    let node = NodeProcess::start(&["--role", "replica"]);
    let replies = exchange(
        &mut node.raw(),
        b"PUT k v\nDEL k\nGET k\nPING\nput k v\nFOO\n",
    );
    let readonly = "ERROR: READONLY: this node is a replica; write to the primary";
    assert_eq!(
        String::from_utf8(replies).unwrap(),
        format!(
            "{readonly}\n{readonly}\nNOT_FOUND\nPONG\n{readonly}\nERROR: unknown command 'FOO'\n"
        )
    );
}

#[test]
fn keys_and_values_are_bytes_and_crlf_is_accepted() {
    let node = NodeProcess::start(&[]);
    let replies = exchange(
        &mut node.raw(),
        b"PUT \xffkey\x00 caf\xc3\xa9 \xfe\r\nGET \xffkey\x00\r\n\r\nget \xffkey\x00\n",
    );
    assert_eq!(replies, b"OK\ncaf\xc3\xa9 \xfe\ncaf\xc3\xa9 \xfe\n");
}

#[test]
fn exit_says_goodbye_and_closes_without_answering_what_follows() {
    let node = NodeProcess::start(&[]);
    let mut stream = node.raw();
    stream.write_all(b"PUT a 1\nEXIT\nPUT b 2\n").unwrap();
    let replies = common::read_to_close(&mut stream);
    assert_eq!(replies, b"OK\nGoodbye\n");
    let mut client = node.client();
    assert_eq!(client.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(client.get(b"b").unwrap(), None);
}

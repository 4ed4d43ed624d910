//! `--prefill`: PUT every key of the keyspace once before measuring, so that GETs find
//! values.
//!
//! Every connection loads its share of the keyspace on a thread of its own, in pipelined
//! chunks, over the blocking connections that the measured load then takes over.

use std::thread;
use std::time::Instant;

use crate::args::{Args, Proto};
use crate::conn::Conn;
use crate::reply::Reply;
use crate::request::push_request;

/// Requests per write during `--prefill`: big batches load fast, and the node reads at most
/// 1024 lines per batch anyway.
const PREFILL_CHUNK: usize = 1000;

/// Load the whole keyspace, every connection its share in parallel; report the time taken on
/// stderr.
pub fn prefill_all(conns: &mut [Conn], args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let (step, keyspace) = (conns.len(), args.keyspace);
    let value = &vec![b'x'; args.value_size as usize];
    thread::scope(|s| {
        let loaders: Vec<_> = (0..)
            .zip(conns.iter_mut())
            .map(|(i, conn)| {
                let keys = (i..keyspace).step_by(step); // connection i loads i, i + step, ...
                s.spawn(move || prefill(conn, args.proto, keys, value))
            })
            .collect();
        loaders
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or(Err("a loader panicked".into())))
    })?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("kvbench: prefilled {keyspace} keys in {secs:.2} s");
    Ok(())
}

/// PUT `keys` in pipelined chunks; any error reply stops it, since a benchmark on a
/// half-loaded keyspace would mislead.
fn prefill(
    conn: &mut Conn,
    proto: Proto,
    keys: impl Iterator<Item = u64>,
    value: &[u8],
) -> Result<(), String> {
    let (mut buf, mut line, mut keys) = (Vec::new(), Vec::new(), keys.peekable());
    while keys.peek().is_some() {
        buf.clear();
        let chunk: Vec<u64> = keys.by_ref().take(PREFILL_CHUNK).collect();
        for &key in &chunk {
            push_request(&mut buf, proto, true, key, value, b"");
        }
        conn.send(&buf).map_err(|e| e.to_string())?;
        for _ in &chunk {
            let reply = conn
                .read_reply(proto, &mut line)
                .map_err(|e| e.to_string())?;
            if reply == Reply::Error {
                return Err(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }
    Ok(())
}

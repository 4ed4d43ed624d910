//! `kvnode --role cluster`: a primary and two replicas in one process, recovered side by side.

mod common;

use std::net::TcpListener;

use common::{wait_until, NodeProcess};
use kvstore::client::Client;

/// A port whose next two are free too (the replicas take them).
fn three_free_ports() -> u16 {
    loop {
        let port = fastrand::u16(12_000..30_000);
        if (0..3).all(|i| TcpListener::bind(("127.0.0.1", port + i)).is_ok()) {
            return port;
        }
    }
}

#[test]
fn a_local_cluster_serves_replicates_and_restarts_with_its_data() {
    let data = tempfile::tempdir().unwrap();
    let port = three_free_ports();
    let listen = format!("127.0.0.1:{port}");
    let flags = ["--role", "cluster", "--fsync", "always"];
    let start = || NodeProcess::start_at(&listen, data.path(), &flags);
    let replica = |n: u16| format!("127.0.0.1:{}", port + n);
    let mut node = start();
    let mut primary = Client::connect(&listen, common::DEADLINE).unwrap();
    for n in 0..50 {
        assert_eq!(
            primary.request(format!("PUT k{n} {n}").as_bytes()).unwrap(),
            b"OK"
        );
    }
    for n in 1..=2 {
        let mut client = Client::connect(&replica(n), common::DEADLINE).unwrap();
        wait_until("the replica has every write", || {
            client.request(b"GET k49").unwrap() == b"49"
        });
    }
    drop(primary);
    node.signal("TERM");
    assert!(node.wait_exit().success());
    // All three recover (side by side) and serve what they had.
    let _node = start();
    for addr in [listen.clone(), replica(1), replica(2)] {
        let mut client = Client::connect(&addr, common::DEADLINE).unwrap();
        wait_until(&format!("{addr} serves its data"), || {
            client.request(b"GET k0").is_ok_and(|v| v == b"0")
        });
    }
}

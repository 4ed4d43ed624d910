//! What a node makes of its TLS files and flags: every mistake an operator can make (a
//! missing or unreadable file, a file that is not PEM, a certificate file with no certificate,
//! a key that is not the certificate's, flags that do not go together) stops it with one line
//! naming the file and what is wrong, before it serves anything.

mod common;

use std::path::Path;

use common::certs::CertFiles;
use common::tls::TlsWorld;
use common::NodeProcess;
use kv_actors::tls::{ClientAuth, TlsContext, TlsError, TlsFiles, TlsSettings};
use slog::{o, Discard, Logger};

fn load(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<TlsContext, TlsError> {
    let settings = TlsSettings {
        files: TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca: ca.map(Path::to_path_buf),
        },
        auth_clients: ClientAuth::Required,
    };
    TlsContext::load(settings, &Logger::root(Discard, o!()))
}

#[test]
fn good_files_load_and_give_every_config() {
    let world = TlsWorld::new("ca");
    let node = world.issue("node");
    let tls = load(&node.cert, &node.key, Some(&world.ca_file)).unwrap();
    assert!(tls.connector().is_some() && tls.peer_acceptor().is_some());
    let without_ca = load(&node.cert, &node.key, None).unwrap();
    assert!(
        without_ca.connector().is_none(),
        "no peers are dialed without an authority"
    );
    assert_eq!(without_ca.auth_clients(), ClientAuth::No);
}

#[test]
fn each_bad_file_is_named_with_what_is_wrong() {
    let world = TlsWorld::new("ca");
    let node = world.issue("node");
    let dir = world.dir.path();
    let missing = dir.join("missing.crt");
    let error = load(&missing, &node.key, None).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("cannot read {}", missing.display())),
        "{error}"
    );
    let garbage = dir.join("garbage.crt");
    std::fs::write(&garbage, "hello\n").unwrap();
    let error = load(&garbage, &node.key, None).unwrap_err().to_string();
    assert!(error.contains("holds no certificate"), "{error}");
    let broken = dir.join("broken.crt");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n%%%%\n").unwrap();
    let error = load(&broken, &node.key, None).unwrap_err().to_string();
    assert!(error.contains("is not a PEM file"), "{error}");
    let error = load(&node.key, &node.key, None).unwrap_err().to_string();
    assert!(error.contains("holds no certificate"), "{error}");
    let error = load(&node.cert, &node.cert, None).unwrap_err().to_string();
    assert!(error.contains("holds no private key"), "{error}");
    let other = world.issue("other");
    let error = load(&node.cert, &other.key, None).unwrap_err();
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    assert!(error.to_string().contains("does not match"), "{error}");
    let error = load(&node.cert, &node.key, Some(&garbage))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&garbage.display().to_string()), "{error}");
}

/// How `kvnode` with `flags` fails to start: its log.
fn refused(flags: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    match NodeProcess::try_start_in(dir.path(), flags) {
        Ok(_) => panic!("kvnode started with {flags:?}"),
        Err(failure) => failure.log,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_node_with_bad_tls_flags_or_files_does_not_start_and_says_why_in_one_line() {
    let world = TlsWorld::new("ca");
    let CertFiles { cert, key } = world.issue("node");
    let log = refused(&["--tls-cert", path(&cert)]);
    assert!(log.contains("--tls-cert needs --tls-key"), "{log}");
    let log = refused(&["--tls-key", path(&key)]);
    assert!(log.contains("--tls-key needs --tls-cert"), "{log}");
    let log = refused(&["--tls-port", "0"]);
    assert!(
        log.contains("--tls-port needs --tls-cert and --tls-key"),
        "{log}"
    );
    let other = world.issue("other");
    let log = refused(&["--tls-cert", path(&cert), "--tls-key", path(&other.key)]);
    assert!(log.contains("does not match the certificate"), "{log}");
    let log = refused(&["--tls-cert", "/nonexistent.crt", "--tls-key", path(&key)]);
    assert!(log.contains("cannot read /nonexistent.crt"), "{log}");
    let tls = ["--tls-cert", path(&cert), "--tls-key", path(&key)];
    let log = refused(&[&tls[..], &["--replica", "127.0.0.1:1"]].concat());
    assert!(log.contains("needs --tls-ca"), "{log}");
}

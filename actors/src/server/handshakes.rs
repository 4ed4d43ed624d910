//! Setting up an accepted connection before its session starts: telling TLS from plain text
//! and running the TLS handshake, on a thread of their own, so that the handshake's
//! cryptography never runs on the Store's thread (which also serves sessions, and is the only
//! one with the default `--io-threads 1`); the stream is then handed to its session's thread.
//!
//! Connections still setting up are closed at once when the node shuts down (they are not
//! sessions yet, so nothing else could stop them), and their failures are logged at warning
//! level at most once per 10 s: a load balancer's health check or a port scanner opens and
//! closes connections all day.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_rt::ArbiterHandle;
use slog::{debug, warn, Logger};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::log_pace::LogPace;
use crate::tls::accept::{self, AcceptError, PortMode, MAX_HANDSHAKES};
use crate::tls::Stream;

/// What every connection of a node's client ports shares while it sets up.
#[derive(Clone)]
pub struct Handshakes {
    /// Where TLS ports' connections set up; `None`: on their session's thread.
    arbiter: Option<ArbiterHandle>,
    /// Places for handshakes running at once ([`MAX_HANDSHAKES`]).
    places: Arc<Semaphore>,
    /// The pace of warnings about connections that did not set up TLS.
    failures: Arc<LogPace>,
    /// Cancelled when the node stops accepting: connections still setting up are closed.
    stop: CancellationToken,
}

impl Handshakes {
    /// Handshakes run on `arbiter` (a thread of their own), or with `None` on each
    /// connection's session thread.
    pub fn new(arbiter: Option<ArbiterHandle>) -> Handshakes {
        Handshakes {
            arbiter,
            places: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
            failures: Arc::new(LogPace::default()),
            stop: CancellationToken::new(),
        }
    }

    /// Close every connection still setting up, and every one that arrives from now on.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Set up `tcp` (from `peer`, accepted on a port in `mode`, with TLS by `acceptor` if
    /// the port speaks it), then call `start` with its stream on `session`'s thread; or call
    /// `lost` if it did not become one or its session's thread is gone. Answers false,
    /// calling neither, when no thread took the work.
    pub fn spawn<S, L>(
        &self,
        connection: (std::net::TcpStream, SocketAddr, PortMode),
        acceptor: Option<TlsAcceptor>,
        session: ArbiterHandle,
        (start, lost): (S, L),
        log: &Logger,
    ) -> bool
    where
        S: FnOnce(Stream) + Send + 'static,
        L: FnOnce() + Clone + Send + 'static,
    {
        let (tcp, peer, mode) = connection;
        let acceptor = acceptor.filter(|_| mode != PortMode::Plain);
        let moves = acceptor.is_some() && self.arbiter.is_some();
        let here = match (&self.arbiter, moves) {
            (Some(arbiter), true) => arbiter.clone(),
            _ => session.clone(),
        };
        let (me, log) = (self.clone(), log.clone());
        here.spawn(async move {
            let stream = match me.set_up(tcp, peer, mode, acceptor, &log).await {
                Some(stream) => stream,
                None => return lost(),
            };
            if !moves {
                return start(stream);
            }
            let parked = match stream.park() {
                Ok(parked) => parked,
                Err(error) => {
                    debug!(log, "connection lost before its session started"; "peer" => %peer, "error" => %error);
                    return lost();
                }
            };
            let resumed = lost.clone();
            let handed = session.spawn(async move {
                match parked.resume() {
                    Ok(stream) => start(stream),
                    Err(error) => {
                        debug!(log, "connection lost before its session started"; "peer" => %peer, "error" => %error);
                        resumed();
                    }
                }
            });
            if !handed {
                lost();
            }
        })
    }

    /// The stream `tcp` becomes, or `None` (logged) if it did not, or the node stopped first.
    async fn set_up(
        &self,
        tcp: std::net::TcpStream,
        peer: SocketAddr,
        mode: PortMode,
        acceptor: Option<TlsAcceptor>,
        log: &Logger,
    ) -> Option<Stream> {
        let tcp = match TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(error) => {
                debug!(log, "connection lost before its session started"; "peer" => %peer, "error" => %error);
                return None;
            }
        };
        let accepted = tokio::select! {
            accepted = accept::accept(tcp, mode, acceptor, &self.places) => accepted,
            () = self.stop.cancelled() => {
                debug!(log, "closing a connection still setting up: the node is stopping"; "peer" => %peer);
                return None;
            }
        };
        match accepted {
            Ok(stream) => Some(stream),
            Err(error) => {
                self.log_failure(peer, &error, log);
                None
            }
        }
    }

    /// Log why a connection did not set up TLS: a close before a word at debug level (health
    /// checks, scanners), the rest at warning level at most once per 10 s.
    fn log_failure(&self, peer: SocketAddr, error: &AcceptError, log: &Logger) {
        let quiet = match error {
            AcceptError::Closed => None,
            _ => self.failures.warning(),
        };
        match quiet {
            Some(quiet) => {
                warn!(log, "closing a connection that did not set up TLS (at most one such warning per 10 s)";
                "peer" => %peer, "reason" => %error, "failed_quietly_since" => quiet)
            }
            None => debug!(log, "closing a connection that did not set up TLS";
                "peer" => %peer, "reason" => %error),
        }
    }
}

//! A node's TLS state: the server configs it accepts connections with and the client config
//! it dials its peers with, built from its files, and replaced whole by a reload
//! (`TLS RELOAD`, SIGHUP). New connections take the state current when they arrive; open ones
//! keep the one they were made with. A reload that fails leaves the old state in place, so a
//! mistake in a renewed certificate never takes a running node's TLS away.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use slog::{info, warn, Logger};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::files::{self, TlsError, TlsFiles};

/// Whether clients of the client port must show a certificate from `--tls-ca`
/// (`--tls-auth-clients`, as Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A certificate from the authority is required.
    #[default]
    Required,
    /// A certificate is asked for; one that is shown must be from the authority.
    Optional,
    /// Clients are not asked for a certificate.
    No,
}

impl ClientAuth {
    /// The flag's value (`yes`, `optional`, `no`), as `INFO` and the docs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Required => "yes",
            ClientAuth::Optional => "optional",
            ClientAuth::No => "no",
        }
    }
}

/// What a node's TLS is made of: its files and whether clients must show certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate, key and authority files, read again at every reload.
    pub files: TlsFiles,
    /// `--tls-auth-clients` (only meaningful with an authority).
    pub auth_clients: ClientAuth,
}

/// One consistent set of configs, all made from the same reading of the files.
struct TlsState {
    /// For the client port: asks for client certificates as `--tls-auth-clients` says.
    clients: Arc<ServerConfig>,
    /// For the control plane's port: a peer must show a certificate from the authority.
    peers: Option<Arc<ServerConfig>>,
    /// For dialing peers: the node's own certificate as client certificate, the peer's
    /// checked against the authority. `None` without an authority.
    dial: Option<Arc<ClientConfig>>,
}

/// What a node's connections take their TLS from; clones share it, so a reload reaches every
/// listener and every dialer of the node at once.
#[derive(Clone)]
pub struct TlsContext {
    /// The files and settings the state is made from.
    settings: Arc<TlsSettings>,
    /// The current state, swapped whole by a reload.
    state: Arc<RwLock<Arc<TlsState>>>,
    /// Where reloads are logged, whoever asks for them.
    log: Logger,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The crypto every config of the node is built with: ring, passed to each config explicitly
/// rather than installed as the process's default, so nothing depends on which code ran first.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls refusal as a `TlsError`.
fn refused(error: impl fmt::Display) -> TlsError {
    TlsError::Config(error.to_string())
}

/// A server config showing `identity`, verifying clients against `roots` as `auth` says.
fn server_config(
    identity: &Arc<CertifiedKey>,
    roots: Option<&Arc<RootCertStore>>,
    auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(refused)?;
    let builder = match (roots, auth) {
        (Some(roots), ClientAuth::Required | ClientAuth::Optional) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider);
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(refused)?)
        }
        _ => builder.with_no_client_auth(),
    };
    let resolver = Arc::new(SingleCertAndKey::from(identity.clone()));
    Ok(Arc::new(builder.with_cert_resolver(resolver)))
}

impl TlsState {
    /// Read the files and build every config from them.
    fn load(settings: &TlsSettings) -> Result<TlsState, TlsError> {
        let identity = files::load_identity(&settings.files, &provider())?;
        let roots = match &settings.files.ca {
            Some(ca) => Some(files::load_roots(ca)?),
            None => None,
        };
        let clients = server_config(&identity, roots.as_ref(), settings.auth_clients)?;
        let peers = match &roots {
            Some(roots) => Some(server_config(&identity, Some(roots), ClientAuth::Required)?),
            None => None,
        };
        let dial = match roots {
            Some(roots) => {
                let config = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(refused)?
                    .with_root_certificates(roots)
                    .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity)));
                Some(Arc::new(config))
            }
            None => None,
        };
        Ok(TlsState {
            clients,
            peers,
            dial,
        })
    }
}

impl TlsContext {
    /// Read the files of `settings`; fails, naming the file, if any cannot be used. Reloads
    /// are logged to `log`.
    pub fn load(settings: TlsSettings, log: &Logger) -> Result<TlsContext, TlsError> {
        let state = TlsState::load(&settings)?;
        Ok(TlsContext {
            settings: Arc::new(settings),
            state: Arc::new(RwLock::new(Arc::new(state))),
            log: log.clone(),
        })
    }

    /// The state now. A poisoned lock still holds a whole state (it is only ever replaced
    /// whole), so it is used as it is.
    fn current(&self) -> Arc<TlsState> {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Read the files again and, if every one can be used, make them the state new
    /// connections take; otherwise keep the old state and answer why. Logged either way,
    /// with what asked for it (`by`: `TLS RELOAD`, `SIGHUP`).
    pub fn reload(&self, by: &'static str) -> Result<(), TlsError> {
        let (files, log) = (&self.settings.files, &self.log);
        match TlsState::load(&self.settings) {
            Ok(state) => {
                let state = Arc::new(state);
                match self.state.write() {
                    Ok(mut current) => *current = state,
                    Err(poisoned) => *poisoned.into_inner() = state,
                }
                info!(log, "TLS certificates reloaded; new connections use them"; "by" => by,
                    "cert" => %files.cert.display(), "key" => %files.key.display(),
                    "ca" => files.ca.as_ref().map(|ca| ca.display().to_string()));
                Ok(())
            }
            Err(error) => {
                warn!(log, "TLS reload failed; keeping the certificates in use";
                    "by" => by, "error" => %error);
                Err(error)
            }
        }
    }

    /// What the client port accepts TLS connections with now.
    pub fn client_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().clients.clone())
    }

    /// What the control plane accepts its peers with now (a certificate from the authority
    /// required); `None` without an authority.
    pub fn peer_acceptor(&self) -> Option<TlsAcceptor> {
        self.current().peers.clone().map(TlsAcceptor::from)
    }

    /// What the node dials its peers with now; `None` without an authority to check them by.
    pub fn connector(&self) -> Option<TlsConnector> {
        self.current().dial.clone().map(TlsConnector::from)
    }

    /// The files and settings.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Whether client-port clients must show a certificate, as it is in force: without an
    /// authority, none is asked for.
    pub fn auth_clients(&self) -> ClientAuth {
        match self.settings.files.ca {
            Some(_) => self.settings.auth_clients,
            None => ClientAuth::No,
        }
    }
}

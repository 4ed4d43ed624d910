//! TLS for the clients (`kvcli`, `kvbench`, the client library): the flags they share, and the
//! rustls client configuration those flags describe.
//!
//! A client trusts the certificate authority named by `--tls-ca` (redis-cli's `--cacert`) and
//! checks that the server's certificate names the host it dials (or `--sni`; an IP address is
//! a name too). `--insecure` checks nothing, for a first try against a node with a
//! self-signed certificate, and says so. With `--tls-cert` and `--tls-key` the client proves
//! who it is to a node that asks (mutual TLS, `--tls-auth-clients`).
//!
//! Everything that can be wrong in the files is found when the configuration is built,
//! before anything is dialed, and reported as one [`TlsError`] naming the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;

/// What can be wrong with the TLS options, their files, or a handshake.
#[derive(Debug, Error)]
pub enum TlsError {
    /// TLS was asked for with nothing to check the server against.
    #[error(
        "--tls needs --tls-ca FILE, the certificate authority that signed the server's \
         certificate (or --insecure, which checks nothing)"
    )]
    NoCa,
    /// A client key without its certificate, or the other way round.
    #[error("--tls-cert and --tls-key go together: give both, or neither")]
    HalfAClientIdentity,
    /// A PEM file that cannot be read or parsed.
    #[error("cannot read {what} from {}: {reason}", path.display())]
    Pem {
        /// What the file should hold ("the CA certificate", "the client key" ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// A CA file whose certificates rustls refuses as trust anchors.
    #[error("{} holds no usable CA certificate: {reason}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A client certificate and key that rustls refuses (a key that does not match ...).
    #[error("cannot use {} with {}: {reason}", cert.display(), key.display())]
    BadClientIdentity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A server name that is neither a DNS name nor an IP address.
    #[error("{name:?} cannot be a TLS server name (give a DNS name or an IP address, --sni)")]
    ServerName {
        /// The name given or taken from the address.
        name: String,
    },
    /// rustls refuses the configuration itself (the provider lacks something).
    #[error("cannot set up TLS: {0}")]
    Config(String),
    /// The handshake with the server failed: its certificate is not trusted, it asked for a
    /// client certificate, it does not speak TLS ...
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// Who was dialed.
        addr: String,
        /// Why it failed.
        reason: String,
    },
}

/// The TLS flags of the clients, shared by `kvcli` and `kvbench` (flattened into theirs).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Talk TLS to the node (a node started with --tls-cert, on its TLS port) or to Redis
    /// (its tls-port). Needs --tls-ca, or --insecure.
    #[arg(long)]
    pub tls: bool,
    /// The certificate authority (PEM) that signed the server's certificate: the only one
    /// trusted (as redis-cli's --cacert).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for a server that asks clients for one (mutual TLS);
    /// with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry, and that is sent to it (SNI) [default:
    /// the host dialed; an IP address is checked as one].
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub sni: Option<String>,
    /// INSECURE: accept any server certificate, signed by anyone, for any name. The traffic
    /// is encrypted but anyone on the path can pretend to be the server and read it. For a
    /// first try only; give --tls-ca instead.
    #[arg(long, requires = "tls", conflicts_with = "tls_ca")]
    pub insecure: bool,
}

impl TlsArgs {
    /// The client TLS these flags ask for, as a client program (`program`, for the messages)
    /// takes it: the `--insecure` warning, or the error as one line on stderr, whereupon the
    /// program exits with the status this answers (2, the clients' for a connection that
    /// cannot be made).
    pub fn for_program(&self, program: &str) -> Result<Option<ClientTls>, ExitCode> {
        if let Some(warning) = self.warning() {
            eprintln!("{program}: {warning}");
        }
        self.client_tls().map_err(|error| {
            eprintln!("{program}: {error}");
            ExitCode::from(2)
        })
    }

    /// What a client should say on stderr before it connects: that `--insecure` checks
    /// nothing, so that nobody mistakes it for a secure connection.
    fn warning(&self) -> Option<&'static str> {
        (self.tls && self.insecure).then_some(
            "warning: --insecure: the server's certificate is not checked; anyone on the path \
             can pretend to be the server",
        )
    }

    /// The client TLS these flags ask for: `None` without `--tls`.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, TlsError> {
        if !self.tls {
            return Ok(None);
        }
        let trust = match (&self.tls_ca, self.insecure) {
            (Some(ca), _) => Trust::Ca(ca.clone()),
            (None, true) => Trust::Anyone,
            (None, false) => return Err(TlsError::NoCa),
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => return Err(TlsError::HalfAClientIdentity),
        };
        let tls = ClientTls::new(trust, identity)?;
        match &self.sni {
            Some(name) => Ok(Some(tls.with_server_name(name)?)),
            None => Ok(Some(tls)),
        }
    }
}

/// Which servers a client believes.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Those whose certificate the CA in this PEM file signed.
    Ca(PathBuf),
    /// Anyone at all (`--insecure`).
    Anyone,
}

/// A client's TLS: the rustls configuration every connection shares, and the server name to
/// check when it is not the host dialed. Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    /// Trust, client identity, protocol versions.
    config: Arc<ClientConfig>,
    /// `--sni`, if given.
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// A configuration trusting `trust`, proving itself with `identity` (a certificate file
    /// and its key file) to servers that ask. The provider is ring, named here rather than
    /// taken from a process default that nothing installs.
    pub fn new(trust: Trust, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Config(error.to_string()))?;
        let builder = match trust {
            Trust::Ca(path) => builder.with_root_certificates(roots(&path)?),
            Trust::Anyone => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider))),
        };
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert, "the client certificate")?;
                let private = PrivateKeyDer::from_pem_file(key)
                    .map_err(|error| pem_error("the client key", key, error))?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|error| TlsError::BadClientIdentity {
                        cert: cert.to_path_buf(),
                        key: key.to_path_buf(),
                        reason: error.to_string(),
                    })?
            }
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Check every server's certificate for `name` (and send it as SNI) instead of the host
    /// dialed: a node dialed by an address its certificate does not carry.
    pub fn with_server_name(mut self, name: &str) -> Result<ClientTls, TlsError> {
        self.server_name = Some(server_name(name)?);
        Ok(self)
    }

    /// The configuration connections are made with.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The name to check the certificate of the server at `addr` (`host:port`, `[v6]:port`)
    /// for: `--sni`, or the host.
    pub fn server_name_for(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => server_name(host_of(addr)),
        }
    }

    /// A new rustls client connection to the server at `addr`, not yet shaken hands. Its
    /// outgoing buffer is unbounded: a pipeline of any size is encrypted whole and written by
    /// the caller, as the plain path writes it.
    pub fn connection(&self, addr: &str) -> Result<rustls::ClientConnection, TlsError> {
        let name = self.server_name_for(addr)?;
        let mut connection = rustls::ClientConnection::new(self.config(), name)
            .map_err(|error| TlsError::Config(error.to_string()))?;
        connection.set_buffer_limit(None);
        Ok(connection)
    }
}

/// The host of `host:port` or `[v6]:port` (the whole of it when it has no port).
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host,
        _ => addr,
    }
}

/// `name` as a server name: a DNS name, or an IP address (rustls's `ServerName::IpAddress`).
fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName {
        name: name.to_string(),
    })
}

/// Every certificate in the PEM file at `path`; none is an error.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| pem_error(what, path, error))?;
    if certs.is_empty() {
        return Err(pem_error(
            what,
            path,
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(certs)
}

/// The trust store of `--tls-ca`: every certificate of the file.
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "the CA certificate")? {
        roots.add(cert).map_err(|error| TlsError::BadCa {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    }
    Ok(roots)
}

/// A PEM error as a `TlsError` naming the file, in words a user can act on.
fn pem_error(what: &'static str, path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    use rustls::pki_types::pem::Error;
    let reason = match error {
        Error::Io(error) => error.to_string(),
        Error::NoItemsFound => "no PEM section of that kind in it".to_string(),
        other => format!("not valid PEM ({other})"),
    };
    TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    }
}

/// `--insecure`'s verifier: any certificate, for any name, is accepted; the handshake's
/// signatures are still checked, so the connection is at least with the key holder of the
/// certificate shown.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! The PEM files a node's TLS is made of (`--tls-cert`, `--tls-key`, `--tls-ca`), read into
//! what rustls takes, with an error that names the file and what is wrong with it: an
//! operator who mistyped a path or swapped the certificate and the key must learn which from
//! one line, at start-up or at `TLS RELOAD`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// Where a node's certificate, key and trusted authority are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), leaf first: shown to clients and, as a client
    /// certificate, to the peers it dials.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The authority (PEM, one or more certificates) that client certificates and peers'
    /// certificates must chain to; `None`: clients are not asked for certificates, and the
    /// node dials no peer over TLS.
    pub ca: Option<PathBuf>,
}

/// Why a TLS file could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing or unreadable.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not PEM (for example DER, or garbled).
    #[error("{file} is not a PEM file: {why}")]
    NotPem {
        /// The file.
        file: PathBuf,
        /// What the PEM parser found.
        why: String,
    },
    /// A PEM file with no `CERTIFICATE` section.
    #[error("{file} holds no certificate (no BEGIN CERTIFICATE section)")]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// A PEM file with no private key section.
    #[error("{file} holds no private key (no BEGIN PRIVATE KEY section)")]
    NoKey {
        /// The file.
        file: PathBuf,
    },
    /// The key cannot be used (an algorithm the ring provider does not have, or damaged).
    #[error("{file} holds a key that cannot be used: {why}")]
    BadKey {
        /// The file.
        file: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("the key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate of the authority file cannot be a trust anchor.
    #[error("{file} holds a certificate that cannot be trusted as an authority: {why}")]
    BadAuthority {
        /// The file.
        file: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// rustls refused the configuration built from the files.
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

/// A PEM parse error as a `TlsError` about `file`: an unreadable file is `Read`, anything
/// else is not PEM.
fn pem_error(file: &Path, error: pem::Error) -> TlsError {
    match error {
        pem::Error::Io(source) => TlsError::Read {
            file: file.to_path_buf(),
            source,
        },
        pem::Error::NoItemsFound => TlsError::NoCertificate {
            file: file.to_path_buf(),
        },
        other => TlsError::NotPem {
            file: file.to_path_buf(),
            why: other.to_string(),
        },
    }
}

/// Read the file first, so that a missing file reads as missing rather than as "no items".
fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// Every certificate in the PEM file `file`, in order; at least one.
pub fn load_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(file, e))?;
    match certs.is_empty() {
        true => Err(TlsError::NoCertificate {
            file: file.to_path_buf(),
        }),
        false => Ok(certs),
    }
}

/// The first private key in the PEM file `file`.
pub fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoKey {
            file: file.to_path_buf(),
        },
        other => pem_error(file, other),
    })
}

/// The certificate of `files` with its key, checked to belong together, ready to be shown to
/// clients and peers.
pub fn load_identity(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            file: files.key.clone(),
            why: e.to_string(),
        })?;
    let identity = CertifiedKey::new(certs, signing);
    match identity.keys_match() {
        Ok(()) => Ok(Arc::new(identity)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        // The provider cannot tell (no public key to compare): the handshake will.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(identity))
        }
        Err(other) => Err(TlsError::NotPem {
            file: files.cert.clone(),
            why: other.to_string(),
        }),
    }
}

/// The authorities in the PEM file `file`, as a trust store.
pub fn load_roots(file: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(file)? {
        roots.add(cert).map_err(|e| TlsError::BadAuthority {
            file: file.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

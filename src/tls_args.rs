//! `kvnode`'s TLS flags (`--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-port`,
//! `--tls-auth-clients`, named as Redis names its settings) and what they become. The files are
//! read when the node starts (and again at `TLS RELOAD` or SIGHUP); the flags that cannot work
//! together are refused here, before anything starts. docs/security.md is the guide.

use std::path::PathBuf;

use clap::ValueEnum;
use kv_actors::tls::{ClientAuth, TlsFiles, TlsSettings};

/// `--tls-auth-clients`: whether clients of the client port must show a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthClients {
    /// A certificate from --tls-ca is required.
    Yes,
    /// No certificate is asked for.
    No,
    /// A certificate is asked for; one that is shown must be from --tls-ca.
    Optional,
}

impl From<AuthClients> for ClientAuth {
    fn from(auth: AuthClients) -> ClientAuth {
        match auth {
            AuthClients::Yes => ClientAuth::Required,
            AuthClients::No => ClientAuth::No,
            AuthClients::Optional => ClientAuth::Optional,
        }
    }
}

/// The TLS flags of a serving node.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// This node's certificate (PEM, leaf first): with it the client port speaks TLS only,
    /// unless --tls-port adds a TLS port beside it; the replication links and the control
    /// plane speak TLS too. Needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// The certificate authority (PEM) that clients' certificates (see --tls-auth-clients)
    /// and peers' certificates (replicas, cluster members) must be signed by. Required when
    /// the node has peers.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// A TLS port beside the plain --listen port (as Redis's tls-port), on --listen's
    /// address; 0 lets the system pick one (logged). Without it, --tls-cert makes the client
    /// port TLS only.
    #[arg(long, value_name = "PORT")]
    pub tls_port: Option<u16>,

    /// Whether clients must show a certificate from --tls-ca: yes (the default with
    /// --tls-ca), no, or optional.
    #[arg(long, value_enum, value_name = "yes|no|optional")]
    pub tls_auth_clients: Option<AuthClients>,
}

/// A node's TLS, once the flags are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The files and whether clients must show certificates.
    pub settings: TlsSettings,
    /// `--tls-port`: `None` when the client port itself speaks TLS only.
    pub port: Option<u16>,
}

/// A combination of TLS flags that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error("--tls-cert needs --tls-key (the certificate's private key)")]
    CertWithoutKey,
    #[error("--tls-key needs --tls-cert (the certificate it is the key of)")]
    KeyWithoutCert,
    #[error("--{0} needs --tls-cert and --tls-key")]
    WithoutCert(&'static str),
    #[error("--tls-auth-clients {0} needs --tls-ca to check client certificates against")]
    AuthWithoutCa(&'static str),
    #[error(
        "a node with TLS and peers (--replica, --peers, --role cluster) needs --tls-ca: \
         it checks every peer's certificate against it"
    )]
    PeersWithoutCa,
}

impl TlsArgs {
    /// The flags checked: `None` without TLS. A node that dials peers (`has_peers`) needs an
    /// authority to check their certificates by.
    pub fn resolve(self, has_peers: bool) -> Result<Option<TlsConfig>, TlsConfigError> {
        let (cert, key) = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(TlsConfigError::CertWithoutKey),
            (None, Some(_)) => return Err(TlsConfigError::KeyWithoutCert),
            (None, None) => {
                return match (self.tls_port, &self.tls_ca, self.tls_auth_clients) {
                    (Some(_), _, _) => Err(TlsConfigError::WithoutCert("tls-port")),
                    (_, Some(_), _) => Err(TlsConfigError::WithoutCert("tls-ca")),
                    (_, _, Some(_)) => Err(TlsConfigError::WithoutCert("tls-auth-clients")),
                    (None, None, None) => Ok(None),
                }
            }
        };
        let auth_clients = match (self.tls_auth_clients, &self.tls_ca) {
            (Some(AuthClients::Yes), None) => return Err(TlsConfigError::AuthWithoutCa("yes")),
            (Some(AuthClients::Optional), None) => {
                return Err(TlsConfigError::AuthWithoutCa("optional"))
            }
            (Some(auth), _) => auth.into(),
            // As Redis: clients must show a certificate once there is an authority.
            (None, Some(_)) => ClientAuth::Required,
            (None, None) => ClientAuth::No,
        };
        if has_peers && self.tls_ca.is_none() {
            return Err(TlsConfigError::PeersWithoutCa);
        }
        Ok(Some(TlsConfig {
            settings: TlsSettings {
                files: TlsFiles {
                    cert,
                    key,
                    ca: self.tls_ca,
                },
                auth_clients,
            },
            port: self.tls_port,
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        tls: TlsArgs,
    }

    fn resolve(flags: &[&str], has_peers: bool) -> Result<Option<TlsConfig>, TlsConfigError> {
        let args = std::iter::once("kvnode").chain(flags.iter().copied());
        Flags::parse_from(args).tls.resolve(has_peers)
    }

    #[test]
    fn no_flags_is_no_tls() {
        assert_eq!(resolve(&[], true), Ok(None));
    }

    #[test]
    fn a_certificate_needs_its_key_and_the_key_its_certificate() {
        let cert_only = resolve(&["--tls-cert", "n.crt"], false);
        assert_eq!(cert_only, Err(TlsConfigError::CertWithoutKey));
        let key_only = resolve(&["--tls-key", "n.key"], false);
        assert_eq!(key_only, Err(TlsConfigError::KeyWithoutCert));
        let port_only = resolve(&["--tls-port", "6380"], false);
        assert_eq!(port_only, Err(TlsConfigError::WithoutCert("tls-port")));
        let ca_only = resolve(&["--tls-ca", "ca.crt"], false);
        assert_eq!(ca_only, Err(TlsConfigError::WithoutCert("tls-ca")));
    }

    #[test]
    fn clients_must_show_a_certificate_by_default_once_there_is_an_authority() {
        let pair = ["--tls-cert", "n.crt", "--tls-key", "n.key"];
        let without_ca = resolve(&pair, false).unwrap().unwrap();
        assert_eq!(without_ca.settings.auth_clients, ClientAuth::No);
        assert_eq!(without_ca.port, None);
        let with_ca = [&pair[..], &["--tls-ca", "ca.crt"]].concat();
        let config = resolve(&with_ca, false).unwrap().unwrap();
        assert_eq!(config.settings.auth_clients, ClientAuth::Required);
        let optional = [&with_ca[..], &["--tls-auth-clients", "optional"]].concat();
        let config = resolve(&optional, false).unwrap().unwrap();
        assert_eq!(config.settings.auth_clients, ClientAuth::Optional);
        let yes_without_ca = [&pair[..], &["--tls-auth-clients", "yes"]].concat();
        assert!(resolve(&yes_without_ca, false).is_err());
        let no_without_ca = [&pair[..], &["--tls-auth-clients", "no", "--tls-port", "0"]].concat();
        assert_eq!(
            resolve(&no_without_ca, false).unwrap().unwrap().port,
            Some(0)
        );
    }

    #[test]
    fn peers_over_tls_need_an_authority() {
        let pair = ["--tls-cert", "n.crt", "--tls-key", "n.key"];
        assert_eq!(resolve(&pair, true), Err(TlsConfigError::PeersWithoutCa));
        let with_ca = [&pair[..], &["--tls-ca", "ca.crt"]].concat();
        assert!(resolve(&with_ca, true).is_ok());
    }
}

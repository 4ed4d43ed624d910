//! Certificates made at run time for the TLS tests (rcgen), so no key is ever checked in and
//! none expires under a test: a certificate authority, and certificates it signs for nodes and
//! clients, written as PEM files into a test's temporary directory.
//!
//! Every leaf certificate names `localhost` and `127.0.0.1` and may serve as a server's and as
//! a client's certificate: a node uses one certificate for its port and for dialing its peers
//! (the replication link and the control plane), as Redis does with `tls-cert-file`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority for one test: signs the certificates of the nodes and clients that
/// should trust each other. Two `TestCa`s give two worlds that do not.
pub struct TestCa {
    /// The CA's name, also the stem of its files.
    name: String,
    /// The CA's certificate and signing key.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA called `name`, with a fresh key.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa {
            name: name.to_string(),
            issuer,
        }
    }

    /// The CA's certificate as PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA's certificate to `dir/<name>.crt` and answers the path (what `--tls-ca`,
    /// `redis-cli --cacert` and a client's trust store take).
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.crt", self.name));
        fs::write(&path, self.pem()).expect("write the CA certificate");
        path
    }

    /// A certificate for `name` (its common name and the stem of its files), valid for
    /// `localhost` and `127.0.0.1`, for server and client use, signed by this CA and written
    /// to `dir/<name>.crt` and `dir/<name>.key`.
    pub fn issue(&self, dir: &Path, name: &str) -> CertFiles {
        self.issue_for(dir, name, &["localhost", "127.0.0.1"])
    }

    /// As [`TestCa::issue`], but valid only for the host names and IP addresses `sans`.
    pub fn issue_for(&self, dir: &Path, name: &str, sans: &[&str]) -> CertFiles {
        let sans = sans.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(sans).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("certificate key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the certificate");
        let files = CertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        fs::write(&files.cert, cert.pem()).expect("write the certificate");
        fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}

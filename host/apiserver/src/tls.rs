//! The server's TLS identity: a certificate authority (made when the server is built, or kept in
//! its state directory), and a serving certificate it signs for the listening address; the same
//! authority verifies client certificates. Clients trust the authority (the kubeconfig's
//! `certificate-authority-data`, `kube::Config::root_cert`).
//!
//! TLS is what lets kubectl authenticate at all: client-go reads a kubeconfig's credentials only
//! when the server URL is `https` ("only try to read the auth information if we are secure"), and
//! kube-apiserver serves authenticated requests only over TLS.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// ALPN protocols offered: HTTP/1.1 only (see [`crate::connection`]).
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// The TLS identity cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A key or certificate could not be generated.
    #[error("generating a key or certificate")]
    Generate(#[source] rcgen::Error),
    /// rustls refused the configuration.
    #[error("configuring TLS")]
    Config(#[source] rustls::Error),
    /// The verifier of client certificates could not be made.
    #[error("configuring the verification of client certificates")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
    /// A file of the kept authority cannot be read or written.
    #[error("reading or writing {path}")]
    StateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kept authority's key file holds no private key rcgen reads (never overwritten).
    #[error("{key} is not a private key in PEM")]
    StoredKey {
        /// The key's file.
        key: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: rcgen::Error,
    },
    /// The kept authority's certificate file holds no X.509 certificate in PEM (never
    /// overwritten).
    #[error("{cert} is not an X.509 certificate in PEM")]
    StoredCertificate {
        /// The certificate's file.
        cert: PathBuf,
        /// Why it cannot be read: the PEM, its block's label or the certificate inside.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The kept certificate is not a certificate authority's: its basic constraints do not say
    /// `CA:TRUE` (never overwritten).
    #[error("{cert} is not a certificate authority's certificate")]
    NotAuthority {
        /// The certificate's file.
        cert: PathBuf,
    },
    /// The kept key is not the kept certificate's (never overwritten).
    #[error("{key} is not the private key of {cert}")]
    KeyMismatch {
        /// The certificate's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
    },
    /// One file of the kept authority is there without the other (never overwritten).
    #[error("{present} is there without {missing}")]
    Incomplete {
        /// The file found.
        present: PathBuf,
        /// The file missing.
        missing: PathBuf,
    },
}

/// The authority's certificate in a state directory (PEM).
pub const CERT_FILE: &str = "ca.crt";
/// Its private key there (PEM PKCS#8, mode 0600).
pub const KEY_FILE: &str = "ca.key";

struct Inner {
    /// The CA's name, key identifier and key: what signs.
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A certificate authority that signs the server's serving certificates and the client
/// certificates of approved CertificateSigningRequests. Cloning shares it; a state directory
/// keeps it ([`Authority::open`]), or pass one to [`crate::ApiServerBuilder::authority`], to keep
/// clients' trust across restarts. `Debug` does not show the key.
#[derive(Clone)]
pub struct Authority(Arc<Inner>);

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authority(<key redacted>)")
    }
}

impl Authority {
    /// A new authority: a P-256 key and a self-signed CA certificate.
    ///
    /// # Errors
    /// [`TlsError::Generate`] when the key or certificate cannot be made.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(TlsError::Generate)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Generate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "capstan-apiserver-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
        Ok(Self(Arc::new(Inner {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })))
    }

    /// The authority kept in `state_dir` ([`CERT_FILE`] and [`KEY_FILE`]), made and written there
    /// at the first start, so that clients' trust and the client certificates it issued outlive
    /// a restart, as a cluster's CA does; a new one for each process without a state directory.
    ///
    /// # Errors
    /// [`TlsError::StateFile`] when a file cannot be read or written; [`TlsError::StoredKey`],
    /// [`TlsError::StoredCertificate`], [`TlsError::NotAuthority`] or [`TlsError::KeyMismatch`]
    /// when the files are not a CA certificate and its key, [`TlsError::Incomplete`] when only
    /// one is there; the files are never overwritten.
    pub fn open(state_dir: Option<&Path>) -> Result<Self, TlsError> {
        let Some(dir) = state_dir else {
            return Self::generate();
        };
        std::fs::create_dir_all(dir).map_err(|source| TlsError::StateFile {
            path: dir.to_owned(),
            source,
        })?;
        let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        let read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TlsError::StateFile {
                path: path.to_owned(),
                source,
            }),
        };
        match (read(&cert)?, read(&key)?) {
            (Some(cert_pem), Some(key_pem)) => Self::from_pem(&cert_pem, &key_pem, &cert, &key),
            (None, None) => {
                let authority = Self::generate()?;
                let write = |path: &Path, text: &str| {
                    crate::persist::write_private(path, text.as_bytes()).map_err(|source| {
                        TlsError::StateFile {
                            path: path.to_owned(),
                            source,
                        }
                    })
                };
                write(&key, &authority.0.issuer.key().serialize_pem())?;
                write(&cert, &authority.0.pem)?;
                Ok(authority)
            }
            (Some(_), None) => Err(TlsError::Incomplete {
                present: cert,
                missing: key,
            }),
            (None, Some(_)) => Err(TlsError::Incomplete {
                present: key,
                missing: cert,
            }),
        }
    }

    /// An authority from its certificate and key (PEM), read from the files `cert` and `key`,
    /// when the certificate is a CA's and the key its own.
    fn from_pem(cert_pem: &str, key_pem: &str, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        use x509_parser::prelude::FromDer;
        let unreadable =
            |source: Box<dyn std::error::Error + Send + Sync>| TlsError::StoredCertificate {
                cert: cert.to_owned(),
                source,
            };
        let pair = KeyPair::from_pem(key_pem).map_err(|source| TlsError::StoredKey {
            key: key.to_owned(),
            source,
        })?;
        let block = pem::parse(cert_pem).map_err(|e| unreadable(e.into()))?;
        if block.tag() != "CERTIFICATE" {
            return Err(unreadable(
                format!(
                    "its PEM block is a {:?}, not a \"CERTIFICATE\"",
                    block.tag()
                )
                .into(),
            ));
        }
        let der = CertificateDer::from(block.contents().to_vec());
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|e| unreadable(e.into()))?;
        if !parsed.is_ca() {
            return Err(TlsError::NotAuthority {
                cert: cert.to_owned(),
            });
        }
        if parsed.public_key().raw
            != rcgen::PublicKeyData::subject_public_key_info(&pair).as_slice()
        {
            return Err(TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, pair).map_err(|e| unreadable(Box::new(e)))?;
        Ok(Self(Arc::new(Inner {
            issuer,
            der,
            pem: cert_pem.to_owned(),
        })))
    }

    /// The authority's certificate, PEM-encoded (what a kubeconfig carries, base64-encoded again).
    #[must_use]
    pub fn certificate_pem(&self) -> &str {
        &self.0.pem
    }

    /// The authority's certificate, DER-encoded (a root for `kube::Config::root_cert` or a rustls
    /// `RootCertStore`).
    #[must_use]
    pub fn certificate_der(&self) -> &[u8] {
        &self.0.der
    }

    /// A rustls server configuration with a fresh serving certificate for `localhost`, the
    /// loopback addresses and the IP of `addr`, signed by this authority.
    ///
    /// # Errors
    /// [`TlsError`] when the certificate cannot be made or rustls refuses it.
    pub fn server_config(&self, addr: SocketAddr) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut names = vec![
            "localhost".to_owned(),
            IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
            IpAddr::V6(Ipv6Addr::LOCALHOST).to_string(),
        ];
        let ip = addr.ip().to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
        let key = KeyPair::generate().map_err(TlsError::Generate)?;
        let mut params = CertificateParams::new(names).map_err(TlsError::Generate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "capstan-apiserver");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = &self.0.issuer;
        let cert = params.signed_by(&key, issuer).map_err(TlsError::Generate)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A client may present a certificate this authority signed for client authentication
        // (`--client-ca-file`: the cluster CA, as kubeadm sets it up); one it did not sign fails
        // the handshake. Without one, the request authenticates otherwise.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.0.der.clone()).map_err(TlsError::Config)?;
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(TlsError::ClientVerifier)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(clients)
            .with_single_cert(vec![cert.der().clone(), self.0.der.clone()], key)
            .map_err(TlsError::Config)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A certificate for `public_key` as `params` describe it, signed by this authority,
    /// PEM-encoded: what the signer of an approved CertificateSigningRequest issues.
    ///
    /// # Errors
    /// [`TlsError::Generate`] when rcgen cannot make it.
    pub fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<String, TlsError> {
        let issuer = &self.0.issuer;
        params
            .signed_by(public_key, issuer)
            .map(|c| c.pem())
            .map_err(TlsError::Generate)
    }

    /// A rustls client configuration that trusts only this authority (for raw HTTPS clients;
    /// kube clients use [`crate::RunningServer::client`]).
    ///
    /// # Errors
    /// [`TlsError::Config`] when rustls refuses the certificate.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.0.der.clone()).map_err(TlsError::Config)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_authority_is_the_same_after_a_restart_and_bad_files_stay_as_they_are() {
        let parent = tempfile::tempdir().expect("dir");
        // A state directory not yet there is made.
        let dir = parent.path().join("state");
        let dir = &dir;
        let first = Authority::open(Some(dir)).expect("made");
        let again = Authority::open(Some(dir)).expect("read");
        assert_eq!(first.certificate_pem(), again.certificate_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another authority's key with this certificate is refused, and nothing is rewritten.
        let other = tempfile::tempdir().expect("dir");
        Authority::open(Some(other.path())).expect("made");
        let foreign = std::fs::read(other.path().join(KEY_FILE)).expect("key");
        std::fs::write(dir.join(KEY_FILE), &foreign).expect("write");
        assert!(matches!(
            Authority::open(Some(dir)),
            Err(TlsError::KeyMismatch { .. })
        ));
        assert_eq!(std::fs::read(dir.join(KEY_FILE)).expect("key"), foreign);
        std::fs::remove_file(dir.join(KEY_FILE)).expect("remove");
        assert!(matches!(
            Authority::open(Some(dir)),
            Err(TlsError::Incomplete { .. })
        ));
    }

    #[test]
    fn kept_files_that_are_not_an_authority_say_what_is_wrong_and_stay_as_they_are() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = (dir.path().join(CERT_FILE), dir.path().join(KEY_FILE));
        let refused = |cert_pem: &str, key_pem: &str| {
            std::fs::write(&cert, cert_pem).expect("write");
            std::fs::write(&key, key_pem).expect("write");
            let error = Authority::open(Some(dir.path())).expect_err("refused");
            assert_eq!(std::fs::read_to_string(&cert).expect("cert"), cert_pem);
            assert_eq!(std::fs::read_to_string(&key).expect("key"), key_pem);
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            (error, text)
        };
        let pair = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["example.com".to_string()])
            .expect("params")
            .self_signed(&pair)
            .expect("certificate");
        let authority = Authority::generate().expect("authority");
        let authority_key = authority.0.issuer.key().serialize_pem();

        let (error, text) = refused(authority.certificate_pem(), "not a key");
        assert!(matches!(error, TlsError::StoredKey { .. }), "{text}");
        assert!(
            text.contains("ca.key is not a private key in PEM"),
            "{text}"
        );

        let (error, text) = refused("not a certificate", &authority_key);
        assert!(
            matches!(error, TlsError::StoredCertificate { .. }),
            "{text}"
        );
        assert!(
            text.contains("ca.crt is not an X.509 certificate in PEM: "),
            "{text}"
        );

        let (error, text) = refused(&authority_key, &authority_key);
        assert!(
            matches!(error, TlsError::StoredCertificate { .. }),
            "{text}"
        );
        assert!(
            text.contains(r#"its PEM block is a "PRIVATE KEY""#),
            "{text}"
        );

        let garbled = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let (error, text) = refused(garbled, &authority_key);
        assert!(
            matches!(error, TlsError::StoredCertificate { .. }),
            "{text}"
        );

        let (error, text) = refused(&leaf.pem(), &pair.serialize_pem());
        assert!(matches!(error, TlsError::NotAuthority { .. }), "{text}");
        assert!(
            text.contains("ca.crt is not a certificate authority's certificate"),
            "{text}"
        );

        let (error, text) = refused(authority.certificate_pem(), &pair.serialize_pem());
        assert!(matches!(error, TlsError::KeyMismatch { .. }), "{text}");
        assert!(text.contains("ca.key is not the private key of "), "{text}");

        // The authority's own files are taken.
        std::fs::write(&cert, authority.certificate_pem()).expect("write");
        std::fs::write(&key, &authority_key).expect("write");
        let kept = Authority::open(Some(dir.path())).expect("kept");
        assert_eq!(kept.certificate_der(), authority.certificate_der());
    }

    #[test]
    fn a_serving_certificate_is_signed_for_the_address() {
        let authority = Authority::generate().expect("authority");
        assert!(
            authority
                .certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(!format!("{authority:?}").contains("BEGIN"));
        let addr = SocketAddr::from(([10, 1, 2, 3], 6443));
        authority.server_config(addr).expect("server config");
        authority.client_config().expect("client config");
        let other = Authority::generate().expect("authority");
        assert_ne!(other.certificate_der(), authority.certificate_der());
    }
}

//! HTTPS: the listener's certificate, key and (for mutual TLS) client CAs, read from PEM files
//! and swapped whole when the operator asks for a reload.
//!
//! The swap works because a TLS connection keeps the configuration it was accepted with: every
//! accept takes the current [`ServerConfig`], so a reload changes what new handshakes present
//! and verify while connections already open go on untouched.
//!
//! The client side lives here too, once for every Doppel client of a TLS server (the CLI to an
//! `https://` hub, the edge agent to an `mqtts://` hub): [`client_roots`] and
//! [`client_builder`] trust a CA file or the system's roots and name the ring provider, and
//! [`rustls_error`] finds why a handshake failed.

use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ConfigBuilder, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use tokio_rustls::TlsAcceptor;

/// The only protocol the connection loop speaks (hyper's HTTP/1 server). Announcing it lets a
/// client that offers HTTP/2 first settle on HTTP/1.1 during the handshake instead of failing
/// after it.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Where the listener's TLS material lives; read at start and again on every reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, every client must present a certificate one of them
    /// signed (mutual TLS), or the handshake fails.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS files cannot be used. Every message names the file, so that an operator knows which
/// one to fix; none carries a `source()`, so `{:#}` prints the reason once.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    #[error("{} is not valid PEM: {reason}", file.display())]
    NotPem { file: PathBuf, reason: String },
    #[error("{} holds no PEM {what}", file.display())]
    Missing { file: PathBuf, what: &'static str },
    #[error("the key in {} does not fit the certificate in {}: {reason}", key.display(), cert.display())]
    KeyRejected {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{} cannot verify client certificates: {reason}", file.display())]
    ClientCaRejected { file: PathBuf, reason: String },
    #[error("{} holds a CA certificate that cannot be trusted: {reason}", file.display())]
    CaRejected { file: PathBuf, reason: String },
    /// The crypto provider lacks what TLS needs: a build fault, not a file's.
    #[error("the TLS provider is unusable: {0}")]
    Provider(String),
}

/// The listener's current TLS configuration, which [`TlsCertificates::reload`] replaces.
#[derive(Debug)]
pub struct TlsCertificates {
    files: TlsFiles,
    /// Read once per accepted connection, written once per reload: a lock held for the copy
    /// of one `Arc` costs nothing next to a handshake.
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsCertificates {
    /// Reads and checks the files: each certificate parses, the key fits the first one, the
    /// client CAs can verify clients.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(config),
        })
    }

    /// Reads the same files again and, when they are usable, makes new handshakes use them.
    /// When they are not, the configuration in use stays (a half-copied certificate must not
    /// take HTTPS down) and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor with the configuration in force now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
    }
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    // Named explicitly rather than installed process-wide: nothing else can then pick another
    // provider for this listener, and the build stays free of aws-lc.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates(&files.cert)?;
    let key = read_private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Provider(err.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(file) => builder.with_client_cert_verifier(client_verifier(file, provider)?),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|err| TlsError::KeyRejected {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: err.to_string(),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// What a client trusts a server's certificate by: every CA in the PEM file `ca_file`, or,
/// without one, the system's CA certificates. There is deliberately no way to trust nothing:
/// a server with a private CA is reached by naming that CA.
pub fn client_roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(file) => {
            for ca in read_certificates(file)? {
                roots.add(ca).map_err(|err| TlsError::CaRejected {
                    file: file.to_owned(),
                    reason: err.to_string(),
                })?;
            }
        }
        // Unreadable system certificates are skipped, as a browser does; if none is left, the
        // handshake fails with "unknown issuer", and the caller's message says to name a CA.
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(roots)
}

/// A client configuration that verifies the server's certificate chain against `roots` and
/// its name against the one the client dialled, with the ring provider named rather than
/// installed process-wide (which keeps aws-lc out of the build); the caller adds its own
/// certificate, or none.
pub fn client_builder(
    roots: RootCertStore,
) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Provider(err.to_string()))?
        .with_root_certificates(roots))
}

/// The rustls error somewhere in `err`'s chain, if a failed handshake caused it. Handshake
/// failures come as an I/O error around rustls' own, and an I/O error hides what it wraps
/// from `source()`, so both ways down are taken.
pub fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match err.downcast_ref::<std::io::Error>() {
            // The wrapped error itself, which `source()` would skip.
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => err.source(),
        };
    }
    None
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1). The CLI reads its client key
/// with it too.
pub fn read_private_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(file).map_err(|err| pem_error(file, "private key", err))
}

/// Every certificate in a PEM file, in order; at least one. The CLI reads its CA file and
/// client certificate with it too.
pub fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| pem_error(file, "certificate", err))?;
    if chain.is_empty() {
        return Err(TlsError::Missing {
            file: file.to_owned(),
            what: "certificate",
        });
    }
    Ok(chain)
}

fn client_verifier(
    file: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let rejected = |reason: String| TlsError::ClientCaRejected {
        file: file.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for ca in read_certificates(file)? {
        roots.add(ca).map_err(|err| rejected(err.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|err| rejected(err.to_string()))
}

fn pem_error(file: &Path, what: &'static str, err: pem::Error) -> TlsError {
    let file = file.to_owned();
    match err {
        pem::Error::Io(err) => TlsError::Unreadable {
            reason: strip_os_error(&err.to_string()),
            file,
        },
        pem::Error::NoItemsFound => TlsError::Missing { file, what },
        other => TlsError::NotPem {
            file,
            reason: other.to_string(),
        },
    }
}

/// `No such file or directory (os error 2)` -> `No such file or directory`.
fn strip_os_error(message: &str) -> String {
    message
        .split(" (os error")
        .next()
        .unwrap_or(message)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_failure_is_found_inside_the_io_errors_around_it() {
        #[derive(Debug, thiserror::Error)]
        #[error("TLS: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let failure = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, failure.clone());
        let wrapped = Wrapper(io);
        assert_eq!(rustls_error(&wrapped), Some(&failure));
        let plain = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            rustls_error(&plain),
            None,
            "a network failure is no TLS refusal"
        );
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let files = TlsFiles {
            cert: dir.path().join("absent.pem"),
            key: empty.clone(),
            client_ca: None,
        };
        let err = TlsCertificates::load(files.clone())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "cannot read {}: No such file or directory",
                files.cert.display()
            )
        );
        let files = TlsFiles {
            cert: empty.clone(),
            ..files
        };
        let err = TlsCertificates::load(files).unwrap_err().to_string();
        assert_eq!(err, format!("{} holds no PEM certificate", empty.display()));
    }
}

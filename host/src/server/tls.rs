//! HTTPS for the listener (`ENABLE_TLS`, `TLS_CERT`, `TLS_KEY`): rustls
//! with the ring provider, HTTP/1.1 by ALPN. The certificate and key are
//! re-read when their files change on disk (looked at about once a second
//! by a background task, never during a handshake), so a renewed
//! certificate is served to new connections without a restart; a bad new
//! pair is logged and the previous one kept.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

/// How often the certificate and key files are looked at for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Why the TLS certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{var} {}: cannot read it: {source}", path.display())]
    Read {
        /// `TLS_CERT` or `TLS_KEY`.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// What reading it said.
        source: io::Error,
    },
    /// A file does not hold what it should.
    #[error("{var} {}: {reason}", path.display())]
    Invalid {
        /// `TLS_CERT` or `TLS_KEY`.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error(
        "TLS_KEY {} does not match the certificate in TLS_CERT {}",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The listener's TLS side: completes handshakes with the current
/// certificate of `TLS_CERT`/`TLS_KEY`.
#[derive(Clone)]
pub struct TlsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    certificate: Arc<ReloadingCert>,
}

impl TlsAcceptor {
    /// Loads the certificate and key of `config` (an error names the file
    /// at fault) and builds the server configuration. Call
    /// [`TlsAcceptor::watch`] to follow later changes of the files.
    pub fn new(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Arc::new(ReloadingCert::load(config.clone(), provider.clone())?);
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            certificate,
        })
    }

    /// Starts looking at the files about once a second, in the current
    /// Tokio runtime, for as long as this acceptor (or a clone) lives.
    pub fn watch(&self) {
        let certificate = Arc::downgrade(&self.certificate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(certificate) = certificate.upgrade() else {
                    return;
                };
                // A stat (and, on a change, a read) may block on a slow disk.
                let _ = tokio::task::spawn_blocking(move || certificate.check()).await;
            }
        });
    }

    /// The TLS handshake on `stream`, within `deadline`; `None` (logged
    /// at debug level) when it fails or takes too long.
    pub async fn handshake<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        deadline: Duration,
    ) -> Option<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(deadline, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::debug!(peer = %peer.ip(), %error, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(peer = %peer.ip(), "TLS handshake timed out");
                None
            }
        }
    }
}

/// The certificate presented to clients, replaced when the files change.
struct ReloadingCert {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files as last looked at (a failed load is not retried until
    /// they change again).
    seen: Mutex<Option<Stamp>>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    fn load(files: TlsConfig, provider: Arc<CryptoProvider>) -> Result<ReloadingCert, TlsError> {
        let seen = Stamp::of(&files).ok();
        let current = certified_key(&files, &provider)?;
        Ok(ReloadingCert {
            files,
            provider,
            current: RwLock::new(Arc::new(current)),
            seen: Mutex::new(seen),
        })
    }

    /// Reloads the pair if either file changed since last looked at.
    fn check(&self) {
        let stamp = match Stamp::of(&self.files) {
            Ok(stamp) => stamp,
            Err(error) => {
                // Perhaps in the middle of being replaced: look again later.
                tracing::debug!(%error, "TLS certificate or key not readable for now");
                return;
            }
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.as_ref() == Some(&stamp) {
                return;
            }
            *seen = Some(stamp);
        }
        match certified_key(&self.files, &self.provider) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => tracing::warn!(
                %error,
                "the new TLS certificate or key cannot be used; serving the previous one"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// What tells one version of the two files from another.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    cert: FileStamp,
    key: FileStamp,
}

#[derive(Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    /// The inode on Unix: a file renamed over the old one is another file.
    id: u64,
}

impl Stamp {
    fn of(files: &TlsConfig) -> io::Result<Stamp> {
        Ok(Stamp {
            cert: FileStamp::of(&files.cert)?,
            key: FileStamp::of(&files.key)?,
        })
    }
}

impl FileStamp {
    fn of(path: &Path) -> io::Result<FileStamp> {
        let metadata = std::fs::metadata(path)?;
        #[cfg(unix)]
        let id = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let id = 0;
        Ok(FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            id,
        })
    }
}

/// Reads and checks the certificate chain and key of `files`.
fn certified_key(files: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |var: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            var,
            path: path.to_owned(),
            source,
        })
    };
    let invalid = |var: &'static str, path: &Path, reason: String| TlsError::Invalid {
        var,
        path: path.to_owned(),
        reason,
    };
    let cert = &files.cert;
    let chain = CertificateDer::pem_slice_iter(&read("TLS_CERT", cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("TLS_CERT", cert, format!("not a PEM file: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            "TLS_CERT",
            cert,
            "no PEM CERTIFICATE in the file".into(),
        ));
    }
    let key_path = &files.key;
    let key = PrivateKeyDer::from_pem_slice(&read("TLS_KEY", key_path)?).map_err(|e| {
        invalid(
            "TLS_KEY",
            key_path,
            format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid("TLS_KEY", key_path, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert.clone(),
            key: key_path.clone(),
        }),
        Err(e) => Err(invalid(
            "TLS_CERT",
            cert,
            format!("not a usable certificate: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsConfig {
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        TlsConfig {
            cert: cert_path,
            key: key_path,
        }
    }

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_missing_certificate_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = TlsConfig {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("key.pem"),
        };
        let error = TlsAcceptor::new(&config).err().unwrap().to_string();
        assert!(
            error.contains("TLS_CERT") && error.contains("nope.pem"),
            "{error}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair("localhost");
        let (_, other_key) = pair("localhost");
        let error = TlsAcceptor::new(&files(dir.path(), &cert, &other_key))
            .err()
            .unwrap();
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
    }

    #[test]
    fn a_bad_new_pair_keeps_the_old_one_and_a_good_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair("first.test");
        let config = files(dir.path(), &cert, &key);
        let acceptor = TlsAcceptor::new(&config).unwrap();
        let served = || {
            let current = acceptor.certificate.current.read().unwrap().clone();
            current.end_entity_cert().unwrap().clone().into_owned()
        };
        let first = served();
        std::fs::write(&config.cert, "garbage").unwrap();
        acceptor.certificate.check();
        assert_eq!(served(), first);
        let (cert, key) = pair("second.test");
        std::fs::write(&config.key, key).unwrap();
        std::fs::write(&config.cert, cert).unwrap();
        acceptor.certificate.check();
        assert_ne!(served(), first);
    }
}

//! The roots an `https://` backend is verified against: the system's
//! certificate store, plus the certificates in `SSL_CERT_FILE` (a PEM
//! file) and in every file of `SSL_CERT_DIR` (directories, `:`-separated),
//! the variables Go and OpenSSL honour. Unlike `rustls-native-certs`,
//! which reads only those variables when either is set, this is the
//! union: a private CA is added to the system's, never instead of it.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls_native_certs::CertificateResult;

/// The Linux bundle files and directories `openssl-probe` (which
/// `rustls-native-certs` uses) looks for, in its order: the first bundle
/// that exists, and every directory that exists.
#[cfg(all(unix, not(target_os = "macos")))]
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
    "/opt/etc/ssl/certs/ca-certificates.crt",
];
#[cfg(all(unix, not(target_os = "macos")))]
const SYSTEM_DIRS: &[&str] = &["/etc/ssl/certs", "/etc/pki/tls/certs"];

/// The roots from the system and the process's `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`; what cannot be read is logged (warn) and skipped.
pub(crate) fn roots_from_env() -> RootCertStore {
    let file = std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut certs = system_certs(file.is_none() && dirs.is_empty());
    let system = certs.len();
    if let Some(file) = &file {
        certs.extend(extra_certs("SSL_CERT_FILE", file, Some(file), None));
    }
    for dir in &dirs {
        certs.extend(extra_certs("SSL_CERT_DIR", dir, None, Some(dir)));
    }
    let extra = certs.len() - system;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        tracing::warn!(ignored, "some trusted certificates could not be parsed");
    }
    if added == 0 {
        tracing::warn!("no trusted root certificates: no https:// backend can be verified");
    }
    tracing::info!(
        roots = added,
        system,
        from_ssl_cert_vars = extra,
        "trusted roots for the backend"
    );
    roots
}

/// The system's certificates: what `rustls-native-certs` finds when the
/// variables are unset (`env_unset`), else the same places looked at
/// directly (it would read only the variables' locations).
fn system_certs(env_unset: bool) -> Vec<CertificateDer<'static>> {
    if env_unset {
        return logged("system store", rustls_native_certs::load_native_certs());
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        let mut certs = Vec::new();
        if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists()) {
            let found = rustls_native_certs::load_certs_from_paths(Some(bundle), None);
            certs.extend(logged("system store", found));
        }
        for dir in SYSTEM_DIRS.iter().map(Path::new).filter(|p| p.is_dir()) {
            let found = rustls_native_certs::load_certs_from_paths(None, Some(dir));
            certs.extend(logged("system store", found));
        }
        certs
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        tracing::warn!(
            "SSL_CERT_FILE or SSL_CERT_DIR is set: on this platform the system store is then not read"
        );
        Vec::new()
    }
}

/// The certificates of `SSL_CERT_FILE` or one `SSL_CERT_DIR` entry.
fn extra_certs(
    var: &'static str,
    location: &Path,
    file: Option<&Path>,
    dir: Option<&Path>,
) -> Vec<CertificateDer<'static>> {
    let certs = logged(var, rustls_native_certs::load_certs_from_paths(file, dir));
    if certs.is_empty() {
        tracing::warn!(
            var,
            location = %location.display(),
            "no PEM certificate found there"
        );
    }
    certs
}

/// The certificates found, with each error logged.
fn logged(source: &'static str, found: CertificateResult) -> Vec<CertificateDer<'static>> {
    for error in &found.errors {
        tracing::warn!(source, %error, "a trusted certificate location could not be read");
    }
    found.certs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_pem_files_is_read_and_an_unreadable_entry_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a certificate").unwrap();
        let certs = extra_certs("SSL_CERT_DIR", dir.path(), None, Some(dir.path()));
        assert_eq!(certs, vec![cert.der().clone()]);
        let missing = dir.path().join("missing.pem");
        assert!(extra_certs("SSL_CERT_FILE", &missing, Some(&missing), None).is_empty());
    }
}

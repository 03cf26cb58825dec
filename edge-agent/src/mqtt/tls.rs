//! TLS for `mqtts://` brokers: rustls with the *ring* provider chosen explicitly (the one the
//! registry client already links), so no process-wide default provider is needed and no second
//! crypto library is pulled in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject;
use rumqttc::tokio_rustls::rustls::pki_types::CertificateDer;
use rumqttc::tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Where distributions keep their CA bundle, tried in order when `hub.ca_file` is not set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA certificates in {path}: {reason}; set hub.ca_file to a PEM file with the CA that signed the broker's certificate")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no usable CA certificate: set hub.ca_file to a PEM file with the CA that signed the broker's certificate")]
    NoCertificate { path: PathBuf },
    #[error("no CA bundle found in {}: set hub.ca_file to a PEM file with the CA that signed the broker's certificate", SYSTEM_BUNDLES.join(", "))]
    NoSystemBundle,
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client configuration trusting the CAs in `ca_file`, or the system's bundle.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let path = match ca_file {
        Some(path) => path.to_path_buf(),
        None => SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(TlsError::NoSystemBundle)?,
    };
    let pem = std::fs::read(&path).map_err(|e| TlsError::Read {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // A bundle may hold certificates this build cannot use; the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate { path });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_says_what_to_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = client_config(Some(&missing)).expect_err("missing");
        assert!(err.to_string().contains("set hub.ca_file"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = client_config(Some(&empty)).expect_err("empty");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    }

    #[test]
    fn the_system_bundle_is_used_when_no_ca_file_is_set() {
        if SYSTEM_BUNDLES.iter().any(|p| Path::new(p).is_file()) {
            client_config(None).expect("the system bundle loads");
        } else {
            assert!(matches!(client_config(None), Err(TlsError::NoSystemBundle)));
        }
    }
}

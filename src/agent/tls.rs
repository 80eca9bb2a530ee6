//! The TLS client configuration for the control-plane connection (rustls, ring).
//!
//! The system trust store by default; with `ca_file`, that CA alone (pinning a
//! private control-plane CA). A client certificate for mutual TLS when configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {message}")]
    Pem { what: &'static str, path: PathBuf, message: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("no usable CA certificate in the system trust store: {0}")]
    NoSystemRoots(String),
    #[error("TLS client setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the client config from the agent config.
pub fn client_config(config: &Config) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match &config.ca_file {
        Some(ca_file) => pinned_roots(ca_file)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert_file), Some(key_file)) => {
            builder.with_client_auth_cert(certificates(cert_file, "client certificate")?, private_key(key_file)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(tls))
}

fn pinned_roots(ca_file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file, "CA file")? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: "CA file",
            path: ca_file.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| e.to_string()).unwrap_or_else(|| "none found".into());
        return Err(TlsError::NoSystemRoots(why));
    }
    Ok(roots)
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem { what, path: path.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error names the file and the PEM problem, never the key material.
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "client key",
        path: path.to_owned(),
        message: e.to_string(),
    })
}

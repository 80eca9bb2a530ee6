//! The TLS identity of `berth dev`'s control plane: a CA made by rcgen and a server
//! certificate it signs for `127.0.0.1` and `localhost`, kept in the dev directory.
//!
//! The agent pins the CA (`ca_file`), exactly as it would pin a private control
//! plane's CA, so the dev setup exercises the production TLS path. A restart reuses
//! the files; the CA key is never written (nothing else is ever signed with it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::host::fs::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot make the dev certificates: {0}")]
    Generate(String),
}

/// The files of the identity in the dev directory.
pub struct Identity {
    pub ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Identity {
    /// The identity in `dir`, made there the first time.
    pub fn load_or_create(dir: &Path) -> Result<Identity, CaError> {
        let identity = Identity {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
        };
        if !(identity.ca_file.exists() && identity.cert_file.exists() && identity.key_file.exists()) {
            identity.create()?;
        }
        Ok(identity)
    }

    fn create(&self) -> Result<(), CaError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let generate = |e: rcgen::Error| CaError::Generate(e.to_string());
        let ca_key = KeyPair::generate().map_err(generate)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name.push(DnType::CommonName, "berth dev CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).map_err(generate)?;
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().map_err(generate)?;
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).map_err(generate)?;
        server.distinguished_name.push(DnType::CommonName, "berth dev control plane");
        let server_cert = server.signed_by(&server_key, &issuer).map_err(generate)?;
        let write = |path: &Path, text: String, mode| {
            write_atomic(path, text.as_bytes(), mode).map_err(|source| CaError::Write { path: path.to_owned(), source })
        };
        write(&self.key_file, server_key.serialize_pem(), 0o600)?;
        write(&self.cert_file, server_cert.pem(), 0o644)?;
        write(&self.ca_file, ca_cert.pem(), 0o644)
    }

    /// The rustls server config of the control plane.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let read_error =
            |path: &Path, e: &dyn std::fmt::Display| CaError::Read { path: path.to_owned(), message: e.to_string() };
        let cert = CertificateDer::from_pem_file(&self.cert_file).map_err(|e| read_error(&self.cert_file, &e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| read_error(&self.key_file, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert], key))
            .map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_then_reused_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let ca = std::fs::read(&first.ca_file).unwrap();
        let mode = std::fs::metadata(&first.key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(first.server_config().is_ok());
        let second = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(std::fs::read(&second.ca_file).unwrap(), ca, "a restart keeps the CA the agent pins");
        assert!(!dir.path().join("ca-key.pem").exists());
    }
}

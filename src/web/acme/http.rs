//! The HTTP client the ACME account talks through: HTTP/1.1 over rustls (ring),
//! HTTPS only.
//!
//! instant-acme's own client (its `hyper-rustls` feature) also brings HTTP/2 and
//! the platform verifier: about 300 KiB of code in a daemon that idles in every
//! server's memory, for a few requests a month. This one is hyper's HTTP/1.1
//! client, trusting the system store, or the configured `ca_file` alone (a private
//! or test CA such as pebble).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// How long a connection to the CA may take, and a request's answer (its headers).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// hyper's HTTP/1.1 client with rustls, as instant-acme's [`HttpClient`].
pub struct Http1(Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl Http1 {
    /// Trusting `ca_file` alone when given, else the system's trust store.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, Error> {
        let roots = match ca_file {
            Some(path) => pinned(path)?,
            None => system()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector =
            HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(http);
        Ok(Self(Client::builder(TokioExecutor::new()).build(connector)))
    }
}

impl HttpClient for Http1 {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.0.request(req));
        Box::pin(async move {
            match response.await {
                Ok(answer) => answer.map(BytesResponse::from).map_err(other),
                Err(_) => Err(Error::Str("the ACME server did not answer within 60 s")),
            }
        })
    }
}

fn pinned(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(other)? {
        roots.add(cert.map_err(other)?).map_err(other)?;
    }
    if roots.is_empty() {
        return Err(Error::Str("the ACME CA file holds no certificate"));
    }
    Ok(roots)
}

fn system() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(Error::Str("no usable CA certificate in the system trust store"));
    }
    Ok(roots)
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Other(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = Http1::new(Some(&empty)).err().expect("refused");
        assert!(error.to_string().contains("holds no certificate"), "{error}");
        assert!(Http1::new(Some(&dir.path().join("missing.pem"))).is_err());
    }
}

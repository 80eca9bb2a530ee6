//! Certificates as berth checks them before anything is written: the PEM parsed,
//! the key matched to the certificate, the validity window, the CA chain, and which
//! names the certificate covers. Also when a certificate is due for renewal.
//!
//! What reaches nginx is re-encoded from the parsed DER, never the text as given,
//! so stray headers or a second key in the input cannot end up in a config file.
//! Errors are [`FieldError`]s naming the param (`key`, `cert`, `cacerts`) and never
//! quote the key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::model::validate::{shown, FieldError};

/// What berth needs to know of a certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names of the subjectAltName (the common name when there is none), lowercase.
    pub names: Vec<String>,
}

impl CertInfo {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let validity = cert.validity();
        let mut names: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(format!("its subjectAltName does not parse: {e}")),
        };
        if names.is_empty() {
            names.extend(
                cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase),
            );
        }
        Ok(CertInfo {
            not_before: at(validity.not_before.timestamp()),
            not_after: at(validity.not_after.timestamp()),
            names,
        })
    }

    /// Whether this certificate is valid for `name` (exact, or a `*.` wildcard one label deep).
    pub fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| covers(n, name))
    }

    /// When the certificate should be renewed: once a third of its lifetime is left,
    /// whatever the lifetime (90 days, 45 days, 6 days).
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self.not_after.duration_since(self.not_before).unwrap_or(Duration::ZERO);
        self.not_before + lifetime * 2 / 3
    }
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}

/// Whether a certificate name (`example.com`, `*.example.com`) covers `name`.
pub fn covers(cert_name: &str, name: &str) -> bool {
    if cert_name.eq_ignore_ascii_case(name) {
        return true;
    }
    match (cert_name.strip_prefix("*."), name.split_once('.')) {
        (Some(suffix), Some((label, rest))) => !label.is_empty() && label != "*" && rest.eq_ignore_ascii_case(suffix),
        _ => false,
    }
}

/// A certificate that passed every check, ready for nginx.
#[derive(Debug, Clone)]
pub struct Checked {
    pub info: CertInfo,
    /// The certificate then its CA chain, re-encoded.
    pub chain_pem: String,
    /// The key, re-encoded (a secret: never logged).
    pub key_pem: String,
}

/// Checks a custom certificate (`ssl.install`): valid PEM, the key matches the
/// certificate, valid now, and the CA certificates (when given) chain it.
pub fn check(key: &str, cert: &str, cacerts: Option<&str>, now: SystemTime) -> Result<Checked, FieldError> {
    let leaf = only_cert("cert", cert)?;
    let info = CertInfo::from_der(&leaf).map_err(|e| FieldError::new("cert", e))?;
    let key_der = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|_| FieldError::new("key", "is not a PEM private key (PKCS#8, RSA or EC)"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|_| FieldError::new("key", "is not a key berth can use (RSA, ECDSA P-256/P-384 or Ed25519)"))?;
    let certified = rustls::sign::CertifiedKey::new(vec![leaf.clone()], signer);
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            FieldError::new("key", "does not match the certificate")
        }
        // rustls could not read the certificate (an X.509 version 1 one, say): the key is not at fault.
        other => FieldError::new("cert", format!("cannot be read by the TLS library: {other}")),
    })?;
    if now >= info.not_after {
        return Err(FieldError::new("cert", format!("expired at {}", crate::time::rfc3339(info.not_after))));
    }
    if now < info.not_before {
        return Err(FieldError::new("cert", format!("is not valid before {}", crate::time::rfc3339(info.not_before))));
    }
    let chain = match cacerts {
        Some(text) => certs("cacerts", text)?,
        None => Vec::new(),
    };
    chains("cacerts", &leaf, &chain)?;
    let mut chain_pem = pem("CERTIFICATE", &leaf);
    chain.iter().for_each(|c| chain_pem.push_str(&pem("CERTIFICATE", c)));
    Ok(Checked { info, chain_pem, key_pem: key_pem(&key_der) })
}

/// Every certificate of a PEM text; none at all, or a block that does not parse, is an error.
pub fn certs(field: &str, text: &str) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| FieldError::new(field, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(FieldError::new(field, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    for (i, der) in certs.iter().enumerate() {
        X509Certificate::from_der(der)
            .map_err(|e| FieldError::new(field, format!("certificate {} does not parse: {e}", i + 1)))?;
    }
    Ok(certs)
}

/// The one certificate of `text`; a chain belongs in `cacerts`.
fn only_cert(field: &str, text: &str) -> Result<CertificateDer<'static>, FieldError> {
    let mut certs = certs(field, text)?;
    if certs.len() > 1 {
        return Err(FieldError::new(
            field,
            format!("holds {} certificates; give the CA chain in cacerts", certs.len()),
        ));
    }
    Ok(certs.remove(0))
}

/// Each certificate is signed by the next one (leaf first).
fn chains(field: &str, leaf: &CertificateDer, chain: &[CertificateDer]) -> Result<(), FieldError> {
    let mut child = leaf;
    for (i, parent) in chain.iter().enumerate() {
        let (_, c) = X509Certificate::from_der(child).map_err(|e| FieldError::new(field, e.to_string()))?;
        let (_, p) = X509Certificate::from_der(parent).map_err(|e| FieldError::new(field, e.to_string()))?;
        if c.issuer() != p.subject() || c.verify_signature(Some(p.public_key())).is_err() {
            let what = if i == 0 { "the certificate".to_owned() } else { format!("CA certificate {i}") };
            return Err(FieldError::new(
                field,
                format!("CA certificate {} ({}) did not sign {what}", i + 1, shown(&p.subject().to_string())),
            ));
        }
        child = parent;
    }
    Ok(())
}

fn key_pem(key: &PrivateKeyDer) -> String {
    match key {
        PrivateKeyDer::Pkcs1(k) => pem("RSA PRIVATE KEY", k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(k) => pem("EC PRIVATE KEY", k.secret_sec1_der()),
        PrivateKeyDer::Pkcs8(k) => pem("PRIVATE KEY", k.secret_pkcs8_der()),
        _ => pem("PRIVATE KEY", key.secret_der()),
    }
}

/// DER as a PEM block.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    }

    fn leaf(issuer: &Issuer<KeyPair>, names: &[&str], days: (i64, i64)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        (params.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_certificate_is_re_encoded_with_its_chain_and_names() {
        let (ca_pem, issuer) = ca("Test CA");
        let (cert, key) = leaf(&issuer, &["a.test", "*.b.test"], (-1, 30));
        let noisy = format!("junk before\n{cert}junk after\n");
        let checked = check(&key, &noisy, Some(&ca_pem), SystemTime::now()).unwrap();
        assert_eq!(checked.info.names, ["a.test", "*.b.test"]);
        assert_eq!(checked.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(!checked.chain_pem.contains("junk"));
        assert!(checked.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(checked.info.covers("x.b.test") && checked.info.covers("A.TEST"));
        assert!(
            !checked.info.covers("b.test") && !checked.info.covers("x.y.b.test") && !checked.info.covers("www.a.test")
        );
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let (ca_pem, issuer) = ca("Test CA");
        let (other_ca, _) = ca("Other CA");
        let (cert, key) = leaf(&issuer, &["a.test"], (-1, 30));
        let (_, other_key) = leaf(&issuer, &["a.test"], (-1, 30));
        let (expired, expired_key) = leaf(&issuer, &["a.test"], (-30, -1));
        let (future, future_key) = leaf(&issuer, &["a.test"], (2, 30));
        let now = SystemTime::now();
        let field = |r: Result<Checked, FieldError>| r.unwrap_err();
        assert_eq!(field(check(&other_key, &cert, None, now)).message, "does not match the certificate");
        assert_eq!(field(check(&other_key, &cert, None, now)).field, "key");
        assert_eq!(field(check("not a key", &cert, None, now)).field, "key");
        assert_eq!(field(check(&key, "garbage", None, now)).field, "cert");
        let torn = cert.replace("\n-----END", "!!\n-----END");
        assert_eq!(field(check(&key, &torn, None, now)).field, "cert");
        assert!(field(check(&expired_key, &expired, None, now)).message.starts_with("expired at "));
        assert!(field(check(&future_key, &future, None, now)).message.starts_with("is not valid before"));
        assert_eq!(field(check(&key, &cert, Some(&other_ca), now)).field, "cacerts");
        assert_eq!(field(check(&key, &format!("{cert}{ca_pem}"), None, now)).field, "cert");
        assert!(!field(check(&other_key, &cert, None, now)).to_string().contains("PRIVATE"));
    }

    /// Found by the fuzz target `cert_check`'s seeds: an X.509 version 1 certificate
    /// (`openssl x509 -req` without extensions) with its own key was refused as
    /// "key: does not match the certificate", blaming the key; the certificate is
    /// what rustls cannot read.
    #[test]
    fn cert_check_version_1_certificate_blames_the_key_regression() {
        let seed = include_str!("../../fuzz/corpus/cert_check/seed-e2812772f3c1501e");
        let mut parts = seed.split('\0');
        let (key, cert, cacerts) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
        assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let err = check(key, cert, cacerts, SystemTime::now()).unwrap_err();
        assert_eq!(err.field, "cert", "{err}");
        assert!(err.message.starts_with("cannot be read by the TLS library: "), "{err}");
    }

    #[test]
    fn renewal_comes_when_a_third_of_the_lifetime_is_left() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let info = |days: u32| CertInfo { not_before: start, not_after: start + day * days, names: vec![] };
        assert_eq!(info(90).renew_at(), start + day * 60);
        assert_eq!(info(45).renew_at(), start + day * 30);
        assert_eq!(info(6).renew_at(), start + day * 4);
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "www.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(covers("*.example.com", "*.example.com"));
        assert!(!covers("*.example.com", "*.x.example.com"));
    }
}

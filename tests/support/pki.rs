//! A test PKI for the certificate tests: CAs (and intermediates) made with rcgen, the
//! leaf certificates they sign for chosen DNS names and validity windows, self-signed
//! leaves, and private keys in each PEM flavour the agent must accept.
//!
//! Everything is PEM text, as a control plane would send it. ring cannot generate RSA
//! keys and rcgen (with ring) reads only PKCS#8, so RSA keys and the SEC1 / PKCS#1
//! flavours come from Debian's `openssl` binary, and a key in those flavours is turned
//! into PKCS#8 by `openssl pkey` before rcgen signs with it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber};

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate's validity window (notBefore, notAfter).
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// Any window.
    pub fn between(not_before: SystemTime, not_after: SystemTime) -> Validity {
        Validity { not_before, not_after }
    }

    /// Valid since an hour ago, for 90 days.
    pub fn normal() -> Validity {
        let now = SystemTime::now();
        Validity::between(now - Duration::from_secs(3600), now + 90 * DAY)
    }

    /// Expired yesterday (valid for the 90 days before).
    pub fn expired() -> Validity {
        let now = SystemTime::now();
        Validity::between(now - 91 * DAY, now - DAY)
    }

    /// Valid from tomorrow, for 90 days.
    pub fn not_yet_valid() -> Validity {
        let now = SystemTime::now();
        Validity::between(now + DAY, now + 91 * DAY)
    }

    /// A 90-day certificate issued long ago that expires in `left` (near expiry).
    pub fn expiring_in(left: Duration) -> Validity {
        let now = SystemTime::now();
        Validity::between(now + left - 90 * DAY, now + left)
    }
}

/// The flavours of private-key PEM a control plane may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `PRIVATE KEY`, ECDSA P-256 (rcgen).
    Pkcs8Ec,
    /// `PRIVATE KEY`, RSA 2048 (openssl).
    Pkcs8Rsa,
    /// `EC PRIVATE KEY` (SEC1), P-256 (openssl).
    Sec1Ec,
    /// `RSA PRIVATE KEY` (PKCS#1), RSA 2048 (openssl).
    Pkcs1Rsa,
}

/// A fresh private key in the PEM flavour `kind`.
/// The base64 body of the first PEM block, to compare certificates.
pub fn der_b64(pem: &str) -> String {
    pem.lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect()
}

pub fn key_pem(kind: KeyKind) -> String {
    match kind {
        KeyKind::Pkcs8Ec => KeyPair::generate().unwrap().serialize_pem(),
        KeyKind::Pkcs8Rsa => openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], ""),
        KeyKind::Sec1Ec => openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout"], ""),
        KeyKind::Pkcs1Rsa => {
            let pkcs8 = key_pem(KeyKind::Pkcs8Rsa);
            openssl(&["rsa", "-traditional"], &pkcs8)
        }
    }
}

/// A certificate authority that signs test certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl TestCa {
    /// A self-signed root CA with common name `name`, valid for ten years.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert_pem = params.self_signed(&key).unwrap().pem();
        TestCa { issuer: Issuer::new(params, key), cert_pem }
    }

    /// An intermediate CA signed by this one (its `cert_pem` is the chain a leaf it signs needs).
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert_pem = params.signed_by(&key, &self.issuer).unwrap().pem();
        TestCa { issuer: Issuer::new(params, key), cert_pem }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A leaf for `names` (DNS names or IP addresses) valid over `validity`, with a
    /// fresh P-256 key: (certificate PEM, PKCS#8 key PEM).
    pub fn leaf(&self, names: &[&str], validity: Validity) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(names, validity).signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf for `names` with the key `key_pem` (any [`KeyKind`] flavour), e.g. to
    /// replace a certificate keeping its key: the certificate PEM.
    pub fn leaf_with_key(&self, names: &[&str], validity: Validity, key_pem: &str) -> String {
        let key = key_pair(key_pem);
        leaf_params(names, validity).signed_by(&key, &self.issuer).unwrap().pem()
    }
}

/// A self-signed leaf for `names`: (certificate PEM, PKCS#8 key PEM).
pub fn self_signed(names: &[&str], validity: Validity) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, validity).self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, Validity::between(SystemTime::now() - DAY, SystemTime::now() + 3650 * DAY));
    params.serial_number = Some(serial());
    params
}

fn leaf_params(names: &[&str], validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, *names.first().unwrap_or(&"berth test leaf"));
    set_validity(&mut params, validity);
    // A new serial each time: a reissued certificate with the same key must differ.
    params.serial_number = Some(serial());
    params
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    // rcgen's dates are `time` values; they are built from the epoch so that this crate
    // needs no `time` dependency of its own.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + validity.not_before.duration_since(UNIX_EPOCH).unwrap();
    params.not_after = epoch + validity.not_after.duration_since(UNIX_EPOCH).unwrap();
}

fn serial() -> SerialNumber {
    // Positive (high bit clear), 16 bytes.
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// rcgen's key pair for a PEM key of any flavour (non-PKCS#8 goes through `openssl pkey`).
fn key_pair(key_pem: &str) -> KeyPair {
    if key_pem.contains("-----BEGIN PRIVATE KEY-----") {
        return KeyPair::from_pem(key_pem).unwrap();
    }
    KeyPair::from_pem(&openssl(&["pkey"], key_pem)).unwrap()
}

/// Runs `openssl args` with `stdin`; its stdout (panics with its stderr on failure).
pub fn openssl(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (Debian package openssl)");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

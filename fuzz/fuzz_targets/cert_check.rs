//! `ssl.install`'s certificate checks (`web::certs::check`): the PEM key, the PEM
//! certificate and the optional PEM CA chain, as an operator pastes them. The input
//! is `KEY \0 CERT [\0 CACERTS]`; the clock is fixed (2030-03-17), so a seed made
//! with a long validity stays valid. Proves, for any input:
//! - the checks never panic, nor does reading each certificate block alone
//!   (`CertInfo::from_der`, `renew_at`, `covers`);
//! - a refusal names `key`, `cert` or `cacerts` and never quotes the key's material;
//! - an accepted certificate is valid at the clock, its names are lowercase, and
//!   what reaches nginx is re-encoded PEM only (no stray text), one block for the
//!   certificate and one per CA, with a key that still matches: checking that
//!   output again accepts it and gives the same certificate, chain and key.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use berth::web::certs::{self, CertInfo};
use libfuzzer_sys::fuzz_target;

const NOW_SECS: u64 = 1_900_000_000;

/// Every line of a re-encoded PEM text is a BEGIN/END line or base64.
fn pem_only(text: &str) -> bool {
    text.ends_with('\n')
        && text.lines().all(|l| {
            (l.starts_with("-----BEGIN ") || l.starts_with("-----END ")) && l.ends_with("-----")
                || (!l.is_empty()
                    && l.len() <= 64
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)))
        })
}

fn info_holds(info: &CertInfo) {
    if info.not_before <= info.not_after {
        let renew = info.renew_at();
        assert!(info.not_before <= renew && renew <= info.not_after, "renewal outside the lifetime");
    }
    for name in &info.names {
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "name not lowercase: {name:?}");
        assert!(info.covers(name) && info.covers(&name.to_ascii_uppercase()));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\0');
    let (key, cert) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let cacerts = parts.next();
    let now = UNIX_EPOCH + Duration::from_secs(NOW_SECS);

    // Each block alone, as renewal reads a certificate file.
    for block in [cert, cacerts.unwrap_or_default()] {
        if let Ok(ders) = certs::certs("cert", block) {
            for der in ders {
                if let Ok(info) = CertInfo::from_der(&der) {
                    info_holds(&info);
                }
            }
        }
    }

    match certs::check(key, cert, cacerts, now) {
        Err(e) => {
            assert!(["key", "cert", "cacerts"].contains(&e.field.as_str()), "field {:?}", e.field);
            // The key's material: each run of base64 of 20 characters or more.
            let message = e.to_string();
            for run in key.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))).filter(|r| r.len() >= 20)
            {
                if !cert.contains(run) && !cacerts.unwrap_or_default().contains(run) {
                    assert!(!message.contains(run), "a refusal quotes the key: {message}");
                }
            }
        }
        Ok(checked) => {
            let info = &checked.info;
            assert!(info.not_before <= now && now < info.not_after, "accepted outside its validity");
            info_holds(info);
            assert!(pem_only(&checked.chain_pem) && pem_only(&checked.key_pem), "stray text in the output");
            let chain = certs::certs("cert", &checked.chain_pem).expect("the output chain parses");
            let given = cacerts.map_or(0, |c| certs::certs("cacerts", c).map_or(0, |c| c.len()));
            assert_eq!(chain.len(), 1 + given, "one block for the certificate and one per CA");
            assert_eq!(checked.key_pem.matches("-----BEGIN ").count(), 1, "one key block");
            // The output, checked again, is accepted as it is (a fixed point).
            let leaf = certs::pem("CERTIFICATE", &chain[0]);
            let rest: String = chain[1..].iter().map(|c| certs::pem("CERTIFICATE", c)).collect();
            let again = certs::check(&checked.key_pem, &leaf, (!rest.is_empty()).then_some(rest.as_str()), now)
                .expect("the re-encoded output is accepted");
            assert_eq!(&again.info, info);
            assert_eq!((again.chain_pem, again.key_pem), (checked.chain_pem.clone(), checked.key_pem.clone()));
        }
    }
});

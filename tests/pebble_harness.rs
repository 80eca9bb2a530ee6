//! Self-test of the certificate test harness: the test PKI (checked by Debian's
//! `openssl`), pebble running inside a test machine, the machine's `/etc/hosts`
//! mapping, and the HTTPS / HTTP probes against a real nginx in the machine.

mod support;

use std::path::Path;

use support::machine::Machine;
use support::pebble::Pebble;
use support::pki::{key_pem, openssl, self_signed, KeyKind, TestCa, Validity};
use support::probes::header;

#[test]
fn pebble_comes_up_in_a_machine_and_names_resolve_through_its_hosts_file() {
    let machine = Machine::start();
    machine.add_hosts(&["app.test", "www.app.test"]);
    let mut pebble = Pebble::start(&machine);

    let directory: serde_json::Value = serde_json::from_str(&pebble.acme_get(pebble.directory_url())).unwrap();
    assert_eq!(directory["newOrder"], "https://127.0.0.1:14000/order-plz", "{directory}");
    assert!(directory["newNonce"].is_string() && directory["newAccount"].is_string());

    // pebble's issuance root and intermediate are certificates, the one signing the other.
    let root = pebble.issuance_roots_pem();
    assert!(openssl(&["x509", "-noout", "-subject"], &root).contains("Pebble Root CA"));
    let intermediate = pebble.issuance_intermediate_pem();
    let files = tempfile::tempdir().unwrap();
    let root_file = write(files.path(), "root.pem", &root);
    openssl(&["verify", "-CAfile", &root_file, "/dev/stdin"], &intermediate);

    // The mapped names resolve inside the machine, an unmapped one nowhere.
    let hosts = machine.run("/usr/bin/getent", &["hosts", "app.test", "www.app.test"]);
    let hosts = String::from_utf8_lossy(&hosts.stdout).into_owned();
    let pairs: Vec<Vec<&str>> = hosts.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(pairs, [["127.0.0.1", "app.test"], ["127.0.0.1", "www.app.test"]], "{hosts}");
    assert!(!machine.run("/usr/bin/getent", &["hosts", "stray.invalid"]).status.success());
    // ... and the host's /etc/hosts is untouched.
    assert!(!std::fs::read_to_string("/etc/hosts").unwrap().contains("app.test"));

    pebble.stop();
    let gone =
        machine.run("/usr/bin/curl", &["-sS", "--cacert", pebble.ca_file().to_str().unwrap(), pebble.directory_url()]);
    assert!(!gone.status.success(), "pebble stopped");
}

#[test]
fn the_test_pki_makes_the_certificates_and_keys_it_promises() {
    let files = tempfile::tempdir().unwrap();
    let ca = TestCa::new("harness CA");
    let intermediate = ca.intermediate("harness intermediate");
    let ca_file = write(files.path(), "ca.pem", ca.cert_pem());
    let chain_file = write(files.path(), "chain.pem", intermediate.cert_pem());

    let (cert, key) = intermediate.leaf(&["app.test", "www.app.test"], Validity::normal());
    let leaf_file = write(files.path(), "leaf.pem", &cert);
    openssl(&["verify", "-CAfile", &ca_file, "-untrusted", &chain_file, &leaf_file], "");
    let text = openssl(&["x509", "-noout", "-ext", "subjectAltName"], &cert);
    assert!(text.contains("DNS:app.test") && text.contains("DNS:www.app.test"), "{text}");
    assert_eq!(public_key(&key), openssl(&["x509", "-noout", "-pubkey"], &cert), "the key matches the certificate");

    // Validity windows, as openssl reads them.
    assert!(!valid_for(&ca.leaf(&["app.test"], Validity::expired()).0, 0), "expired");
    let near = ca.leaf(&["app.test"], Validity::expiring_in(std::time::Duration::from_secs(3600))).0;
    assert!(valid_for(&near, 0) && !valid_for(&near, 7200), "expires within the next two hours");
    assert!(valid_for(&cert, 80 * 86_400));
    let future = write(files.path(), "future.pem", &ca.leaf(&["app.test"], Validity::not_yet_valid()).0);
    let verify_future =
        std::process::Command::new("openssl").args(["verify", "-CAfile", &ca_file, &future]).output().unwrap();
    assert!(!verify_future.status.success());
    assert!(
        String::from_utf8_lossy(&verify_future.stdout).contains("not yet valid")
            || String::from_utf8_lossy(&verify_future.stderr).contains("not yet valid")
    );

    // Each key flavour, and a certificate signed for it that keeps the key.
    for (kind, begin) in [
        (KeyKind::Pkcs8Ec, "-----BEGIN PRIVATE KEY-----"),
        (KeyKind::Pkcs8Rsa, "-----BEGIN PRIVATE KEY-----"),
        (KeyKind::Sec1Ec, "-----BEGIN EC PRIVATE KEY-----"),
        (KeyKind::Pkcs1Rsa, "-----BEGIN RSA PRIVATE KEY-----"),
    ] {
        let key = key_pem(kind);
        assert!(key.starts_with(begin), "{kind:?}: {key}");
        let cert = ca.leaf_with_key(&["app.test"], Validity::normal(), &key);
        assert_eq!(public_key(&key), openssl(&["x509", "-noout", "-pubkey"], &cert), "{kind:?}");
        let again = ca.leaf_with_key(&["app.test"], Validity::normal(), &key);
        assert_ne!(serial(&cert), serial(&again), "a reissued certificate has a serial of its own");
    }

    let (own, own_key) = self_signed(&["self.test"], Validity::normal());
    let own_file = write(files.path(), "own.pem", &own);
    openssl(&["verify", "-CAfile", &own_file, &own_file], "");
    assert_eq!(public_key(&own_key), openssl(&["x509", "-noout", "-pubkey"], &own));
    assert!(!std::process::Command::new("openssl")
        .args(["verify", "-CAfile", &ca_file, &own_file])
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn the_probes_see_what_nginx_serves_and_refuse_what_does_not_verify() {
    let machine = Machine::start();
    let dir = machine.dir.path().join("probe-nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new("probe CA");
    let (cert, key) = ca.leaf(&["app.test"], Validity::normal());
    write(&dir, "cert.pem", &cert);
    write(&dir, "key.pem", &key);
    let ca_file = write(&dir, "ca.pem", ca.cert_pem());
    let other_ca = write(&dir, "other-ca.pem", TestCa::new("other CA").cert_pem());
    let d = dir.display();
    let conf = format!(
        "pid {d}/nginx.pid; error_log {d}/error.log; events {{}}\n\
         http {{ access_log off;\n\
           server {{ listen 80; server_name app.test; location / {{ return 301 https://$host$request_uri; }} }}\n\
           server {{ listen 443 ssl http2; server_name app.test; ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;\n\
             location / {{ return 200 \"hello over tls\"; }} }}\n\
           server {{ listen 443 ssl default_server; ssl_reject_handshake on; }} }}\n"
    );
    let conf_file = write(&dir, "nginx.conf", &conf);
    let started = machine.run("/usr/sbin/nginx", &["-c", &conf_file]);
    assert!(started.status.success(), "nginx: {}", String::from_utf8_lossy(&started.stderr));

    let (status, body, version) = machine.https_get("app.test", "/x", Path::new(&ca_file));
    assert_eq!((status, body.as_str(), version.as_str()), (200, "hello over tls", "2"));
    let (status, error, _) = machine.https_get("app.test", "/x", Path::new(&other_ca));
    assert_eq!(status, 0);
    assert!(error.contains("certificate"), "{error}");

    let served = machine.served_cert("app.test").expect("a certificate for app.test");
    assert_eq!(served.trim(), cert.trim());
    assert_eq!(machine.served_cert("other.test"), None, "the handshake is refused for an unknown name");

    let (status, headers, _) = machine.http_get_full("app.test", "/some/path?q=1");
    assert_eq!(status, 301);
    assert_eq!(header(&headers, "location"), Some("https://app.test/some/path?q=1"));
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn public_key(key_pem: &str) -> String {
    openssl(&["pkey", "-pubout"], key_pem)
}

/// Whether `cert_pem` is still valid `secs` seconds from now (`openssl x509 -checkend`).
fn valid_for(cert_pem: &str, secs: u64) -> bool {
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &secs.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), cert_pem.as_bytes()).unwrap();
    child.wait().unwrap().success()
}

fn serial(cert_pem: &str) -> String {
    openssl(&["x509", "-noout", "-serial"], cert_pem)
}

//! Debian's real ACME test server, `pebble` (2.4.0), run inside a test machine.
//!
//! pebble ships no certificates: its HTTPS certificate for 127.0.0.1 / localhost is
//! signed by a [`TestCa`] made here, whose PEM ([`Pebble::ca_file`]) is what berth is
//! given as `acme_ca_file`. pebble listens on 127.0.0.1:14000 (ACME) and :15000
//! (management) in the machine's own network namespace and validates HTTP-01 on port
//! 80 of that namespace, where berth's nginx answers. It resolves names with the
//! system resolver, and Go's resolver reads the machine's private `/etc/hosts`: names
//! added with [`Machine::add_hosts`] validate against 127.0.0.1, any other name fails
//! at once (the namespace has no route to a DNS server).
//!
//! Defaults are for deterministic tests: no validation sleeps, no rejected nonces and
//! no reuse of valid authorizations, unless [`PebbleOptions`] says otherwise.

use std::path::PathBuf;

use super::machine::Machine;
use super::pki::{TestCa, Validity};

pub const DIRECTORY_URL: &str = "https://127.0.0.1:14000/dir";
const MANAGEMENT: &str = "https://127.0.0.1:15000";

/// How pebble is configured.
#[derive(Clone, Debug, Default)]
pub struct PebbleOptions {
    /// Lifetime of the certificates pebble issues, in seconds (pebble's
    /// `certificateValidityPeriod`; None: its default of about five years).
    pub validity_secs: Option<u64>,
    /// Percentage of new orders that reuse a valid authorization (`PEBBLE_AUTHZREUSE`; default 0).
    pub authz_reuse: u8,
    /// Percentage of good nonces rejected as badNonce (`PEBBLE_WFE_NONCEREJECT`; default 0).
    pub nonce_reject: u8,
}

/// A running pebble inside a [`Machine`]; stopped when dropped.
pub struct Pebble<'m> {
    machine: &'m Machine,
    dir: PathBuf,
    /// pebble's pid inside the machine's pid namespace.
    pid: String,
}

impl<'m> Pebble<'m> {
    /// Starts pebble with the default [`PebbleOptions`].
    pub fn start(machine: &'m Machine) -> Pebble<'m> {
        Pebble::start_with(machine, PebbleOptions::default())
    }

    /// Starts pebble in `machine` and waits until its directory answers.
    pub fn start_with(machine: &'m Machine, options: PebbleOptions) -> Pebble<'m> {
        let dir = machine.dir.path().join("pebble");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new("pebble test HTTPS CA");
        let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"], Validity::normal());
        std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        let mut config = serde_json::json!({
            "listenAddress": "127.0.0.1:14000",
            "managementListenAddress": "127.0.0.1:15000",
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": 80,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(secs) = options.validity_secs {
            config["certificateValidityPeriod"] = secs.into();
        }
        let config_file = dir.join("pebble-config.json");
        std::fs::write(&config_file, serde_json::json!({ "pebble": config }).to_string()).unwrap();
        // The sandbox is under the host's /tmp, which the machine shares: same paths inside.
        let script = format!(
            "PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT={} PEBBLE_AUTHZREUSE={} \
             pebble -strict=false -config {} >{} 2>&1 </dev/null & echo $!",
            options.nonce_reject,
            options.authz_reuse,
            config_file.display(),
            dir.join("pebble.log").display()
        );
        let out = machine.run("/bin/sh", &["-c", &script]);
        assert!(out.status.success(), "pebble did not start: {}", String::from_utf8_lossy(&out.stderr));
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let pebble = Pebble { machine, dir, pid };
        let wait = format!(
            "for i in $(seq 200); do curl -fsS -o /dev/null --cacert {} {DIRECTORY_URL} 2>/dev/null && exit 0; sleep 0.05; done; exit 1",
            pebble.ca_file().display()
        );
        let up = machine.run("/bin/sh", &["-c", &wait]);
        assert!(up.status.success(), "pebble's directory does not answer; its log:\n{}", pebble.log());
        pebble
    }

    /// Points the machine's berth at this pebble (`acme_directory`, `acme_ca_file`).
    pub fn configure_berth(&self) {
        self.machine.extend_config(&format!("acme_directory = {DIRECTORY_URL:?}\nacme_ca_file = {:?}", self.ca_file()));
    }

    /// The ACME directory URL (inside the machine).
    pub fn directory_url(&self) -> &'static str {
        DIRECTORY_URL
    }

    /// The CA PEM that signs pebble's HTTPS certificate (berth's `acme_ca_file`); the
    /// same path inside the machine as on the host.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// GET of a management API path (e.g. `/roots/0`), inside the machine: the body.
    pub fn management_get(&self, path: &str) -> String {
        self.curl(&format!("{MANAGEMENT}{path}"))
    }

    /// GET of an ACME server URL (e.g. the directory), inside the machine: the body.
    pub fn acme_get(&self, url: &str) -> String {
        self.curl(url)
    }

    /// The root pebble issues certificates under (it makes a new one each start).
    pub fn issuance_roots_pem(&self) -> String {
        self.management_get("/roots/0")
    }

    /// The intermediate between pebble's issuance root and its leaves.
    pub fn issuance_intermediate_pem(&self) -> String {
        self.management_get("/intermediates/0")
    }

    /// Writes the issuance root to the sandbox and returns its path (for `https_get`).
    pub fn issuance_roots_file(&self) -> PathBuf {
        let path = self.dir.join("issuance-root.pem");
        std::fs::write(&path, self.issuance_roots_pem()).unwrap();
        path
    }

    /// pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// Stops pebble and waits until it has exited (idempotent; dropping does it too).
    pub fn stop(&mut self) {
        if self.pid.is_empty() {
            return;
        }
        // The machine's init does not reap, so "exited" is "gone or a zombie".
        let script = format!(
            "kill {0}; for i in $(seq 200); do state=$(sed -n 's/^State:[[:space:]]*//p' /proc/{0}/status 2>/dev/null); \
             case $state in ''|Z*) exit 0;; esac; sleep 0.05; done; exit 1",
            self.pid
        );
        let stopped = self.machine.run("/bin/sh", &["-c", &script]);
        self.pid.clear();
        assert!(stopped.status.success() || std::thread::panicking(), "pebble did not exit; its log:\n{}", self.log());
    }

    fn curl(&self, url: &str) -> String {
        let ca = self.ca_file();
        let out = self.machine.run("/usr/bin/curl", &["-fsS", "--cacert", ca.to_str().unwrap(), url]);
        assert!(
            out.status.success(),
            "GET {url}: {}\npebble's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Pebble<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Name mapping and HTTP(S) probes on a test [`Machine`], for the certificate tests.
//!
//! Every probe runs inside the machine (curl, openssl s_client, bash's /dev/tcp), so
//! it reaches the nginx berth started there on 127.0.0.1:80 / :443 and sees the
//! machine's private `/etc/hosts`. Failures of the server under test are returned,
//! not panicked on, so a test can assert both that something works and that it is
//! refused.

use std::path::Path;

use super::machine::Machine;

impl Machine {
    /// Maps each of `names` to 127.0.0.1 in the machine's `/etc/hosts`. pebble's
    /// HTTP-01 validation and curl inside follow it; a name left out (e.g. under
    /// `.invalid`) resolves nowhere in the machine.
    pub fn add_hosts(&self, names: &[&str]) {
        let hosts = self.path("/etc/hosts");
        let mut text = std::fs::read_to_string(&hosts).unwrap();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for name in names {
            text.push_str(&format!("127.0.0.1\t{name}\n"));
        }
        std::fs::write(&hosts, text).unwrap();
    }

    /// GET `https://{host}{path}` from inside, connecting to 127.0.0.1:443 with SNI and
    /// Host `host`, verifying the chain against the CA PEM at `ca_pem_path` (a path
    /// inside the machine; the sandbox temp dir has the same path inside and out).
    /// Returns (status, body, HTTP version as curl names it: "2", "1.1"); when no
    /// response came (chain not verified, handshake refused...) status is 0, the body
    /// is curl's error text and the version is empty.
    pub fn https_get(&self, host: &str, path: &str, ca_pem_path: &Path) -> (u16, String, String) {
        const MARK: &str = "\n--berth-probe--";
        let resolve = format!("{host}:443:127.0.0.1");
        let url = format!("https://{host}{path}");
        let write_out = format!("{MARK}%{{http_code}} %{{http_version}}");
        let args = [
            "-sS",
            "--max-time",
            "20",
            "--resolve",
            &resolve,
            "--cacert",
            ca_pem_path.to_str().unwrap(),
            "-w",
            &write_out,
            &url,
        ];
        let out = self.run("/usr/bin/curl", &args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if !out.status.success() {
            return (0, stderr, String::new());
        }
        let (body, tail) = stdout.rsplit_once(MARK).unwrap_or_else(|| panic!("curl wrote no status: {stdout}"));
        let (status, version) = tail.split_once(' ').unwrap();
        (status.parse().unwrap(), body.to_owned(), version.trim().to_owned())
    }

    /// The PEM of the leaf certificate nginx presents on 127.0.0.1:443 for SNI `host`
    /// (not verified); None when the handshake is refused or no certificate comes.
    pub fn served_cert(&self, host: &str) -> Option<String> {
        let args = ["10", "openssl", "s_client", "-connect", "127.0.0.1:443", "-servername", host, "-showcerts"];
        let out = self.run("/usr/bin/timeout", &args);
        let text = String::from_utf8_lossy(&out.stdout);
        let begin = text.find("-----BEGIN CERTIFICATE-----")?;
        let end = "-----END CERTIFICATE-----";
        let len = text[begin..].find(end)? + end.len();
        Some(format!("{}\n", &text[begin..begin + len]))
    }

    /// A plain HTTP GET from inside to 127.0.0.1:80: (status, headers with lowercase
    /// names in order, body); status 0 when the server closed without a response.
    pub fn http_get_full(&self, host: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/80 || exit 3; printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3; cat <&3"
        );
        let out = self.run("/bin/bash", &["-c", &script]);
        let response = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }
}

/// The first value of header `name` (lowercase) in headers from [`Machine::http_get_full`].
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

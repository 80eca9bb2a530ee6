//! HTTP answers from inside a test machine, as curl gives them: status code,
//! headers (lowercase names) and body, for the tests that judge headers
//! (`X-Cache`, `Location`) as well as bodies.

use super::machine::Machine;

/// An answer: status code (0 when there was none), headers (lowercase names) and body.
pub struct Answer {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The `X-Cache` header of the page cache, `""` when absent.
    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("")
    }
}

/// curl (HTTP/1.1, 10 s at most) inside the machine with `args`.
pub fn curl(machine: &Machine, args: &[&str]) -> Answer {
    let mut all = vec!["-s", "-i", "--http1.1", "--max-time", "10"];
    all.extend(args);
    let out = machine.run("/usr/bin/curl", &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { code, headers, body: body.to_owned() }
}

/// curl to `http://127.0.0.1{path}` (port 80 of the machine) as `host`, with `extra` args.
pub fn fetch(machine: &Machine, host: &str, path: &str, extra: &[&str]) -> Answer {
    let (url, host) = (format!("http://127.0.0.1{path}"), format!("Host: {host}"));
    let mut args = vec!["-H", host.as_str()];
    args.extend(extra);
    args.push(&url);
    curl(machine, &args)
}

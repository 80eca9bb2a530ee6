//! The self-probe: which of an app's names really reach this server over HTTP,
//! asked before any order so one stray DNS record does not fail the whole app.
//!
//! A random file is put where every vhost serves ACME challenges; each name is
//! resolved as the world resolves it and fetched on port 80, as the CA will. A
//! name reaches when the answer is that file.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::host::fs::{ensure_dir, under_root, write_atomic};

const PORT: u16 = 80;
const PATIENCE: Duration = Duration::from_secs(5);
/// Tries of a name that resolves but does not answer with the file, and the pause between.
const ATTEMPTS: usize = 5;
const AGAIN_AFTER: Duration = Duration::from_millis(250);
/// Enough for the headers and the token.
const MAX_RESPONSE: usize = 8192;

/// The names that answered, and the others with the reason.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reach {
    pub reachable: Vec<String>,
    pub unreachable: Vec<(String, String)>,
}

/// Probes every name (at most a few at a time), keeping their order.
pub async fn probe(root: &Path, names: &[String]) -> std::io::Result<Reach> {
    let dir = under_root(root, super::CHALLENGE_DIR);
    ensure_dir(&dir, 0o755)?;
    let token = random_hex();
    let expected = random_hex();
    let file = dir.join(format!("berth-probe-{token}"));
    write_atomic(&file, expected.as_bytes(), 0o644)?;
    let path = format!("/.well-known/acme-challenge/berth-probe-{token}");
    let mut reach = Reach::default();
    for chunk in names.chunks(8) {
        let answers = futures_util::future::join_all(chunk.iter().map(|name| probe_one(name, &path, &expected))).await;
        for (name, answer) in chunk.iter().zip(answers) {
            match answer {
                Ok(()) => reach.reachable.push(name.clone()),
                Err(why) => reach.unreachable.push((name.clone(), why)),
            }
        }
    }
    let _ = std::fs::remove_file(&file);
    Ok(reach)
}

/// A name that resolves but at once answers something else is asked again a few
/// times: a reload that just added it to nginx takes effect in the workers a moment
/// later (a probe right after `app.update` found the old workers).
async fn probe_one(name: &str, path: &str, expected: &str) -> Result<(), String> {
    if name.starts_with("*.") {
        return Err("a wildcard name needs DNS-01 validation, which berth does not do".into());
    }
    let addrs: Vec<_> = tokio::time::timeout(PATIENCE, tokio::net::lookup_host((name, PORT)))
        .await
        .map_err(|_| "DNS lookup timed out".to_owned())?
        .map_err(|_| "does not resolve".to_owned())?
        .collect();
    let mut last = String::from("does not resolve");
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(AGAIN_AFTER).await;
        }
        let asked = std::time::Instant::now();
        match answers(&addrs, name, path, expected).await {
            Ok(()) => return Ok(()),
            // A slow failure (a timeout: another host, a firewall) is not a reload.
            Err(why) if asked.elapsed() >= AGAIN_AFTER => return Err(why),
            Err(why) => last = why,
        }
    }
    Err(last)
}

/// Whether one of `addrs` answers `path` for `name` with `expected`.
async fn answers(addrs: &[std::net::SocketAddr], name: &str, path: &str, expected: &str) -> Result<(), String> {
    let mut last = String::from("does not resolve");
    for &addr in addrs {
        match tokio::time::timeout(PATIENCE, fetch(addr, name, path)).await {
            Ok(Ok(body)) if body.trim() == expected => return Ok(()),
            Ok(Ok(_)) => last = format!("{addr} answers, but not from this server"),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: no answer within {} s", PATIENCE.as_secs()),
        }
    }
    Err(last)
}

/// GET `path` from `addr` as `Host: name`; the body of a 200, or why not.
async fn fetch(addr: std::net::SocketAddr, name: &str, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {name}\r\nUser-Agent: berth-probe\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream.take(MAX_RESPONSE as u64).read_to_end(&mut response).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("answers HTTP {status}"));
    }
    Ok(body.to_owned())
}

fn random_hex() -> String {
    (0..16).map(|_| format!("{:02x}", fastrand::u8(..))).collect()
}

//! A test control plane and a harness for the real `berth` binary.
//!
//! [`ControlPlane`] is a TLS websocket server on 127.0.0.1, port 0, with a CA made
//! here by rcgen; every accepted upgrade becomes a [`Session`] the test drives by
//! hand. [`Sandbox`] holds an agent's config, state dir and root in a temp dir and
//! starts, kills and restarts `berth run` against it.
#![allow(dead_code)]
// The handshake callback's error type is tungstenite's HTTP response, not ours to shrink.
#![allow(clippy::result_large_err)]

pub mod deb;
pub mod dev;
pub mod http;
pub mod machine;
pub mod netns;
pub mod nspawn;
pub mod pebble;
pub mod pki;
pub mod plane;
pub mod probes;
pub mod redis;
pub mod servers;
pub mod stall;
pub mod verdicts;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const SERVER_ID: &str = "UXOSIYrdtL4cSGp3";
pub const API_KEY: &str = "test-api-key-9f8e7d6c5b4a";
/// How long any single expectation waits before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A CA and a server certificate for `localhost` / 127.0.0.1.
pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// A client certificate for mutual TLS, signed by the same CA.
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "berth test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name.push(DnType::CommonName, SERVER_ID);
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    fn acceptor(&self, client_auth: bool) -> TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        TlsAcceptor::from(Arc::new(builder.with_single_cert(certs, key).unwrap()))
    }
}

/// How the control plane speaks on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wire {
    /// wss:// with the test CA's server certificate.
    Tls,
    /// wss:// that also demands a client certificate from the test CA.
    MutualTls,
    /// Plain ws:// (the agent needs `allow_insecure_ws`).
    Plain,
}

/// What the control plane does with the next upgrade requests.
#[derive(Debug, Default)]
struct Policy {
    /// Answer upgrades with this HTTP status instead of accepting.
    reject: Option<u16>,
    /// Times of every upgrade request, accepted or not.
    attempts: Vec<Instant>,
}

pub struct ControlPlane {
    pub port: u16,
    pub pki: Pki,
    pub wire: Wire,
    sessions: mpsc::UnboundedReceiver<Session>,
    policy: Arc<Mutex<Policy>>,
    /// The accept loop (it owns the listener).
    accept: tokio::task::JoinHandle<()>,
    /// The network namespace it listens in, if not the test's own.
    netns: Option<PathBuf>,
}

impl ControlPlane {
    pub async fn start() -> ControlPlane {
        ControlPlane::start_with(Wire::Tls).await
    }

    pub async fn start_with(wire: Wire) -> ControlPlane {
        ControlPlane::serve(wire, Pki::new(), TcpListener::bind("127.0.0.1:0").await.unwrap(), None)
    }

    /// A control plane on 127.0.0.1 of the network namespace at `ns` (a test
    /// machine's, [`machine::Machine::net_ns`]), for an agent running inside it.
    pub async fn start_in_netns(ns: &Path) -> ControlPlane {
        let listener = netns::in_netns(ns, || std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        listener.set_nonblocking(true).unwrap();
        ControlPlane::serve(Wire::Tls, Pki::new(), TcpListener::from_std(listener).unwrap(), Some(ns.to_owned()))
    }

    /// A control plane restart: the listener and every connection close (sessions the
    /// test still holds are its own to drop), then it listens again on the same port,
    /// with the same certificate. Nothing of the old one's accepted-but-untaken
    /// sessions survives.
    pub async fn restart(&mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        let addr = format!("127.0.0.1:{}", self.port);
        let started = Instant::now();
        let listener = loop {
            let bound = match &self.netns {
                Some(ns) => netns::in_netns(ns, || std::net::TcpListener::bind(&addr)),
                None => std::net::TcpListener::bind(&addr),
            };
            match bound {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(started.elapsed() < PATIENCE, "cannot listen on {addr} again: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        listener.set_nonblocking(true).unwrap();
        let acceptor = (self.wire != Wire::Plain).then(|| self.pki.acceptor(self.wire == Wire::MutualTls));
        (self.accept, self.sessions) =
            accept_loop(TcpListener::from_std(listener).unwrap(), acceptor, self.policy.clone());
    }

    fn serve(wire: Wire, pki: Pki, listener: TcpListener, netns: Option<PathBuf>) -> ControlPlane {
        let port = listener.local_addr().unwrap().port();
        let policy = Arc::new(Mutex::new(Policy::default()));
        let acceptor = (wire != Wire::Plain).then(|| pki.acceptor(wire == Wire::MutualTls));
        let (accept, sessions) = accept_loop(listener, acceptor, policy.clone());
        ControlPlane { port, pki, wire, sessions, policy, accept, netns }
    }

    pub fn url(&self) -> String {
        match self.wire {
            Wire::Plain => format!("ws://127.0.0.1:{}/agent", self.port),
            Wire::Tls | Wire::MutualTls => format!("wss://localhost:{}/agent", self.port),
        }
    }

    /// The next accepted session; fails the test after [`PATIENCE`].
    pub async fn session(&mut self) -> Session {
        self.session_within(PATIENCE).await.expect("the agent did not connect in time")
    }

    pub async fn session_within(&mut self, wait: Duration) -> Option<Session> {
        tokio::time::timeout(wait, self.sessions.recv()).await.ok().flatten()
    }

    /// A session that got past `hello`/`welcome`: returns it with the hello.
    pub async fn welcomed(&mut self, acked_seq: u64, heartbeat_secs: u64) -> (Session, Value) {
        let mut session = self.session().await;
        let hello = session.welcome(acked_seq, heartbeat_secs).await;
        (session, hello)
    }

    pub fn reject_with(&self, status: Option<u16>) {
        self.policy.lock().unwrap().reject = status;
    }

    pub fn attempts(&self) -> Vec<Instant> {
        self.policy.lock().unwrap().attempts.clone()
    }
}

/// Accepts connections on `listener` until aborted; each upgraded one goes to the receiver.
fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    policy: Arc<Mutex<Policy>>,
) -> (tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<Session>) {
    let (tx, sessions) = mpsc::unbounded_channel();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, policy, tx) = (acceptor.clone(), policy.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(session) = upgrade(tcp, acceptor, policy).await {
                    let _ = tx.send(session);
                }
            });
        }
    });
    (accept, sessions)
}

async fn upgrade(tcp: TcpStream, acceptor: Option<TlsAcceptor>, policy: Arc<Mutex<Policy>>) -> Option<Session> {
    let stream: Stream = match acceptor {
        Some(acceptor) => Box::new(acceptor.accept(tcp).await.ok()?),
        None => Box::new(tcp),
    };
    let headers = Arc::new(Mutex::new(HeaderMap::new()));
    let seen = headers.clone();
    let callback = move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        *seen.lock().unwrap() = request.headers().clone();
        let mut policy = policy.lock().unwrap();
        policy.attempts.push(Instant::now());
        if let Some(status) = policy.reject {
            let mut refusal = ErrorResponse::new(Some("credentials rejected".into()));
            *refusal.status_mut() = StatusCode::from_u16(status).unwrap();
            return Err(refusal);
        }
        response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("berth.v1"));
        Ok(response)
    };
    // The control plane itself accepts big frames: the size rule is the agent's.
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await.ok()?;
    let headers = headers.lock().unwrap().clone();
    Some(Session { ws, headers })
}

/// The control plane's side of a connection, with or without TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// One accepted websocket, driven by the test.
pub struct Session {
    pub ws: WebSocketStream<Stream>,
    pub headers: HeaderMap,
}

/// What a session saw when it ended.
#[derive(Debug, PartialEq)]
pub enum End {
    Closed(Option<u16>),
    Dropped,
}

impl Session {
    /// The next JSON message (pings and pongs skipped).
    pub async fn recv(&mut self) -> Value {
        self.try_recv(PATIENCE).await.expect("no message from the agent in time")
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??;
            match frame.ok()? {
                Message::Text(text) => return Some(serde_json::from_str(text.as_str()).expect("agent sent JSON")),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next message of `kind`, skipping metrics and live output.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let message = self.recv().await;
            if message["type"] == kind {
                return message;
            }
            assert!(
                ["metrics", "job.output", "job.status"].contains(&message["type"].as_str().unwrap_or_default()),
                "unexpected message while waiting for {kind}: {message}"
            );
        }
    }

    /// The next `job.status` event.
    pub async fn event(&mut self) -> Value {
        self.recv_type("job.status").await
    }

    /// `job.status` events until `job_id` reaches a final status; returns all of them.
    pub async fn until_final(&mut self, job_id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.event().await;
            let done = event["job_id"] == job_id && matches!(event["status"].as_str(), Some("success" | "error"));
            events.push(event);
            if done {
                return events;
            }
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.ws.send(Message::text(message.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// Receives `hello`, answers `welcome`; returns the hello.
    pub async fn welcome(&mut self, acked_seq: u64, heartbeat_secs: u64) -> Value {
        let hello = self.recv().await;
        assert_eq!(hello["type"], "hello", "first message must be hello: {hello}");
        self.send(
            json!({"type": "welcome", "acked_seq": acked_seq, "heartbeat_secs": heartbeat_secs, "metrics_secs": 3600}),
        )
        .await;
        hello
    }

    pub async fn job(&mut self, job_id: &str, kind: &str, params: Value) {
        self.send(json!({"type": "job", "job_id": job_id, "kind": kind, "params": params})).await;
    }

    pub async fn ack(&mut self, seq: u64) {
        self.send(json!({"type": "ack", "seq": seq})).await;
    }

    pub async fn close(&mut self, code: CloseCode) {
        let _ = self.ws.close(Some(CloseFrame { code, reason: "test".into() })).await;
    }

    /// Reads until the agent closes or drops the socket.
    pub async fn end(&mut self, wait: Duration) -> End {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the agent kept the connection open"),
                Ok(Some(Ok(Message::Close(frame)))) => return End::Closed(frame.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return End::Dropped,
            }
        }
    }
}

/// An agent's directory: config, state dir and root, kept across restarts.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub stderr: Arc<Mutex<String>>,
    child: Option<Child>,
    /// The thread copying the process's stderr into `stderr`; done at its EOF.
    reader: Option<std::thread::JoinHandle<()>>,
    env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new(cp: &ControlPlane) -> Sandbox {
        Sandbox::with_config(cp, &[])
    }

    /// A sandbox whose config has `overrides` (key, TOML value) set or added; the
    /// value `""` with no quotes removes a key.
    pub fn with_config(cp: &ControlPlane, overrides: &[(&str, &str)]) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &cp.pki.ca_pem).unwrap();
        let quoted = |p: PathBuf| format!("{p:?}");
        let mut config: Vec<(String, String)> = vec![
            ("server_id".into(), format!("{SERVER_ID:?}")),
            ("api_key".into(), format!("{API_KEY:?}")),
            ("control_plane_url".into(), format!("{:?}", cp.url())),
            ("ca_file".into(), quoted(dir.path().join("ca.pem"))),
            ("state_dir".into(), quoted(dir.path().join("state"))),
            ("root".into(), quoted(dir.path().join("root"))),
            ("test_jobs".into(), "true".into()),
        ];
        for (key, value) in overrides {
            config.retain(|(k, _)| k != key);
            if !value.is_empty() {
                config.push((key.to_string(), value.to_string()));
            }
        }
        let text: String = config.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        std::fs::write(dir.path().join("agent.toml"), text).unwrap();
        Sandbox { dir, stderr: Arc::new(Mutex::new(String::new())), child: None, reader: None, env: Vec::new() }
    }

    /// Copies the machine's account databases into the sandbox root, so shadow-utils
    /// work on them there (`--prefix`) and never on the machine's own.
    pub fn seed_accounts(&self) {
        let etc = self.root().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        for file in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
            std::fs::copy(Path::new("/etc").join(file), etc.join(file)).unwrap();
        }
    }

    /// Adds an environment variable for the next starts.
    pub fn env(&mut self, key: &str, value: impl Into<String>) {
        self.env.push((key.to_owned(), value.into()));
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// Starts `berth run` (the previous process must be gone).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.stderr.clone();
        self.reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[berth] {line}");
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }));
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("agent running").id() as i32
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("agent running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Waits for the process to exit; returns its exit code and how long it took.
    pub fn wait_exit(&mut self, wait: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let child = self.child.as_mut().expect("agent running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                let elapsed = started.elapsed();
                // Regression: the last lines were sometimes read after the test looked at
                // the log. Wait for the reader's EOF (bounded: a child it started may
                // still hold the pipe).
                let reader = self.reader.take();
                let eof = Instant::now();
                while reader.as_ref().is_some_and(|r| !r.is_finished()) && eof.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return (status.code(), elapsed);
            }
            assert!(started.elapsed() < wait, "the agent did not exit within {wait:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Lines of the `test.sleep` log: `start <job_id>` / `end <job_id>`.
    pub fn test_job_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("berth-test-jobs.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Polls until `done` holds, failing the test after [`PATIENCE`].
    pub async fn eventually(&self, what: &str, mut done: impl FnMut(&Sandbox) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < PATIENCE, "timed out waiting for: {what}\nagent log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A control plane, an agent started against it, and its welcomed session
/// (`acked_seq` 0, heartbeat 20 s): where most tests begin.
pub async fn connected() -> (ControlPlane, Sandbox, Session) {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    agent.start();
    let (session, _) = cp.welcomed(0, 20).await;
    (cp, agent, session)
}

/// Runs `berth` with `args`; returns exit code, stdout, stderr.
pub fn berth(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_berth")).args(args).env("RUST_LOG", "info").output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn write_executable(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A final `job.status`'s own time in milliseconds: `finished_at` minus `started_at`
/// (what the benches report), from the two RFC 3339 times, across midnight too.
pub fn job_ms(done: &serde_json::Value) -> f64 {
    rfc3339_ms(&done["finished_at"]) - rfc3339_ms(&done["started_at"])
}

/// An RFC 3339 UTC time (`2026-12-02T13:00:00.084Z`) in milliseconds since the epoch.
pub fn rfc3339_ms(at: &serde_json::Value) -> f64 {
    let at = at.as_str().unwrap_or_else(|| panic!("a time: {at}"));
    let (date, time) = at.trim_end_matches('Z').split_once('T').unwrap_or_else(|| panic!("a time: {at}"));
    let ymd: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let hms: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, d) = if ymd[1] <= 2 { (ymd[0] - 1, ymd[1] + 9, ymd[2]) } else { (ymd[0], ymd[1] - 3, ymd[2]) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    (days as f64 * 86_400.0 + hms[0] * 3600.0 + hms[1] * 60.0 + hms[2]) * 1000.0
}

#[test]
fn rfc3339_ms_counts_from_the_epoch_and_across_midnight() {
    assert_eq!(rfc3339_ms(&serde_json::json!("1970-01-01T00:00:00Z")), 0.0);
    assert_eq!(rfc3339_ms(&serde_json::json!("2026-12-02T13:00:00.084Z")), 1_796_216_400_084.0);
    let done = serde_json::json!({"started_at": "2026-12-31T23:59:59.900Z", "finished_at": "2027-01-01T00:00:00.100Z"});
    assert!((job_ms(&done) - 200.0).abs() < 1e-6);
}

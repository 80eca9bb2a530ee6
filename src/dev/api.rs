//! The REST API of `berth dev`, shaped like ServerPilot's v1: HTTP/1.1 on a loopback
//! address (hyper), HTTP Basic auth, JSON in and out, `{"data": …}` answers and
//! `{"error": {"message": …}}` errors with ServerPilot's status codes.
//!
//! This file is the HTTP side: auth, body, routing and the error shape. What each
//! route does to the store, and which job it makes, is [`super::resources`].
//!
//! Connections are bounded ([`Limits`]): a client gets `header_read_timeout` to send
//! each request's headers (also the first, so a connection that sends nothing is
//! closed), and at most `max_connections` are open at once. A connection beyond the
//! cap is answered `503` and closed at once, with a WARN at most once a second.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::monitoring;
use super::resources as r;
use super::servers;
use super::Shared;
use crate::shutdown::Shutdown;

pub use super::error::ApiError;

/// Request bodies above this are refused (a certificate chain fits easily).
const MAX_BODY: usize = 1 << 20;

/// Bounds on the API's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client has to send a request's headers; then the connection closes.
    pub header_read_timeout: Duration,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { header_read_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Serves the API until `shutdown`, within `limits`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, limits: Limits, mut shutdown: Shutdown) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut refused = Refused { answer: over_cap_answer(), last_log: None, unlogged: 0 };
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "dev API: accept failed");
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        // Taken here, in accept order, and held until the connection ends.
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.refuse(tcp, limits.max_connections);
            continue;
        };
        let (shared, http) = (shared.clone(), http.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            let io = hyper_util::rt::TokioIo::new(tcp);
            let _ = http.serve_connection(io, service).await;
            drop(permit);
        });
    }
}

/// Connections refused over the cap, logged at most once a second.
struct Refused {
    answer: String,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Refused {
    fn refuse(&mut self, tcp: TcpStream, cap: usize) {
        // Best effort and never waits: a fresh socket's send buffer is empty.
        let _ = tcp.try_write(self.answer.as_bytes());
        drop(tcp);
        self.unlogged += 1;
        if self.last_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(
                max_connections = cap,
                refused = self.unlogged,
                "dev API: too many connections; refused with 503"
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

/// The answer to a connection over the cap, sent without reading its request.
fn over_cap_answer() -> String {
    let body = format!("{}\n", json!({"error": {"message": "too many connections to the dev API; try again"}}));
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let query = request.uri().query().unwrap_or_default().to_owned();
    let answer = match authorized(&shared, &request) {
        false => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: HTTP Basic with the credentials berth dev printed",
        )),
        true => match body(request).await {
            // The one route that waits on the agent.
            Ok(_) if super::center::wanted(&method, &path).is_some() => {
                let server = super::center::wanted(&method, &path).unwrap_or_default();
                super::center::get(&shared, server, &query).await
            }
            Ok(body) => route(&shared, &method, &path, body),
            Err(e) => Err(e),
        },
    };
    let (status, value) = match answer {
        Ok(value) => (StatusCode::OK, value),
        Err(e) => (e.status, json!({"error": {"message": e.message}})),
    };
    tracing::info!(method = %method, path = %path, status = status.as_u16(), "dev API request");
    let mut response = Response::new(Full::new(Bytes::from(format!("{value}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", "application/json".parse().expect("header"));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert("www-authenticate", "Basic realm=\"berth dev\"".parse().expect("header"));
    }
    Ok(response)
}

fn authorized(shared: &Shared, request: &Request<Incoming>) -> bool {
    let given = request.headers().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
    super::same_secret(given, shared.api_authorization().as_bytes())
}

/// The JSON body: `{}` when empty; 400 when it is not JSON.
async fn body(request: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request(format!("the body must be JSON of at most {} KiB", MAX_BODY >> 10)))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    match value {
        Value::Object(_) => Ok(value),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

/// Which resource function a method and path reach.
pub fn route(shared: &Shared, method: &Method, path: &str, body: Value) -> Result<Value, ApiError> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let Some(("v1", parts)) = parts.split_first().map(|(first, rest)| (*first, rest)) else {
        return Err(ApiError::not_found(format!("no such route: {method} {}", crate::model::validate::shown(path))));
    };
    match (method.as_str(), parts) {
        ("GET", ["servers"]) => servers::list(shared),
        ("POST", ["servers"]) => servers::create(shared, &body),
        ("GET", ["servers", id]) => servers::get(shared, id),
        ("POST", ["servers", id]) => servers::update(shared, id, &body),
        ("DELETE", ["servers", id]) => servers::delete(shared, id),
        ("GET", ["sysusers"]) => r::list(shared, "sysuser"),
        ("POST", ["sysusers"]) => r::create_sysuser(shared, &body),
        ("GET", ["sysusers", id]) => r::get(shared, "sysuser", id),
        ("POST", ["sysusers", id]) => r::update_sysuser(shared, id, &body),
        ("DELETE", ["sysusers", id]) => r::delete_sysuser(shared, id),
        ("GET", ["apps"]) => r::list(shared, "app"),
        ("POST", ["apps"]) => r::create_app(shared, &body),
        ("GET", ["apps", id]) => r::get(shared, "app", id),
        ("POST", ["apps", id]) => r::update_app(shared, id, &body),
        ("DELETE", ["apps", id]) => r::delete_app(shared, id),
        ("POST", ["apps", id, "ssl"]) => r::set_ssl(shared, id, &body),
        ("DELETE", ["apps", id, "ssl"]) => r::delete_ssl(shared, id),
        ("POST", ["apps", id, "page_cache"]) => super::cache::set_page_cache(shared, id, &body),
        ("POST", ["apps", id, "cache_purge"]) => super::cache::purge_cache(shared, id, &body),
        ("POST", ["apps", id, "object_cache"]) => super::objcache::set_object_cache(shared, id, &body),
        ("POST", ["apps", id, "object_cache_purge"]) => super::objcache::purge_object_cache(shared, id, &body),
        ("POST", ["apps", id, "basic_auth"]) => super::sites::set_basic_auth(shared, id, &body),
        ("POST", ["apps", id, "fix_permissions"]) => super::sites::fix_permissions(shared, id),
        ("POST", ["apps", id, "git"]) => super::deploy::set_git(shared, id, &body),
        ("POST", ["apps", id, "deploy"]) => super::deploy::deploy(shared, id, &body),
        ("POST", ["apps", id, "backup"]) => super::backup::backup(shared, id, &body),
        ("POST", ["apps", id, "restore"]) => super::backup::restore(shared, id, &body),
        ("GET", ["dbs"]) => r::list(shared, "db"),
        ("POST", ["dbs"]) => r::create_db(shared, &body),
        ("GET", ["dbs", id]) => r::get(shared, "db", id),
        ("POST", ["dbs", id]) => r::update_db(shared, id, &body),
        ("DELETE", ["dbs", id]) => r::delete_db(shared, id),
        ("GET", ["actions", id]) => r::get_action(shared, id),
        ("GET", ["monitoring_policies"]) => monitoring::list(shared),
        ("POST", ["monitoring_policies"]) => monitoring::create(shared, &body),
        ("GET", ["monitoring_policies", id]) => monitoring::get(shared, id),
        ("PUT", ["monitoring_policies", id]) => monitoring::update(shared, id, &body),
        ("DELETE", ["monitoring_policies", id]) => monitoring::delete(shared, id),
        ("POST", ["monitoring_policies", id, "servers"]) => monitoring::assign(shared, id, &body),
        ("DELETE", ["monitoring_policies", id, "servers", server]) => monitoring::unassign(shared, id, server),
        _ => Err(ApiError::not_found(format!("no such route: {method} {}", crate::model::validate::shown(path)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The most any expectation waits: generous, never what a test asserts on.
    const PATIENCE: Duration = Duration::from_secs(20);

    struct Api {
        addr: SocketAddr,
        authorization: String,
        _stop: crate::shutdown::Trigger,
        _dir: tempfile::TempDir,
    }

    async fn start(limits: Limits) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared::new(
            super::super::store::Store::open(&dir.path().join("dev.redb")).unwrap(),
            "S1".into(),
            crate::config::Secret::new("agent-key"),
            crate::config::Secret::new("api-password"),
            "wss://127.0.0.1:1/agent".into(),
            dir.path().join("ca.pem"),
        ));
        let authorization = shared.api_authorization();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = crate::shutdown::channel();
        tokio::spawn(serve(listener, shared, limits, shutdown));
        Api { addr, authorization, _stop: stop, _dir: dir }
    }

    /// Reads until the server closes the connection; returns what it sent. Fails
    /// the test if it is still open after `wait`.
    async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> String {
        let read = async {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&got).into_owned()
        };
        tokio::time::timeout(wait, read)
            .await
            .unwrap_or_else(|_| panic!("the server kept the connection open {wait:?}"))
    }

    /// Open, and nothing to read: the server neither answered nor closed it.
    fn still_open(tcp: &TcpStream) -> bool {
        matches!(tcp.try_read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// `GET path` on a new connection; the whole answer ("" when closed unanswered).
    async fn get(api: &Api, path: &str) -> String {
        let mut tcp = TcpStream::connect(api.addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\nconnection: close\r\n\r\n",
            api.authorization
        );
        let _ = tcp.write_all(request.as_bytes()).await;
        closed_within(&mut tcp, PATIENCE).await
    }

    #[tokio::test]
    async fn regression_connections_that_send_no_headers_are_closed_after_the_header_read_timeout() {
        let timeout = Duration::from_millis(300);
        let api = start(Limits { header_read_timeout: timeout, max_connections: 8 }).await;
        let started = Instant::now();
        // Was: no timer, so no timeout; 3,000 of these stayed open.
        let mut silent = TcpStream::connect(api.addr).await.unwrap();
        let mut partial = TcpStream::connect(api.addr).await.unwrap();
        partial.write_all(b"GET /v1/servers HTTP/1.1\r\nhost: 127.0").await.unwrap();
        closed_within(&mut silent, PATIENCE).await;
        closed_within(&mut partial, PATIENCE).await;
        assert!(started.elapsed() >= timeout, "closed before the timeout: {:?}", started.elapsed());
        let answer = get(&api, "/v1/servers").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "a prompt request is served: {answer}");
    }

    #[tokio::test]
    async fn regression_connections_over_the_cap_are_refused_until_the_idle_ones_close() {
        let api = start(Limits { header_read_timeout: 3 * PATIENCE, max_connections: 2 }).await;
        // The server accepts in connect order, so these two hold the permits.
        let idle = [TcpStream::connect(api.addr).await.unwrap(), TcpStream::connect(api.addr).await.unwrap()];
        let mut over = TcpStream::connect(api.addr).await.unwrap();
        let refusal = closed_within(&mut over, PATIENCE).await;
        assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
        assert!(refusal.contains(r#"{"error":{"message":"too many connections"#), "{refusal}");
        let refusal = get(&api, "/v1/servers").await;
        assert!(refusal.starts_with("HTTP/1.1 503"), "an authenticated request is refused too: {refusal}");
        assert!(idle.iter().all(still_open), "the idle connections keep their places");

        drop(idle);
        // Their permits come back once the server sees them close: poll, bounded.
        let started = Instant::now();
        loop {
            let answer = get(&api, "/v1/servers").await;
            if answer.starts_with("HTTP/1.1 200") {
                assert!(answer.contains(r#""data":[{"#), "{answer}");
                break;
            }
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(started.elapsed() < PATIENCE, "the closed connections' permits never came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

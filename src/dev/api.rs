//! The REST API of `berth dev`, shaped like ServerPilot's v1: HTTP/1.1 on a loopback
//! address (hyper), HTTP Basic auth, JSON in and out, `{"data": …}` answers and
//! `{"error": {"message": …}}` errors with ServerPilot's status codes.
//!
//! This file is the HTTP side: auth, body, routing and the error shape. What each
//! route does to the store, and which job it makes, is [`super::resources`].

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::resources as r;
use super::Shared;
use crate::shutdown::Shutdown;

/// Request bodies above this are refused (a certificate chain fits easily).
const MAX_BODY: usize = 1 << 20;

/// An answer other than 200: the status and the message for `{"error": {"message"}}`.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl From<super::store::StoreError> for ApiError {
    fn from(e: super::store::StoreError) -> Self {
        tracing::error!(error = %e, "dev API: store failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the dev store failed; see berth dev's log")
    }
}

/// Serves the API until `shutdown`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: Shutdown) {
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
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            let io = hyper_util::rt::TokioIo::new(tcp);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let answer = match authorized(&shared, &request) {
        false => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: HTTP Basic with the credentials berth dev printed",
        )),
        true => match body(request).await {
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
        return Err(ApiError::not_found(format!("no such route: {method} {}", crate::validate::shown(path))));
    };
    match (method.as_str(), parts) {
        ("GET", ["servers"]) => r::list_servers(shared),
        ("GET", ["servers", id]) => r::get_server(shared, id),
        ("POST", ["servers", id]) => r::update_server(shared, id, &body),
        ("DELETE", ["servers", id]) => r::delete_server(shared, id),
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
        ("GET", ["dbs"]) => r::list(shared, "db"),
        ("POST", ["dbs"]) => r::create_db(shared, &body),
        ("GET", ["dbs", id]) => r::get(shared, "db", id),
        ("POST", ["dbs", id]) => r::update_db(shared, id, &body),
        ("DELETE", ["dbs", id]) => r::delete_db(shared, id),
        ("GET", ["actions", id]) => r::get_action(shared, id),
        _ => Err(ApiError::not_found(format!("no such route: {method} {}", crate::validate::shown(path)))),
    }
}

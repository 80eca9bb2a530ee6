//! The control plane of `berth dev`: a wss server on 127.0.0.1 that speaks
//! PROTOCOL.md exactly, a reference implementation of the control plane's side.
//!
//! The upgrade must carry a server's Basic credentials (its id and API key: the
//! local server's, or one `POST /servers` made) and the `berth.v1` subprotocol.
//! Then: `hello`, answered by `welcome` whose `acked_seq` is the highest event `seq`
//! stored for that server; every sequenced event is stored (with what it means for
//! its action) before it is acked; and after every `welcome`, and whenever the API
//! adds one, each of that server's actions whose job has no `queued` event yet is
//! sent (PROTOCOL 2.3). A server deleted through the API loses its session and its
//! key: the agent gets 401 from then on.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

use super::store::Writer;
use super::Shared;
use crate::model::protocol::{DEFAULT_HEARTBEAT_SECS, DEFAULT_METRICS_SECS, MAX_MESSAGE_BYTES, SUBPROTOCOL};
use crate::shutdown::Shutdown;

/// What the control plane knows of the agent beyond the store: its last hello and
/// metrics (latest wins, as PROTOCOL 2.7 says), and whether it is connected now.
#[derive(Debug, Default)]
pub struct Live {
    /// Sessions past `hello` (a reconnect may overlap the old session's end).
    pub sessions: usize,
    pub hello: Option<Value>,
    pub metrics: Option<Value>,
}

/// Accepts agents until `shutdown`.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>, mut shutdown: Shutdown) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "control plane: accept failed");
                    continue;
                }
            },
            _ = shutdown.wait() => return,
        };
        let (acceptor, shared, shutdown) = (acceptor.clone(), shared.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(message) = session(tcp, peer, acceptor, shared, shutdown).await {
                tracing::info!(peer = %peer, reason = %message, "control plane: session ended");
            }
        });
    }
}

/// Which server the upgrade request's Basic credentials are, by `key_of` (a
/// server's API key), when it also offers `berth.v1`.
fn check_upgrade(
    request: &Request,
    key_of: impl Fn(&str) -> Option<String>,
) -> Result<String, (StatusCode, &'static str)> {
    let rejected = (StatusCode::UNAUTHORIZED, "credentials rejected");
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let decoded = auth
        .strip_prefix("Basic ")
        .and_then(|b64| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(rejected)?;
    let (server, key) = decoded.split_once(':').ok_or(rejected)?;
    let expected = key_of(server).ok_or(rejected)?;
    if !super::same_secret(key.as_bytes(), expected.as_bytes()) {
        return Err(rejected);
    }
    let offered = request.headers().get_all("sec-websocket-protocol").iter().filter_map(|v| v.to_str().ok());
    if !offered.flat_map(|v| v.split(',')).any(|p| p.trim() == SUBPROTOCOL) {
        return Err((StatusCode::BAD_REQUEST, "the berth.v1 subprotocol is required"));
    }
    Ok(server.to_owned())
}

// The handshake callback's error type is tungstenite's HTTP response, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn session(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let tls = acceptor.accept(tcp).await.map_err(|e| format!("TLS: {e}"))?;
    let authenticated: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let (lookup, found) = (shared.clone(), authenticated.clone());
    let callback = move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        match check_upgrade(request, |server| lookup.agent_key(server).map(|k| k.expose().to_owned())) {
            Ok(server) => {
                *found.lock().expect("session") = Some(server);
                response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
                Ok(response)
            }
            Err((status, reason)) => {
                let mut refusal = ErrorResponse::new(Some(reason.into()));
                *refusal.status_mut() = status;
                Err(refusal)
            }
        }
    };
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_BYTES));
    let mut ws = tokio_tungstenite::accept_hdr_async_with_config(tls, callback, Some(config))
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    let server = authenticated.lock().expect("session").take().ok_or("no credentials")?;
    let mut wake = shared.wake.subscribe();
    let mut sent: HashSet<String> = HashSet::new();
    let mut connected: Option<Connected> = None;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("read: {e}")),
                };
                let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                    tracing::warn!("control plane: a frame that is not JSON, ignored");
                    continue;
                };
                let replies = match (connected.is_some(), message["type"].as_str()) {
                    (false, Some("hello")) => {
                        let welcome = hello(&shared, &server, &message, peer)?;
                        connected = Some(Connected::new(&shared, &server));
                        welcome
                    }
                    (false, _) => return Err("the first message was not hello".into()),
                    (true, _) => incoming(&shared, &server, &message)?,
                };
                for reply in replies {
                    ws.send(Message::text(reply.to_string())).await.map_err(|e| format!("send: {e}"))?;
                }
                if connected.is_some() {
                    send_pending(&shared, &server, &mut ws, &mut sent).await?;
                }
            }
            _ = wake.changed(), if connected.is_some() => {
                if shared.agent_key(&server).is_none() {
                    let _ = ws.close(Some(CloseFrame { code: CloseCode::Policy, reason: "server deleted".into() })).await;
                    return Err("the server was deleted".into());
                }
                send_pending(&shared, &server, &mut ws, &mut sent).await?;
            }
            _ = shutdown.wait() => {
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "berth dev stopping".into() })).await;
                return Ok(());
            }
        }
    }
}

/// Counts a session past `hello` in its server's [`Live::sessions`] for as long as
/// it lives.
struct Connected<'a>(&'a Shared, String);

impl<'a> Connected<'a> {
    fn new(shared: &'a Shared, server: &str) -> Self {
        shared.live.lock().expect("live state").entry(server.to_owned()).or_default().sessions += 1;
        Connected(shared, server.to_owned())
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        if let Some(live) = self.0.live.lock().expect("live state").get_mut(&self.1) {
            live.sessions = live.sessions.saturating_sub(1);
        }
    }
}

/// Takes `hello`: keeps it, records when and from where, answers `welcome`.
fn hello(shared: &Shared, server_id: &str, hello: &Value, peer: SocketAddr) -> Result<Vec<Value>, String> {
    if hello["server_id"].as_str() != Some(server_id) {
        return Err("hello from another server_id than its credentials'".into());
    }
    let acked_seq = shared
        .store
        .write(|w| {
            // A server deleted since the upgrade: no record comes back for it.
            let mut server = w.get("server", server_id).ok_or("the server was deleted")?;
            server["lastaddress"] = json!(peer.ip().to_string());
            server["lastconn"] = json!(crate::dev::now_secs());
            server["available_runtimes"] = hello["runtimes"].clone();
            // The local server is named after its host; `POST /servers` names the others.
            if server_id == shared.server_id {
                server["name"] = hello["host"]["hostname"].clone();
            }
            // What berth applied, unless a change the API asked for is still on its way.
            let pending = w
                .list("action")
                .iter()
                .any(|a| a["status"] == "open" && a["kind"] == "server.update" && a["serverid"] == server_id);
            if !pending {
                for key in ["firewall", "autoupdates", "deny_unknown_domains"] {
                    if let Some(value) = hello["settings"][key].as_bool() {
                        server[key] = json!(value);
                    }
                }
            }
            w.put("server", &server);
            Ok::<_, &str>(last_seq(w, &seq_key(shared, server_id)))
        })
        .map_err(|e| e.to_string())??;
    let mut live = shared.live.lock().expect("live state");
    live.entry(server_id.to_owned()).or_default().hello = Some(hello.clone());
    tracing::info!(acked_seq, "control plane: agent connected");
    Ok(vec![
        json!({"type": "welcome", "acked_seq": acked_seq, "heartbeat_secs": DEFAULT_HEARTBEAT_SECS, "metrics_secs": DEFAULT_METRICS_SECS}),
    ])
}

/// Where a server's highest stored `seq` is kept (the local server's where it
/// always was).
fn seq_key(shared: &Shared, server_id: &str) -> String {
    if server_id == shared.server_id {
        return "last_seq".into();
    }
    format!("last_seq/{server_id}")
}

fn last_seq(w: &Writer, key: &str) -> u64 {
    w.meta(key).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Takes a message after `welcome`; returns the replies (an `ack` for an event).
fn incoming(shared: &Shared, server_id: &str, message: &Value) -> Result<Vec<Value>, String> {
    if shared.agent_key(server_id).is_none() {
        return Err("the server was deleted".into());
    }
    if message["type"] == "metrics" {
        shared.live.lock().expect("live state").entry(server_id.to_owned()).or_default().metrics =
            Some(message.clone());
        return Ok(Vec::new());
    }
    let Some(seq) = message["seq"].as_u64() else { return Ok(Vec::new()) };
    let key = seq_key(shared, server_id);
    let acked = shared.store.write(|w| record_event(w, server_id, &key, seq, message)).map_err(|e| e.to_string())?;
    Ok(vec![json!({"type": "ack", "seq": acked})])
}

/// Stores one sequenced event of `server_id` (deduped by `seq`, kept under
/// `seq_key`, one per server) and what it means for its action, when the action is
/// that server's; returns the highest seq stored.
pub fn record_event(w: &mut Writer, server_id: &str, seq_key: &str, seq: u64, event: &Value) -> u64 {
    let last = last_seq(w, seq_key);
    if seq <= last {
        return last;
    }
    if event["type"] == "job.status" {
        let action = event["job_id"].as_str().and_then(|id| w.get("action", id));
        if let Some(mut action) = action.filter(|a| a["serverid"] == server_id) {
            apply_status(w, &mut action, event);
            w.put("action", &action);
        }
    }
    if event["type"] == "monitor.alert" {
        super::monitoring::record_alert(w, server_id, seq, event);
    }
    w.set_meta(seq_key, &seq.to_string());
    seq
}

/// The action's state after a `job.status`: a receipt drops the job's params (their
/// secrets are the agent's now); a final status sets `success` or `error`. A create
/// that failed leaves its resource in place, marked with the action and its error
/// (`failed_action`), until the user deletes it or creates it again (a retry).
fn apply_status(w: &mut Writer, action: &mut Value, event: &Value) {
    if action["status"] != "open" {
        return;
    }
    let Some(object) = action.as_object_mut() else { return };
    object.insert("queued".into(), json!(true));
    object.remove("params");
    match event["status"].as_str() {
        Some("success") => {
            object.insert("status".into(), json!("success"));
            // What the job made for the user to see (`app.git`'s public key).
            if event["result"].as_object().is_some_and(|r| !r.is_empty()) {
                object.insert("result".into(), event["result"].clone());
            }
        }
        Some("error") => {
            object.insert("status".into(), json!("error"));
            object
                .insert("error".into(), json!({"code": event["error"]["code"], "message": event["error"]["message"]}));
            let failed = json!({"id": object.get("id"), "error": object.get("error")});
            if let Some((kind, id)) = object.get("creates").and_then(Value::as_str).and_then(|c| c.split_once('/')) {
                if let Some(mut resource) = w.get(kind, id) {
                    resource["failed_action"] = failed;
                    w.put(kind, &resource);
                }
            }
        }
        _ => {}
    }
}

/// Sends every job of `server_id` whose action has no receipt yet and that this
/// session has not sent.
async fn send_pending<S>(shared: &Shared, server_id: &str, ws: &mut S, sent: &mut HashSet<String>) -> Result<(), String>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let actions = shared.store.read(|w| w.list("action")).map_err(|e| e.to_string())?;
    let mut pending: Vec<&Value> =
        actions.iter().filter(|a| a["status"] == "open" && a["queued"] != true && a["serverid"] == server_id).collect();
    pending.sort_by_key(|a| a["seq"].as_u64().unwrap_or(0));
    for action in pending {
        let id = action["id"].as_str().unwrap_or_default();
        if !sent.insert(id.to_owned()) {
            continue;
        }
        let job = json!({"type": "job", "job_id": id, "kind": action["kind"], "params": action["params"]});
        ws.send(Message::text(job.to_string())).await.map_err(|e| format!("send: {e}"))?;
        tracing::info!(job_id = id, kind = action["kind"].as_str().unwrap_or_default(), "control plane: job sent");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::store::Store;

    #[test]
    fn events_are_stored_once_and_settle_their_action() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("dev.redb")).unwrap();
        store
            .write(|w| {
                w.put("app", &json!({"id": "A1", "name": "shop"}));
                w.put("action", &json!({"id": "J1", "serverid": "S1", "status": "open", "kind": "app.create", "params": {"name": "shop"}, "creates": "app/A1"}));
            })
            .unwrap();
        let queued = json!({"type": "job.status", "seq": 5, "job_id": "J1", "status": "queued"});
        let failed = json!({"type": "job.status", "seq": 6, "job_id": "J1", "status": "error",
            "error": {"code": "precondition_failed", "message": "runtime php9.9 is not installed"}});
        store
            .write(|w| {
                assert_eq!(record_event(w, "S1", "last_seq", 5, &queued), 5);
                let action = w.get("action", "J1").unwrap();
                assert_eq!(
                    (action["queued"].clone(), action.get("params")),
                    (json!(true), None),
                    "the receipt drops the params"
                );
                let other = json!({"type": "job.status", "seq": 7, "job_id": "J1", "status": "success"});
                assert_eq!(record_event(w, "S2", "last_seq/S2", 7, &other), 7, "each server has its own seq");
                assert_eq!(w.get("action", "J1").unwrap()["status"], "open", "another server's event settles nothing");
                assert_eq!(record_event(w, "S1", "last_seq", 6, &failed), 6);
                assert_eq!(record_event(w, "S1", "last_seq", 5, &queued), 6, "a repeat is acked, not applied");
            })
            .unwrap();
        let (action, app) = store.read(|w| (w.get("action", "J1").unwrap(), w.get("app", "A1"))).unwrap();
        assert_eq!(action["status"], "error");
        assert_eq!(action["error"]["message"], "runtime php9.9 is not installed");
        let app = app.expect("a create that failed keeps its resource");
        assert_eq!(app["failed_action"]["id"], "J1");
        assert_eq!(app["failed_action"]["error"]["code"], "precondition_failed", "{app}");
    }

    #[test]
    fn upgrades_need_the_credentials_and_the_subprotocol() {
        let request = |auth: &str, protocol: &str| {
            tokio_tungstenite::tungstenite::http::Request::builder()
                .header("authorization", auth)
                .header("sec-websocket-protocol", protocol)
                .body(())
                .unwrap()
        };
        let basic = |creds: &str| {
            format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, creds))
        };
        let keys = |server: &str| match server {
            "S1" => Some("key-1".to_owned()),
            "S2" => Some("key-2".to_owned()),
            _ => None,
        };
        assert_eq!(check_upgrade(&request(&basic("S1:key-1"), "berth.v1"), keys), Ok("S1".to_owned()));
        assert_eq!(check_upgrade(&request(&basic("S2:key-2"), "berth.v1"), keys), Ok("S2".to_owned()));
        for wrong in ["S1:key-2", "S3:key-1", "S1", "S1:key-1x"] {
            assert_eq!(
                check_upgrade(&request(&basic(wrong), "berth.v1"), keys).unwrap_err().0,
                StatusCode::UNAUTHORIZED,
                "{wrong}"
            );
        }
        assert_eq!(check_upgrade(&request("Bearer x", "berth.v1"), keys).unwrap_err().0, StatusCode::UNAUTHORIZED);
        assert_eq!(check_upgrade(&request(&basic("S1:key-1"), "chat"), keys).unwrap_err().0, StatusCode::BAD_REQUEST);
    }
}

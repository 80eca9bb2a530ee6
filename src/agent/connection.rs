//! The connection to the control plane (PROTOCOL 1 and 2): one TLS websocket,
//! dialled out, kept alive with pings, dialled again with backoff when it drops.
//!
//! A session is: upgrade with credentials, `hello`, `welcome` (trims the outbox),
//! then the unacknowledged events in seq order, then whatever happens: jobs go to
//! the engine, acks trim the outbox, new events and metrics go out. The session
//! ends on any failure; [`Connection::run`] decides how long to wait before the next.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::agent::backoff::{self, Backoff};
use crate::agent::metrics::Scraper;
use crate::config::Config;
use crate::model::protocol::{self, Hello, Incoming, JobMsg, JobOutput, Welcome};
use crate::shutdown::Shutdown;
use crate::state::outbox::{NoSeqAfter, Outbox};
use crate::state::status::StatusFile;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The websocket's read buffer: the largest plaintext one TLS record carries.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Builds the `hello` of a new session (it looks at the host, so it may block).
pub type HelloFn = Arc<dyn Fn() -> Hello + Send + Sync>;

pub struct Connection {
    pub config: Arc<Config>,
    pub tls: Arc<rustls::ClientConfig>,
    pub outbox: Arc<Outbox>,
    pub jobs: mpsc::Sender<JobMsg>,
    pub output: mpsc::Receiver<JobOutput>,
    pub hello: HelloFn,
    pub metrics: Scraper,
    /// The last Ping→Pong round trip in ms (at least 1), 0 while disconnected or
    /// before the first Pong: the monitor's `internal_ping`.
    pub ping_ms: Arc<AtomicU32>,
}

/// How a session ended.
#[derive(Debug)]
enum Ended {
    /// The shutdown fired; the socket was closed with 1001.
    Shutdown,
    /// 401/403 on upgrade.
    Rejected(StatusCode),
    /// The control plane closed with 1001 or 1012.
    CleanClose {
        up: Duration,
    },
    Failed {
        reason: String,
        up: Duration,
    },
}

impl Ended {
    /// Why the session ended, for `berth status`.
    fn reason(&self) -> &str {
        match self {
            Ended::Shutdown => "agent stopping",
            Ended::Rejected(_) => "credentials rejected",
            Ended::CleanClose { .. } => "closed by the control plane",
            Ended::Failed { reason, .. } => reason,
        }
    }
}

impl Connection {
    /// Keeps a session open until `shutdown` fires.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut backoff = Backoff::default();
        let mut status = StatusFile::new(&self.config.state_dir);
        loop {
            let ended = self.session(&mut shutdown, &mut status).await;
            self.ping_ms.store(0, Ordering::Relaxed);
            status.disconnected(ended.reason());
            let delay = match ended {
                Ended::Shutdown => return,
                Ended::Rejected(status) => {
                    let delay = backoff.next(backoff::AUTH_CAP, fastrand::f64()).max(backoff::AUTH_FLOOR);
                    tracing::error!(server_id = %self.config.server_id, http_status = status.as_u16(), retry_in_secs = delay.as_secs_f32(),
                        "control plane rejected this agent's credentials: check server_id and api_key");
                    delay
                }
                Ended::CleanClose { up } => {
                    if up >= backoff::STABLE_AFTER {
                        backoff.reset();
                    }
                    let delay = Backoff::clean_close_delay(fastrand::f64());
                    tracing::info!(
                        retry_in_secs = delay.as_secs_f32(),
                        "control plane closed the connection; reconnecting"
                    );
                    delay
                }
                Ended::Failed { reason, up } => {
                    if up >= backoff::STABLE_AFTER {
                        backoff.reset();
                    }
                    let delay = backoff.next(backoff::CAP, fastrand::f64());
                    tracing::warn!(reason = %reason, retry_in_secs = delay.as_secs_f32(), "control plane connection lost");
                    delay
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    async fn session(&mut self, shutdown: &mut Shutdown, status: &mut StatusFile) -> Ended {
        let failed = |reason: String| Ended::Failed { reason, up: Duration::ZERO };
        let request = match self.request() {
            Ok(request) => request,
            Err(e) => return failed(e),
        };
        // tungstenite's default read buffer is 128 KiB, allocated and zeroed up front
        // and again on every read: resident for the life of the connection, though
        // the agent's messages are mostly a few hundred bytes. One TLS record's worth
        // is plenty; a longer frame still grows the buffer to its length.
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(protocol::MAX_MESSAGE_BYTES))
            .max_frame_size(Some(protocol::MAX_MESSAGE_BYTES));
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(ws_config),
            true,
            Some(Connector::Rustls(self.tls.clone())),
        );
        let mut ws = tokio::select! {
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match connected {
                Ok(Ok((ws, _response))) => ws,
                Ok(Err(WsError::Http(response)))
                    if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) =>
                {
                    return Ended::Rejected(response.status())
                }
                Ok(Err(WsError::Http(response))) => return failed(format!("upgrade refused with HTTP {}", response.status())),
                Ok(Err(e)) => return failed(format!("cannot connect: {e}")),
                Err(_) => return failed(format!("cannot connect within {}s", CONNECT_TIMEOUT.as_secs())),
            },
            _ = shutdown.wait() => return Ended::Shutdown,
        };

        let hello = self.hello.clone();
        let hello = match tokio::task::spawn_blocking(move || hello()).await {
            Ok(hello) => hello,
            Err(e) => return failed(format!("cannot describe the host: {e}")),
        };
        tracing::debug!(next_seq = hello.next_seq, "sending hello");
        if let Err(e) = send_json(&mut ws, &hello).await {
            return failed(format!("cannot send hello: {e}"));
        }
        let mut live = Live::new();
        let ended = self.serve(&mut ws, &mut live, shutdown, status).await;
        if let Ended::Shutdown = ended {
            self.close(&mut ws, &mut live).await;
        }
        ended
    }

    /// The session's main loop, after `hello`.
    async fn serve(&mut self, ws: &mut Ws, live: &mut Live, shutdown: &mut Shutdown, status: &mut StatusFile) -> Ended {
        let mut stored = self.outbox.subscribe();
        let mut heartbeat = tokio::time::interval(live.heartbeat);
        heartbeat.reset();
        let mut metrics = tokio::time::interval(Duration::from_secs(protocol::DEFAULT_METRICS_SECS));
        let dead = tokio::time::sleep(live.heartbeat * 3);
        tokio::pin!(dead);
        loop {
            tokio::select! {
                frame = ws.next() => {
                    dead.as_mut().reset(Instant::now() + live.heartbeat * 3);
                    live.last_frame = SystemTime::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(welcome) = self.handle(text.as_str()).await {
                                if let Err(e) = live.welcome(&welcome, &self.outbox) {
                                    tracing::error!(acked_seq = welcome.acked_seq, next_seq = self.outbox.next_seq(),
                                        "welcome refused: its acked_seq leaves no seq after it (a control-plane error); closing with 1002, the outbox keeps every event");
                                    let reason = "acked_seq leaves no seq after it".into();
                                    let close = CloseFrame { code: CloseCode::Protocol, reason };
                                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(close))).await;
                                    return live.failed(format!("welcome refused: {e}"));
                                }
                                // Live output from while nobody listened is stale: best effort, not stored.
                                while self.output.try_recv().is_ok() {}
                                heartbeat = tokio::time::interval(live.heartbeat);
                                heartbeat.reset();
                                metrics = tokio::time::interval(Duration::from_secs(welcome.metrics_secs.clamp(1, 86_400)));
                                dead.as_mut().reset(Instant::now() + live.heartbeat * 3);
                                tracing::info!(acked_seq = welcome.acked_seq, heartbeat_secs = live.heartbeat.as_secs(),
                                    outbox = self.outbox.len(), "connected to the control plane");
                                status.connected();
                                if let Err(e) = self.send_events(ws, live).await {
                                    return live.failed(e.to_string());
                                }
                            }
                        }
                        Some(Ok(Message::Binary(_))) => tracing::warn!("binary frame from the control plane ignored"),
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.as_ref().map(|f| f.code);
                            if matches!(code, Some(CloseCode::Away | CloseCode::Restart)) {
                                return Ended::CleanClose { up: live.up() };
                            }
                            return live.failed(format!("closed by the control plane ({})", describe_close(frame.as_ref())));
                        }
                        Some(Ok(Message::Pong(_))) => {
                            if let Some(sent) = live.ping_sent.take() {
                                let ms = sent.elapsed().as_millis().clamp(1, u128::from(u32::MAX)) as u32;
                                self.ping_ms.store(ms, Ordering::Relaxed);
                            }
                        }
                        Some(Ok(_)) => {} // ping: tungstenite answers pings itself
                        Some(Err(WsError::Capacity(e))) => {
                            tracing::warn!(error = %e, limit_bytes = protocol::MAX_MESSAGE_BYTES, "message over the size limit refused");
                            refuse_oversize(ws).await;
                            return live.failed(format!("message too big: {e}"));
                        }
                        Some(Err(e)) => return live.failed(e.to_string()),
                        None => return live.failed("connection closed".into()),
                    }
                }
                _ = heartbeat.tick() => {
                    status.heartbeat(live.last_frame);
                    if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                        return live.failed(format!("cannot send ping: {e}"));
                    }
                    live.ping_sent = Some(Instant::now());
                }
                () = &mut dead => {
                    return live.failed(format!("no frame for {}s: connection dead", (live.heartbeat * 3).as_secs()));
                }
                _ = stored.changed(), if live.welcomed => {
                    if let Err(e) = self.send_events(ws, live).await {
                        return live.failed(e.to_string());
                    }
                }
                Some(output) = self.output.recv() => {
                    if live.welcomed {
                        if let Err(e) = send_json(ws, &output).await {
                            return live.failed(e.to_string());
                        }
                    }
                }
                _ = metrics.tick(), if live.welcomed => {
                    let snapshot = self.metrics.scrape(crate::time::now());
                    if let Err(e) = send_json(ws, &snapshot).await {
                        return live.failed(e.to_string());
                    }
                }
                _ = shutdown.wait() => return Ended::Shutdown,
            }
        }
    }

    /// Acts on one text frame; returns a `welcome` for the session to take.
    async fn handle(&mut self, text: &str) -> Option<Welcome> {
        match protocol::parse_incoming(text) {
            Ok(Incoming::Welcome(welcome)) => return Some(welcome),
            Ok(Incoming::Job(job)) => {
                if self.jobs.send(job).await.is_err() {
                    tracing::warn!("job received while the engine is stopping; the control plane resends it");
                }
            }
            Ok(Incoming::Ack(ack)) => self.outbox.ack(ack.seq),
            Ok(Incoming::Unknown(kind)) => {
                tracing::warn!(message_type = %crate::model::validate::shown(&kind), "unknown message type ignored")
            }
            Err(e) => {
                tracing::warn!(error = %e, bytes = text.len(), "malformed message from the control plane ignored")
            }
        }
        None
    }

    /// Sends every stored event the control plane has not been sent on this session.
    async fn send_events(&self, ws: &mut Ws, live: &mut Live) -> Result<(), WsError> {
        for event in self.outbox.after(live.sent) {
            ws.feed(Message::text(event.text.as_ref())).await?;
            live.sent = event.seq;
        }
        ws.flush().await
    }

    /// At shutdown: the last stored events out, then close with 1001 (bounded).
    async fn close(&self, ws: &mut Ws, live: &mut Live) {
        let flush = async {
            if live.welcomed {
                self.send_events(ws, live).await?;
            }
            ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "agent shutting down".into() })).await?;
            // Wait for the control plane's close frame, so our close is delivered.
            while let Some(Ok(_)) = ws.next().await {}
            Ok::<(), WsError>(())
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, flush).await {
            Ok(Ok(())) | Ok(Err(WsError::ConnectionClosed)) => tracing::info!("connection closed (1001)"),
            Ok(Err(e)) => tracing::warn!(error = %e, "closing the connection failed"),
            Err(_) => tracing::warn!("the control plane did not answer the close in time"),
        }
    }

    fn request(&self) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, String> {
        upgrade_request(&self.config)
    }
}

/// The websocket upgrade request: credentials, subprotocol, user agent.
pub fn upgrade_request(config: &Config) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, String> {
    let mut request =
        config.control_plane_url.as_str().into_client_request().map_err(|e| format!("bad control_plane_url: {e}"))?;
    let credentials = format!("{}:{}", config.server_id, config.api_key.expose());
    let mut authorization =
        HeaderValue::try_from(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)))
            .map_err(|_| "server_id or api_key is not a valid header value".to_string())?;
    authorization.set_sensitive(true);
    let headers = request.headers_mut();
    headers.insert("authorization", authorization);
    headers.insert("sec-websocket-protocol", HeaderValue::from_static(protocol::SUBPROTOCOL));
    headers.insert("user-agent", HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"))));
    Ok(request)
}

/// What one session knows.
struct Live {
    welcomed: bool,
    since: Instant,
    heartbeat: Duration,
    /// The highest seq sent on this session.
    sent: u64,
    /// When the control plane last sent a frame (for `berth status`).
    last_frame: SystemTime,
    /// When the last Ping went out, until its Pong arrives.
    ping_sent: Option<Instant>,
}

impl Live {
    fn new() -> Self {
        Live {
            welcomed: false,
            since: Instant::now(),
            heartbeat: Duration::from_secs(protocol::DEFAULT_HEARTBEAT_SECS),
            sent: 0,
            last_frame: SystemTime::now(),
            ping_sent: None,
        }
    }

    /// Takes a `welcome`; one whose `acked_seq` leaves the counter no seq after it
    /// is refused whole (the outbox keeps its events and its counter).
    fn welcome(&mut self, welcome: &Welcome, outbox: &Outbox) -> Result<(), NoSeqAfter> {
        outbox.continue_after(welcome.acked_seq)?;
        outbox.ack(welcome.acked_seq);
        self.welcomed = true;
        self.since = Instant::now();
        self.heartbeat = Duration::from_secs(welcome.heartbeat_secs.clamp(1, 3600));
        self.sent = welcome.acked_seq;
        Ok(())
    }

    fn failed(&self, reason: String) -> Ended {
        Ended::Failed { reason, up: self.up() }
    }

    fn up(&self) -> Duration {
        if self.welcomed {
            self.since.elapsed()
        } else {
            Duration::ZERO
        }
    }
}

/// Closes with 1009 and reads away what the peer is still sending (bounded), so
/// the close frame is delivered instead of lost to a TCP reset.
async fn refuse_oversize(ws: &mut Ws) {
    use tokio::io::AsyncReadExt;
    let close = CloseFrame { code: CloseCode::Size, reason: "message too big".into() };
    let drain = async {
        ws.close(Some(close)).await.ok()?;
        let mut buf = vec![0u8; 64 << 10];
        let mut left = 2 * protocol::MAX_MESSAGE_BYTES;
        while left > 0 {
            let n = ws.get_mut().read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Some(())
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
}

async fn send_json<T: serde::Serialize>(ws: &mut Ws, message: &T) -> Result<(), WsError> {
    let text = serde_json::to_string(message).expect("messages serialize");
    ws.send(Message::text(text)).await
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) => {
            format!("code {}, reason {}", u16::from(frame.code), crate::model::validate::shown(&frame.reason))
        }
        None => "no close code".into(),
    }
}

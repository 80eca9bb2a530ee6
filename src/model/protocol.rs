//! The wire protocol: every message of `PROTOCOL.md` section 2 as plain serde types.
//!
//! Nothing here does I/O. The connection turns frames into [`Incoming`] with
//! [`parse_incoming`] and sends the `Serialize` types as text frames. Events (the
//! sequenced messages) are serialized once, when the outbox stores them, with
//! [`sequenced`] putting the `seq` in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `protocol` in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
/// `Sec-WebSocket-Protocol` of the upgrade request.
pub const SUBPROTOCOL: &str = "berth.v1";
/// Incoming messages larger than this are refused with close code 1009.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// `output` of a final status carries at most this tail of what tools printed.
pub const MAX_OUTPUT_BYTES: usize = 64 << 10;
/// `heartbeat_secs` until a `welcome` says otherwise.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 20;
/// `metrics_secs` until a `welcome` says otherwise.
pub const DEFAULT_METRICS_SECS: u64 = 60;

/// A message from the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Welcome(Welcome),
    Job(JobMsg),
    Ack(Ack),
    /// A `type` this agent does not know: logged and ignored.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Welcome {
    #[serde(default)]
    pub acked_seq: u64,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    #[serde(default = "default_metrics")]
    pub metrics_secs: u64,
}

fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_SECS
}

fn default_metrics() -> u64 {
    DEFAULT_METRICS_SECS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMsg {
    pub job_id: String,
    pub kind: String,
    #[serde(default)]
    pub params: Value,
    /// Submitted by the agent itself (a certificate renewal), never read off the wire.
    #[serde(skip)]
    pub internal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Ack {
    pub seq: u64,
}

/// Why a text frame is not a message.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("not a JSON object with a string \"type\"")]
    NoType,
    #[error("malformed {kind:?} message: {source}")]
    Shape {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Parses one text frame. Unknown fields are ignored; an unknown `type` is
/// [`Incoming::Unknown`], not an error.
pub fn parse_incoming(text: &str) -> Result<Incoming, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(ParseError::Json)?;
    let kind = match value.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => return Err(ParseError::NoType),
    };
    let shape = |source| ParseError::Shape { kind: kind.clone(), source };
    Ok(match kind.as_str() {
        "welcome" => Incoming::Welcome(serde_json::from_value(value).map_err(shape)?),
        "job" => Incoming::Job(serde_json::from_value(value).map_err(shape)?),
        "ack" => Incoming::Ack(serde_json::from_value(value).map_err(shape)?),
        _ => Incoming::Unknown(kind),
    })
}

/// `hello`: the first message on every connection.
#[derive(Debug, Clone, Serialize)]
pub struct Hello {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub protocol: u32,
    pub server_id: String,
    pub agent_version: &'static str,
    pub host: HostInfo,
    pub runtimes: Vec<String>,
    pub services: BTreeMap<String, String>,
    pub job_kinds: Vec<&'static str>,
    pub next_seq: u64,
    /// berth's extension (docs/protocol.md): the server settings as last applied.
    pub settings: HelloSettings,
    /// berth's extension: the `monitor.policy` as stored; absent when none was ever set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<crate::model::monitor::Policy>,
}

/// `hello.settings`: the state of each `server.update` setting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HelloSettings {
    pub firewall: bool,
    pub autoupdates: bool,
    pub deny_unknown_domains: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub boot_id: String,
    pub cpus: usize,
    pub memory_total: u64,
}

/// `metrics`: best effort, latest wins, not sequenced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub at: String,
    pub uptime_secs: u64,
    pub load: [f64; 3],
    pub cpu_percent: f32,
    pub memory: Memory,
    pub swap: Swap,
    pub disks: Vec<Disk>,
    pub network: Network,
    pub reboot_required: bool,
    pub upgrades_pending: u32,
    /// systemd services (unit names without `.service`) whose processes map deleted
    /// programs or libraries: sorted, each once.
    pub services_need_restart: Vec<String>,
    /// `berth reconcile` would change managed files.
    pub upgrade_required: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub total: u64,
    pub used: u64,
    pub available: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Swap {
    pub total: u64,
    pub used: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Disk {
    pub mount: String,
    pub fs: String,
    pub total: u64,
    pub used: u64,
    pub available: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Network {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `job.output`: live output of a long job, not sequenced, not stored.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutput {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub job_id: String,
    pub text: String,
}

/// The sequenced messages (PROTOCOL 2.4). Stored in the outbox before they are sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "job.status")]
    JobStatus(JobStatus),
    /// An extension (docs/protocol.md): a background certificate renewal, done or failed.
    #[serde(rename = "ssl.renewal")]
    SslRenewal(SslRenewal),
    /// An extension (docs/protocol.md): a monitoring check changed level.
    #[serde(rename = "monitor.alert")]
    MonitorAlert(MonitorAlert),
}

/// `monitor.alert`: a check of the `monitor.policy` changed level (transitions only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorAlert {
    /// `cpu`, `ram`, `disk:/MOUNT`, `transfer`, `internal_ping`, `port:TCP:80`, `process:nginx`.
    pub check: String,
    /// `resources`, `ports` or `process`.
    pub kind: String,
    /// `ok`, `warning` or `critical`.
    pub level: String,
    /// The number judged: percent, kbps, ms; 1/0 for a port; a count for a process.
    pub value: f64,
    /// When the reading that started this level was taken.
    pub since: String,
    /// When the alert was made.
    pub at: String,
}

/// `ssl.renewal`: the agent renewed an AutoSSL certificate, or failed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SslRenewal {
    pub app: String,
    /// `success` or `error`.
    pub status: Status,
    pub at: String,
    /// As `ssl.auto`'s: `expires_at`, `domains_covered`, `domains_uncovered`, `unreachable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// After a failure: when the agent tries again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Success,
    Error,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(self, Status::Success | Status::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Success => "success",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub job_id: String,
    pub kind: String,
    pub status: Status,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl JobStatus {
    /// A `queued` or `running` status: no outcome fields.
    pub fn progress(job_id: &str, kind: &str, status: Status, at: String) -> Self {
        JobStatus {
            job_id: job_id.to_owned(),
            kind: kind.to_owned(),
            status,
            at,
            changed: None,
            steps: None,
            result: None,
            output: None,
            started_at: None,
            finished_at: None,
            error: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// `error.code` of PROTOCOL 2.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidParams,
    NotFound,
    Conflict,
    LimitExceeded,
    PreconditionFailed,
    ConfigInvalid,
    ToolFailed,
    AcmeFailed,
    Unsupported,
    Internal,
}

/// The text frame of an event: its JSON with `"seq"` put in.
pub fn sequenced(seq: u64, event: &Event) -> String {
    let json = serde_json::to_string(event).expect("events serialize");
    // An internally tagged enum always serializes as a non-empty object.
    debug_assert!(json.starts_with("{\"type\""));
    format!("{{\"seq\":{seq},{}", &json[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_examples_of_the_protocol() {
        let welcome = r#"{"type": "welcome", "acked_seq": 37, "heartbeat_secs": 20, "metrics_secs": 60}"#;
        assert_eq!(
            parse_incoming(welcome).unwrap(),
            Incoming::Welcome(Welcome { acked_seq: 37, heartbeat_secs: 20, metrics_secs: 60 })
        );
        let job = r#"{"type": "job", "job_id": "tW2fu4hjHnsix6Rn", "kind": "app.create", "params": { }, "extra": 1}"#;
        match parse_incoming(job).unwrap() {
            Incoming::Job(job) => assert_eq!(job.kind, "app.create"),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_incoming(r#"{"type":"ack","seq":39}"#).unwrap(), Incoming::Ack(Ack { seq: 39 }));
    }

    /// Found by the fuzz target `wire_decode` (fuzz/corpus/wire_decode/crash-0316…): a
    /// number was read inexactly (`428E75` as 4.279999999999999e77), so a job encoded
    /// again (as the job store keeps it) read back as another job.
    #[test]
    fn wire_decoder_float_param_round_trip_regression() {
        let frame = r#"{"type": "job", "job_id": "55161n","kind": "ae", "params":{"ms":428E75} }"#;
        let Incoming::Job(job) = parse_incoming(frame).unwrap() else { panic!("not a job") };
        assert_eq!(job.params["ms"].as_f64(), Some(4.28e77), "read exactly");
        let mut again = serde_json::to_value(&job).unwrap();
        again["type"] = "job".into();
        assert_eq!(parse_incoming(&again.to_string()).unwrap(), Incoming::Job(job));
    }

    #[test]
    fn unknown_type_is_not_an_error_but_missing_fields_are() {
        assert_eq!(parse_incoming(r#"{"type":"shrug"}"#).unwrap(), Incoming::Unknown("shrug".into()));
        assert!(matches!(parse_incoming(r#"{"type":"ack"}"#), Err(ParseError::Shape { .. })));
        assert!(matches!(parse_incoming(r#"[1,2]"#), Err(ParseError::NoType)));
        assert!(matches!(parse_incoming("{"), Err(ParseError::Json(_))));
    }

    #[test]
    fn sequenced_event_carries_type_and_seq() {
        let event = Event::JobStatus(JobStatus::progress("j1", "app.create", Status::Queued, "t".into()));
        let text = sequenced(38, &event);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "job.status");
        assert_eq!(value["seq"], 38);
        assert_eq!(value["status"], "queued");
        assert!(value.get("changed").is_none());
    }
}

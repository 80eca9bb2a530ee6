//! The wire decoder: every text frame from the control plane goes through
//! `model::protocol::parse_incoming` (PROTOCOL §2: `welcome`, `job`, `ack`, and any
//! other `type`). Proves, for any UTF-8 frame:
//! - it never panics;
//! - it answers `Ok` only for a JSON object with a string `type`, `NoType` only when
//!   there is none, `Shape` only for a known `type`, `Unknown` only for another;
//! - what it accepts round-trips: the message encoded again parses to the same value;
//! - an accepted `job` goes on to the engine's checks (the `job_id` rule) without a panic.
#![no_main]

use berth::model::protocol::{parse_incoming, Incoming, ParseError};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const KNOWN: [&str; 3] = ["welcome", "job", "ack"];

fuzz_target!(|data: &[u8]| {
    // The connection hands over text frames only, which tungstenite has checked are UTF-8.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse_incoming(text);
    let value: Option<Value> = serde_json::from_str(text).ok();
    let kind = value.as_ref().and_then(|v| v.get("type")).and_then(Value::as_str);
    match &parsed {
        Err(ParseError::Json(_)) => assert!(value.is_none(), "valid JSON refused as not JSON"),
        Err(ParseError::NoType) => assert!(value.is_some() && kind.is_none()),
        Err(ParseError::Shape { kind: k, .. }) => {
            assert_eq!(Some(k.as_str()), kind);
            assert!(KNOWN.contains(&k.as_str()), "shape error for an unknown type {k:?}");
        }
        Ok(Incoming::Unknown(k)) => {
            assert_eq!(Some(k.as_str()), kind);
            assert!(!KNOWN.contains(&k.as_str()), "known type {k:?} taken as unknown");
        }
        Ok(_) => assert!(kind.is_some_and(|k| KNOWN.contains(&k))),
    }
    let again = match &parsed {
        Ok(Incoming::Welcome(w)) => json!({"type": "welcome", "acked_seq": w.acked_seq,
            "heartbeat_secs": w.heartbeat_secs, "metrics_secs": w.metrics_secs}),
        Ok(Incoming::Job(job)) => {
            assert!(!job.internal, "a job off the wire is never internal");
            // The engine's first check on a job (engine::daemon's accept); then its
            // kind's parser, which the job_params target covers.
            let _ = berth::model::validate::job_id("job_id", &job.job_id);
            let mut v = serde_json::to_value(job).expect("a job serializes");
            v["type"] = json!("job");
            v
        }
        Ok(Incoming::Ack(ack)) => json!({"type": "ack", "seq": ack.seq}),
        _ => return,
    };
    let reparsed = parse_incoming(&again.to_string()).expect("an accepted message, encoded again, parses");
    assert_eq!(&reparsed, parsed.as_ref().unwrap(), "round trip changed the message");
});

//! A control plane that outlives connections, as a real one does: it keeps the
//! highest seq it stored, every distinct event, and the final status of each job,
//! and acks what it stores. Tests drive reconnects (after a kill, a restart, a
//! reboot) with [`Plane::connect`] and count final statuses with [`Plane::finals`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{ControlPlane, Session};

pub struct Plane {
    pub cp: ControlPlane,
    session: Option<Session>,
    /// The highest seq stored (what `welcome` and `ack` carry).
    pub acked: u64,
    /// Every distinct job.status event, by seq.
    pub events: BTreeMap<u64, Value>,
    /// Duplicates the agent sent again (at-least-once delivery), by seq.
    pub resent: usize,
    pub hellos: Vec<Value>,
    /// What happened, in order, for a failing test to show.
    pub trace: Vec<String>,
}

/// The agent closed or dropped the connection.
#[derive(Debug)]
pub struct Gone;

impl Plane {
    pub fn new(cp: ControlPlane) -> Plane {
        Plane { cp, session: None, acked: 0, events: BTreeMap::new(), resent: 0, hellos: Vec::new(), trace: Vec::new() }
    }

    /// Waits up to `wait` for the agent's next connection, welcomes it; returns hello.
    pub async fn connect(&mut self, wait: Duration) -> Value {
        self.try_connect(wait).await.expect("the agent did not connect in time")
    }

    pub async fn try_connect(&mut self, wait: Duration) -> Option<Value> {
        let mut session = self.cp.session_within(wait).await?;
        let hello = session.welcome(self.acked, 20).await;
        self.trace.push(format!("welcome acked_seq={} next_seq={}", self.acked, hello["next_seq"]));
        self.hellos.push(hello.clone());
        self.session = Some(session);
        Some(hello)
    }

    pub fn connected(&self) -> bool {
        self.session.is_some()
    }

    /// Sends a job; a connection that turns out dead is dropped (the job goes
    /// again after the next connect, as a control plane resends).
    pub async fn job(&mut self, job_id: &str, kind: &str, params: Value) {
        self.trace.push(format!("job {job_id}"));
        let job = json!({"type": "job", "job_id": job_id, "kind": kind, "params": params});
        self.send(job).await;
    }

    async fn send(&mut self, message: Value) {
        let Some(session) = self.session.as_mut() else { return };
        if session.ws.send(Message::text(message.to_string())).await.is_err() {
            self.session = None;
        }
    }

    /// Stores and acks events until `done` holds for one of them or `wait` passes
    /// (`Ok(false)`); `Err(Gone)` when the connection ends first.
    pub async fn pump(&mut self, wait: Duration, mut done: impl FnMut(&Value) -> bool) -> Result<bool, Gone> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let session = self.session.as_mut().ok_or(Gone)?;
            let message = match tokio::time::timeout(left, session.ws.next()).await {
                Err(_) => return Ok(false),
                Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(text.as_str()).expect("JSON"),
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                    self.trace.push("connection ended".into());
                    self.session = None;
                    return Err(Gone);
                }
                Ok(Some(Ok(_))) => continue,
            };
            if message["type"] != "job.status" {
                continue;
            }
            let seq = message["seq"].as_u64().expect("events carry seq");
            self.trace.push(format!("event {seq} {} {}", message["job_id"], message["status"]));
            if self.events.contains_key(&seq) || seq <= self.acked {
                self.resent += 1;
            } else {
                self.events.insert(seq, message.clone());
            }
            self.acked = self.acked.max(seq);
            self.send(json!({"type": "ack", "seq": self.acked})).await;
            if done(&message) {
                return Ok(true);
            }
        }
    }

    /// Sends a job and waits for its final status.
    pub async fn run(&mut self, job_id: &str, kind: &str, params: Value) -> Value {
        self.job(job_id, kind, params).await;
        let finished = self.pump(Duration::from_secs(120), |e| is_final(e, job_id)).await;
        assert!(matches!(finished, Ok(true)), "{kind} {job_id}: no final status ({finished:?})");
        self.final_of(job_id).expect("stored")
    }

    /// The final statuses stored for `job_id` (exactly one when all is well).
    pub fn finals(&self, job_id: &str) -> Vec<&Value> {
        self.events.values().filter(|e| is_final(e, job_id)).collect()
    }

    /// The distinct final statuses of `job_id`, `seq` aside: a job resent after its
    /// final status was already on the wire is answered with the same status again
    /// (PROTOCOL: a new `seq`), which is one outcome, not two.
    pub fn outcomes(&self, job_id: &str) -> Vec<Value> {
        let mut outcomes: Vec<Value> = Vec::new();
        for event in self.finals(job_id) {
            let mut event = event.clone();
            event.as_object_mut().unwrap().remove("seq");
            if !outcomes.contains(&event) {
                outcomes.push(event);
            }
        }
        outcomes
    }

    pub fn final_of(&self, job_id: &str) -> Option<Value> {
        self.finals(job_id).last().map(|e| (*e).clone())
    }

    /// Drops the connection from this side.
    pub fn hang_up(&mut self) {
        self.session = None;
    }
}

pub fn is_final(event: &Value, job_id: &str) -> bool {
    event["job_id"] == job_id && matches!(event["status"].as_str(), Some("success" | "error"))
}

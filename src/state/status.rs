//! `berth status`: what the daemon is doing, answered from the state dir alone, so it
//! works with the daemon stopped, hung or crashed.
//!
//! The daemon keeps `status.json` in its state dir (0600): whether it is connected to
//! the control plane, since when, and when it last heard from it. The connection
//! writes it on connect and on disconnect, and at most once per heartbeat while
//! connected ([`StatusFile`]); a write is one small temp file and a rename, without
//! fsync (it is a report, not a record: after a crash the pid shows it is stale).
//! [`Report::read`] adds what is on disk anyway: the outbox length and the latest
//! job records.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state::jobstore::{JobStore, State};

pub const FILE_NAME: &str = "status.json";
/// How many of the latest jobs `berth status` shows.
pub const LAST_JOBS: usize = 10;

/// What the daemon writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// The daemon that wrote this; a dead pid means the daemon is gone.
    pub pid: u32,
    pub connected: bool,
    /// Unix milliseconds of the last change of `connected`.
    pub since_ms: u64,
    /// Unix milliseconds of the last frame from the control plane, seen at a heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ms: Option<u64>,
    /// Why the last connection ended, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The daemon's writer of `status.json`.
pub struct StatusFile {
    path: PathBuf,
    current: Connection,
}

impl StatusFile {
    pub fn new(state_dir: &Path) -> StatusFile {
        let current = Connection {
            pid: std::process::id(),
            connected: false,
            since_ms: now_ms(),
            last_heartbeat_ms: None,
            reason: None,
        };
        StatusFile { path: state_dir.join(FILE_NAME), current }
    }

    /// The session was welcomed.
    pub fn connected(&mut self) {
        let now = now_ms();
        self.current = Connection {
            connected: true,
            since_ms: now,
            last_heartbeat_ms: Some(now),
            reason: None,
            ..self.current.clone()
        };
        self.write();
    }

    /// A heartbeat of a live session: `last_frame` is when the control plane last spoke.
    pub fn heartbeat(&mut self, last_frame: SystemTime) {
        if self.current.connected {
            self.current.last_heartbeat_ms = Some(crate::time::unix_millis(last_frame));
            self.write();
        }
    }

    /// The session ended (or never came up): written once per change.
    pub fn disconnected(&mut self, reason: &str) {
        if !self.current.connected && self.current.reason.as_deref() == Some(reason) {
            return;
        }
        let since_ms = if self.current.connected { now_ms() } else { self.current.since_ms };
        self.current =
            Connection { connected: false, since_ms, reason: Some(reason.to_owned()), ..self.current.clone() };
        self.write();
    }

    fn write(&self) {
        let bytes = serde_json::to_vec(&self.current).expect("status serializes");
        let tmp = self.path.with_extension("json.tmp");
        let written = write_mode(&tmp, &bytes, 0o600).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the status file");
        }
    }
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
    file.write_all(bytes)
}

fn now_ms() -> u64 {
    crate::time::unix_millis(SystemTime::now())
}

/// One job as `berth status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobLine {
    pub job_id: String,
    pub kind: String,
    /// `queued`, `running`, or the final status (`success`, `error`, ...).
    pub status: String,
    pub received: String,
}

/// Everything `berth status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `None` when the daemon never wrote a status file.
    pub connection: Option<Connection>,
    /// Whether the pid that wrote the status is alive.
    pub daemon_running: bool,
    /// Events stored and not yet acknowledged (what a restart would send again).
    pub outbox: usize,
    /// The latest jobs, newest first.
    pub jobs: Vec<JobLine>,
}

impl Report {
    pub fn read(state_dir: &Path) -> io::Result<Report> {
        if !state_dir.exists() {
            // The daemon makes it at its first start.
            return Ok(Report { connection: None, daemon_running: false, outbox: 0, jobs: Vec::new() });
        }
        let connection = match std::fs::read(state_dir.join(FILE_NAME)) {
            Ok(bytes) => Some(serde_json::from_slice::<Connection>(&bytes).map_err(io::Error::other)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let daemon_running = connection.as_ref().is_some_and(|c| Path::new(&format!("/proc/{}", c.pid)).exists());
        let outbox = crate::state::outbox::stored_len(state_dir)?;
        let mut records = if state_dir.join("jobs").is_dir() { JobStore::open(state_dir)?.all()? } else { Vec::new() };
        records.sort_by_key(|r| std::cmp::Reverse((r.received_ms, r.arrival)));
        let jobs = records
            .into_iter()
            .take(LAST_JOBS)
            .map(|r| {
                let status = match (&r.state, &r.final_status) {
                    (State::Finished, Some(status)) => serde_json::to_value(status.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "finished".into()),
                    (State::Finished, None) => "finished".into(),
                    (State::Queued, _) => "queued".into(),
                    (State::Running, _) => "running".into(),
                };
                JobLine { job_id: r.job_id, kind: r.kind, status, received: rfc3339_ms(r.received_ms) }
            })
            .collect();
        Ok(Report { connection, daemon_running, outbox, jobs })
    }

    /// The report as lines for a person.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.connection {
            None => lines.push("daemon:         never started with this state dir".into()),
            Some(c) => {
                let running = if self.daemon_running {
                    format!("running (pid {})", c.pid)
                } else {
                    format!("not running (last pid {})", c.pid)
                };
                lines.push(format!("daemon:         {running}"));
                let connected = match (c.connected && self.daemon_running, &c.reason) {
                    (true, _) => "connected".to_owned(),
                    (false, Some(reason)) => format!("not connected ({reason})"),
                    (false, None) => "not connected".to_owned(),
                };
                lines.push(format!("control plane:  {connected}"));
                lines.push(format!("since:          {}", rfc3339_ms(c.since_ms)));
                let heartbeat = c.last_heartbeat_ms.map(rfc3339_ms).unwrap_or_else(|| "never".into());
                lines.push(format!("last heartbeat: {heartbeat}"));
            }
        }
        lines.push(format!("outbox:         {} event(s) not yet acknowledged", self.outbox));
        if self.jobs.is_empty() {
            lines.push("last jobs:      none".into());
        } else {
            lines.push("last jobs:".into());
            for job in &self.jobs {
                lines.push(format!("  {}  {:<8} {}  {}", job.received, job.status, job.kind, job.job_id));
            }
        }
        lines
    }
}

fn rfc3339_ms(ms: u64) -> String {
    crate::time::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> Connection {
        serde_json::from_slice(&std::fs::read(dir.join(FILE_NAME)).unwrap()).unwrap()
    }

    #[test]
    fn connect_heartbeat_disconnect_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = StatusFile::new(dir.path());
        assert!(!dir.path().join(FILE_NAME).exists(), "nothing is written before a change");
        file.connected();
        let connected = read(dir.path());
        assert!(connected.connected);
        assert_eq!(connected.pid, std::process::id());
        let heard = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        file.heartbeat(heard);
        assert_eq!(read(dir.path()).last_heartbeat_ms, Some(4_000_000_000_000));
        file.disconnected("connection closed");
        let gone = read(dir.path());
        assert!(!gone.connected);
        assert_eq!(gone.reason.as_deref(), Some("connection closed"));
        assert_eq!(gone.last_heartbeat_ms, Some(4_000_000_000_000), "the last heartbeat stays known");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn heartbeats_while_disconnected_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = StatusFile::new(dir.path());
        file.heartbeat(SystemTime::now());
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn report_of_an_empty_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let report = Report::read(dir.path()).unwrap();
        assert!(report.connection.is_none() && report.jobs.is_empty() && report.outbox == 0);
        assert!(report.lines()[0].contains("never started"), "{:?}", report.lines());
        assert!(Report::read(&dir.path().join("missing")).unwrap().connection.is_none());
        std::fs::write(dir.path().join("file"), "").unwrap();
        assert!(Report::read(&dir.path().join("file")).is_err(), "a state dir that is a file is an error");
    }
}

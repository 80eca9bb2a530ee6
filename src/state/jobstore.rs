//! The job records: one file per `job_id` under `<state_dir>/jobs/`, so that a job
//! survives a crash (it runs again) and a finished `job_id` is never run twice
//! (its final status is sent again).
//!
//! A record holds the params only until the job finishes (they may hold passwords;
//! files are 0600 in a 0700 directory). Finished records are kept at least
//! [`RETENTION`], and at most [`MAX_FINISHED`] of them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::host::fs::{ensure_dir, write_atomic};
use crate::model::protocol::JobStatus;

/// Finished records younger than this are kept.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Past this many finished records, the oldest go even if younger than [`RETENTION`]
/// (a bound on disk use: a record is at most ~70 KiB with its output tail).
pub const MAX_FINISHED: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    Finished,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub job_id: String,
    pub kind: String,
    /// Arrival order: jobs on the same resource run in this order, also after a restart.
    pub arrival: u64,
    pub state: State,
    /// Present until the job finishes.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    /// Unix milliseconds.
    pub received_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// The agent submitted it (a renewal): its events are not `job.status`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// The final `job.status`, to send again when the `job_id` comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_status: Option<JobStatus>,
}

#[derive(Debug, Clone)]
pub struct JobStore {
    dir: PathBuf,
}

impl JobStore {
    pub fn open(state_dir: &Path) -> io::Result<JobStore> {
        let dir = state_dir.join("jobs");
        ensure_dir(&dir, 0o700)?;
        Ok(JobStore { dir })
    }

    /// The record of `job_id`, which must have passed `validate::job_id`.
    pub fn get(&self, job_id: &str) -> io::Result<Option<Record>> {
        match std::fs::read(self.path(job_id)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, record: &Record) -> io::Result<()> {
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        write_atomic(&self.path(&record.job_id), &bytes, 0o600)
    }

    /// Every record, in arrival order; unreadable files are logged and skipped.
    pub fn all(&self) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<Record>(&b)) {
                Ok(Ok(record)) => records.push(record),
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "job store: unreadable record skipped")
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "job store: unreadable record skipped"),
            }
        }
        records.sort_by_key(|r| r.arrival);
        Ok(records)
    }

    /// Removes finished records past retention, then the oldest past the count bound.
    /// Returns how many were removed.
    pub fn prune(&self, now: SystemTime) -> io::Result<usize> {
        let now_ms = crate::time::unix_millis(now);
        let cutoff = now_ms.saturating_sub(RETENTION.as_millis() as u64);
        let mut finished: Vec<(u64, String)> = self
            .all()?
            .into_iter()
            .filter_map(|r| r.finished_ms.filter(|_| r.state == State::Finished).map(|at| (at, r.job_id)))
            .collect();
        finished.sort();
        let over = finished.len().saturating_sub(MAX_FINISHED);
        let mut removed = 0;
        for (i, (finished_ms, job_id)) in finished.iter().enumerate() {
            if i >= over && *finished_ms >= cutoff {
                break;
            }
            match std::fs::remove_file(self.path(job_id)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    fn path(&self, job_id: &str) -> PathBuf {
        debug_assert!(crate::model::validate::job_id("job_id", job_id).is_ok());
        self.dir.join(format!("{job_id}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::Status;

    fn record(job_id: &str, arrival: u64, finished_ms: Option<u64>) -> Record {
        Record {
            job_id: job_id.into(),
            kind: "test.sleep".into(),
            arrival,
            state: if finished_ms.is_some() { State::Finished } else { State::Queued },
            params: Value::Null,
            received_ms: 0,
            finished_ms,
            final_status: finished_ms.map(|_| JobStatus::progress(job_id, "test.sleep", Status::Success, "t".into())),
            internal: false,
        }
    }

    #[test]
    fn records_round_trip_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path()).unwrap();
        store.save(&record("b", 2, None)).unwrap();
        store.save(&record("a", 1, Some(5))).unwrap();
        assert_eq!(store.get("b").unwrap(), Some(record("b", 2, None)));
        assert_eq!(store.get("zz").unwrap(), None);
        let ids: Vec<_> = store.all().unwrap().into_iter().map(|r| r.job_id).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn prune_keeps_a_week_and_unfinished_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path()).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(30 * 24 * 3600);
        let now_ms = crate::time::unix_millis(now);
        let day = 24 * 3600 * 1000;
        store.save(&record("old", 1, Some(now_ms - 8 * day))).unwrap();
        store.save(&record("recent", 2, Some(now_ms - 6 * day))).unwrap();
        store.save(&record("queued", 3, None)).unwrap();
        assert_eq!(store.prune(now).unwrap(), 1);
        assert!(store.get("old").unwrap().is_none());
        assert!(store.get("recent").unwrap().is_some());
        assert!(store.get("queued").unwrap().is_some());
    }

    #[test]
    fn records_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path()).unwrap();
        store.save(&record("a", 1, None)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("jobs")), 0o700);
        assert_eq!(mode(&dir.path().join("jobs/a.json")), 0o600);
    }
}

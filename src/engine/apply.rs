//! `berth apply`: runs jobs from a JSON file on this host, without a control plane.
//!
//! For operators (repair, scripting) and tests. The file holds one job or an array
//! of them, each shaped like PROTOCOL's `job` message (`type` may be left out, a
//! missing `job_id` is made up). Jobs run one after another, in file order, through
//! the same lifecycle ([`crate::engine::lifecycle`]: rules, panics caught, final status),
//! catalogue and host code as the daemon. Nothing goes to the outbox: the control
//! plane never asked for these jobs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::engine::lifecycle;
use crate::host::System;
use crate::job::Machine;
use crate::jobs::Catalogue;
use crate::model::protocol::{JobMsg, JobStatus, Status};
use crate::state::history::History;
use crate::state::inventory::InventoryStore;

/// Where `apply` works: the state dir (for the inventory) and the root.
#[derive(Debug, Clone)]
pub struct Setup {
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub test_jobs: bool,
    pub mysql: crate::host::mysql::MysqlSettings,
    pub acme: crate::web::acme::AcmeSettings,
    pub reboot_command: Vec<String>,
    pub wordpress_source: PathBuf,
    pub redis_socket: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Jobs { path: PathBuf, message: String },
    #[error("cannot open the state directory {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the jobs of `path`.
pub fn read_jobs(path: &Path) -> Result<Vec<JobMsg>, ApplyError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApplyError::Read { path: path.to_owned(), source })?;
    parse_jobs(&text).map_err(|message| ApplyError::Jobs { path: path.to_owned(), message })
}

pub(crate) fn parse_jobs(text: &str) -> Result<Vec<JobMsg>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    let stamp = crate::time::unix_millis(std::time::SystemTime::now());
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(mut job) = item else { return Err(format!("job {i}: not a JSON object")) };
            if job.get("type").is_some_and(|t| t != "job") {
                return Err(format!("job {i}: \"type\" must be \"job\""));
            }
            job.entry("job_id").or_insert_with(|| Value::String(format!("apply-{stamp}-{i}")));
            serde_json::from_value::<JobMsg>(Value::Object(job)).map_err(|e| format!("job {i}: {e}"))
        })
        .collect()
}

/// The real machine under `setup.root`, with the inventory of `setup.state_dir`.
pub fn machine(setup: &Setup) -> Result<Machine, ApplyError> {
    let state_error = |source| ApplyError::State { path: setup.state_dir.clone(), source };
    crate::host::fs::ensure_dir(&setup.state_dir, 0o700).map_err(state_error)?;
    let inventory = InventoryStore::open(&setup.state_dir).map_err(state_error)?;
    Ok(Machine {
        host: Arc::new(System::new(setup.root.clone())),
        inventory: Arc::new(inventory),
        mysql: setup.mysql.clone(),
        acme: Arc::new(setup.acme.clone()),
        reboot_command: setup.reboot_command.clone(),
        wordpress_source: setup.wordpress_source.clone(),
        redis_socket: setup.redis_socket.clone(),
        history: Arc::new(History::open(&setup.state_dir).map_err(state_error)?),
    })
}

/// Runs `jobs` in order, handing each final status to `report`; true when all succeeded.
pub async fn run(setup: &Setup, jobs: Vec<JobMsg>, mut report: impl FnMut(&JobStatus)) -> Result<bool, ApplyError> {
    let machine = machine(setup)?;
    let catalogue = Catalogue::new(setup.test_jobs);
    // Live output has no listener here; the final status carries the output tail.
    let (output, _) = mpsc::channel(1);
    let mut all_succeeded = true;
    for job in jobs {
        let lifecycle::Ended { status, reboot } = lifecycle::run_now(&catalogue, &machine, &job, output.clone()).await;
        all_succeeded &= status.status == Status::Success;
        report(&status);
        if reboot {
            // No control plane to acknowledge: the status is printed, the host reboots.
            tracing::warn!(job_id = %job.job_id, "rebooting the host (server.reboot)");
            if let Err(e) = machine.reboot() {
                tracing::error!(error = %e, "the reboot command failed");
                all_succeeded = false;
            }
        }
    }
    Ok(all_succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_or_many_with_ids_made_up_when_missing() {
        let one = parse_jobs(r#"{"kind": "sysuser.create", "params": {"name": "derek"}}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].job_id.starts_with("apply-"));
        let many = parse_jobs(r#"[{"type": "job", "job_id": "a1", "kind": "k"}, {"kind": "k"}]"#).unwrap();
        assert_eq!(many[0].job_id, "a1");
        assert_ne!(many[1].job_id, "a1");
    }

    /// Found by the fuzz target `apply_jobs` (fuzz/corpus/apply_jobs/crash-b4ad…): a
    /// number in params was read inexactly, so the jobs written out again read back
    /// as other jobs (the fix: serde_json's `float_roundtrip`).
    #[test]
    fn apply_job_file_float_param_round_trip_regression() {
        let jobs = parse_jobs(r#"[{"kind": "k", "params": {"ms": -122222222222222222222.3e0}}]"#).unwrap();
        assert_eq!(jobs[0].params["ms"].as_f64(), "-122222222222222222222.3".parse::<f64>().ok(), "read exactly");
        let again = parse_jobs(&serde_json::to_string(&jobs).unwrap()).unwrap();
        assert_eq!(again, jobs);
    }

    #[test]
    fn malformed_files_say_which_job() {
        assert!(parse_jobs("[1]").unwrap_err().contains("job 0"));
        assert!(parse_jobs(r#"[{"kind": "k"}, {"type": "ack", "kind": "k"}]"#).unwrap_err().contains("job 1"));
        assert!(parse_jobs(r#"{"params": {}}"#).unwrap_err().contains("kind"));
        assert!(parse_jobs("{").is_err());
    }
}

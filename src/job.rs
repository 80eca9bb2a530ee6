//! What a job is to the engine: checked params that say which resources they touch,
//! and run to an [`Outcome`] or a [`JobError`] that maps onto a protocol `error.code`.
//!
//! Each job family parses its params into a type implementing [`Job`]; parsing is
//! where every field rule is checked, so a job that gets to `run` has valid input.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::AcmeSettings;
use crate::host::mysql::MysqlSettings;
use crate::host::transaction::Applied;
use crate::host::Host;
use crate::model::protocol::{ErrorBody, ErrorCode, JobOutput, JobStatus, Status, Step, MAX_OUTPUT_BYTES};
use crate::model::resource::Resource;
use crate::model::validate::FieldError;
use crate::state::history::History;
use crate::state::inventory::{Inventory, InventoryStore};

/// What [`Job::resources`] returns; the job families take it from here.
pub use crate::model::resource::Resources;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A job with valid params, ready to be scheduled and run.
pub trait Job: Send + 'static {
    /// What the job touches: jobs that share a resource run in arrival order.
    fn resources(&self) -> Resources;
    /// Does the work. Must be idempotent: it may run again after a crash.
    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>>;
}

/// What the agent gives every job: the machine and what berth manages on it.
#[derive(Clone)]
pub struct Machine {
    pub host: Arc<dyn Host>,
    pub inventory: Arc<InventoryStore>,
    pub mysql: MysqlSettings,
    pub acme: Arc<AcmeSettings>,
    /// What a `server.reboot` runs once its final status is out (config `reboot_command`).
    pub reboot_command: Vec<String>,
    /// The WordPress tree `app.wordpress` copies (config `wordpress_source`).
    pub wordpress_source: std::path::PathBuf,
    /// Redis's socket as the apps see it (config `redis_socket`).
    pub redis_socket: std::path::PathBuf,
    /// The metrics history (`state_dir/history/`): the monitor loop records, `metrics.history` reads.
    pub history: Arc<History>,
}

impl Machine {
    /// Runs the reboot command (after a `server.reboot` job's final status is out).
    pub fn reboot(&self) -> Result<(), crate::host::HostError> {
        let (program, args) =
            self.reboot_command.split_first().map(|(p, a)| (p.as_str(), a)).unwrap_or(("/usr/bin/systemctl", &[]));
        self.host.run(&crate::host::Cmd::new(program).args(args.iter().cloned())).map(drop)
    }
}

/// What a running job gets from the agent.
#[derive(Clone)]
pub struct JobContext {
    pub job_id: String,
    pub host: Arc<dyn Host>,
    pub inventory: Arc<InventoryStore>,
    pub mysql: MysqlSettings,
    pub acme: Arc<AcmeSettings>,
    pub wordpress_source: std::path::PathBuf,
    pub redis_socket: std::path::PathBuf,
    pub history: Arc<History>,
    secrets: Arc<Secrets>,
    output: mpsc::Sender<JobOutput>,
    /// The engine's scheduler, when the job runs under it (not in `berth apply`).
    scheduler: Option<Releases>,
}

/// Where a running job gives back resources: its arrival and the engine's channel.
#[derive(Clone)]
struct Releases {
    arrival: u64,
    to: mpsc::UnboundedSender<Release>,
}

/// A running job (by arrival) gives back one of its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub arrival: u64,
    pub key: Resource,
}

impl JobContext {
    pub fn new(job_id: String, machine: &Machine, secrets: Arc<Secrets>, output: mpsc::Sender<JobOutput>) -> Self {
        JobContext {
            job_id,
            host: machine.host.clone(),
            inventory: machine.inventory.clone(),
            mysql: machine.mysql.clone(),
            acme: machine.acme.clone(),
            wordpress_source: machine.wordpress_source.clone(),
            redis_socket: machine.redis_socket.clone(),
            history: machine.history.clone(),
            secrets,
            output,
            scheduler: None,
        }
    }

    /// Ties the context to the engine's scheduler, for [`JobContext::release`].
    pub fn scheduled(mut self, arrival: u64, releases: mpsc::UnboundedSender<Release>) -> Self {
        self.scheduler = Some(Releases { arrival, to: releases });
        self
    }

    /// Gives back `key` of the job's resources for the rest of its run: later jobs
    /// that waited only for it may start. For a job whose ordered part is done and
    /// whose rest waits on the network (an AutoSSL order gives back the web stack).
    /// Nothing to do when no scheduler runs the job (`berth apply`, `berth renew`).
    pub fn release(&self, key: Resource) {
        if let Some(scheduler) = &self.scheduler {
            let _ = scheduler.to.send(Release { arrival: scheduler.arrival, key });
        }
    }

    /// Every host path is placed under this directory (`/` in production).
    pub fn root(&self) -> &Path {
        self.host.root()
    }

    /// Changes the inventory and saves it (see [`InventoryStore::update`]).
    pub fn record<R>(&self, change: impl FnOnce(&mut Inventory) -> R) -> Result<R, JobError> {
        self.inventory.update(change).map_err(|e| JobError::Internal(format!("cannot save the inventory: {e}")))
    }

    /// Live output (`job.output`), secrets removed: best effort, dropped when nobody is listening.
    pub fn output(&self, text: impl AsRef<str>) {
        let text = self.secrets.redact(text.as_ref());
        let _ = self.output.try_send(JobOutput { kind: "job.output", job_id: self.job_id.clone(), text });
    }
}

/// A job whose work blocks (commands, files, a database client): it runs on
/// tokio's blocking pool. The job families implement this rather than [`Job`].
pub trait BlockingJob: Send + 'static {
    fn resources(&self) -> Resources;
    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError>;
}

impl<T: BlockingJob> Job for T {
    fn resources(&self) -> Resources {
        BlockingJob::resources(self)
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        blocking(ctx, move |ctx| self.apply(ctx))
    }
}

/// Runs a blocking part of a job (commands, files, a database client) on tokio's
/// blocking pool; for jobs that also wait on the network in between.
pub fn blocking<T: Send + 'static>(
    ctx: JobContext,
    f: impl FnOnce(&JobContext) -> Result<T, JobError> + Send + 'static,
) -> BoxFuture<Result<T, JobError>> {
    Box::pin(async move {
        tokio::task::spawn_blocking(move || f(&ctx))
            .await
            .unwrap_or_else(|e| Err(JobError::Internal(format!("the job stopped unexpectedly: {e}"))))
    })
}

/// Params keys whose string values are secrets.
const SECRET_KEYS: &[&str] = &["password", "key", "api_key", "admin_password", "private_key", "secret_access_key"];

/// The secrets of a job's params, to remove from everything the job reports.
#[derive(Default, Clone, PartialEq)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

impl Secrets {
    /// Every string under a secret key, at any depth of `params`.
    pub fn of(params: &Value) -> Self {
        fn walk(value: &Value, secret: bool, out: &mut Vec<String>) {
            match value {
                Value::String(s) if secret && !s.is_empty() => out.push(s.clone()),
                Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, SECRET_KEYS.contains(&k.as_str()), out)),
                Value::Array(items) => items.iter().for_each(|v| walk(v, secret, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(params, false, &mut out);
        // Longest first, so a secret that contains another is removed whole.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Secrets(out)
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
    }
}

/// What a successful job did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub steps: Vec<Step>,
    pub result: Option<Value>,
    /// What external tools printed; the engine keeps the tail and removes secrets.
    pub output: String,
    /// The host reboots once this job's final status is acknowledged (`server.reboot`):
    /// the engine, not the job, does the waiting and the rebooting.
    pub reboot: bool,
}

impl Outcome {
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.changed)
    }

    pub fn step(&mut self, name: impl Into<String>, changed: bool) {
        self.steps.push(Step { name: name.into(), changed });
    }

    /// The steps of a config transaction: the files, then each reload.
    pub fn applied(&mut self, applied: &Applied) {
        self.step("config files", !applied.changed.is_empty());
        if applied.daemon_reloaded {
            self.step("systemd daemon-reload", true);
        }
        for service in &applied.reloaded {
            self.step(format!("reload {service}"), true);
        }
        for service in &applied.restarted {
            self.step(format!("restart {service}"), true);
        }
    }
}

/// Why a job failed, one variant per protocol `error.code`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    InvalidParams(#[from] FieldError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    LimitExceeded { field: String, message: String },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{tool} rejected the new configuration ({path}); the previous files are back in place: {message}")]
    ConfigInvalid { tool: String, path: String, message: String },
    #[error("{command} failed: {stderr}")]
    ToolFailed { command: String, stderr: String },
    #[error("{0}")]
    AcmeFailed(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

impl JobError {
    pub fn code(&self) -> ErrorCode {
        match self {
            JobError::InvalidParams(_) => ErrorCode::InvalidParams,
            JobError::NotFound(_) => ErrorCode::NotFound,
            JobError::Conflict(_) => ErrorCode::Conflict,
            JobError::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            JobError::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            JobError::ConfigInvalid { .. } => ErrorCode::ConfigInvalid,
            JobError::ToolFailed { .. } => ErrorCode::ToolFailed,
            JobError::AcmeFailed(_) => ErrorCode::AcmeFailed,
            JobError::Unsupported(_) => ErrorCode::Unsupported,
            JobError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            JobError::InvalidParams(e) => Some(&e.field),
            JobError::LimitExceeded { field, .. } => Some(field),
            JobError::NotFound(_)
            | JobError::Conflict(_)
            | JobError::PreconditionFailed(_)
            | JobError::ConfigInvalid { .. }
            | JobError::ToolFailed { .. }
            | JobError::AcmeFailed(_)
            | JobError::Unsupported(_)
            | JobError::Internal(_) => None,
        }
    }

    /// The `error` object of a final status. The message of a field error is the
    /// rule alone, as in PROTOCOL's example; `field` names the field.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            JobError::InvalidParams(e) => e.message.clone(),
            other => other.to_string(),
        };
        ErrorBody { code: self.code(), field: self.field().map(str::to_owned), message }
    }
}

/// The final `job.status` of a job (not yet sequenced), secrets removed; logged
/// at INFO for a success and WARN for an error.
pub fn final_status(
    job_id: &str,
    kind: &str,
    started_at: Option<String>,
    result: Result<Outcome, JobError>,
    secrets: &Secrets,
) -> JobStatus {
    let now = crate::time::now();
    let mut status = JobStatus::progress(job_id, kind, Status::Success, now.clone());
    status.started_at = started_at;
    status.finished_at = Some(now);
    match result {
        Ok(outcome) => {
            status.changed = Some(outcome.changed());
            status.steps = Some(outcome.steps);
            status.result = Some(outcome.result.unwrap_or(Value::Object(Default::default())));
            status.output = Some(tail(&secrets.redact(&outcome.output), MAX_OUTPUT_BYTES));
            tracing::info!(%job_id, %kind, status = "success", changed = status.changed, "job finished");
        }
        Err(e) => {
            let mut body = e.body();
            body.message = secrets.redact(&body.message);
            tracing::warn!(%job_id, %kind, status = "error", code = ?body.code,
                field = body.field.as_deref().unwrap_or(""), message = %body.message, "job failed");
            status.status = Status::Error;
            status.changed = Some(false);
            status.error = Some(body);
        }
    }
    status
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// Checks a count against a limit of PROTOCOL section 3.
pub fn within_limit(field: &str, what: &str, count: usize, max: usize) -> Result<(), JobError> {
    if count >= max {
        return Err(JobError::LimitExceeded {
            field: field.to_owned(),
            message: format!("at most {max} {what} are allowed; {count} exist"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_carry_field_and_rule() {
        let body = JobError::from(FieldError::new("name", "must start with a lowercase letter: '3po'")).body();
        assert_eq!(body.code, ErrorCode::InvalidParams);
        assert_eq!(body.field.as_deref(), Some("name"));
        assert_eq!(body.message, "must start with a lowercase letter: '3po'");
    }

    #[test]
    fn secrets_are_found_at_any_depth_and_removed() {
        let params = serde_json::json!({"name": "derek", "password": "hunter2hunter2",
            "user": {"name": "u", "password": "s3cr3t-pw"}, "key": "s3cr3t-pw-and-more"});
        let secrets = Secrets::of(&params);
        let text = "chpasswd: hunter2hunter2 rejected; s3cr3t-pw-and-more, s3cr3t-pw too; derek stays";
        assert_eq!(secrets.redact(text), "chpasswd: *** rejected; ***, *** too; derek stays");
        assert_eq!(format!("{secrets:?}"), "Secrets(3 hidden)");
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
    }

    #[test]
    fn final_status_of_an_error_has_no_outcome_and_no_secret() {
        let secrets = Secrets::of(&serde_json::json!({"password": "hunter2hunter2"}));
        let err = JobError::ToolFailed { command: "chpasswd".into(), stderr: "bad hunter2hunter2".into() };
        let status = final_status("j", "sysuser.update", None, Err(err), &secrets);
        assert_eq!(status.status, Status::Error);
        assert_eq!(status.changed, Some(false));
        assert!(status.steps.is_none() && status.output.is_none());
        assert_eq!(status.error.unwrap().message, "chpasswd failed: bad ***");
    }

    #[test]
    fn limits() {
        assert!(within_limit("domains", "domains per app", 999, 1000).is_ok());
        let err = within_limit("domains", "domains per app", 1000, 1000).unwrap_err();
        assert_eq!(err.code(), ErrorCode::LimitExceeded);
        assert_eq!(err.field(), Some("domains"));
    }
}

//! A job's life, the same wherever it runs: parsed, run with its panics caught, and
//! ended in exactly one final status.
//!
//! The daemon ([`crate::engine`]), `berth apply` ([`crate::engine::apply`]) and `berth renew`
//! ([`crate::engine::renewal::once`]) all go through here, so a job reads its params by the
//! same rules, fails with the same codes and reports the same status under each:
//!
//! 1. [`parse`]: the `job_id` rule, then the kind's field rules (the catalogue);
//! 2. scheduled: the engine queues it behind the jobs it shares a resource with
//!    ([`crate::engine::scheduler`]); the one-shot commands run their jobs one after another;
//! 3. [`run`]: the job's work, a panic turned into an `internal` error, never a dead
//!    process (`berth reconcile`'s work, not a job, is run through [`caught`]);
//! 4. recorded: the engine saves the record and the outbox event; the one-shot
//!    commands print the status;
//! 5. [`end`]: the final status, secrets removed, and whether the host must reboot.
//!
//! [`run_now`] is the whole of it for a job run here and now, without a scheduler.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::job::{final_status, Job, JobContext, JobError, Machine, Outcome, Secrets};
use crate::jobs::Catalogue;
use crate::model::protocol::{JobMsg, JobOutput, JobStatus};

/// How a job ended: its final status (not yet sequenced), and whether the host
/// must reboot now that the status is out (`server.reboot`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub status: JobStatus,
    pub reboot: bool,
}

/// The job of `kind` with `params`, every rule checked: the `job_id` first, then
/// the kind and its fields. `internal` kinds are the agent's own (renewals).
pub fn parse(
    catalogue: &Catalogue,
    job_id: &str,
    kind: &str,
    params: &Value,
    internal: bool,
) -> Result<Box<dyn Job>, JobError> {
    crate::model::validate::job_id("job_id", job_id)?;
    // A panic in a kind's parser (stored records are parsed again at every start) must
    // not take the engine down, or the daemon would crash at every start.
    caught(|| match internal {
        true => catalogue.parse_internal(kind, params),
        false => catalogue.parse(kind, params),
    })
}

/// Runs `job`; a panic anywhere in it, in making its future or in running it, ends
/// it in an `internal` error.
pub async fn run(job: Box<dyn Job>, ctx: JobContext) -> Result<Outcome, JobError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| job.run(ctx))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await.unwrap_or_else(|panic| Err(panicked(panic))),
        Err(panic) => Err(panicked(panic)),
    }
}

/// Runs job-like work that is no job (`berth reconcile`) the same way: a panic in
/// `work` ends it in an `internal` error.
pub fn caught<T>(work: impl FnOnce() -> Result<T, JobError>) -> Result<T, JobError> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| Err(panicked(panic)))
}

fn panicked(panic: Box<dyn Any + Send>) -> JobError {
    let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
    JobError::Internal(format!("the job panicked: {}", what.unwrap_or_default()))
}

/// The end of a job that ran from `started_at` (none if it never started) to `result`.
pub fn end(
    job_id: &str,
    kind: &str,
    started_at: Option<String>,
    result: Result<Outcome, JobError>,
    secrets: &Secrets,
) -> Ended {
    let reboot = matches!(&result, Ok(outcome) if outcome.reboot);
    Ended { status: final_status(job_id, kind, started_at, result, secrets), reboot }
}

/// Parses, runs and ends `msg` here and now, with no scheduler (`berth apply`,
/// `berth renew`). Its start is stamped before it is parsed; its live output goes
/// to `output`. The caller reports the status and carries out a reboot.
pub async fn run_now(catalogue: &Catalogue, machine: &Machine, msg: &JobMsg, output: mpsc::Sender<JobOutput>) -> Ended {
    let started_at = crate::time::now();
    let secrets = Arc::new(Secrets::of(&msg.params));
    let result = match parse(catalogue, &msg.job_id, &msg.kind, &msg.params, msg.internal) {
        Ok(job) => run(job, JobContext::new(msg.job_id.clone(), machine, secrets.clone(), output)).await,
        Err(e) => Err(e),
    };
    end(&msg.job_id, &msg.kind, Some(started_at), result, &secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::BoxFuture;
    use crate::model::protocol::{ErrorCode, Status};
    use crate::model::resource::Resources;
    use serde_json::json;

    struct Panics;

    impl Job for Panics {
        fn resources(&self) -> Resources {
            Resources::default()
        }

        fn run(self: Box<Self>, _ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
            Box::pin(async { panic!("boom") })
        }
    }

    /// Panics in `run` itself, before it hands back its future.
    struct PanicsEarly;

    impl Job for PanicsEarly {
        fn resources(&self) -> Resources {
            Resources::default()
        }

        fn run(self: Box<Self>, _ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
            panic!("before the future")
        }
    }

    #[test]
    fn the_job_id_rule_comes_before_the_kind() {
        let catalogue = Catalogue::new(false);
        let err = parse(&catalogue, "bad id!", "app.teleport", &json!({}), false).err().unwrap();
        assert_eq!((err.code(), err.field()), (ErrorCode::InvalidParams, Some("job_id")));
        let err = parse(&catalogue, "j1", "app.teleport", &json!({}), false).err().unwrap();
        assert_eq!(err.code(), ErrorCode::Unsupported);
        let err = parse(&catalogue, "j1", "sysuser.create", &json!({"name": "derek"}), true).err().unwrap();
        assert_eq!(err.code(), ErrorCode::Unsupported, "a kind of the control plane's is no internal kind");
    }

    #[tokio::test]
    async fn a_panicking_job_ends_in_an_internal_error() {
        let root = tempfile::tempdir().unwrap();
        let machine = Machine {
            host: Arc::new(crate::host::fake::FakeHost::new(root.path())),
            inventory: Arc::new(crate::state::inventory::InventoryStore::open(root.path()).unwrap()),
            mysql: crate::host::mysql::MysqlSettings::under(root.path()),
            acme: Arc::new(crate::web::acme::AcmeSettings::new(root.path())),
            reboot_command: Vec::new(),
            wordpress_source: crate::config::DEFAULT_WORDPRESS_SOURCE.into(),
            redis_socket: crate::config::DEFAULT_REDIS_SOCKET.into(),
            history: std::sync::Arc::new(crate::state::history::History::open(root.path()).unwrap()),
        };
        let ctx = JobContext::new("j1".into(), &machine, Arc::default(), mpsc::channel(1).0);
        let result = run(Box::new(Panics), ctx.clone()).await;
        assert_eq!(result, Err(JobError::Internal("the job panicked: boom".into())));
        let early = run(Box::new(PanicsEarly), ctx.clone()).await;
        assert_eq!(early, Err(JobError::Internal("the job panicked: before the future".into())));
        let ended = end("j1", "test.panics", None, result, &Secrets::default());
        assert_eq!((ended.status.status, ended.reboot), (Status::Error, false));
        assert_eq!(ended.status.error.unwrap().code, ErrorCode::Internal);
    }

    #[test]
    fn panics_in_work_that_is_no_job_are_caught_too() {
        let owned = String::from("owned message");
        let result: Result<(), JobError> = caught(move || panic!("{owned}"));
        assert_eq!(result, Err(JobError::Internal("the job panicked: owned message".into())));
        assert_eq!(caught(|| Ok(7)), Ok(7));
    }

    #[test]
    fn regression_a_panic_in_a_kinds_parser_is_an_error_not_a_dead_engine() {
        fn panicking_parse(_: &Value) -> Result<Box<dyn Job>, JobError> {
            panic!("parser bug")
        }
        let mut catalogue = Catalogue::new(false);
        catalogue.register("test.parser-bug", panicking_parse);
        let err = parse(&catalogue, "j1", "test.parser-bug", &json!({}), false).err().unwrap();
        assert_eq!(err, JobError::Internal("the job panicked: parser bug".into()));
    }

    #[test]
    fn a_reboot_is_asked_only_by_a_successful_outcome() {
        let outcome = Outcome { reboot: true, ..Outcome::default() };
        assert!(end("j", "server.reboot", None, Ok(outcome), &Secrets::default()).reboot);
        let failed = Err(JobError::Internal("no".into()));
        assert!(!end("j", "server.reboot", None, failed, &Secrets::default()).reboot);
    }
}

//! `test.*`: harmless kinds for the test suite and for trials of an agent, registered
//! only when the config says `test_jobs = true` (never advertised otherwise).
//!
//! `test.sleep {ms, resource?, fail?, panic?}` waits `ms` milliseconds while holding
//! `resource` (none when absent), appending `start <job_id>` and
//! `end <job_id>` lines to `<root>/berth-test-jobs.log`, so a test can see when it
//! ran and how often. `fail: true` ends it in `tool_failed`; `panic: true` panics
//! instead (after the `end` line), for the tests that a panic ends in a status.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::job::{BoxFuture, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::validate::{FieldError, Params};

pub const LOG_FILE: &str = "berth-test-jobs.log";
const MAX_MS: u64 = 600_000;

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("test.sleep", Sleep::parse);
}

#[derive(Debug)]
struct Sleep {
    ms: u64,
    resource: Option<String>,
    fail: bool,
    panic: bool,
}

impl Sleep {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let ms = params.opt_u64("ms")?.unwrap_or(0);
        if ms > MAX_MS {
            return Err(FieldError::new(params.field("ms"), format!("must be at most {MAX_MS}")).into());
        }
        let resource = params.opt_str("resource")?.map(str::to_owned);
        let fail = params.opt_bool("fail")?.unwrap_or(false);
        let panic = params.opt_bool("panic")?.unwrap_or(false);
        Ok(Box::new(Sleep { ms, resource, fail, panic }))
    }
}

impl Job for Sleep {
    fn resources(&self) -> Resources {
        Resources::of(self.resource.iter().map(|r| Resource::Test(r.clone())))
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        Box::pin(async move {
            let log = ctx.root().join(LOG_FILE);
            note(&log, "start", &ctx.job_id)?;
            ctx.output(format!("sleeping {} ms\n", self.ms));
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            note(&log, "end", &ctx.job_id)?;
            if self.panic {
                panic!("test.sleep was asked to panic");
            }
            if self.fail {
                return Err(JobError::ToolFailed { command: "test.sleep".into(), stderr: "asked to fail".into() });
            }
            let mut outcome = Outcome { result: Some(json!({"slept_ms": self.ms})), ..Outcome::default() };
            outcome.step("sleep", true);
            Ok(outcome)
        })
    }
}

fn note(log: &Path, what: &str, job_id: &str) -> Result<(), JobError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| JobError::Internal(format!("cannot write {}: {e}", log.display())))?;
    writeln!(file, "{what} {job_id}").map_err(|e| JobError::Internal(format!("cannot write {}: {e}", log.display())))
}

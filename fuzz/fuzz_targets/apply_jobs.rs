//! `berth apply`'s job file (`engine::apply::parse_jobs`): one job or an array of
//! jobs shaped like PROTOCOL's `job` message. Proves, for any UTF-8 file:
//! - it never panics;
//! - an accepted file gives one job per element (one for a lone object), in order,
//!   each keeping the `job_id` and `kind` the file gave, and a made-up `job_id`
//!   where it gave none that passes the `job_id` rule and is unique in the file;
//! - the accepted jobs, written out again as a file, parse to the same jobs.
#![no_main]

use berth::fuzzing::apply_parse_jobs;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(jobs) = apply_parse_jobs(text) else { return };
    let value: Value = serde_json::from_str(text).expect("an accepted file is JSON");
    let items = match &value {
        Value::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    assert_eq!(jobs.len(), items.len(), "one job per element");
    for (i, (job, item)) in jobs.iter().zip(&items).enumerate() {
        assert!(!job.internal);
        assert_eq!(item.get("kind").and_then(Value::as_str), Some(job.kind.as_str()), "job {i}: kind");
        match item.get("job_id") {
            Some(given) => assert_eq!(given.as_str(), Some(job.job_id.as_str()), "job {i}: job_id"),
            None => {
                berth::model::validate::job_id("job_id", &job.job_id)
                    .unwrap_or_else(|e| panic!("job {i}: made-up job_id {:?} breaks the rule: {e}", job.job_id));
                assert_eq!(jobs.iter().filter(|j| j.job_id == job.job_id).count(), 1, "job {i}: made-up id reused");
            }
        }
        assert_eq!(item.get("params").cloned().unwrap_or(Value::Null), job.params, "job {i}: params");
    }
    let file: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let mut v = serde_json::to_value(job).expect("a job serializes");
            v["type"] = json!("job");
            v
        })
        .collect();
    let again = apply_parse_jobs(&Value::Array(file).to_string()).expect("accepted jobs written out parse again");
    assert_eq!(again, jobs, "round trip changed the jobs");
});

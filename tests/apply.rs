//! `berth apply`: jobs from a file, no control plane, the same rules and host code.

mod support;

use serde_json::{json, Value};
use support::{berth, ControlPlane, Sandbox};

fn statuses(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn apply_runs_a_file_of_jobs_in_order_and_exits_by_their_outcome() {
    let cp = ControlPlane::start().await;
    let agent = Sandbox::new(&cp);
    agent.seed_accounts();
    let config = agent.config_path();
    let jobs = agent.dir.path().join("jobs.json");
    std::fs::write(
        &jobs,
        json!([
            {"type": "job", "job_id": "a1", "kind": "sysuser.create", "params": {"name": "derek", "password": "a-long-password"}},
            {"kind": "sysuser.create", "params": {"name": "root"}},
            {"kind": "sysuser.create", "params": {"name": "3po"}}
        ])
        .to_string(),
    )
    .unwrap();
    let (code, stdout, stderr) = berth(&["apply", "--config", config.to_str().unwrap(), jobs.to_str().unwrap()]);
    assert_eq!(code, Some(1), "one job failed: {stderr}");
    let done = statuses(&stdout);
    assert_eq!(done.len(), 3);
    assert_eq!((done[0]["type"].as_str(), done[0]["job_id"].as_str()), (Some("job.status"), Some("a1")));
    assert_eq!(
        (done[0]["status"].as_str(), done[0]["changed"].as_bool()),
        (Some("success"), Some(true)),
        "{}",
        done[0]
    );
    assert_eq!(done[1]["error"]["code"], "conflict");
    assert_eq!(done[2]["error"]["field"], "name");
    assert!(done[1]["job_id"].as_str().unwrap().starts_with("apply-"));
    assert!(std::fs::read_to_string(agent.root().join("etc/passwd")).unwrap().contains("derek:"));
    assert!(!stdout.contains("a-long-password") && !stderr.contains("a-long-password"));

    std::fs::write(
        &jobs,
        json!({"kind": "sysuser.create", "params": {"name": "derek", "password": "a-long-password"}}).to_string(),
    )
    .unwrap();
    let (code, stdout, _) = berth(&["apply", "--config", config.to_str().unwrap(), jobs.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(statuses(&stdout)[0]["changed"], false, "the same state again changes nothing");
}

#[tokio::test]
async fn regression_apply_stamps_started_at_before_the_job_runs() {
    let cp = ControlPlane::start().await;
    let agent = Sandbox::new(&cp);
    let jobs = agent.dir.path().join("jobs.json");
    std::fs::write(&jobs, json!({"kind": "test.sleep", "params": {"ms": 300}}).to_string()).unwrap();
    let (code, stdout, stderr) =
        berth(&["apply", "--config", agent.config_path().to_str().unwrap(), jobs.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let done = &statuses(&stdout)[0];
    let (started, finished) = (done["started_at"].as_str().unwrap(), done["finished_at"].as_str().unwrap());
    assert!(started < finished, "started {started}, finished {finished}");
}

#[test]
fn apply_refuses_a_malformed_file_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.json");
    std::fs::write(&jobs, r#"[{"type": "ack", "kind": "x"}]"#).unwrap();
    let root = dir.path().join("root");
    let (code, stdout, stderr) =
        berth(&["apply", "--root", root.to_str().unwrap(), "--config", "/nonexistent.toml", jobs.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty());
    let (code, _, stderr) = berth(&["apply", "--config", "/nonexistent.toml", "/nonexistent/jobs.json"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("nonexistent"), "{stderr}");
}

#[tokio::test]
async fn regression_a_panicking_job_ends_in_a_final_status_and_the_next_job_runs() {
    let cp = ControlPlane::start().await;
    let agent = Sandbox::new(&cp);
    let jobs = agent.dir.path().join("jobs.json");
    std::fs::write(
        &jobs,
        json!([
            {"job_id": "panics", "kind": "test.sleep", "params": {"panic": true}},
            {"job_id": "after", "kind": "test.sleep", "params": {"ms": 0}}
        ])
        .to_string(),
    )
    .unwrap();
    let (code, stdout, stderr) =
        berth(&["apply", "--config", agent.config_path().to_str().unwrap(), jobs.to_str().unwrap()]);
    assert_eq!(code, Some(1), "one job failed, and the process did not crash: {stderr}");
    let done = statuses(&stdout);
    assert_eq!(done.len(), 2, "{stdout}");
    assert_eq!((done[0]["job_id"].as_str(), done[0]["status"].as_str()), (Some("panics"), Some("error")));
    assert_eq!(done[0]["error"]["code"], "internal");
    assert_eq!(done[0]["error"]["message"], "the job panicked: test.sleep was asked to panic");
    assert_eq!((done[1]["job_id"].as_str(), done[1]["status"].as_str()), (Some("after"), Some("success")));
}

//! The job engine and the outbox through the wire: lifecycle statuses, ordering,
//! acks, resends after a dropped connection, duplicate job ids.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::connected;

fn statuses(events: &[Value], job_id: &str) -> Vec<String> {
    events.iter().filter(|e| e["job_id"] == job_id).map(|e| e["status"].as_str().unwrap().to_owned()).collect()
}

/// The `job.status` events that come until the agent has been quiet for 800 ms.
async fn quiet_events(session: &mut support::Session) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(event) = session.try_recv(Duration::from_millis(800)).await {
        if event["type"] == "job.status" {
            events.push(event);
        }
    }
    events
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_job_goes_queued_running_success_with_growing_seq() {
    let (_cp, _agent, mut session) = connected().await;
    session.job("tW2fu4hjHnsix6Rn", "test.sleep", json!({"ms": 50})).await;
    let events = session.until_final("tW2fu4hjHnsix6Rn").await;
    assert_eq!(statuses(&events, "tW2fu4hjHnsix6Rn"), ["queued", "running", "success"]);
    assert_eq!(seqs(&events), [1, 2, 3]);
    let done = &events[2];
    assert_eq!(done["type"], "job.status");
    assert_eq!(done["kind"], "test.sleep");
    assert_eq!(done["changed"], true);
    assert_eq!(done["steps"], json!([{"name": "sleep", "changed": true}]));
    assert_eq!(done["result"], json!({"slept_ms": 50}));
    assert!(done["started_at"].as_str().unwrap() <= done["finished_at"].as_str().unwrap());
    assert!(done.get("error").is_none());
}

#[tokio::test]
async fn bad_params_unknown_kinds_and_failures_end_in_one_error_each() {
    let (_cp, agent, mut session) = connected().await;

    session.job("nnpgQoNzSK11fuTe", "sysuser.create", json!({"name": "3po"})).await;
    let events = session.until_final("nnpgQoNzSK11fuTe").await;
    assert_eq!(statuses(&events, "nnpgQoNzSK11fuTe"), ["queued", "error"]);
    let error = &events[1]["error"];
    assert_eq!(error["code"], "invalid_params");
    assert_eq!(error["field"], "name");
    assert!(error["message"].as_str().unwrap().contains("'3po'"), "{error}");
    assert_eq!(events[1]["changed"], false);

    session.job("secret-pw", "sysuser.create", json!({"name": "derek", "password": "short"})).await;
    let events = session.until_final("secret-pw").await;
    assert_eq!(events.last().unwrap()["error"]["field"], "password");
    assert!(!events.last().unwrap().to_string().contains("short\""), "the password is never echoed");

    session.job("unknown-kind", "app.teleport", json!({})).await;
    let events = session.until_final("unknown-kind").await;
    assert_eq!(events.last().unwrap()["error"]["code"], "unsupported");

    session.job("fails", "test.sleep", json!({"fail": true})).await;
    let events = session.until_final("fails").await;
    assert_eq!(statuses(&events, "fails"), ["queued", "running", "error"]);
    assert_eq!(events.last().unwrap()["error"]["code"], "tool_failed");

    session.job("bad-ms", "test.sleep", json!({"ms": "soon"})).await;
    let events = session.until_final("bad-ms").await;
    assert_eq!(events.last().unwrap()["error"]["field"], "ms");
    assert_eq!(agent.test_job_log().len(), 2, "only the failing sleep ran: {:?}", agent.test_job_log());
}

#[tokio::test]
async fn same_resource_runs_in_arrival_order_and_a_slow_job_does_not_hold_up_others() {
    let (_cp, agent, mut session) = connected().await;
    session.job("slow", "test.sleep", json!({"ms": 1500, "resource": "app:a"})).await;
    session.job("after-slow", "test.sleep", json!({"ms": 0, "resource": "app:a"})).await;
    session.job("unrelated", "test.sleep", json!({"ms": 0, "resource": "app:b"})).await;
    let mut finals = Vec::new();
    while finals.len() < 3 {
        let event = session.event().await;
        if event["status"] == "success" {
            finals.push(event["job_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(finals, ["unrelated", "slow", "after-slow"]);
    let log = agent.test_job_log();
    let position = |line: &str| log.iter().position(|l| l == line).unwrap();
    assert!(position("end slow") < position("start after-slow"), "{log:?}");
}

#[tokio::test]
async fn acks_trim_the_outbox_and_welcome_resends_only_the_unacknowledged() {
    let (mut cp, agent, mut session) = connected().await;
    session.job("one", "test.sleep", json!({})).await;
    let events = session.until_final("one").await;
    assert_eq!(seqs(&events), [1, 2, 3]);
    session.ack(2).await;
    let outbox = agent.state().join("outbox.log");
    agent
        .eventually("the outbox holds only seq 3", |_| {
            let text = std::fs::read_to_string(&outbox).unwrap();
            text.lines().count() == 2 && text.lines().nth(1).unwrap().contains(" 3 {")
        })
        .await;
    drop(session);

    let (mut session, hello) = cp.welcomed(2, 20).await;
    assert_eq!(hello["next_seq"], 4);
    let resent = session.event().await;
    assert_eq!((resent["seq"].as_u64(), resent["status"].as_str()), (Some(3), Some("success")));
    session.ack(3).await;
    agent.eventually("the outbox is empty", |_| std::fs::read_to_string(&outbox).unwrap().lines().count() == 1).await;
    session.job("two", "test.sleep", json!({})).await;
    assert_eq!(session.event().await["seq"], 4, "nothing acknowledged is sent again");
}

#[tokio::test]
async fn events_of_a_dropped_connection_are_resent_in_order_none_lost() {
    let (mut cp, agent, mut session) = connected().await;
    for i in 0..5 {
        session.job(&format!("job{i}"), "test.sleep", json!({"ms": 300 * i, "resource": format!("r{i}")})).await;
    }
    // The first event arrives, then the control plane vanishes without a close.
    assert_eq!(session.event().await["seq"], 1);
    drop(session);
    // Jobs finish while disconnected; their events wait in the outbox.
    agent.eventually("every job ran", |a| a.test_job_log().iter().filter(|l| l.starts_with("end")).count() == 5).await;

    let (mut session, _) = cp.welcomed(0, 20).await;
    let mut events = Vec::new();
    while events.len() < 15 {
        events.push(session.event().await);
    }
    assert_eq!(seqs(&events), (1..=15).collect::<Vec<_>>(), "every event, in seq order, none lost");
    for i in 0..5 {
        assert_eq!(statuses(&events, &format!("job{i}")), ["queued", "running", "success"]);
    }
    assert!(session.try_recv(Duration::from_millis(300)).await.is_none_or(|m| m["type"] != "job.status"));
}

#[tokio::test]
async fn a_finished_job_id_is_answered_again_not_run_again() {
    let (mut cp, mut agent, mut session) = connected().await;
    session.job("once", "test.sleep", json!({"ms": 300})).await;
    // The same job id while it runs: ignored, no second receipt.
    session.job("once", "test.sleep", json!({"ms": 300})).await;
    let first = session.until_final("once").await;
    assert_eq!(statuses(&first, "once"), ["queued", "running", "success"]);

    session.ack(3).await;
    session.job("once", "test.sleep", json!({"ms": 300})).await;
    let again = session.event().await;
    assert_eq!(again["seq"], 4, "a new seq");
    let mut same = again.clone();
    same["seq"] = first[2]["seq"].clone();
    assert_eq!(same, first[2], "the same final status");
    assert_eq!(agent.test_job_log(), ["start once", "end once"], "ran exactly once");

    // Also across a restart of the agent.
    agent.kill9();
    agent.start();
    let (mut session, _) = cp.welcomed(4, 20).await;
    session.job("once", "test.sleep", json!({"ms": 300})).await;
    let again = session.event().await;
    assert_eq!((again["seq"].as_u64(), again["status"].as_str()), (Some(5), Some("success")));
    assert_eq!(agent.test_job_log().len(), 2);
}

#[tokio::test]
async fn duplicate_final_status_while_unacked_regression() {
    // Seen under systemd during an upgrade: the control plane resent a job whose
    // final status sat unacknowledged in the outbox, and got two final statuses.
    let (mut cp, mut agent, mut session) = connected().await;
    session.job("sent", "test.sleep", json!({})).await;
    let first = session.until_final("sent").await;
    assert_eq!(seqs(&first), [1, 2, 3]);
    drop(session);
    // The control plane stored nothing of it, and resends the job after welcome.
    let (mut session, _) = cp.welcomed(0, 20).await;
    session.job("sent", "test.sleep", json!({})).await;
    let events = quiet_events(&mut session).await;
    assert_eq!(seqs(&events), [1, 2, 3], "the stored events, and no second final status");

    // The same after a restart (a stop, as an upgrade does): the final status,
    // unacknowledged, is read back from disk.
    drop(session);
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    agent.wait_exit(Duration::from_secs(15));
    agent.start();
    let (mut session, _) = cp.welcomed(0, 20).await;
    session.job("sent", "test.sleep", json!({})).await;
    let events = quiet_events(&mut session).await;
    assert_eq!(seqs(&events), [1, 2, 3], "after a restart too");
}

#[tokio::test]
async fn rerun_after_kill_between_final_status_and_record_regression() {
    // A kill after the final status was stored but before the job's record said
    // finished: at the next start the job must not run (and report) again.
    let (mut cp, mut agent, mut session) = connected().await;
    session.job("late", "test.sleep", json!({})).await;
    let first = session.until_final("late").await;
    agent.kill9();
    let record = agent.state().join("jobs/late.json");
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(stored["state"], "finished");
    stored["state"] = json!("running");
    stored["params"] = json!({});
    stored.as_object_mut().unwrap().remove("final_status");
    std::fs::write(&record, serde_json::to_vec(&stored).unwrap()).unwrap();
    agent.start();
    let (mut session, _) = cp.welcomed(0, 20).await;
    let events = quiet_events(&mut session).await;
    assert_eq!(events, first, "the stored events once, nothing more");
    assert_eq!(agent.test_job_log(), ["start late", "end late"], "ran exactly once");
    // And the job's record is finished again: a resend is answered, not run.
    session.ack(3).await;
    session.job("late", "test.sleep", json!({})).await;
    assert_eq!(session.event().await["status"], "success");
    assert_eq!(agent.test_job_log().len(), 2);
}

#[tokio::test]
async fn job_output_is_streamed_live_and_not_sequenced() {
    let (_cp, _agent, mut session) = connected().await;
    session.job("talky", "test.sleep", json!({"ms": 100})).await;
    let output = session.recv_type("job.output").await;
    assert_eq!(output["job_id"], "talky");
    assert_eq!(output["text"], "sleeping 100 ms\n");
    assert!(output.get("seq").is_none());
    session.until_final("talky").await;
}

#[tokio::test]
async fn a_panicking_job_ends_in_an_internal_error_and_the_engine_goes_on() {
    let (_cp, _agent, mut session) = connected().await;
    session.job("panics", "test.sleep", json!({"panic": true, "resource": "r"})).await;
    let events = session.until_final("panics").await;
    assert_eq!(statuses(&events, "panics"), ["queued", "running", "error"]);
    let error = &events.last().unwrap()["error"];
    assert_eq!(error["code"], "internal");
    assert_eq!(error["message"], "the job panicked: test.sleep was asked to panic");
    session.job("after", "test.sleep", json!({"resource": "r"})).await;
    let events = session.until_final("after").await;
    assert_eq!(statuses(&events, "after"), ["queued", "running", "success"], "its resource was given back");
}

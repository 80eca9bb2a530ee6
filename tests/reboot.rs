//! `server.reboot` through the wire: the host reboots only once the control plane
//! has acknowledged the job's final status, or after a bounded wait when no
//! acknowledgement comes. A stand-in reboot command records when it ran.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{write_executable, ControlPlane, Sandbox};

/// An agent whose reboot command appends "reboot ran" to `log` (in the returned dir).
fn agent_with_stand_in(cp: &ControlPlane) -> (Sandbox, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("order.log");
    let script = dir.path().join("reboot-stand-in");
    write_executable(&script, &format!("#!/bin/sh\necho \"reboot ran $*\" >> {}\n", log.display()));
    let command = format!("[{:?}, \"now\"]", script.display().to_string());
    let agent = Sandbox::with_config(cp, &[("reboot_command", &command)]);
    (agent, dir, log)
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn the_host_reboots_only_after_the_final_status_is_acknowledged() {
    let mut cp = ControlPlane::start().await;
    let (mut agent, _dir, log) = agent_with_stand_in(&cp);
    agent.start();
    let (mut session, hello) = cp.welcomed(0, 20).await;
    assert_eq!(
        hello["settings"],
        json!({"firewall": false, "autoupdates": false, "deny_unknown_domains": true}),
        "{hello}"
    );
    assert!(hello["job_kinds"].as_array().unwrap().contains(&json!("server.reboot")));

    session.job("reboot-1", "server.reboot", json!({})).await;
    let events = session.until_final("reboot-1").await;
    let done = events.last().unwrap();
    assert_eq!(done["status"], "success", "{done}");
    let seq = done["seq"].as_u64().unwrap();

    // Acknowledging everything but the final status holds the reboot back.
    session.ack(seq - 1).await;
    assert!(session.try_recv(Duration::from_secs(3)).await.is_none_or(|m| m["type"] == "metrics"));
    assert!(lines(&log).is_empty(), "rebooted before the final status was acknowledged: {:?}", lines(&log));

    std::fs::write(&log, "ack sent\n").unwrap();
    session.ack(seq).await;
    agent.eventually("the reboot command ran", |_| lines(&log).len() == 2).await;
    assert_eq!(lines(&log), ["ack sent", "reboot ran now"]);
    agent.eventually("the reboot is logged", |a| a.log().contains("rebooting the host")).await;
}

#[tokio::test]
async fn without_an_acknowledgement_the_host_reboots_after_a_bounded_wait() {
    let mut cp = ControlPlane::start().await;
    let (mut agent, _dir, log) = agent_with_stand_in(&cp);
    agent.start();
    let (mut session, _) = cp.welcomed(0, 20).await;
    session.job("reboot-2", "server.reboot", json!({})).await;
    let events = session.until_final("reboot-2").await;
    assert_eq!(events.last().unwrap()["status"], "success");

    // No ack is ever sent; the agent's bounded wait is 30 s.
    let started = Instant::now();
    while lines(&log).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the reboot never ran:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(lines(&log), ["reboot ran now"]);
    agent.eventually("the missing ack is logged", |a| a.log().contains("no acknowledgement in time")).await;
}

//! The connection against a real TLS websocket control plane: hello, credentials,
//! backoff, heartbeats, closes, bad frames, metrics.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use support::{write_executable, ControlPlane, End, Sandbox, API_KEY, SERVER_ID};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn hello_describes_the_host_and_the_upgrade_carries_credentials() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    let sbin = agent.root().join("usr/sbin");
    for runtime in ["php-fpm8.3", "php-fpm8.2"] {
        write_executable(&sbin.join(runtime), "#!/bin/sh\nexit 0\n");
    }
    write_executable(&sbin.join("nginx"), "#!/bin/sh\necho 'nginx version: nginx/1.22.1' >&2\n");
    agent.start();

    let (session, hello) = cp.welcomed(0, 20).await;
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["server_id"], SERVER_ID);
    assert_eq!(hello["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(hello["runtimes"], json!(["php8.2", "php8.3"]));
    assert_eq!(hello["services"], json!({"nginx": "1.22.1"}), "apache and mysql are not installed in the sandbox");
    assert_eq!(hello["next_seq"], 1);
    let kinds: Vec<&str> = hello["job_kinds"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(kinds.contains(&"test.sleep"), "{kinds:?}");
    let host = &hello["host"];
    assert_eq!(
        host["kernel"].as_str().unwrap(),
        String::from_utf8(std::process::Command::new("uname").arg("-r").output().unwrap().stdout).unwrap().trim()
    );
    assert_eq!(host["arch"], std::env::consts::ARCH);
    assert!(host["cpus"].as_u64().unwrap() >= 1);
    assert!(host["memory_total"].as_u64().unwrap() > 1 << 20);
    assert!(!host["hostname"].as_str().unwrap().is_empty());
    assert_eq!(host["boot_id"].as_str().unwrap().len(), 36);

    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SERVER_ID}:{API_KEY}")));
    assert_eq!(session.headers["authorization"], expected.as_str());
    assert_eq!(session.headers["sec-websocket-protocol"], "berth.v1");
    assert_eq!(session.headers["user-agent"], format!("berth/{}", env!("CARGO_PKG_VERSION")).as_str());
    assert!(!agent.log().contains(API_KEY), "the key must never reach the log");
}

#[tokio::test]
async fn rejected_credentials_are_logged_per_attempt_with_backoff_and_without_the_key() {
    let mut cp = ControlPlane::start().await;
    cp.reject_with(Some(401));
    let mut agent = Sandbox::new(&cp);
    let started = Instant::now();
    agent.start();
    wait_for_attempts(&cp, 3).await;
    cp.reject_with(Some(403));
    wait_for_attempts(&cp, 4).await;

    let attempts = cp.attempts();
    // Never a hot loop: at least 1 s between attempts, so no more than one a second.
    for pair in attempts.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(950), "retried after {:?}", pair[1] - pair[0]);
    }
    assert!(attempts.len() as u64 <= started.elapsed().as_secs() + 1);
    let log = agent.log();
    let rejections = log.lines().filter(|l| l.contains("rejected this agent's credentials")).count();
    assert!(rejections + 1 >= attempts.len(), "one ERROR line per attempt:\n{log}");
    assert!(log.contains("http_status=401") && log.contains("http_status=403"), "{log}");
    assert!(!log.contains(API_KEY), "the key must never reach the log");

    cp.reject_with(None);
    let mut session = cp.session_within(Duration::from_secs(40)).await.expect("the agent keeps retrying and gets in");
    assert_eq!(session.welcome(0, 20).await["type"], "hello");
    assert!(agent.is_running(), "the agent never exits on rejected credentials");
}

async fn wait_for_attempts(cp: &ControlPlane, count: usize) {
    let started = Instant::now();
    while cp.attempts().len() < count {
        assert!(started.elapsed() < Duration::from_secs(40), "the agent stopped retrying");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The agent logs the rejection right after the control plane answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_silent_control_plane_is_declared_dead_after_three_heartbeats() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    agent.start();
    let (_silent, _) = cp.welcomed(0, 1).await;
    let since = Instant::now();
    // `_silent` is never read again: no pongs, no frames.
    let mut next = cp.session_within(Duration::from_secs(15)).await.expect("the agent reconnects");
    let gap = since.elapsed();
    assert!(gap >= Duration::from_millis(2500), "declared dead too early: {gap:?}");
    next.welcome(0, 20).await;
    assert!(agent.log().contains("connection dead"), "{}", agent.log());
}

#[tokio::test]
async fn pings_keep_a_quiet_connection_alive() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    agent.start();
    let (mut session, _) = cp.welcomed(0, 1).await;
    // The session is read (so pongs go back) but nothing else is sent for 5 heartbeats.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(frame) = tokio::time::timeout_at(until, futures_util::StreamExt::next(&mut session.ws)).await {
        if let Some(Ok(Message::Ping(_))) = frame {
            pings += 1;
        }
    }
    assert!((3..=7).contains(&pings), "one ping per heartbeat, saw {pings}");
    assert!(cp.session_within(Duration::from_millis(100)).await.is_none(), "no reconnect while pongs flow");
    drop(agent);
}

#[tokio::test]
async fn restart_close_reconnects_within_five_seconds() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    agent.start();
    for _ in 0..3 {
        let (mut session, _) = cp.welcomed(0, 20).await;
        let closed = Instant::now();
        session.close(CloseCode::Restart).await;
        let mut next = cp.session_within(Duration::from_secs(8)).await.expect("reconnect");
        // The first retry after 1012 waits random(0, 5 s); the rest is slack for a loaded machine.
        assert!(closed.elapsed() < Duration::from_secs(7), "{:?}", closed.elapsed());
        next.welcome(0, 20).await;
        next.close(CloseCode::Away).await;
    }
}

#[tokio::test]
async fn oversize_message_is_refused_with_1009_and_the_agent_reconnects() {
    let (mut cp, agent, mut session) = support::connected().await;
    let huge =
        format!(r#"{{"type":"job","job_id":"big","kind":"test.sleep","params":{{"pad":"{}"}}}}"#, "x".repeat(9 << 20));
    // The agent may refuse before the whole frame is written.
    let _ = futures_util::SinkExt::send(&mut session.ws, Message::text(huge)).await;
    assert_eq!(session.end(Duration::from_secs(10)).await, End::Closed(Some(1009)));
    let (mut next, _) = cp.welcomed(0, 20).await;
    next.job("after-big", "test.sleep", json!({})).await;
    let events = next.until_final("after-big").await;
    assert_eq!(events.last().unwrap()["status"], "success");
    assert!(agent.log().contains("size limit"), "{}", agent.log());
}

#[tokio::test]
async fn malformed_frames_are_logged_and_the_connection_stays_up() {
    let (mut cp, agent, mut session) = support::connected().await;
    for bad in [
        "{not json",
        "[1,2,3]",
        r#"{"no_type": true}"#,
        r#"{"type": "job", "kind": "test.sleep"}"#,
        r#"{"type": "ack", "seq": "seven"}"#,
        r#"{"type": "teleport", "to": "mars"}"#,
        r#"{"type": "job", "job_id": "../../etc/passwd", "kind": "test.sleep", "params": {}}"#,
        r#"{"type": "job", "job_id": "", "kind": "test.sleep", "params": {}}"#,
    ] {
        session.send_raw(Message::text(bad)).await;
    }
    session.send_raw(Message::binary(vec![0u8, 159, 146, 150])).await;
    session.job("still-here", "test.sleep", json!({})).await;
    let events = session.until_final("still-here").await;
    assert_eq!(events[0]["status"], "queued");
    assert_eq!(events[0]["seq"], 1, "the bad job ids got no events");
    assert_eq!(events.last().unwrap()["status"], "success");
    let log = agent.log();
    assert!(log.contains("malformed message"), "{log}");
    assert!(log.contains("unknown message type"), "{log}");
    assert!(log.contains("binary frame"), "{log}");
    assert!(log.contains("job_id breaks the rules"), "{log}");
    assert!(cp.session_within(Duration::from_millis(200)).await.is_none(), "the connection stayed up");
    assert!(!agent.state().join("jobs").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("passwd")));
}

#[tokio::test]
async fn metrics_arrive_every_metrics_secs_shaped_as_the_protocol_says() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    std::fs::create_dir_all(agent.root().join("var/run")).unwrap();
    std::fs::write(agent.root().join("var/run/reboot-required"), "*** System restart required ***\n").unwrap();
    agent.start();
    let mut session = cp.session().await;
    session.recv_type("hello").await;
    session.send(json!({"type": "welcome", "acked_seq": 0, "heartbeat_secs": 20, "metrics_secs": 1})).await;
    let first = session.recv_type("metrics").await;
    let second = session.recv_type("metrics").await;
    for metrics in [&first, &second] {
        assert!(metrics["memory"]["total"].as_u64().unwrap() > 0);
        assert!(metrics["memory"]["available"].as_u64().unwrap() <= metrics["memory"]["total"].as_u64().unwrap());
        assert_eq!(metrics["load"].as_array().unwrap().len(), 3);
        assert!(metrics["uptime_secs"].as_u64().unwrap() > 0);
        assert!(metrics["cpu_percent"].as_f64().unwrap() >= 0.0);
        assert!(metrics["network"]["rx_bytes"].is_u64());
        assert!(metrics["disks"].is_array());
        for disk in metrics["disks"].as_array().unwrap() {
            assert!(!["tmpfs", "overlay", "squashfs"].contains(&disk["fs"].as_str().unwrap()), "{disk}");
        }
        assert_eq!(metrics["reboot_required"], true);
        assert!(metrics["upgrades_pending"].is_u64());
        assert!(metrics["at"].as_str().unwrap().ends_with('Z'));
    }
    drop(agent);
}

#[tokio::test]
async fn regression_welcome_with_acked_seq_u64_max_never_wraps_or_reuses_a_seq() {
    let (mut cp, mut agent, mut session) = support::connected().await;
    session.job("before", "test.sleep", json!({})).await;
    let before = session.until_final("before").await;
    let before_seqs: Vec<u64> = before.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(before_seqs, [1, 2, 3], "queued, running, success; none acked");
    session.close(CloseCode::Restart).await;

    // Was: `acked_seq + 1` overflowed (a panic in debug; in release the counter wrapped to 0
    // and seqs the control plane had were reused). Now the welcome is refused whole, each time.
    for _ in 0..2 {
        let mut bogus = cp.session().await;
        let hello = bogus.welcome(u64::MAX, 20).await;
        assert_eq!(hello["next_seq"], 4, "the refused welcome moved nothing");
        assert_eq!(bogus.end(support::PATIENCE).await, End::Closed(Some(1002)));
    }
    assert!(agent.is_running(), "no panic:\n{}", agent.log());

    // A sane control plane gets the unacknowledged events back (the bogus ack dropped
    // nothing), then new events continue the counter: strictly increasing, never reused.
    let (mut next, hello) = cp.welcomed(0, 20).await;
    assert_eq!(hello["next_seq"], 4);
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(next.event().await["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [1, 2, 3], "resent after a sane welcome");
    next.job("after", "test.sleep", json!({})).await;
    seqs.extend(next.until_final("after").await.iter().map(|e| e["seq"].as_u64().unwrap()));
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    let log = agent.log();
    assert!(log.contains("welcome refused") && log.contains("acked_seq 18446744073709551615"), "{log}");
    assert!(!log.contains(support::API_KEY), "the key must never reach the log");
}

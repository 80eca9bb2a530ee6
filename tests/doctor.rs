//! `berth doctor` against the test control plane (passing, and failing on a wrong CA,
//! an unreachable port, a bad key-file mode), and `berth status` from the state dir
//! of the real daemon, running and stopped.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::{ControlPlane, Pki, Sandbox, API_KEY};

/// A sandbox doctor can pass with: the machine's own tools (root "/", only read),
/// a 0700 state dir, and the config (it holds the key inline) at 0600.
fn doctor_sandbox(cp: &ControlPlane, overrides: &[(&str, &str)]) -> Sandbox {
    let mut all = vec![("root", "\"/\"")];
    all.extend_from_slice(overrides);
    let agent = Sandbox::with_config(cp, &all);
    std::fs::create_dir(agent.state()).unwrap();
    std::fs::set_permissions(agent.state(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(agent.config_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    agent
}

/// Runs `berth doctor` off the runtime (the control plane answers on it meanwhile).
async fn doctor(agent: &Sandbox) -> (Option<i32>, Vec<String>) {
    let config = agent.config_path().to_str().unwrap().to_owned();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || support::berth(&["doctor", "--config", &config])).await.unwrap();
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY), "the key is never shown");
    (code, stdout.lines().map(str::to_owned).collect())
}

fn line<'a>(lines: &'a [String], name: &str) -> &'a str {
    let prefix = format!("{name}:");
    lines.iter().find(|l| l[6..].starts_with(&prefix)).unwrap_or_else(|| panic!("no {name} line in {lines:#?}"))
}

#[tokio::test]
async fn doctor_passes_against_the_test_control_plane() {
    let mut cp = ControlPlane::start().await;
    let agent = doctor_sandbox(&cp, &[]);
    let (code, lines) = doctor(&agent).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines.iter().all(|l| l.starts_with("ok ") || l.starts_with("warn ")), "{lines:#?}");
    assert!(line(&lines, "control plane").contains("101"), "{lines:#?}");
    assert!(line(&lines, "state dir").contains("0700"), "{lines:#?}");
    assert!(line(&lines, "config file").contains("0600"), "{lines:#?}");
    for tool in ["nginx", "nft", "shadow-utils"] {
        assert!(line(&lines, tool).starts_with("ok "), "{lines:#?}");
    }
    assert!(lines.iter().any(|l| l.starts_with("ok    php-fpm (php")), "{lines:#?}");
    // The upgrade really reached the control plane, with the agent's credentials.
    let mut session = cp.session().await;
    assert!(session.headers["authorization"].to_str().unwrap().starts_with("Basic "));
    // Its first and only frame is a close with 1000: no hello, so it is no agent session.
    let first = tokio::time::timeout(support::PATIENCE, futures_util::StreamExt::next(&mut session.ws)).await.unwrap();
    match first {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1000)
        }
        other => panic!("expected a close with 1000, got {other:?}"),
    }
}

#[tokio::test]
async fn doctor_fails_on_a_control_plane_signed_by_another_ca() {
    let cp = ControlPlane::start().await;
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    std::fs::write(&other_ca, Pki::new().ca_pem).unwrap();
    let agent = doctor_sandbox(&cp, &[("ca_file", &format!("{other_ca:?}"))]);
    let (code, lines) = doctor(&agent).await;
    assert_eq!(code, Some(1), "{lines:#?}");
    let tls = line(&lines, "control plane");
    assert!(tls.starts_with("FAIL") && tls.contains("invalid peer certificate"), "{tls}");
    assert!(line(&lines, "state dir").starts_with("ok "), "the other checks still run: {lines:#?}");
}

#[tokio::test]
async fn doctor_fails_on_an_unreachable_port() {
    let cp = ControlPlane::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("\"wss://localhost:{}/agent\"", closed.local_addr().unwrap().port());
    drop(closed);
    let agent = doctor_sandbox(&cp, &[("control_plane_url", &url)]);
    let (code, lines) = doctor(&agent).await;
    assert_eq!(code, Some(1), "{lines:#?}");
    let tls = line(&lines, "control plane");
    assert!(tls.starts_with("FAIL") && tls.contains("Connection refused"), "{tls}");
}

#[tokio::test]
async fn doctor_fails_on_rejected_credentials() {
    let cp = ControlPlane::start().await;
    cp.reject_with(Some(401));
    let agent = doctor_sandbox(&cp, &[]);
    let (code, lines) = doctor(&agent).await;
    assert_eq!(code, Some(1), "{lines:#?}");
    assert!(line(&lines, "control plane").contains("credentials rejected"), "{lines:#?}");
}

#[tokio::test]
async fn doctor_fails_on_a_key_file_others_can_read_and_a_bad_state_dir() {
    let cp = ControlPlane::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("api-key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let agent = doctor_sandbox(&cp, &[("api_key", ""), ("api_key_file", &format!("{key_file:?}"))]);
    std::fs::set_permissions(agent.state(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, lines) = doctor(&agent).await;
    assert_eq!(code, Some(1), "{lines:#?}");
    let key = line(&lines, "key file");
    assert!(key.starts_with("FAIL") && key.contains("0644"), "{key}");
    assert!(line(&lines, "state dir").starts_with("FAIL"), "{lines:#?}");
    assert!(line(&lines, "control plane").starts_with("ok "), "the key itself works: {lines:#?}");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(agent.state(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, lines) = doctor(&agent).await;
    assert_eq!(code, Some(0), "{lines:#?}");
}

#[tokio::test]
async fn doctor_reports_a_broken_config_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "server_id = \"x\"\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let (code, stdout, _) =
        tokio::task::spawn_blocking(move || support::berth(&["doctor", "--config", &config])).await.unwrap();
    assert_eq!(code, Some(1));
    assert!(stdout.starts_with("FAIL  config:") && stdout.lines().count() == 1, "{stdout}");
}

fn status(agent: &Sandbox) -> Value {
    let (code, stdout, stderr) =
        support::berth(&["status", "--json", "--config", agent.config_path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn status_text(config: &Path) -> String {
    let (code, stdout, stderr) = support::berth(&["status", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    stdout
}

#[tokio::test]
async fn status_reads_the_running_and_the_stopped_daemon_from_the_state_dir() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    assert!(status_text(&agent.config_path()).contains("never started"));
    agent.start();
    let (mut session, _) = cp.welcomed(0, 1).await;
    session.job("status-job", "test.sleep", serde_json::json!({"ms": 0})).await;
    let events = session.until_final("status-job").await;

    let report = status(&agent);
    assert_eq!(report["daemon_running"], true, "{report}");
    assert_eq!(report["connection"]["connected"], true, "{report}");
    assert_eq!(report["connection"]["pid"], agent.pid(), "{report}");
    assert_eq!(report["outbox"], events.len(), "nothing acknowledged yet: {report}");
    assert_eq!(report["jobs"][0]["job_id"], "status-job", "{report}");
    assert_eq!(report["jobs"][0]["status"], "success", "{report}");
    // Heartbeats (every second here) move the last heartbeat past the connect time.
    let since = report["connection"]["since_ms"].as_u64().unwrap();
    let mut heartbeat = 0;
    let started = std::time::Instant::now();
    while heartbeat <= since {
        assert!(started.elapsed() < support::PATIENCE, "no heartbeat recorded: {}", status(&agent));
        let _ = session.try_recv(Duration::from_millis(200)).await;
        heartbeat = status(&agent)["connection"]["last_heartbeat_ms"].as_u64().unwrap();
    }
    session.ack(events.last().unwrap()["seq"].as_u64().unwrap()).await;
    agent.eventually("the outbox is empty", |a| status(a)["outbox"] == 0).await;

    let text = status_text(&agent.config_path());
    assert!(text.contains("control plane:  connected"), "{text}");
    assert!(text.contains("success") && text.contains("status-job"), "{text}");

    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).0, Some(0));
    let report = status(&agent);
    assert_eq!(report["daemon_running"], false, "{report}");
    assert_eq!(report["connection"]["connected"], false, "{report}");
    assert_eq!(report["connection"]["reason"], "agent stopping", "{report}");
    assert!(
        report["connection"]["last_heartbeat_ms"].as_u64().unwrap() >= heartbeat,
        "the last heartbeat stays known: {report}"
    );
    let text = status_text(&agent.config_path());
    assert!(text.contains("not running") && text.contains("not connected (agent stopping)"), "{text}");
    assert!(text.contains("status-job"), "{text}");
}

//! The daemon's renewal loop through the wire: a due AutoSSL certificate is renewed
//! by an internal job that reports as an `ssl.renewal` event (sequenced, stored,
//! acked like any event), never as a `job.status`; a failed attempt is remembered
//! across a restart. (Issuance itself is proven against pebble in tests/ssl.rs.)

mod support;

use std::time::Duration;

use serde_json::json;
use support::pki::{TestCa, Validity};
use support::{ControlPlane, Sandbox};

/// An AutoSSL app `shop` (ForceSSL on) whose certificate expires tomorrow, in the
/// sandbox's inventory and root. Its domain does not resolve, so a renewal fails.
fn due_autossl_app(agent: &Sandbox) -> String {
    let names = ["shop.invalid", "www.shop.invalid"];
    let (cert, key) = TestCa::new("old CA").leaf(&names, Validity::expiring_in(Duration::from_secs(86_400)));
    let ssl_dir = agent.root().join("etc/berth/ssl/shop");
    std::fs::create_dir_all(&ssl_dir).unwrap();
    std::fs::write(ssl_dir.join("fullchain.pem"), &cert).unwrap();
    std::fs::write(ssl_dir.join("key.pem"), key).unwrap();
    let inventory = json!({"apps": {"shop": {
        "sysuser": "derek", "runtime": "php8.2", "domains": ["shop.invalid"], "stack": "nginx", "created_ms": 1,
        "ssl": {"source": "auto", "force": true, "ordered_for": names, "failures": 0, "next_attempt_ms": 0}}}});
    std::fs::create_dir_all(agent.state()).unwrap();
    std::fs::write(agent.state().join("inventory.json"), inventory.to_string()).unwrap();
    cert
}

#[tokio::test]
async fn a_due_certificate_is_renewed_in_the_background_and_its_failure_is_an_event_not_a_job_status() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    let cert = due_autossl_app(&agent);
    agent.env("RUST_LOG", "info,berth::engine::renewal=debug");
    agent.start();
    let (mut session, hello) = cp.welcomed(0, 20).await;
    assert!(
        !hello["job_kinds"].as_array().unwrap().iter().any(|k| k == "ssl.renew"),
        "an internal kind is not advertised"
    );

    let event = loop {
        let message = session.recv().await;
        assert_ne!(message["type"], "job.status", "a renewal sends no job.status: {message}");
        assert_ne!(message["type"], "job.output", "nor live output for a job the control plane never sent: {message}");
        if message["type"] == "ssl.renewal" {
            break message;
        }
    };
    assert_eq!((event["app"].as_str(), event["status"].as_str()), (Some("shop"), Some("error")), "{event}");
    assert_eq!(event["error"]["code"], "precondition_failed", "{event}");
    assert!(event["error"]["message"].as_str().unwrap().contains("shop.invalid (does not resolve)"), "{event}");
    assert!(event["seq"].as_u64().is_some() && event["next_attempt_at"].as_str().is_some(), "{event}");
    session.ack(event["seq"].as_u64().unwrap()).await;
    assert_eq!(
        std::fs::read_to_string(agent.root().join("etc/berth/ssl/shop/fullchain.pem")).unwrap(),
        cert,
        "the certificate stays"
    );
    let inventory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.state().join("inventory.json")).unwrap()).unwrap();
    assert_eq!(inventory["apps"]["shop"]["ssl"]["failures"], 1);
    assert_eq!(inventory["apps"]["shop"]["ssl"]["force"], true, "ForceSSL stays");

    // The control plane cannot send the internal kind.
    session.job("cp-renew", "ssl.renew", json!({"app": "shop"})).await;
    let statuses = session.until_final("cp-renew").await;
    assert_eq!(statuses.last().unwrap()["error"]["code"], "unsupported");
    assert!(
        !statuses.iter().any(|e| e["job_id"].as_str().unwrap().starts_with("renew-")),
        "no job.status for a renewal: {statuses:?}"
    );

    // After a restart the failed attempt is remembered: no new attempt before its time.
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    agent.wait_exit(Duration::from_secs(10));
    agent.start();
    let (mut session, _) = cp.welcomed(0, 20).await;
    agent
        .eventually("the renewal check after the restart", |a| {
            a.log().matches("certificate renewal check").count() >= 2
        })
        .await;
    assert!(agent.log().contains("certificate renewal check due=0"), "{}", agent.log());
    assert!(session.try_recv(Duration::from_millis(500)).await.is_none_or(|e| e["type"] != "ssl.renewal"));
}

//! Trust and transport: the pinned CA, mutual TLS, `ws://` on loopback, and the
//! sd_notify conversation with a (stand-in) systemd.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{ControlPlane, Pki, Sandbox, Wire};

#[tokio::test]
async fn a_pinned_ca_refuses_a_control_plane_signed_by_another_ca() {
    let mut cp = ControlPlane::start().await;
    let files = tempfile::tempdir().unwrap();
    let other_ca = write(&files, "other-ca.pem", &Pki::new().ca_pem);
    let mut agent = Sandbox::with_config(&cp, &[("ca_file", &other_ca)]);
    agent.start();
    assert!(cp.session_within(Duration::from_secs(3)).await.is_none(), "no upgrade over an untrusted certificate");
    agent.eventually("the TLS failure is logged", |a| a.log().contains("invalid peer certificate")).await;
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let mut cp = ControlPlane::start_with(Wire::MutualTls).await;
    let files = tempfile::tempdir().unwrap();
    let cert = write(&files, "client.pem", &cp.pki.client_cert_pem);
    let key = write(&files, "client.key", &cp.pki.client_key_pem);

    // Without a client certificate the handshake fails.
    let mut anonymous = Sandbox::new(&cp);
    anonymous.start();
    assert!(cp.session_within(Duration::from_secs(3)).await.is_none());
    drop(anonymous);

    let mut agent = Sandbox::with_config(&cp, &[("tls_cert_file", &cert), ("tls_key_file", &key)]);
    agent.start();
    let (_session, hello) = cp.welcomed(0, 20).await;
    assert_eq!(hello["type"], "hello");
}

#[tokio::test]
async fn plain_ws_to_loopback_works_only_when_allowed() {
    let mut cp = ControlPlane::start_with(Wire::Plain).await;
    let mut refused = Sandbox::with_config(&cp, &[]);
    refused.start();
    let (code, _) = refused.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(2), "ws:// without allow_insecure_ws is a config error");
    assert!(refused.log().contains("control_plane_url"), "{}", refused.log());

    let mut agent = Sandbox::with_config(&cp, &[("allow_insecure_ws", "true")]);
    agent.start();
    let (_session, hello) = cp.welcomed(0, 20).await;
    assert_eq!(hello["type"], "hello");
}

#[tokio::test]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    let socket_path = agent.dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&socket_path).unwrap();
    systemd.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    agent.env("NOTIFY_SOCKET", socket_path.to_str().unwrap());
    agent.env("WATCHDOG_USEC", "1000000");
    agent.start();
    let (_session, _) = cp.welcomed(0, 20).await;

    let heard = |until: &dyn Fn(&[String]) -> bool| {
        let started = Instant::now();
        let mut heard = Vec::new();
        let mut buf = [0u8; 256];
        while !until(&heard) {
            assert!(started.elapsed() < Duration::from_secs(10), "systemd heard only {heard:?}");
            if let Ok(n) = systemd.recv(&mut buf) {
                heard.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned());
            }
        }
        heard
    };
    let heard_first =
        heard(&|h| h.contains(&"READY=1".to_string()) && h.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3);
    assert!(!heard_first.contains(&"STOPPING=1".to_string()));
    agent.signal(Signal::SIGTERM);
    heard(&|h| h.contains(&"STOPPING=1".to_string()));
    assert_eq!(agent.wait_exit(Duration::from_secs(10)).0, Some(0));
}

/// Writes a file for the agent's config; returns its path as a TOML string.
fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    format!("{path:?}")
}

//! Certificates against the real nginx and Debian's real ACME test server, pebble,
//! in a test machine: custom certificates, AutoSSL over HTTP-01, ForceSSL, delete,
//! the mutual-exclusion rules, renewal, and a stalled CA that holds up no other app.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::machine::{Daemon, Machine};
use support::pebble::Pebble;
use support::pki::{der_b64, key_pem, KeyKind, TestCa, Validity};
use support::probes::header;
use support::stall::Stall;
use support::{ControlPlane, Session, API_KEY, SERVER_ID};

/// A machine with user `derek` and an nginx app `app` serving `domains` (each
/// mapped to the machine's 127.0.0.1 unless it ends in `.invalid`).
fn machine_with_app(app: &str, domains: &[&str]) -> Machine {
    let machine = Machine::start();
    let resolvable: Vec<String> =
        domains.iter().filter(|d| !d.ends_with(".invalid")).flat_map(|d| [d.to_string(), format!("www.{d}")]).collect();
    machine.add_hosts(&resolvable.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    let done = machine.job(
        "app.create",
        json!({"name": app, "sysuser": "derek", "runtime": "php8.2", "domains": domains, "stack": "nginx"}),
    );
    assert_eq!(done["status"], "success", "{done}");
    std::fs::write(machine.path(&format!("/srv/users/derek/apps/{app}/public/index.html")), format!("{app} home"))
        .unwrap();
    machine.at_once_get(domains[0], "/index.html", 200);
    machine
}

/// `pem` written into the sandbox (the same path inside the machine).
fn file(machine: &Machine, name: &str, pem: &str) -> PathBuf {
    let path = machine.dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// `probe`, once, must satisfy `check`: a job that reloads nginx ends only when the
/// new config serves (issue 14: the first handshake after `success` used to get the
/// old certificate), so nothing here waits or retries.
fn at_once<T: std::fmt::Debug>(what: &str, probe: impl FnOnce() -> T, check: impl Fn(&T) -> bool) -> T {
    let got = probe();
    assert!(check(&got), "{what}, at once after the job: {got:?}");
    got
}

fn stat(machine: &Machine, path: &str) -> String {
    String::from_utf8_lossy(&machine.run("/usr/bin/stat", &["-c", "%a %U", path]).stdout).trim().to_owned()
}

fn names(value: &Value) -> Vec<&str> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

#[test]
fn a_custom_certificate_is_served_over_https_with_its_chain_and_http_keeps_working() {
    let machine = machine_with_app("gallery", &["gallery.test", "other.test"]);
    let root = TestCa::new("berth test root");
    let intermediate = root.intermediate("berth test intermediate");
    let (cert, key) = intermediate.leaf(&["gallery.test", "www.gallery.test"], Validity::normal());
    let root_file = file(&machine, "root.pem", root.cert_pem());

    let params = json!({"app": "gallery", "key": key, "cert": cert, "cacerts": intermediate.cert_pem()});
    let done = machine.job("ssl.install", params.clone());
    assert_eq!((done["status"].as_str(), done["changed"].as_bool()), (Some("success"), Some(true)), "{done}");
    assert_eq!(names(&done["result"]["domains_covered"]), ["gallery.test", "www.gallery.test"]);
    assert_eq!(names(&done["result"]["domains_uncovered"]), ["other.test", "www.other.test"]);
    assert!(done["result"]["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(!done.to_string().contains(der_b64(&key).get(..40).unwrap()), "the key is in no status");

    let (code, body, version) =
        at_once("HTTPS", || machine.https_get("gallery.test", "/index.html", &root_file), |r| r.0 != 0);
    assert_eq!(
        (code, body.as_str(), version.as_str()),
        (200, "gallery home", "2"),
        "HTTPS over HTTP/2, the chain verified"
    );
    assert_eq!(machine.https_get("www.gallery.test", "/index.html", &root_file).0, 200);
    assert_eq!(der_b64(&machine.served_cert("gallery.test").unwrap()), der_b64(&cert));
    assert_eq!(machine.get("gallery.test", "/index.html"), (200, "gallery home".into()), "plain HTTP still answers");
    assert_eq!(machine.served_cert("unknown.test"), None, "an unknown name gets no app's certificate");
    assert_eq!(stat(&machine, "/etc/berth/ssl/gallery/key.pem"), "600 root");
    assert_eq!(stat(&machine, "/etc/berth/ssl/gallery"), "700 root");

    let again = machine.job("ssl.install", params);
    assert_eq!(again["changed"], false, "{again}");

    // AutoSSL cannot be enabled over a custom certificate (no CA is even asked).
    let auto = machine.job("ssl.auto", json!({"app": "gallery"}));
    assert_eq!(auto["error"]["code"], "precondition_failed", "{auto}");
    assert_eq!(der_b64(&machine.served_cert("gallery.test").unwrap()), der_b64(&cert));

    // The key flavours control planes send: SEC1 EC and PKCS#1 RSA.
    for kind in [KeyKind::Sec1Ec, KeyKind::Pkcs1Rsa] {
        let key = key_pem(kind);
        let cert = root.leaf_with_key(&["gallery.test"], Validity::normal(), &key);
        let done = machine.job("ssl.install", json!({"app": "gallery", "key": key, "cert": cert}));
        assert_eq!(done["status"], "success", "{kind:?}: {done}");
        let served = at_once(
            "the new certificate",
            || machine.served_cert("gallery.test"),
            |c| c.as_deref().map(der_b64) == Some(der_b64(&cert)),
        );
        assert!(served.is_some(), "{kind:?}");
    }
}

#[test]
fn bad_certificates_are_invalid_params_naming_the_field_and_nothing_changes() {
    let machine = machine_with_app("shop", &["shop.test"]);
    let ca = TestCa::new("berth test CA");
    let other_ca = TestCa::new("another CA");
    let (cert, key) = ca.leaf(&["shop.test"], Validity::normal());
    let (_, other_key) = ca.leaf(&["shop.test"], Validity::normal());
    let (expired, expired_key) = ca.leaf(&["shop.test"], Validity::expired());
    let (elsewhere, elsewhere_key) = ca.leaf(&["elsewhere.test"], Validity::normal());
    let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let vhost = std::fs::read_to_string(machine.path("/etc/nginx/berth.d/shop.conf")).unwrap();

    let cases = [
        ("a key of another certificate", json!({"key": other_key, "cert": cert}), "key"),
        ("an expired certificate", json!({"key": expired_key, "cert": expired}), "cert"),
        ("garbage PEM", json!({"key": key, "cert": garbage}), "cert"),
        ("no PEM at all", json!({"key": key, "cert": "hello"}), "cert"),
        ("a key that is not PEM", json!({"key": "hunter2hunter2", "cert": cert}), "key"),
        ("a chain that did not sign it", json!({"key": key, "cert": cert, "cacerts": other_ca.cert_pem()}), "cacerts"),
        ("the chain inside cert", json!({"key": key, "cert": format!("{cert}{}", ca.cert_pem())}), "cert"),
        ("a certificate for other names", json!({"key": elsewhere_key, "cert": elsewhere}), "cert"),
        ("no key", json!({"cert": cert}), "key"),
    ];
    for (what, mut params, field) in cases {
        params["app"] = json!("shop");
        let done = machine.job("ssl.install", params.clone());
        assert_eq!(done["error"]["code"], "invalid_params", "{what}: {done}");
        assert_eq!(done["error"]["field"], field, "{what}: {done}");
        if let Some(key) = params["key"].as_str() {
            assert!(!done.to_string().contains(key), "{what}: the key is not echoed");
        }
        assert_eq!(std::fs::read_to_string(machine.path("/etc/nginx/berth.d/shop.conf")).unwrap(), vhost, "{what}");
        assert!(!machine.path("/etc/berth/ssl/shop").exists(), "{what}");
    }
    let missing = machine.job("ssl.install", json!({"app": "nosuchapp", "key": key, "cert": cert}));
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");
    let force = machine.job("ssl.force", json!({"app": "shop", "force": true}));
    assert_eq!(force["error"]["code"], "precondition_failed", "ForceSSL needs SSL: {force}");
    let force = machine.job("ssl.force", json!({"app": "shop", "force": "yes"}));
    assert_eq!(
        (force["error"]["code"].as_str(), force["error"]["field"].as_str()),
        (Some("invalid_params"), Some("force"))
    );
    assert_eq!(machine.get("shop.test", "/index.html").0, 200, "the app still answers");
}

#[test]
fn autossl_issues_from_pebble_for_the_domains_that_reach_and_lists_the_others() {
    let machine = machine_with_app("shop", &["shop.test", "stray.invalid"]);
    // Mapped before pebble starts: Go's resolver rereads /etc/hosts only every few seconds.
    machine.add_hosts(&["new.test", "www.new.test"]);
    let pebble = Pebble::start(&machine);
    pebble.configure_berth();

    let done = machine.job("ssl.auto", json!({"app": "shop"}));
    assert_eq!(
        (done["status"].as_str(), done["changed"].as_bool()),
        (Some("success"), Some(true)),
        "{done}\n{}",
        pebble.log()
    );
    assert_eq!(names(&done["result"]["domains_covered"]), ["shop.test", "www.shop.test"], "{done}");
    assert_eq!(names(&done["result"]["domains_uncovered"]), ["stray.invalid", "www.stray.invalid"], "{done}");
    assert_eq!(done["result"]["unreachable"]["stray.invalid"], "does not resolve", "{done}");

    let roots = pebble.issuance_roots_file();
    let got = at_once("HTTPS", || machine.https_get("shop.test", "/index.html", &roots), |r| r.0 != 0);
    assert_eq!(got, (200, "shop home".into(), "2".into()), "pebble's chain verifies");
    assert_eq!(machine.https_get("www.shop.test", "/index.html", &roots).0, 200);
    let (code, why, _) = machine.https_get("shop.test", "/index.html", &pebble.ca_file());
    assert_eq!(code, 0, "another CA does not verify it: {why}");
    assert_eq!(stat(&machine, "/etc/berth/ssl/shop/key.pem"), "600 root");
    let account = std::fs::read_dir(machine.dir.path().join("state/acme"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("account-"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &account.expect("the ACME account is kept in the state dir").metadata().unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let again = machine.job("ssl.auto", json!({"app": "shop"}));
    assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(false)), "{again}");

    let custom = TestCa::new("custom").leaf(&["shop.test"], Validity::normal());
    let refused = machine.job("ssl.install", json!({"app": "shop", "key": custom.1, "cert": custom.0}));
    assert_eq!(refused["error"]["code"], "precondition_failed", "no custom certificate while AutoSSL is on: {refused}");

    // New domains: the certificate follows in the same job.
    let updated = machine.job("app.update", json!({"name": "shop", "domains": ["shop.test", "new.test"]}));
    assert_eq!(updated["status"], "success", "{updated}");
    assert_eq!(
        names(&updated["result"]["ssl"]["domains_covered"]),
        ["shop.test", "www.shop.test", "new.test", "www.new.test"]
    );
    let got =
        at_once("HTTPS for the new domain", || machine.https_get("new.test", "/index.html", &roots), |r| r.0 != 0);
    assert_eq!(got.0, 200, "the new domain is covered: {got:?}");
}

#[test]
fn forcessl_redirects_all_but_acme_challenges_and_delete_goes_back_to_http() {
    let machine = machine_with_app("blog", &["blog.test"]);
    let pebble = Pebble::start(&machine);
    pebble.configure_berth();
    assert_eq!(machine.job("ssl.auto", json!({"app": "blog"}))["status"], "success");

    let forced = machine.job("ssl.force", json!({"app": "blog", "force": true}));
    assert_eq!((forced["status"].as_str(), forced["changed"].as_bool()), (Some("success"), Some(true)), "{forced}");
    let (code, headers, _) =
        at_once("the redirect", || machine.http_get_full("blog.test", "/some/page?x=1"), |r| r.0 == 301);
    assert_eq!((code, header(&headers, "location")), (301, Some("https://blog.test/some/page?x=1")));
    let (code, headers, _) = machine.http_get_full("www.blog.test", "/");
    assert_eq!((code, header(&headers, "location")), (301, Some("https://www.blog.test/")));
    let token = "berth-test-token";
    let written =
        machine.run("/bin/sh", &["-c", &format!("echo challenge-answer > /run/berth/acme-challenge/{token}")]);
    assert!(written.status.success());
    let (code, _, body) = machine.http_get_full("blog.test", &format!("/.well-known/acme-challenge/{token}"));
    assert_eq!((code, body.trim()), (200, "challenge-answer"), "ACME challenges are not redirected");
    assert_eq!(machine.https_get("blog.test", "/index.html", &pebble.issuance_roots_file()).0, 200);
    assert_eq!(machine.job("ssl.force", json!({"app": "blog", "force": true}))["changed"], false);

    let deleted = machine.job("ssl.delete", json!({"app": "blog"}));
    assert_eq!((deleted["status"].as_str(), deleted["changed"].as_bool()), (Some("success"), Some(true)), "{deleted}");
    at_once("no HTTPS for the app any more", || machine.served_cert("blog.test"), Option::is_none);
    assert!(!machine.path("/etc/berth/ssl/blog").exists(), "its files are gone");
    machine.at_once_get("blog.test", "/index.html", 200);
    assert_eq!(machine.get("blog.test", "/index.html").1, "blog home", "plain HTTP, no redirect");
    let force = machine.job("ssl.force", json!({"app": "blog", "force": true}));
    assert_eq!(force["error"]["code"], "precondition_failed", "ForceSSL went with SSL: {force}");
    assert_eq!(machine.job("ssl.delete", json!({"app": "blog"}))["changed"], false);
    let (code, _) = machine.reconcile();
    assert_eq!(code, Some(0));
    assert_eq!(machine.served_cert("blog.test"), None, "reconcile does not bring it back");
}

#[test]
fn a_certificate_near_expiry_is_renewed_once_and_a_failed_renewal_keeps_it_and_forcessl() {
    let machine = machine_with_app("news", &["news.test"]);
    let mut pebble = Pebble::start(&machine);
    pebble.configure_berth();
    assert_eq!(machine.job("ssl.auto", json!({"app": "news"}))["status"], "success");
    assert_eq!(machine.job("ssl.force", json!({"app": "news", "force": true}))["status"], "success");
    let (code, events, log) = machine.renew();
    assert_eq!((code, events.len()), (Some(0), 0), "a fresh certificate is not renewed: {events:?}\n{log}");

    // The certificate in place now expires tomorrow (a 90-day one, issued long ago).
    let cert_path = machine.path("/etc/berth/ssl/news/fullchain.pem");
    let key = std::fs::read_to_string(machine.path("/etc/berth/ssl/news/key.pem")).unwrap();
    let near_expiry = TestCa::new("old CA").leaf_with_key(
        &["news.test", "www.news.test"],
        Validity::expiring_in(std::time::Duration::from_secs(86_400)),
        &key,
    );
    std::fs::write(&cert_path, &near_expiry).unwrap();

    let (code, events, log) = machine.renew();
    assert_eq!(code, Some(0), "{events:?}\n{log}");
    assert_eq!(events.len(), 1, "{events:?}\n{log}");
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["app"].as_str(), events[0]["status"].as_str()),
        (Some("ssl.renewal"), Some("news"), Some("success"))
    );
    let renewed = std::fs::read_to_string(&cert_path).unwrap();
    assert_ne!(der_b64(&renewed), der_b64(&near_expiry));
    let roots = pebble.issuance_roots_file();
    at_once(
        "the renewed certificate",
        || machine.served_cert("news.test"),
        |c| c.as_deref().map(der_b64) == Some(der_b64(&renewed)),
    );
    assert_eq!(machine.https_get("news.test", "/index.html", &roots).0, 200, "nginx serves the renewed certificate");
    let (code, events, _) = machine.renew();
    assert_eq!((code, events.len()), (Some(0), 0), "not renewed twice: {events:?}");

    // The CA is gone: the renewal fails, loudly, and nothing is lost.
    std::fs::write(&cert_path, &near_expiry).unwrap();
    pebble.stop();
    let (code, events, log) = machine.renew();
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0]["status"].as_str(), events[0]["error"]["code"].as_str()),
        (Some("error"), Some("acme_failed")),
        "{events:?}"
    );
    assert!(events[0]["next_attempt_at"].as_str().is_some(), "{events:?}");
    assert_eq!(std::fs::read_to_string(&cert_path).unwrap(), near_expiry, "the working certificate stays");
    let (code, headers, _) = machine.http_get_full("news.test", "/");
    assert_eq!((code, header(&headers, "location")), (301, Some("https://news.test/")), "ForceSSL stays");
    let (code, events, _) = machine.renew();
    assert_eq!((code, events.len()), (Some(0), 0), "no new attempt before the next attempt time: {events:?}");
}

/// Issue 16: redirect domains are in the AutoSSL certificate and redirect over HTTPS
/// too; basic auth on the app holds up neither the self-probe, the issuance nor a
/// renewal (ACME challenges pass without credentials).
#[test]
fn autossl_covers_redirect_domains_and_issues_and_renews_while_basic_auth_is_on() {
    let machine = machine_with_app("shop", &["shop.test"]);
    machine.add_hosts(&["old-shop.test"]);
    let pebble = Pebble::start(&machine);
    pebble.configure_berth();
    let updated = machine.job("app.update", json!({"name": "shop", "redirect_domains": ["old-shop.test"]}));
    assert_eq!(updated["status"], "success", "{updated}");
    let auth = machine.job(
        "app.basic_auth",
        json!({"app": "shop", "enabled": true, "username": "ann", "password": "staging password"}),
    );
    assert_eq!(auth["status"], "success", "{auth}");
    assert_eq!(machine.get("shop.test", "/index.html").0, 401);

    let done = machine.job("ssl.auto", json!({"app": "shop"}));
    assert_eq!(done["status"], "success", "{done}\n{}", pebble.log());
    assert_eq!(names(&done["result"]["domains_covered"]), ["shop.test", "www.shop.test", "old-shop.test"], "{done}");
    let roots = pebble.issuance_roots_file();
    let (code, body, _) = machine.https_get("shop.test", "/index.html", &roots);
    assert_eq!(code, 401, "HTTPS asks for credentials too: {body}");
    let (code, body, _) = machine.https_get("old-shop.test", "/a?b=c", &roots);
    assert_eq!(code, 301, "the redirect domain's certificate verifies and it redirects: {body}");
    let (code, headers, _) = machine.http_get_full("old-shop.test", "/a?b=c");
    assert_eq!((code, header(&headers, "location")), (301, Some("https://shop.test/a?b=c")));

    // Renewal while basic auth is on.
    let cert_path = machine.path("/etc/berth/ssl/shop/fullchain.pem");
    let key = std::fs::read_to_string(machine.path("/etc/berth/ssl/shop/key.pem")).unwrap();
    let near_expiry = TestCa::new("old CA").leaf_with_key(
        &["shop.test", "www.shop.test", "old-shop.test"],
        Validity::expiring_in(std::time::Duration::from_secs(86_400)),
        &key,
    );
    std::fs::write(&cert_path, &near_expiry).unwrap();
    let (code, events, log) = machine.renew();
    assert_eq!(code, Some(0), "{events:?}\n{log}");
    assert_eq!(events.len(), 1, "{events:?}\n{log}");
    assert_eq!(events[0]["status"], "success", "{events:?}");
    assert_ne!(der_b64(&std::fs::read_to_string(&cert_path).unwrap()), der_b64(&near_expiry));
    assert_eq!(machine.https_get("old-shop.test", "/", &roots).0, 301, "renewed for the redirect domain too");
}

#[test]
fn with_deny_unknown_domains_off_the_default_app_answers_unknown_names_over_https_too() {
    let machine = machine_with_app("main", &["main.test"]);
    let (cert, key) = TestCa::new("berth test CA").leaf(&["main.test", "www.main.test"], Validity::normal());
    assert_eq!(machine.job("ssl.install", json!({"app": "main", "key": key, "cert": cert}))["status"], "success");
    at_once("the app's certificate", || machine.served_cert("main.test"), Option::is_some);
    assert_eq!(machine.served_cert("unknown.test"), None, "deny_unknown_domains is on: the handshake is refused");

    let open = machine.job("server.update", json!({"deny_unknown_domains": false}));
    assert_eq!(open["status"], "success", "{open}");
    let served = at_once("the default app on 443", || machine.served_cert("unknown.test"), Option::is_some);
    assert_eq!(der_b64(&served.unwrap()), der_b64(&cert), "the default app's certificate answers an unknown name");
    at_once("the default app on 80", || machine.get("unknown.test", "/index.html"), |r| r.0 == 200);

    // Its certificate gone, the catch-all refuses unknown names on 443 again.
    assert_eq!(machine.job("ssl.delete", json!({"app": "main"}))["status"], "success");
    at_once("no certificate for an unknown name", || machine.served_cert("unknown.test"), Option::is_none);
    let closed = machine.job("server.update", json!({"deny_unknown_domains": true}));
    assert_eq!(closed["status"], "success", "{closed}");
    at_once("unknown Hosts refused", || machine.get("unknown.test", "/index.html"), |r| r.0 == 0);
}

/// `job.status` events until `job_id` reaches a final status, waiting up to `wait`
/// in all (longer than a session's usual patience: a stalled CA says nothing).
async fn until_final_within(session: &mut Session, job_id: &str, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = session.try_recv(left).await.unwrap_or_else(|| panic!("{job_id}: no final status; {events:?}"));
        if message["type"] != "job.status" {
            continue;
        }
        let done = message["job_id"] == job_id && matches!(message["status"].as_str(), Some("success" | "error"));
        events.push(message);
        if done {
            return events;
        }
    }
}

/// A certificate that waits on a slow CA holds up no other app: the ACME work runs
/// with the web stack given back and without the web-config lock. The daemon runs
/// inside the machine (pebble and port 80 are there) with a control plane there too.
///
/// The waits on the proxy and the web server block this test's thread: the control
/// plane's tasks only accept and upgrade connections, and the agent, connected
/// once, needs neither meanwhile.
#[tokio::test]
async fn while_a_ca_stalls_for_30_s_another_app_is_created_in_seconds() {
    const STALL: Duration = Duration::from_secs(30);
    let machine = machine_with_app("shop", &["shop.test"]);
    machine.add_hosts(&["other.test", "www.other.test"]);
    let pebble = Pebble::start(&machine);
    // pebble answers through a proxy that passes nothing on for 30 s after berth first calls.
    let stall = Stall::start(&machine, 14001, 14000, STALL);
    let mut cp = ControlPlane::start_in_netns(&machine.net_ns()).await;
    let cp_ca = file(&machine, "control-plane-ca.pem", &cp.pki.ca_pem);
    let config = machine.dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = {SERVER_ID:?}\napi_key = {API_KEY:?}\ncontrol_plane_url = {:?}\nca_file = {cp_ca:?}\n\
             state_dir = {:?}\nroot = \"/\"\nmax_parallel_jobs = 4\n\
             acme_directory = \"https://127.0.0.1:{}/dir\"\nacme_ca_file = {:?}\n",
            cp.url(),
            machine.dir.path().join("state"),
            stall.port,
            pebble.ca_file()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::new(config);
    daemon.echo = true;
    daemon.start(&machine);
    let (mut session, _) = cp.welcomed(0, 20).await;

    let auto_sent = Instant::now();
    session.job("auto-shop", "ssl.auto", json!({"app": "shop"})).await;
    let stalled = stall.first_connection(Duration::from_secs(20)).expect("ssl.auto calls the CA");

    // While the CA says nothing, another app of the same user.
    let create_sent = Instant::now();
    let other =
        json!({"name": "other", "sysuser": "derek", "runtime": "php8.2", "domains": ["other.test"], "stack": "nginx"});
    session.job("create-other", "app.create", other).await;
    let events = until_final_within(&mut session, "create-other", STALL * 2).await;
    let create_took = create_sent.elapsed();
    let created = events.last().unwrap();
    assert_eq!(created["status"], "success", "{created}");
    assert!(
        !events.iter().any(|e| e["job_id"] == "auto-shop" && e["status"] == "success"),
        "the certificate still waits on the CA: {events:?}"
    );
    assert!(stalled.elapsed() < STALL, "app.create finished while the CA stalled");
    assert!(create_took < Duration::from_secs(10), "app.create took {create_took:?} while the CA stalled");
    std::fs::write(machine.path("/srv/users/derek/apps/other/public/index.html"), "other home").unwrap();
    machine.at_once_get("other.test", "/index.html", 200);

    // Then the certificate comes, and is served.
    let events = until_final_within(&mut session, "auto-shop", STALL * 3).await;
    let auto_took = auto_sent.elapsed();
    let issued = events.last().unwrap();
    assert_eq!((issued["status"].as_str(), issued["changed"].as_bool()), (Some("success"), Some(true)), "{issued}");
    assert!(auto_took >= STALL, "ssl.auto took {auto_took:?}: it waited for the CA");
    eprintln!(
        "ssl.auto took {auto_took:.1?} (a CA stalled for {STALL:?}); app.create meanwhile took {create_took:.1?}"
    );
    let roots = pebble.issuance_roots_file();
    let got = at_once("HTTPS", || machine.https_get("shop.test", "/index.html", &roots), |r| r.0 != 0);
    assert_eq!(got, (200, "shop home".into(), "2".into()), "pebble's chain verifies");
    assert_eq!(machine.get("other.test", "/index.html"), (200, "other home".into()), "the other app still answers");
    drop(pebble);
    drop(machine);
    drop(daemon);
}

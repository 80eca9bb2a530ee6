//! `berth dev` end to end, driven with curl only: the README walk-through on a test
//! machine's real nginx, Apache, PHP-FPM and MariaDB (`--root /` there), every error
//! status of the API, an action the agent refuses, and a restart on the same dir.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::dev::Dev;
use support::machine::Machine;

/// ServerPilot's own example values (its docs' passwords are shorter than its own
/// rules allow: these have the documented length).
const USER_PASSWORD: &str = "hlZkUk7xQ2mB";
const DB_PASSWORD: &str = "8aTWl1vbNCvNmCZm";

#[test]
fn the_readme_walk_through_serves_an_app_with_two_domains_and_a_database() {
    let machine = Machine::start();
    machine.start_mariadb();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    let server = dev.server_when_connected();
    assert!(server["available_runtimes"].as_array().unwrap().contains(&json!("php8.2")), "{server}");
    assert_eq!(server["lastaddress"], "127.0.0.1");
    assert!(server["lastconn"].as_u64().unwrap() > 0 && server["reboot_required"].is_boolean(), "{server}");
    assert_eq!(server["plan"], "economy", "ServerPilot's server fields: {server}");
    assert!(server["datecreated"].as_u64().unwrap() <= server["lastconn"].as_u64().unwrap(), "{server}");

    let (user, action) =
        dev.change("POST", "/sysusers", json!({"serverid": dev.server_id, "name": "derek", "password": USER_PASSWORD}));
    dev.succeeds(&action);
    let (app, action) = dev.change(
        "POST",
        "/apps",
        json!({"name": "gallery", "sysuserid": user["id"], "runtime": "php8.2", "domains": ["www.myblog.com", "blog.com"]}),
    );
    assert_eq!((app["sysuserid"].clone(), app["ssl"].clone()), (user["id"].clone(), Value::Null), "{app}");
    dev.succeeds(&action);
    let public = machine.path("/srv/users/derek/apps/gallery/public/index.php");
    std::fs::write(public, "<?php echo 'gallery as ', posix_getpwuid(posix_geteuid())['name'];").unwrap();
    assert_eq!(machine.at_once_get("www.myblog.com", "/", 200), "gallery as derek");
    assert_eq!(machine.at_once_get("www.blog.com", "/", 200), "gallery as derek");

    let (db, action) = dev.change(
        "POST",
        "/dbs",
        json!({"appid": app["id"], "name": "gallerydb", "user": {"name": "arturo", "password": DB_PASSWORD}}),
    );
    dev.succeeds(&action);
    let out = machine.sql("arturo", Some(DB_PASSWORD), "gallerydb", "SELECT 42");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42", "{}", String::from_utf8_lossy(&out.stderr));

    for (path, expected) in [
        (format!("/sysusers/{}", user["id"].as_str().unwrap()), json!({"name": "derek", "serverid": dev.server_id})),
        (
            format!("/apps/{}", app["id"].as_str().unwrap()),
            json!({"name": "gallery", "runtime": "php8.2", "domains": ["www.myblog.com", "blog.com"]}),
        ),
        (
            format!("/dbs/{}", db["id"].as_str().unwrap()),
            json!({"name": "gallerydb", "appid": app["id"], "user": {"id": db["user"]["id"], "name": "arturo"}}),
        ),
    ] {
        let (status, answer) = dev.api("GET", &path, Value::Null);
        assert_eq!(status, 200, "{answer}");
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&answer["data"][key], value, "{path}: {answer}");
        }
        let text = answer.to_string();
        assert!(!text.contains(USER_PASSWORD) && !text.contains(DB_PASSWORD), "no password comes back: {answer}");
    }
    let server_path = format!("/servers/{}", dev.server_id);
    let (server, action) = dev.change("POST", &server_path, json!({"deny_unknown_domains": false}));
    assert_eq!(server["deny_unknown_domains"], false, "{server}");
    dev.succeeds(&action);
    assert_eq!(
        machine.at_once_get("unknown.test", "/", 200),
        "gallery as derek",
        "the only app takes unknown names now"
    );
    assert_eq!(dev.api("GET", &server_path, Value::Null).1["data"]["deny_unknown_domains"], false);

    let (_, users) = dev.api("GET", "/sysusers", Value::Null);
    let mut names: Vec<&str> = users["data"].as_array().unwrap().iter().filter_map(|u| u["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["derek", "serverpilot"], "ServerPilot's default system user is there too: {users}");
    let default = users["data"].as_array().unwrap().iter().find(|u| u["name"] == "serverpilot").unwrap();
    assert!(default.get("failed_action").is_none(), "the agent created it: {default}");
    assert!(machine.path("/srv/users/serverpilot").is_dir(), "serverpilot's home");
    let (_, apps) = dev.api("GET", "/apps", Value::Null);
    assert_eq!(apps["data"][0]["id"], app["id"]);
    let (_, dbs) = dev.api("GET", "/dbs", Value::Null);
    assert_eq!(dbs["data"][0]["id"], db["id"]);
}

#[test]
fn every_error_status_comes_back_with_a_message() {
    let machine = Machine::start();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    dev.server_when_connected();
    let message = |answer: &Value| {
        answer["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message: {answer}")).to_owned()
    };

    // 401: no credentials, wrong ones.
    for auth in [None, Some("dev:wrong-password"), Some("admin:x")] {
        let (status, answer) = dev.curl("GET", "/sysusers", None, auth);
        assert_eq!(status, 401, "{auth:?}: {answer}");
        message(&answer);
    }
    // 400: not JSON, a field rule broken (named, and the agent's own rule).
    let (status, answer) = dev.curl("POST", "/sysusers", Some("{\"name\": "), Some(&format!("dev:{}", dev.password)));
    assert_eq!(status, 400, "{answer}");
    assert!(message(&answer).contains("JSON"), "{answer}");
    let (status, answer) = dev.api("POST", "/sysusers", json!({"name": "3po"}));
    assert_eq!(
        (status, message(&answer)),
        (400, "name: system user name must start with a lowercase letter: '3po'".into())
    );
    let (status, answer) = dev.api("POST", "/sysusers", json!({"name": "derek", "password": "short"}));
    assert_eq!(status, 400);
    assert!(message(&answer).starts_with("password: "), "{answer}");

    let (user, action) = dev.change("POST", "/sysusers", json!({"name": "derek"}));
    let uid = user["id"].as_str().unwrap().to_owned();
    let (status, answer) = dev.api(
        "POST",
        "/apps",
        json!({"name": "shop", "sysuserid": uid, "runtime": "php8.2", "domains": ["Shop.test"]}),
    );
    assert_eq!(status, 400);
    assert!(message(&answer).starts_with("domains[0]: "), "{answer}");
    // 409: a name taken (even while its job is pending).
    let (status, answer) = dev.api("POST", "/sysusers", json!({"name": "derek"}));
    assert_eq!(status, 409, "{answer}");
    assert!(message(&answer).contains("derek"));
    dev.succeeds(&action);

    let (app, action) = dev.change(
        "POST",
        "/apps",
        json!({"name": "shop", "sysuserid": uid, "runtime": "php8.2", "domains": ["shop.test"]}),
    );
    let app_id = app["id"].as_str().unwrap().to_owned();
    dev.succeeds(&action);
    for (body, what) in [
        (json!({"name": "shop", "sysuserid": uid, "runtime": "php8.2", "domains": ["other.test"]}), "name"),
        (
            json!({"name": "blog", "sysuserid": uid, "runtime": "php8.2", "domains": ["www.shop.test"]}),
            "www. twin of a domain held",
        ),
    ] {
        let (status, answer) = dev.api("POST", "/apps", body);
        assert_eq!(status, 409, "{what}: {answer}");
        message(&answer);
    }
    // 404: unknown ids, and a reference to one.
    for path in [
        "/apps/nosuchapp",
        "/sysusers/nosuchuser",
        "/dbs/nosuchdb",
        "/actions/nosuchaction",
        "/servers/nosuchserver",
        "/nothing",
    ] {
        let (status, answer) = dev.api("GET", path, Value::Null);
        assert_eq!(status, 404, "{path}: {answer}");
        message(&answer);
    }
    let (status, _) = dev.api(
        "POST",
        "/apps",
        json!({"name": "blog", "sysuserid": "nosuchuser", "runtime": "php8.2", "domains": []}),
    );
    assert_eq!(status, 404);
    // 403: the one server cannot go, immutable fields stay.
    let (status, answer) = dev.api("DELETE", &format!("/servers/{}", dev.server_id), Value::Null);
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = dev.api("POST", &format!("/apps/{app_id}"), json!({"name": "renamed"}));
    assert_eq!((status, message(&answer)), (403, "name: cannot be changed".into()));
    let (status, _) =
        dev.api("POST", &format!("/sysusers/{uid}"), json!({"name": "other", "password": "long-enough-1"}));
    assert_eq!(status, 403);
    // 409: a custom certificate while AutoSSL is on.
    let (ssl, _) = dev.change("POST", &format!("/apps/{app_id}/ssl"), json!({"auto": true}));
    assert_eq!(ssl["auto"], true, "the SSL object, not the app: {ssl}");
    let (status, answer) = dev.api("POST", &format!("/apps/{app_id}/ssl"), json!({"key": "k", "cert": "c"}));
    assert_eq!(status, 409, "{answer}");
    assert!(message(&answer).contains("AutoSSL"));
}

#[test]
fn an_action_the_agent_refuses_shows_error_with_the_agents_message() {
    let machine = Machine::start();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    let (user, action) = dev.change("POST", "/sysusers", json!({"name": "derek"}));
    dev.succeeds(&action);
    // Issue 14: a runtime the server does not have is the API's 400, naming the field
    // and what the server has (the agent's hello said which).
    let (status, answer) = dev.api(
        "POST",
        "/apps",
        json!({"name": "shop", "sysuserid": user["id"], "runtime": "php9.9", "domains": ["shop.test"]}),
    );
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("runtime: ") && message.contains("php8.2"), "{message}");

    // What only the agent can see: a link planted where the app's directory goes.
    let planted = machine.path("/srv/users/derek/apps/shop");
    std::os::unix::fs::symlink("/etc", &planted).unwrap();
    let body = json!({"name": "shop", "sysuserid": user["id"], "runtime": "php8.2", "domains": ["shop.test"]});
    let (app, action) = dev.change("POST", "/apps", body.clone());
    let done = dev.settled(&action);
    assert_eq!(done["status"], "error", "{done}");
    assert_eq!(done["error"]["code"], "conflict", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("/srv/users/derek/apps/shop"), "the agent's own words: {message}");

    // Issue 14: the app stayed, with the action's error, until deleted or retried.
    let app_id = app["id"].as_str().unwrap();
    let (status, kept) = dev.api("GET", &format!("/apps/{app_id}"), Value::Null);
    assert_eq!(status, 200, "a create that failed keeps its record: {kept}");
    assert_eq!(kept["data"]["failed_action"]["id"], action, "{kept}");
    assert_eq!(kept["data"]["failed_action"]["error"]["code"], "conflict", "{kept}");
    let (status, listed) = dev.api("GET", "/apps", Value::Null);
    assert_eq!((status, listed["data"].as_array().map(Vec::len)), (200, Some(1)), "{listed}");
    // The cause removed, a retry: the same create again takes the record (same id)
    // and sends the job anew.
    std::fs::remove_file(&planted).unwrap();
    let (retried, retry) = dev.change("POST", "/apps", body.clone());
    assert_eq!(retried["id"], app_id, "{retried}");
    dev.succeeds(&retry);
    let (_, now) = dev.api("GET", &format!("/apps/{app_id}"), Value::Null);
    assert!(now["data"].get("failed_action").is_none(), "{now}");
    // A second create of a live app is still a conflict.
    assert_eq!(dev.api("POST", "/apps", body).0, 409);

    // A failed create deleted: gone from the API, and the agent's delete is a no-op.
    std::os::unix::fs::symlink("/etc", machine.path("/srv/users/derek/apps/bad")).unwrap();
    let (failed, failing) = dev.change(
        "POST",
        "/apps",
        json!({"name": "bad", "sysuserid": user["id"], "runtime": "php8.2", "domains": ["bad.test"]}),
    );
    assert_eq!(dev.settled(&failing)["status"], "error");
    let failed_id = failed["id"].as_str().unwrap().to_owned();
    let (_, delete) = dev.change("DELETE", &format!("/apps/{failed_id}"), Value::Null);
    let deleted = dev.settled(&delete);
    assert_eq!(dev.api("GET", &format!("/apps/{failed_id}"), Value::Null).0, 404, "{deleted}");
    assert!(machine.path("/etc/passwd").exists(), "the link's target is untouched");
}

#[test]
fn a_restart_on_the_same_dir_keeps_ids_actions_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().join("dev");
    let (code, _, stderr) = support::berth(&["dev", "--listen", "0.0.0.0:0", "--dir", dir_arg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("loopback addresses only"), "{stderr}");
    let dev = Dev::on_host(&dir.path().join("dev"));
    let (user, action) = dev.change("POST", "/sysusers", json!({"name": "derek", "password": "derek-secret-1"}));
    dev.succeeds(&action);
    let sandbox_passwd = std::fs::read_to_string(dir.path().join("dev/root/etc/passwd")).unwrap();
    assert!(sandbox_passwd.contains("derek:"), "the default root is the sandbox");
    assert!(!std::fs::read_to_string("/etc/passwd").unwrap().contains("\nderek:"), "the host is untouched");
    let (password, server_id, url) = (dev.password.clone(), dev.server_id.clone(), dev.url.clone());
    assert_eq!(dev.stop(), Some(0), "SIGTERM stops berth dev cleanly");
    let store = berth::dev::store::Store::open(&dir.path().join("dev/dev.redb")).unwrap();
    let actions = store.read(|w| w.list("action")).unwrap();
    assert_eq!(actions.len(), 2, "serverpilot's create and derek's: {actions:?}");
    assert!(
        !actions.iter().any(|a| a.to_string().contains("derek-secret-1")),
        "a job the agent has is not kept with its password: {actions:?}"
    );
    drop(store);

    let dev = Dev::on_host(&dir.path().join("dev"));
    assert_eq!((&dev.password, &dev.server_id), (&password, &server_id), "the same credentials");
    assert_ne!(dev.url, url, "port 0 again: another port, same store");
    let (status, users) = dev.api("GET", "/sysusers", Value::Null);
    assert_eq!(status, 200);
    assert!(users["data"].as_array().unwrap().contains(&user), "the same user, same id: {users}");
    assert_eq!(users["data"].as_array().map(Vec::len), Some(2), "derek and serverpilot: {users}");
    assert_eq!(dev.settled(&action)["status"], "success", "the action and its status are kept");
    let (status, _) = dev.curl("GET", "/sysusers", None, Some("dev:not-the-password"));
    assert_eq!(status, 401);
    dev.server_when_connected();
    let (_, action) = dev.change("DELETE", &format!("/sysusers/{}", user["id"].as_str().unwrap()), Value::Null);
    dev.succeeds(&action);
    assert!(!std::fs::read_to_string(dir.path().join("dev/root/etc/passwd")).unwrap().contains("derek:"));
}

/// Issue 14: the SSL routes answer as ServerPilot's do: the SSL object (the key never
/// shown) for `POST /apps/:id/ssl`, `{}` for `DELETE`; AutoSSL over a custom
/// certificate and ForceSSL without any certificate are refused by the API itself;
/// `autossl` details only on the single-app route.
#[test]
fn ssl_routes_answer_with_serverpilots_ssl_object() {
    let machine = Machine::start();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    let app_id = &dev.derek_with_app("shop", "shop.test");
    let ssl_route = format!("/apps/{app_id}/ssl");

    let (status, answer) = dev.api("POST", &ssl_route, json!({"force": true}));
    assert_eq!(status, 409, "ForceSSL without a certificate: {answer}");

    let (cert, key) = support::pki::TestCa::new("dev CA").leaf(&["shop.test"], support::pki::Validity::normal());
    let (ssl, action) = dev.change("POST", &ssl_route, json!({"key": key, "cert": cert}));
    dev.succeeds(&action);
    assert_eq!(
        (ssl["key"].clone(), ssl["cert"].clone(), ssl["auto"].clone()),
        (Value::Null, json!(cert), json!(false))
    );
    assert!(!ssl.to_string().contains("PRIVATE KEY"), "the key is never shown: {ssl}");

    let (status, answer) = dev.api("POST", &ssl_route, json!({"auto": true}));
    assert_eq!(status, 409, "AutoSSL over a custom certificate: {answer}");

    let (ssl, action) = dev.change("POST", &ssl_route, json!({"force": true}));
    assert_eq!(ssl["force"], true, "{ssl}");
    dev.succeeds(&action);
    let (_, one) = dev.api("GET", &format!("/apps/{app_id}"), Value::Null);
    assert_eq!(one["data"]["ssl"]["force"], true, "{one}");
    assert!(one["data"].get("autossl").is_some(), "the single-app route has autossl: {one}");
    let (_, all) = dev.api("GET", "/apps", Value::Null);
    assert!(all["data"][0].get("autossl").is_none(), "the list has no autossl: {all}");

    let (gone, action) = dev.change("DELETE", &ssl_route, Value::Null);
    assert_eq!(gone, json!({}));
    dev.succeeds(&action);
    let (_, one) = dev.api("GET", &format!("/apps/{app_id}"), Value::Null);
    assert_eq!(one["data"]["ssl"], Value::Null, "{one}");
}

/// Issue 16: `POST /apps/:id/page_cache` and `POST /apps/:id/cache_purge` become
/// `app.page_cache` and `app.cache_purge`, their bodies checked by the agent's rules.
#[test]
fn page_cache_routes_turn_the_cache_on_and_purge_it() {
    let machine = Machine::start();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    let app_id = &dev.derek_with_app("shop", "shop.test");
    let (status, answer) =
        dev.api("POST", &format!("/apps/{app_id}/page_cache"), json!({"enabled": true, "ttl_secs": 0}));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("ttl_secs: "), "{answer}");
    let (cache, action) =
        dev.change("POST", &format!("/apps/{app_id}/page_cache"), json!({"enabled": true, "ttl_secs": 60}));
    assert_eq!(cache, json!({"enabled": true, "ttl_secs": 60}));
    dev.succeeds(&action);
    let (_, one) = dev.api("GET", &format!("/apps/{app_id}"), Value::Null);
    assert_eq!(one["data"]["page_cache"], cache, "{one}");
    let (status, answer) = dev.api("POST", &format!("/apps/{app_id}/cache_purge"), json!({"paths": ["/", "x"]}));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("paths[1]: "), "{answer}");
    let (purged, action) = dev.change("POST", &format!("/apps/{app_id}/cache_purge"), json!({"paths": ["/"]}));
    assert_eq!(purged, json!({}));
    dev.succeeds(&action);
    let (_, action) = dev.change("POST", &format!("/apps/{app_id}/cache_purge"), json!({}));
    dev.succeeds(&action);
}

/// Issue 14: a third-party ServerPilot client from PyPI (rwsp 1.0.1, installed by
/// tests/run.sh into target/rwsp) drives `berth dev` through users, apps, SSL,
/// databases and actions, and gets what it expects (tests/rwsp_client.py asserts).
#[test]
fn a_third_party_serverpilot_client_drives_berth_dev() {
    let rwsp = concat!(env!("CARGO_MANIFEST_DIR"), "/target/rwsp");
    assert!(
        Path::new(rwsp).join("serverpilot/serverpilot.py").exists(),
        "rwsp is missing from {rwsp}: tests/run.sh installs it (python3 -m pip install --target {rwsp} rwsp==1.0.1)"
    );
    let machine = Machine::start();
    machine.start_mariadb();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    dev.server_when_connected();
    let (cert, key) = support::pki::TestCa::new("rwsp CA").leaf(&["myblog.test"], support::pki::Validity::normal());
    let (cert_file, key_file) = (machine.dir.path().join("cert.pem"), machine.dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rwsp_client.py");
    let out = machine.run(
        "/usr/bin/env",
        &[
            &format!("PYTHONPATH={rwsp}"),
            "/usr/bin/python3",
            script,
            &dev.url,
            "dev",
            &dev.password,
            cert_file.to_str().unwrap(),
            key_file.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the client failed:\n{stdout}\n{stderr}\n{}", dev.log());
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("no summary: {stdout}"));
    assert_eq!((seen["ok"].clone(), seen["server"].clone()), (json!(true), json!(dev.server_id)), "{seen}");
    assert!(!dev.log().contains("hunter2"), "no password in berth dev's log");
}

/// Issue 14: run as a new user runs it (as root, the web stack installed), `berth
/// dev` puts its agent in a machine of its own: the README walk-through ends with
/// curl on the ports it printed, showing the app's PHP page and its certificate,
/// and nothing of it reaches the host's own files.
#[test]
fn the_trial_runs_for_real_in_a_machine_of_its_own_and_the_host_is_untouched() {
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::trial(&dir.path().join("dev"));
    let ports: Vec<u16> = dev
        .banner
        .lines()
        .find(|l| l.contains("machine of its own"))
        .unwrap_or_else(|| panic!("no machine in the banner: {}", dev.banner))
        .split("127.0.0.1:")
        .skip(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap())
        .collect();
    let (http, https) = (ports[0], ports[1]);
    let server = dev.server_when_connected();
    assert!(server["available_runtimes"].as_array().unwrap().contains(&json!("php8.2")), "{server}");

    let (user, action) = dev.change("POST", "/sysusers", json!({"name": "derek", "password": USER_PASSWORD}));
    dev.succeeds(&action);
    let (app, action) = dev.change(
        "POST",
        "/apps",
        json!({"name": "gallery", "sysuserid": user["id"], "runtime": "php8.2", "domains": ["www.myblog.com", "blog.com"]}),
    );
    dev.succeeds(&action);
    let public = dir.path().join("dev/machine/srv/users/derek/apps/gallery/public/index.php");
    std::fs::write(public, "<?php echo 'gallery as ', posix_getpwuid(posix_geteuid())['name'];").unwrap();
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().unwrap();
        assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&["-H", "Host: blog.com", &format!("http://127.0.0.1:{http}/")]), "gallery as derek");

    let ca = support::pki::TestCa::new("trial CA");
    let (cert, key) = ca.leaf(&["blog.com", "www.blog.com"], support::pki::Validity::normal());
    let (_, action) =
        dev.change("POST", &format!("/apps/{}/ssl", app["id"].as_str().unwrap()), json!({"key": key, "cert": cert}));
    dev.succeeds(&action);
    let root_file = dir.path().join("root.pem");
    std::fs::write(&root_file, ca.cert_pem()).unwrap();
    let resolve = format!("blog.com:{https}:127.0.0.1");
    let url = format!("https://blog.com:{https}/");
    let body = curl(&["--resolve", &resolve, "--cacert", root_file.to_str().unwrap(), &url]);
    assert_eq!(body, "gallery as derek", "HTTPS with the app's certificate, verified");

    // The machine's own MariaDB.
    let (_, action) = dev.change(
        "POST",
        "/dbs",
        json!({"appid": app["id"], "name": "gallerydb", "user": {"name": "arturo", "password": DB_PASSWORD}}),
    );
    dev.succeeds(&action);

    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd, "the host's accounts are untouched");
    assert!(!Path::new("/srv/users/derek").exists(), "no home on the host");
    assert_eq!(dev.stop(), Some(0), "SIGTERM stops berth dev and its machine");
}

/// Issue 14: without root, `berth dev` says so in one line and its agent works in
/// the sandbox (which it can start without reading the shadow files).
#[test]
fn without_root_the_trial_says_why_in_one_line_and_uses_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A copy nobody can run, wherever the checkout is (a home may be closed to others).
    let binary = dir.path().join("berth");
    std::fs::copy(env!("CARGO_BIN_EXE_berth"), &binary).unwrap();
    let mut command = std::process::Command::new("/usr/bin/setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary)
        .args(["dev", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path().join("dev"))
        .env("RUST_LOG", "info");
    let dev = Dev::spawn(command, None);
    assert!(dev.banner.contains(&format!("root {}", dir.path().join("dev/root").display())), "{}", dev.banner);
    let started = std::time::Instant::now();
    while !dev.log().contains("berth dev: not run as root: the agent works in the sandbox") {
        assert!(started.elapsed() < support::PATIENCE, "no reason given:\n{}", dev.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    dev.server_when_connected();
}

/// Issue 16's site options through the API: `POST /apps` with a public folder,
/// redirect domains and SpinupWP's `nginx` object, then `POST /apps/:id/basic_auth`.
#[test]
fn site_option_routes_set_the_public_folder_redirects_protections_and_basic_auth() {
    let machine = Machine::start();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    dev.server_when_connected();
    let (user, action) =
        dev.change("POST", "/sysusers", json!({"serverid": dev.server_id, "name": "derek", "password": USER_PASSWORD}));
    dev.succeeds(&action);
    let (app, action) = dev.change(
        "POST",
        "/apps",
        json!({"name": "shop", "sysuserid": user["id"], "runtime": "php8.2", "domains": ["shop.test"],
               "public_folder": "public/web", "redirect_domains": ["old-shop.test"],
               "nginx": {"uploads_directory_protected": true, "xmlrpc_protected": true}}),
    );
    assert_eq!(app["public_folder"], "public/web", "{app}");
    assert_eq!(app["redirect_domains"], json!(["old-shop.test"]), "{app}");
    assert_eq!(app["nginx"], json!({"uploads_directory_protected": true, "xmlrpc_protected": true}), "{app}");
    assert_eq!(app["basic_auth"], json!({"enabled": false, "username": null}), "{app}");
    dev.succeeds(&action);
    std::fs::write(machine.path("/srv/users/derek/apps/shop/public/web/index.php"), "<?php echo 'shop';").unwrap();
    assert_eq!(machine.at_once_get("shop.test", "/", 200), "shop");
    assert_eq!(machine.get("shop.test", "/xmlrpc.php").0, 403);
    assert_eq!(machine.get("old-shop.test", "/").0, 301);

    let id = app["id"].as_str().unwrap();
    let (status, refused) = dev.api(
        "POST",
        &format!("/apps/{id}/basic_auth"),
        json!({"enabled": true, "username": "a:b", "password": "x"}),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("username"), "{refused}");
    let (auth, action) = dev.change(
        "POST",
        &format!("/apps/{id}/basic_auth"),
        json!({"enabled": true, "username": "ann", "password": DB_PASSWORD}),
    );
    assert_eq!(auth, json!({"enabled": true, "username": "ann"}));
    dev.succeeds(&action);
    assert_eq!(machine.get("shop.test", "/").0, 401);
    let (_, shown) = dev.api("GET", &format!("/apps/{id}"), Value::Null);
    assert_eq!(shown["data"]["basic_auth"], json!({"enabled": true, "username": "ann"}), "{shown}");
    assert!(!shown.to_string().contains(DB_PASSWORD), "no password comes back: {shown}");

    let (updated, action) = dev.change("POST", &format!("/apps/{id}"), json!({"xmlrpc_protected": false}));
    assert_eq!(updated["nginx"], json!({"uploads_directory_protected": true, "xmlrpc_protected": false}));
    dev.succeeds(&action);
}

/// `POST /apps` with `wordpress` (ServerPilot's nested shape) is one action: app,
/// database and WordPress; a bad field is a 400 naming it; no password comes back.
#[test]
fn an_app_with_wordpress_is_one_action_and_its_password_never_comes_back() {
    const ADMIN_PASSWORD: &str = "wp-Admin-pass-1";
    let machine = Machine::start();
    machine.start_mariadb();
    let dev = Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    dev.server_when_connected();
    let (user, action) =
        dev.change("POST", "/sysusers", json!({"serverid": dev.server_id, "name": "derek", "password": USER_PASSWORD}));
    dev.succeeds(&action);
    let wordpress = |email: &str| {
        json!({"site": {"title": "Derek Writes"},
               "admin": {"user": "derek", "password": ADMIN_PASSWORD, "email": email}})
    };
    let body = |email: &str| {
        json!({"name": "words", "sysuserid": user["id"], "runtime": "php8.2", "domains": ["words.test"],
               "wordpress": wordpress(email)})
    };
    let (status, refused) = dev.api("POST", "/apps", body("not-an-email"));
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().starts_with("wordpress.admin_email: "), "{refused}");

    let (app, action) = dev.change("POST", "/apps", body("derek@example.com"));
    dev.succeeds(&action);
    assert!(machine.at_once_get("words.test", "/", 200).contains("<title>Derek Writes</title>"));
    for path in [format!("/apps/{}", app["id"].as_str().unwrap()), format!("/actions/{action}")] {
        let (_, answer) = dev.api("GET", &path, Value::Null);
        assert!(!answer.to_string().contains(ADMIN_PASSWORD), "{answer}");
    }
    assert!(!dev.log().contains(ADMIN_PASSWORD), "the password is in berth dev's log");
}

//! The site options of issue 16 against the real nginx, Apache and PHP-FPM in a test
//! machine: WordPress protections (uploads, XML-RPC), basic auth, redirect domains,
//! the public folder and `app.info`. Each is judged by requests, on both stacks.

mod support;

use serde_json::{json, Value};
use support::machine::Machine;

/// Writes a file below an app's directory as its user would (parents made).
fn plant(machine: &Machine, user: &str, app: &str, file: &str, content: &str) {
    let path = machine.path(&format!("/srv/users/{user}/apps/{app}/{file}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    let chown = machine.run("/bin/chown", &["-R", &format!("{user}:{user}"), &format!("/srv/users/{user}/apps/{app}")]);
    assert!(chown.status.success());
}

/// `curl` inside the machine: (status code, body, headers).
fn curl(machine: &Machine, args: &[&str]) -> (u16, String, String) {
    let mut argv = vec!["-s", "-D", "/dev/stderr", "-o", "/dev/stdout", "--max-time", "10"];
    argv.extend_from_slice(args);
    let out = machine.run("/usr/bin/curl", &argv);
    let headers = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = headers.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, String::from_utf8_lossy(&out.stdout).into_owned(), headers)
}

fn get(machine: &Machine, host: &str, path: &str) -> (u16, String) {
    let (code, body, _) = curl(machine, &["-H", &format!("Host: {host}"), &format!("http://127.0.0.1{path}")]);
    (code, body)
}

fn create(machine: &Machine, app: &str, stack: &str, extra: Value) -> Value {
    let mut params = json!({"name": app, "sysuser": "derek", "runtime": "php8.2", "domains": [format!("{app}.test")], "stack": stack});
    params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    machine.job("app.create", params)
}

fn machine_with_user() -> Machine {
    let machine = Machine::start();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    machine
}

#[test]
fn protections_stop_php_in_uploads_and_xmlrpc_on_both_stacks() {
    let machine = machine_with_user();
    for (app, stack) in [("plain", "nginx"), ("proxied", "nginx-apache")] {
        let host = format!("{app}.test");
        assert_eq!(create(&machine, app, stack, json!({}))["status"], "success");
        let ran = "<?php echo 'ran';";
        for file in ["x.php", "x.PHP", "x.phtml", "x.php5", "y.phar"] {
            plant(&machine, "derek", app, &format!("public/wp-content/uploads/2026/{file}"), ran);
        }
        plant(&machine, "derek", app, "public/xmlrpc.php", "<?php echo 'xmlrpc';");
        plant(&machine, "derek", app, "public/index.php", "<?php echo 'home';");
        if stack == "nginx-apache" {
            // .htaccess ways to reach the upload: a rewrite from outside it, and from inside.
            plant(
                &machine,
                "derek",
                app,
                "public/.htaccess",
                "RewriteEngine On\nRewriteRule ^sneak$ wp-content/uploads/2026/x.php [L]\n",
            );
            plant(
                &machine,
                "derek",
                app,
                "public/wp-content/uploads/.htaccess",
                "RewriteEngine On\nRewriteRule ^inner$ 2026/x.php [L]\n",
            );
        }
        // Unprotected, the upload runs: the protection below is what stops it.
        assert_eq!(get(&machine, &host, "/wp-content/uploads/2026/x.php"), (200, "ran".into()), "{stack}");
        assert_eq!(get(&machine, &host, "/xmlrpc.php"), (200, "xmlrpc".into()), "{stack}");
        if stack == "nginx-apache" {
            assert_eq!(get(&machine, &host, "/sneak"), (200, "ran".into()), "the rewrite reaches it while unprotected");
        }

        let done = machine
            .job("app.update", json!({"name": app, "uploads_directory_protected": true, "xmlrpc_protected": true}));
        assert_eq!(done["status"], "success", "{done}");
        for path in [
            "/wp-content/uploads/2026/x.php",
            "/wp-content/uploads/2026/x.PHP",
            "/wp-content/uploads/2026/x.php/a.jpg",
            "/wp-content/uploads/2026/x.phtml",
            "/wp-content/uploads/2026/x.php5",
            "/wp-content/uploads/2026/y.phar",
            "/wp-content//uploads/2026/x.php",
            "/wp-content/uploads/../uploads/2026/x.php",
            "/wp-content/uploads/2026/x%2ephp",
            "/xmlrpc.php",
            "/XMLRPC.php",
            "/xmlrpc.php/x",
        ] {
            let (code, body) = get(&machine, &host, path);
            assert_eq!(code, 403, "{stack} {path}: {body}");
            assert!(!body.contains("ran") && !body.contains("xmlrpc"), "{stack} {path}: {body}");
        }
        if stack == "nginx-apache" {
            for path in ["/sneak", "/wp-content/uploads/inner"] {
                let (code, body) = get(&machine, &host, path);
                assert!(!body.contains("ran"), "{path}: a .htaccess rewrite ran the upload: {code} {body}");
                assert_eq!(code, 403, "{path}: {body}");
            }
        }
        assert_eq!(get(&machine, &host, "/"), (200, "home".into()), "{stack}: the rest of the site runs");

        let again = machine.job(
            "app.update",
            json!({"name": app, "nginx": {"uploads_directory_protected": true, "xmlrpc_protected": true}}),
        );
        assert_eq!(again["changed"], false, "SpinupWP's nginx object means the same: {again}");
        let info = machine.job("app.info", json!({"app": app}));
        assert_eq!(info["result"]["nginx"], json!({"uploads_directory_protected": true, "xmlrpc_protected": true}));
        let off = machine.job("app.update", json!({"name": app, "xmlrpc_protected": false}));
        assert_eq!(off["status"], "success", "{off}");
        assert_eq!(get(&machine, &host, "/xmlrpc.php"), (200, "xmlrpc".into()), "{stack}: turned off at once");
        assert_eq!(get(&machine, &host, "/wp-content/uploads/2026/x.php").0, 403, "{stack}: the other stays");
    }
}

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

#[test]
fn basic_auth_asks_everyone_but_acme_and_keeps_the_whole_password() {
    let machine = machine_with_user();
    for (app, stack) in [("plain", "nginx"), ("proxied", "nginx-apache")] {
        let host = format!("{app}.test");
        assert_eq!(create(&machine, app, stack, json!({}))["status"], "success");
        plant(&machine, "derek", app, "public/index.php", "<?php echo 'secret page';");
        plant(&machine, "derek", app, "public/static.txt", "static");
        let url = |path: &str| format!("http://127.0.0.1{path}");
        let host_header = format!("Host: {host}");
        assert_eq!(get(&machine, &host, "/"), (200, "secret page".into()));

        let password = "correct horse battery";
        let done = machine
            .job("app.basic_auth", json!({"app": app, "enabled": true, "username": "ann", "password": password}));
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["result"], json!({"enabled": true, "username": "ann"}));
        assert!(!done.to_string().contains(password), "{done}");
        for path in ["/", "/static.txt", "/index.php"] {
            let (code, body, headers) = curl(&machine, &["-H", &host_header, &url(path)]);
            assert_eq!(code, 401, "{stack} {path} without credentials: {body}");
            assert!(headers.to_lowercase().contains("www-authenticate: basic"), "{headers}");
            let (code, body, _) = curl(&machine, &["-H", &host_header, "-u", &format!("ann:{password}"), &url(path)]);
            assert_eq!(code, 200, "{stack} {path} with credentials: {body}");
            // DES crypt keeps 8 characters: "correct " would pass it.
            let (code, _, _) = curl(&machine, &["-H", &host_header, "-u", "ann:correct horse staple", &url(path)]);
            assert_eq!(code, 401, "{stack} {path}: a password sharing the first 8 characters");
            let (code, _, _) = curl(&machine, &["-H", &host_header, "-u", &format!("bob:{password}"), &url(path)]);
            assert_eq!(code, 401, "{stack} {path}: another user name");
        }
        // ACME challenges (AutoSSL's self-probe and validation) pass without credentials.
        let challenge = machine.through_init("/run/berth/acme-challenge");
        std::fs::create_dir_all(&challenge).unwrap();
        std::fs::write(challenge.join("token123"), "key-authorization").unwrap();
        let (code, body, _) = curl(&machine, &["-H", &host_header, &url("/.well-known/acme-challenge/token123")]);
        assert_eq!((code, body.as_str()), (200, "key-authorization"), "{stack}");

        // Readable by the web server and root alone; the same credentials change nothing.
        let file = format!("/etc/berth/htpasswd/{app}");
        let line = std::fs::read_to_string(machine.path(&file)).unwrap();
        assert!(line.starts_with("ann:$6$") && !line.contains(password), "{line}");
        let as_user =
            machine.run("/usr/bin/setpriv", &["--reuid=derek", "--regid=derek", "--init-groups", "/bin/cat", &file]);
        assert!(!as_user.status.success(), "the site's user cannot read the password file");
        let as_web = machine
            .run("/usr/bin/setpriv", &["--reuid=www-data", "--regid=www-data", "--init-groups", "/bin/cat", &file]);
        assert!(as_web.status.success(), "{}", String::from_utf8_lossy(&as_web.stderr));
        let again = machine
            .job("app.basic_auth", json!({"app": app, "enabled": true, "username": "ann", "password": password}));
        assert_eq!(again["changed"], false, "{again}");
        assert_eq!(std::fs::read_to_string(machine.path(&file)).unwrap(), line, "the hash stays");
        let info = machine.job("app.info", json!({"app": app}));
        assert_eq!(info["result"]["basic_auth"], json!({"enabled": true, "username": "ann"}));

        // A new password replaces the old one at once.
        let changed = machine.job(
            "app.basic_auth",
            json!({"app": app, "enabled": true, "username": "ann", "password": "another long secret"}),
        );
        assert_eq!(changed["changed"], true, "{changed}");
        let (code, _, _) = curl(&machine, &["-H", &host_header, "-u", &format!("ann:{password}"), &url("/")]);
        assert_eq!(code, 401, "{stack}: the old password no longer passes");

        let off = machine.job("app.basic_auth", json!({"app": app, "enabled": false}));
        assert_eq!(off["status"], "success", "{off}");
        assert_eq!(get(&machine, &host, "/"), (200, "secret page".into()), "{stack}: off at once");
        assert!(!machine.path(&file).exists(), "the password file goes with it");
    }
    let missing = machine.job("app.basic_auth", json!({"app": "nothere", "enabled": false}));
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");
}

#[test]
fn redirect_domains_answer_301_or_308_to_the_first_domain_and_stay_with_one_app() {
    let machine = machine_with_user();
    for (app, stack) in [("plain", "nginx"), ("proxied", "nginx-apache")] {
        let redirects = [format!("old-{app}.test"), format!("{app}.example")];
        let done = create(&machine, app, stack, json!({"redirect_domains": redirects}));
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["result"]["redirect_domains"], json!(redirects));
        plant(&machine, "derek", app, "public/index.php", "<?php echo 'primary';");
        for redirect in &redirects {
            let (code, _, headers) =
                curl(&machine, &["-H", &format!("Host: {redirect}"), "http://127.0.0.1/shop/item?id=7&x=y"]);
            assert_eq!(code, 301, "{stack} {redirect}: {headers}");
            assert!(
                headers.contains(&format!("Location: http://{app}.test/shop/item?id=7&x=y")),
                "{stack} {redirect}: path and query kept: {headers}"
            );
            let (code, _, headers) = curl(
                &machine,
                &["-X", "POST", "-d", "a=1", "-H", &format!("Host: {redirect}"), "http://127.0.0.1/form"],
            );
            assert_eq!(code, 308, "{stack} {redirect} POST: {headers}");
            assert!(headers.contains(&format!("Location: http://{app}.test/form")), "{headers}");
        }
        assert_eq!(get(&machine, &format!("{app}.test"), "/"), (200, "primary".into()));
    }

    // A redirect domain belongs to one app, and is none of the app's own names.
    let taken = create(&machine, "third", "nginx", json!({"redirect_domains": ["old-plain.test"]}));
    assert_eq!(taken["error"]["code"], "conflict", "{taken}");
    let as_domain = machine.job(
        "app.create",
        json!({"name": "fourth", "sysuser": "derek", "runtime": "php8.2", "domains": ["plain.example"]}),
    );
    assert_eq!(as_domain["error"]["code"], "conflict", "a redirect domain is not free to serve: {as_domain}");
    let own = machine.job("app.update", json!({"name": "plain", "redirect_domains": ["www.plain.test"]}));
    assert_eq!(own["error"]["code"], "invalid_params", "{own}");
    assert_eq!(own["error"]["field"], "redirect_domains[0]", "{own}");

    // Removed: the name is no longer answered (unknown Hosts are closed).
    let cleared = machine.job("app.update", json!({"name": "plain", "redirect_domains": []}));
    assert_eq!(cleared["status"], "success", "{cleared}");
    assert_eq!(get(&machine, "old-plain.test", "/").0, 0, "no longer answered");
    let (_, report) = machine.reconcile();
    assert_eq!(report["result"]["changed_files"], json!([]), "reconcile renders the same: {report}");
}

#[test]
fn the_public_folder_moves_the_web_root_and_a_planted_link_on_it_is_refused() {
    let machine = machine_with_user();
    for (app, stack) in [("plain", "nginx"), ("proxied", "nginx-apache")] {
        let host = format!("{app}.test");
        let done = create(&machine, app, stack, json!({"public_folder": "public/web"}));
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["result"]["web_root"], format!("/srv/users/derek/apps/{app}/public/web"));
        let stat = machine.run("/usr/bin/stat", &["-c", "%U %a", &format!("/srv/users/derek/apps/{app}/public/web")]);
        assert_eq!(String::from_utf8_lossy(&stat.stdout).trim(), "derek 750");
        plant(&machine, "derek", app, "public/web/index.php", "<?php echo 'from web';");
        plant(&machine, "derek", app, "public/secret.txt", "above the web root");
        if stack == "nginx-apache" {
            plant(
                &machine,
                "derek",
                app,
                "public/web/.htaccess",
                "RewriteEngine On\nRewriteRule ^pretty$ index.php [L]\n",
            );
            assert_eq!(get(&machine, &host, "/pretty"), (200, "from web".into()), "Apache's DocumentRoot moved too");
        }
        assert_eq!(get(&machine, &host, "/"), (200, "from web".into()), "{stack}");
        let above = get(&machine, &host, "/secret.txt");
        assert!(!above.1.contains("above the web root"), "{stack}: above the web root is not served: {above:?}");
        let (code, body, _) =
            curl(&machine, &["--path-as-is", "-H", &format!("Host: {host}"), "http://127.0.0.1/../secret.txt"]);
        assert!(code == 400 && !body.contains("above the web root"), "{stack}: {code} {body}");

        // The user plants a link where the next public folder goes: refused, nothing changes.
        let app_dir = machine.path(&format!("/srv/users/derek/apps/{app}"));
        std::os::unix::fs::symlink("/etc", app_dir.join("docroot")).unwrap();
        let vhost = std::fs::read_to_string(machine.path(&format!("/etc/nginx/berth.d/{app}.conf"))).unwrap();
        let refused = machine.job("app.update", json!({"name": app, "public_folder": "docroot"}));
        assert_eq!(refused["error"]["code"], "conflict", "{refused}");
        assert_eq!(std::fs::read_to_string(machine.path(&format!("/etc/nginx/berth.d/{app}.conf"))).unwrap(), vhost);
        assert_eq!(get(&machine, &host, "/"), (200, "from web".into()), "{stack}: the old web root still serves");
        let info = machine.job("app.info", json!({"app": app}));
        assert_eq!(info["result"]["public_folder"], "public/web", "{info}");
        // The user swaps the web root itself for a link to a root directory: nginx serves
        // nothing through it, and a reconcile neither follows it nor changes /etc.
        let web = app_dir.join("public/web");
        std::fs::rename(&web, app_dir.join("public/web.moved")).unwrap();
        let web_inside = format!("/srv/users/derek/apps/{app}/public/web");
        let planted = machine.run(
            "/usr/bin/setpriv",
            &["--reuid=derek", "--regid=derek", "--init-groups", "/bin/ln", "-s", "/etc", &web_inside],
        );
        assert!(planted.status.success(), "{}", String::from_utf8_lossy(&planted.stderr));
        let (code, body) = get(&machine, &host, "/passwd");
        assert!(!body.contains("root:x:0:0"), "{stack}: /etc/passwd served through the swapped web root: {code}");
        let etc_before = machine.run("/usr/bin/stat", &["-c", "%U %a", "/etc"]).stdout;
        let (_, report) = machine.reconcile();
        assert!(report.to_string().contains("not repaired"), "the planted link is reported: {report}");
        assert_eq!(machine.run("/usr/bin/stat", &["-c", "%U %a", "/etc"]).stdout, etc_before, "{stack}");
        std::fs::remove_file(&web).unwrap();
        std::fs::rename(app_dir.join("public/web.moved"), &web).unwrap();
        // A link deeper on the way is refused too; the default comes back with "public".
        std::os::unix::fs::symlink("/root", app_dir.join("public/deep")).unwrap();
        let deep = machine.job("app.update", json!({"name": app, "public_folder": "public/deep/x"}));
        assert_eq!(deep["error"]["code"], "conflict", "{deep}");
        assert!(!std::path::Path::new("/root/x").exists());
        let back = machine.job("app.update", json!({"name": app, "public_folder": "public"}));
        assert_eq!(back["status"], "success", "{back}");
        assert_eq!(get(&machine, &host, "/secret.txt"), (200, "above the web root".into()), "{stack}");
    }
}

#[test]
fn hostile_site_options_are_refused_naming_the_field_and_nothing_is_written() {
    let machine = machine_with_user();
    assert_eq!(create(&machine, "shop", "nginx", json!({}))["status"], "success");
    let inventory = || std::fs::read_to_string(machine.dir.path().join("state/inventory.json")).unwrap();
    let configs = || {
        let mut all: Vec<(String, String)> = std::fs::read_dir(machine.path("/etc/nginx/berth.d"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        all.sort();
        all
    };
    let (inventory_before, configs_before) = (inventory(), configs());

    let mut cases: Vec<(&str, Value, String)> = Vec::new();
    let long_folder = "a".repeat(65);
    let deep_folder = "a/".repeat(8) + "a";
    for folder in [
        "",
        "/public",
        "/",
        "../other",
        "public/..",
        "public/../../etc",
        ".",
        "./public",
        "public/",
        "public//web",
        ".git",
        "public/.well-known",
        "pub lic",
        "pub\nlic",
        "pub\0lic",
        "püblic",
        "public\\..",
        "public;x",
        "$HOME",
        "~/x",
        "{{ web_root }}",
        long_folder.as_str(),
        deep_folder.as_str(),
    ] {
        cases.push(("app.update", json!({"name": "shop", "public_folder": folder}), "public_folder".into()));
    }
    cases.push(("app.update", json!({"name": "shop", "public_folder": 7}), "public_folder".into()));
    for domain in [
        "*.wild.test",
        "shop.test",
        "www.shop.test",
        "bad domain.test",
        "evil.test;",
        "a.test\nserver_name x",
        "EXAMPLE.test",
        "",
        "localhost",
        "1.2.3.4",
        "exаmple.test",
    ] {
        cases.push(("app.update", json!({"name": "shop", "redirect_domains": [domain]}), "redirect_domains[0]".into()));
    }
    cases.push((
        "app.update",
        json!({"name": "shop", "redirect_domains": ["a.test", "a.test"]}),
        "redirect_domains[1]".into(),
    ));
    cases.push(("app.update", json!({"name": "shop", "redirect_domains": "a.test"}), "redirect_domains".into()));
    cases.push((
        "app.update",
        json!({"name": "shop", "uploads_directory_protected": "yes"}),
        "uploads_directory_protected".into(),
    ));
    cases.push(("app.update", json!({"name": "shop", "xmlrpc_protected": 1}), "xmlrpc_protected".into()));
    cases.push(("app.update", json!({"name": "shop", "nginx": "on"}), "nginx".into()));
    cases.push((
        "app.update",
        json!({"name": "shop", "nginx": {"xmlrpc_protected": "true"}}),
        "nginx.xmlrpc_protected".into(),
    ));
    let auth = |extra: Value| {
        let mut params = json!({"app": "shop", "enabled": true, "username": "ann", "password": "long enough pw"});
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        params
    };
    for user in ["", "a:b", "a b", "a\nb", "ümlaut", "a#b", &"x".repeat(65)] {
        cases.push(("app.basic_auth", auth(json!({"username": user})), "username".into()));
    }
    for password in ["short", "\nline break in it", "trailing space ", "nul\0inside pw", &"p".repeat(201)] {
        cases.push(("app.basic_auth", auth(json!({"password": password})), "password".into()));
    }
    cases.push((
        "app.basic_auth",
        json!({"app": "shop", "enabled": true, "password": "long enough pw"}),
        "username".into(),
    ));
    cases.push(("app.basic_auth", json!({"app": "shop", "enabled": true, "username": "ann"}), "password".into()));
    cases.push(("app.basic_auth", json!({"app": "shop", "enabled": "true"}), "enabled".into()));
    cases.push(("app.basic_auth", json!({"app": "../etc", "enabled": false}), "app".into()));
    cases.push(("app.info", json!({"app": "Shop"}), "app".into()));
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let jobs: Vec<Value> = cases.iter().map(|(kind, params, _)| json!({"kind": kind, "params": params})).collect();
    let (code, statuses) = machine.apply(json!(jobs));
    assert_eq!(code, Some(1));
    for ((kind, params, field), status) in cases.iter().zip(&statuses) {
        assert_eq!(status["error"]["code"], "invalid_params", "{kind} {params}: {status}");
        assert_eq!(status["error"]["field"], field.as_str(), "{kind} {params}: {status}");
        assert!(!status.to_string().contains("long enough pw"), "{status}");
    }
    assert_eq!(inventory(), inventory_before, "nothing recorded");
    assert_eq!(configs(), configs_before, "no config written");
    assert!(!machine.path("/etc/berth/htpasswd/shop").exists());
    assert!(!machine.path("/srv/users/derek/apps/shop/.git").exists());
}

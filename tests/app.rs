//! Apps against the real nginx, Apache and PHP-FPM, in a test machine (namespaces
//! standing in for a fresh Debian server, with berth's production paths).

mod support;

use serde_json::json;
use support::machine::Machine;

#[test]
fn the_test_machine_keeps_berth_off_the_host() {
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let machine = Machine::start();
    let done = machine.job("sysuser.create", json!({"name": "derek"}));
    assert_eq!(done["status"], "success", "{done}");
    assert!(std::fs::read_to_string(machine.path("/etc/passwd")).unwrap().contains("derek:"));
    assert!(machine.path("/srv/users/derek/apps").is_dir());
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
    assert!(!std::path::Path::new("/srv/users/derek").exists());
}

/// Writes a file into an app's web root (readable by the app's user and the web server).
fn publish(machine: &Machine, user: &str, app: &str, file: &str, content: &str) {
    let path = machine.path(&format!("/srv/users/{user}/apps/{app}/public/{file}"));
    std::fs::write(&path, content).unwrap();
}

/// PROTOCOL section 3: listing a domain's `www.` twin as well is allowed and means the
/// same. berth answered `invalid_params` ("already served as the www. twin").
#[test]
fn regression_an_app_may_list_a_domain_and_its_www_twin() {
    let machine = Machine::start();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    let done = machine.job(
        "app.create",
        json!({"name": "myblog", "sysuser": "derek", "runtime": "php8.2",
               "domains": ["www.myblog.test", "myblog.test"], "stack": "nginx"}),
    );
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["result"]["domains"], json!(["www.myblog.test", "myblog.test"]), "each name once");
    publish(&machine, "derek", "myblog", "index.php", "<?php echo 'blog';");
    assert_eq!(machine.at_once_get("myblog.test", "/", 200), "blog");
    assert_eq!(machine.get("www.myblog.test", "/"), (200, "blog".into()));

    // The same as leaving the twin out: another app cannot take it.
    let taken = machine.job(
        "app.create",
        json!({"name": "other", "sysuser": "derek", "runtime": "php8.2", "domains": ["www.myblog.test"]}),
    );
    assert_eq!(taken["error"]["code"], "conflict", "{taken}");
}

#[test]
fn an_nginx_app_serves_php_static_files_and_its_www_twin_and_refuses_dotfiles() {
    let machine = Machine::start();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    let done = machine.job(
        "app.create",
        json!({"name": "gallery", "sysuser": "derek", "runtime": "php8.2", "domains": ["gallery.test"], "stack": "nginx"}),
    );
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["result"]["web_root"], "/srv/users/derek/apps/gallery/public");
    publish(
        &machine,
        "derek",
        "gallery",
        "index.php",
        "<?php echo 'php ok as ', posix_getpwuid(posix_geteuid())['name'];",
    );
    publish(&machine, "derek", "gallery", "hello.txt", "static hello");
    publish(&machine, "derek", "gallery", ".env", "SECRET=1");

    assert_eq!(machine.at_once_get("gallery.test", "/index.php", 200), "php ok as derek");
    assert_eq!(machine.get("www.gallery.test", "/").1, "php ok as derek", "the www. twin, and index.php as index");
    assert_eq!(machine.get("gallery.test", "/hello.txt"), (200, "static hello".into()));
    assert_eq!(machine.get("gallery.test", "/.env").0, 403, "dotfiles are refused");
    assert_eq!(machine.get("unknown.test", "/").0, 0, "an unknown Host is closed without a response");
    let over_v6 = "exec 3<>/dev/tcp/::1/80 && printf 'GET /hello.txt HTTP/1.0\\r\\nHost: gallery.test\\r\\n\\r\\n' >&3 && cat <&3";
    let v6 = machine.run("/bin/bash", &["-c", over_v6]);
    assert!(String::from_utf8_lossy(&v6.stdout).ends_with("static hello"), "served over IPv6 too");
    let socket = machine.run("/usr/bin/stat", &["-c", "%a %U %G", "/run/php/berth-gallery-8.2.sock"]);
    assert_eq!(
        String::from_utf8_lossy(&socket.stdout).trim(),
        "660 www-data www-data",
        "only the web server talks to the pool"
    );
    assert!(machine.path("/var/log/berth/derek/gallery/nginx.access.log").exists(), "the app logs to its own files");
    // Room for per-app log files: part of the configuration nginx loads. (Whether the
    // kernel grants it needs CAP_SYS_RESOURCE, which root has on a server but not in
    // every sandbox, so the effective limit is not asserted.)
    let dump = machine.run("/usr/sbin/nginx", &["-T"]);
    assert!(String::from_utf8_lossy(&dump.stdout).contains("worker_rlimit_nofile 65536;"));

    let again = machine.job(
        "app.create",
        json!({"name": "gallery", "sysuser": "derek", "runtime": "php8.2", "domains": ["gallery.test"], "stack": "nginx"}),
    );
    assert_eq!(again["changed"], false, "{again}");
    assert!(
        !again["steps"].as_array().unwrap().iter().any(|s| s["name"].as_str().unwrap().starts_with("reload")),
        "{again}"
    );
}

fn create(machine: &Machine, user: &str, app: &str, domains: &[&str], stack: &str) -> serde_json::Value {
    machine.job(
        "app.create",
        json!({"name": app, "sysuser": user, "runtime": "php8.2", "domains": domains, "stack": stack}),
    )
}

#[test]
fn an_nginx_apache_app_honours_htaccess_and_runs_php_as_its_user() {
    let machine = Machine::start();
    machine.job("sysuser.create", json!({"name": "derek"}));
    let done = create(&machine, "derek", "blog", &["blog.test"], "nginx-apache");
    assert_eq!(done["status"], "success", "{done}");
    publish(&machine, "derek", "blog", "page.php", "<?php echo 'page as ', posix_getpwuid(posix_geteuid())['name'];");
    publish(&machine, "derek", "blog", ".htaccess", "RewriteEngine On\nRewriteRule ^pretty$ page.php [L]\n");
    publish(&machine, "derek", "blog", "logo.txt", "static from nginx");
    assert_eq!(machine.at_once_get("blog.test", "/pretty", 200), "page as derek", ".htaccess rewrite through Apache");
    assert_eq!(machine.get("blog.test", "/page.php").1, "page as derek");
    assert_eq!(machine.get("blog.test", "/logo.txt").1, "static from nginx");
    assert_eq!(machine.get("blog.test", "/.htaccess").0, 403);
    assert!(machine.path("/var/log/berth/derek/blog/apache.access.log").exists());
}

#[test]
fn update_moves_domains_refuses_missing_runtimes_and_domains_stay_with_one_app() {
    let machine = Machine::start();
    machine.job("sysuser.create", json!({"name": "derek"}));
    create(&machine, "derek", "shop", &["shop.test"], "nginx");
    publish(&machine, "derek", "shop", "index.html", "the shop");
    machine.at_once_get("shop.test", "/", 200);

    let moved = machine.job("app.update", json!({"name": "shop", "domains": ["store.test", "shop.example.org"]}));
    assert_eq!((moved["status"].as_str(), moved["changed"].as_bool()), (Some("success"), Some(true)), "{moved}");
    assert_eq!(machine.at_once_get("www.store.test", "/", 200), "the shop");
    assert_eq!(machine.get("shop.example.org", "/").1, "the shop");
    assert_eq!(machine.at_once_get("shop.test", "/", 0), "", "the old domain is no longer served");

    let vhost = std::fs::read_to_string(machine.path("/etc/nginx/berth.d/shop.conf")).unwrap();
    let missing = machine.job("app.update", json!({"name": "shop", "runtime": "php7.4"}));
    assert_eq!(missing["error"]["code"], "precondition_failed", "{missing}");
    assert!(missing["error"]["message"].as_str().unwrap().contains("php8.2"), "says what is installed: {missing}");
    assert_eq!(std::fs::read_to_string(machine.path("/etc/nginx/berth.d/shop.conf")).unwrap(), vhost);

    let taken = create(&machine, "derek", "copycat", &["www.store.test"], "nginx");
    assert_eq!(taken["error"]["code"], "conflict", "{taken}");
    assert!(!machine.path("/etc/nginx/berth.d/copycat.conf").exists());
    let unknown = machine.job("app.update", json!({"name": "nosuchapp", "domains": ["x.test"]}));
    assert_eq!(unknown["error"]["code"], "not_found");
    let stranger = create(&machine, "root", "rootapp", &["root.test"], "nginx");
    assert_eq!(stranger["error"]["code"], "conflict", "root is not berth's: {stranger}");
    let nobody = create(&machine, "ghost", "ghostapp", &["ghost.test"], "nginx");
    assert_eq!(nobody["error"]["code"], "not_found");
}

#[test]
fn delete_leaves_no_file_pool_or_vhost_and_sysuser_delete_takes_the_apps_along() {
    let machine = Machine::start();
    machine.job("sysuser.create", json!({"name": "derek"}));
    create(&machine, "derek", "gone", &["gone.test"], "nginx-apache");
    create(&machine, "derek", "stays", &["stays.test"], "nginx");
    publish(&machine, "derek", "stays", "index.html", "still here");
    machine.at_once_get("stays.test", "/", 200);
    assert!(
        machine.run("/bin/sh", &["-c", "test -S /run/php/berth-gone-8.2.sock"]).status.success(),
        "the pool listens"
    );

    let done = machine.job("app.delete", json!({"name": "gone"}));
    assert_eq!((done["status"].as_str(), done["changed"].as_bool()), (Some("success"), Some(true)), "{done}");
    for path in [
        "/etc/nginx/berth.d/gone.conf",
        "/etc/apache2/sites-enabled/berth-gone.conf",
        "/etc/php/8.2/fpm/pool.d/berth-gone.conf",
        "/srv/users/derek/apps/gone",
        "/var/log/berth/derek/gone",
        "/srv/users/derek/tmp/gone",
    ] {
        assert!(!machine.path(path).exists(), "{path} is left behind");
    }
    let started = std::time::Instant::now();
    // The master holds an ondemand pool's socket; the reload (asynchronous) drops it.
    while machine.run("/bin/sh", &["-c", "test -e /run/php/berth-gone-8.2.sock"]).status.success() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the pool's socket is gone after the reload");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(machine.at_once_get("gone.test", "/", 0), "");
    assert_eq!(machine.get("stays.test", "/").1, "still here");
    let again = machine.job("app.delete", json!({"name": "gone"}));
    assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(false)));

    let user = machine.job("sysuser.delete", json!({"name": "derek"}));
    assert_eq!(user["status"], "success", "{user}");
    assert!(!machine.path("/etc/nginx/berth.d/stays.conf").exists());
    assert!(!machine.path("/srv/users/derek").exists());
    let inventory = std::fs::read_to_string(machine.dir.path().join("state/inventory.json")).unwrap();
    let inventory: serde_json::Value = serde_json::from_str(&inventory).unwrap();
    assert_eq!(inventory["apps"], json!({}));
}

#[test]
fn a_broken_template_override_is_config_invalid_and_the_other_apps_still_answer() {
    let machine = Machine::start();
    machine.job("sysuser.create", json!({"name": "derek"}));
    create(&machine, "derek", "first", &["first.test"], "nginx");
    publish(&machine, "derek", "first", "index.html", "first app");
    machine.at_once_get("first.test", "/", 200);
    let overrides = machine.path("/etc/berth/templates");
    std::fs::create_dir_all(&overrides).unwrap();
    let builtin = include_str!("../templates/nginx-vhost.conf");
    std::fs::write(
        overrides.join("nginx-vhost.conf"),
        builtin.replace("index index.php", "bogus_directive on;\n    index index.php"),
    )
    .unwrap();

    let broken = create(&machine, "derek", "second", &["second.test"], "nginx");
    assert_eq!(broken["error"]["code"], "config_invalid", "{broken}");
    assert!(broken["error"]["message"].as_str().unwrap().contains("bogus_directive"), "the tool's words: {broken}");
    assert!(!machine.path("/etc/nginx/berth.d/second.conf").exists(), "the previous files are back");
    assert_eq!(machine.get("first.test", "/").1, "first app");

    std::fs::write(overrides.join("nginx-vhost.conf"), "{% if %}").unwrap();
    let unparsable = create(&machine, "derek", "second", &["second.test"], "nginx");
    assert_eq!(unparsable["error"]["code"], "config_invalid", "{unparsable}");
    std::fs::remove_file(overrides.join("nginx-vhost.conf")).unwrap();
    assert_eq!(create(&machine, "derek", "second", &["second.test"], "nginx")["status"], "success");
}

#[test]
fn users_and_apps_are_isolated_from_each_other() {
    let machine = Machine::start();
    for user in ["derek", "maria"] {
        machine.job("sysuser.create", json!({"name": user}));
    }
    create(&machine, "derek", "dapp", &["dapp.test"], "nginx");
    create(&machine, "derek", "dother", &["dother.test"], "nginx");
    create(&machine, "maria", "mapp", &["mapp.test"], "nginx");
    publish(&machine, "derek", "dapp", "secret.php", "<?php // derek's secret\n");
    publish(&machine, "derek", "dother", "secret.php", "<?php // dother's secret\n");
    let peek = "<?php $f = $_GET['f']; echo @file_get_contents($f) === false ? 'denied' : 'READ';";
    publish(&machine, "maria", "mapp", "peek.php", peek);
    publish(&machine, "derek", "dapp", "peek.php", peek);

    let derek_secret = "/srv/users/derek/apps/dapp/public/secret.php";
    assert_eq!(machine.at_once_get("mapp.test", &format!("/peek.php?f={derek_secret}"), 200), "denied");
    assert_eq!(
        machine.get("dapp.test", &format!("/peek.php?f={derek_secret}")).1,
        "READ",
        "an app reads its own files"
    );
    let other_app = "/srv/users/derek/apps/dother/public/secret.php";
    assert_eq!(
        machine.get("dapp.test", &format!("/peek.php?f={other_app}")).1,
        "denied",
        "not another app's, same user"
    );
    assert_eq!(machine.get("mapp.test", "/peek.php?f=/var/log/berth/derek/dapp/nginx.access.log").1, "denied");

    // As a login shell: maria cannot list or read derek's home.
    let as_maria = |cmd: &str| {
        machine.run("/usr/bin/setpriv", &["--reuid=maria", "--regid=maria", "--init-groups", "/bin/sh", "-c", cmd])
    };
    assert!(!as_maria(&format!("cat {derek_secret}")).status.success());
    assert!(!as_maria("ls /srv/users/derek").status.success());
    assert!(as_maria("ls /srv/users/maria/apps/mapp").status.success(), "the check itself works");
}

#[test]
fn hostile_app_params_are_refused_naming_the_field_and_nothing_is_written() {
    let machine = Machine::start();
    machine.job("sysuser.create", json!({"name": "derek"}));
    let good = json!({"name": "gallery", "sysuser": "derek", "runtime": "php8.2", "domains": ["gallery.test"]});
    let with = |field: &str, value: serde_json::Value| {
        let mut params = good.clone();
        params[field] = value;
        params
    };
    let mut cases = Vec::new();
    for name in [
        "../etc",
        "gal lery",
        "Gallery",
        "ga",
        &"a".repeat(31),
        "gal;lery",
        "gal\nlery",
        "gal-lery",
        "gal_lery",
        "gаllery",
        "",
        "{{app}}",
    ] {
        cases.push((with("name", json!(name)), "name"));
    }
    for user in ["../root", "Derek", "3po", "de rek", "d", "derek;id", "derek\n"] {
        cases.push((with("sysuser", json!(user)), "sysuser"));
    }
    for runtime in ["php", "8.2", "php8", "php8.2;", "php8.2\n", "PHP8.2", "php../8.2", "php8.2 ", "python3.11"] {
        cases.push((with("runtime", json!(runtime)), "runtime"));
    }
    for domain in [
        "test..com",
        ".example.com",
        "example.com.",
        "-a.com",
        "a-.com",
        "exa_mple.com",
        "EXAMPLE.com",
        "exаmple.com",
        "a.*.com",
        "*.com",
        "1.2.3.4",
        "localhost",
        "example.com;",
        "example.com{",
        "example.com\nserver_name evil",
        "exam ple.com",
        "",
        &format!("{}.com", "a".repeat(64)),
        "example.com/path",
        "\"example.com\"",
        "ex$ample.com",
    ] {
        cases.push((with("domains", json!([domain])), "domains[0]"));
    }
    cases.push((with("domains", json!(["gallery.test", "gallery.test"])), "domains[1]"));
    cases.push((with("domains", json!("gallery.test")), "domains"));
    cases.push((with("domains", json!([])), "domains"));
    cases.push((with("stack", json!("apache")), "stack"));
    cases.push((with("stack", json!("nginx;")), "stack"));
    assert!(cases.len() >= 50, "{} cases", cases.len());

    let jobs: Vec<_> = cases.iter().map(|(params, _)| json!({"kind": "app.create", "params": params})).collect();
    let (code, statuses) = machine.apply(json!(jobs));
    assert_eq!(code, Some(1));
    for ((params, field), status) in cases.iter().zip(&statuses) {
        assert_eq!(status["error"]["code"], "invalid_params", "{params}: {status}");
        assert_eq!(status["error"]["field"], *field, "{params}: {status}");
    }
    assert!(!machine.path("/etc/nginx/berth.d").exists(), "no vhost was written");
    assert!(!machine.path("/srv/users/derek/apps").read_dir().unwrap().any(|_| true), "no app dir was made");
}

#[test]
fn reconcile_changes_nothing_when_all_holds_and_carries_template_edits_to_every_app() {
    let machine = Machine::start();
    machine.job("sysuser.create", json!({"name": "derek"}));
    for app in ["one", "two"] {
        create(&machine, "derek", app, &[&format!("{app}.test")], "nginx");
        publish(&machine, "derek", app, "index.php", &format!("<?php echo '{app} ok';"));
    }
    machine.at_once_get("two.test", "/", 200);

    let (code, report) = machine.reconcile();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["changed"], false, "{report}");
    assert_eq!(report["result"]["changed_files"], json!([]));

    let overrides = machine.path("/etc/berth/templates");
    std::fs::create_dir_all(&overrides).unwrap();
    let pool = include_str!("../templates/php-fpm-pool.conf").replace("pm.max_children = 10", "pm.max_children = 7");
    std::fs::write(overrides.join("php-fpm-pool.conf"), pool).unwrap();
    let vhost = machine.path("/etc/nginx/berth.d/one.conf");
    let pristine = std::fs::read_to_string(&vhost).unwrap();
    std::fs::write(&vhost, format!("{pristine}\n# edited by hand\n")).unwrap();

    let (code, report) = machine.reconcile();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["changed"], true);
    assert_eq!(
        report["result"]["changed_files"].as_array().unwrap().len(),
        3,
        "two pools and the edited vhost: {report}"
    );
    for app in ["one", "two"] {
        let pool = std::fs::read_to_string(machine.path(&format!("/etc/php/8.2/fpm/pool.d/berth-{app}.conf"))).unwrap();
        assert!(pool.contains("pm.max_children = 7"), "the template edit reached {app}");
    }
    assert_eq!(std::fs::read_to_string(&vhost).unwrap(), pristine, "the hand edit is undone");
    assert_eq!(machine.at_once_get("one.test", "/", 200), "one ok");
    assert_eq!(machine.get("two.test", "/").1, "two ok");
}

#[test]
fn update_moves_the_pool_to_the_new_runtime() {
    let machine = Machine::start();
    machine.add_php_runtime("8.9");
    machine.job("sysuser.create", json!({"name": "derek"}));
    create(&machine, "derek", "mover", &["mover.test"], "nginx");
    publish(&machine, "derek", "mover", "index.php", "<?php echo posix_getppid();");
    machine.at_once_get("mover.test", "/", 200);

    let moved = machine.job("app.update", json!({"name": "mover", "runtime": "php8.9"}));
    assert_eq!((moved["status"].as_str(), moved["changed"].as_bool()), (Some("success"), Some(true)), "{moved}");
    let steps: Vec<&str> = moved["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(steps.contains(&"reload php8.9-fpm") && steps.contains(&"reload php8.2-fpm"), "{steps:?}");
    assert!(machine.path("/etc/php/8.9/fpm/pool.d/berth-mover.conf").exists());
    assert!(!machine.path("/etc/php/8.2/fpm/pool.d/berth-mover.conf").exists(), "the old pool is gone");
    // Regression: both runtimes' pools once shared one socket path, and the new master
    // could find it still held by the old one ("Another FPM instance seems to already
    // listen"). Each runtime has its own now.
    assert!(
        machine.run("/bin/sh", &["-c", "test -S /run/php/berth-mover-8.9.sock"]).status.success(),
        "the new pool listens"
    );
    // The worker that answers is a child of the new runtime's master.
    let master = machine.run("/bin/cat", &["/run/php/php8.9-fpm.pid"]);
    let master = String::from_utf8_lossy(&master.stdout).trim().to_owned();
    assert!(!master.is_empty(), "the php8.9 master runs");
    let started = std::time::Instant::now();
    while machine.get("mover.test", "/").1 != master {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "served by {:?}, not {master}",
            machine.get("mover.test", "/")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

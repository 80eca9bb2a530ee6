//! WordPress (`app.wordpress`, `app.create`'s `wordpress`) against the real nginx,
//! Apache, PHP-FPM and MariaDB in a test machine, from Debian's `wordpress`
//! package: the site, its admin's login, the secrets, the rollback, and a user's
//! planted links.

mod support;

use std::os::unix::fs::MetadataExt;

use serde_json::{json, Value};
use support::machine::Machine;

const ADMIN_PASSWORD: &str = "Adm1n-'pass\"word$";

fn machine() -> Machine {
    let machine = Machine::start();
    machine.start_mariadb();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    machine
}

fn site(title: &str) -> Value {
    json!({"site_title": title, "admin_user": "boss", "admin_password": ADMIN_PASSWORD,
           "admin_email": "boss@example.com", "table_prefix": "blog_"})
}

fn create(machine: &Machine, app: &str, stack: &str, wordpress: Option<Value>) -> Value {
    let mut params = json!({"name": app, "sysuser": "derek", "runtime": "php8.2",
                            "domains": [format!("{app}.test")], "stack": stack});
    if let Some(wordpress) = wordpress {
        params["wordpress"] = wordpress;
    }
    machine.job("app.create", params)
}

fn sql(machine: &Machine, sql: &str) -> String {
    let out = machine.sql("root", None, "", sql);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// curl inside the machine, with a cookie jar per app; returns the body.
fn curl(machine: &Machine, app: &str, args: &[&str]) -> String {
    let host = format!("{app}.test");
    let resolve = format!("{host}:80:127.0.0.1");
    let jar = format!("/run/cookies-{app}");
    let mut all = vec!["-sS", "--max-time", "30", "--resolve", &resolve, "-b", &jar, "-c", &jar];
    all.extend_from_slice(args);
    let out = machine.run("/usr/bin/curl", &all);
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DB_PASSWORD berth wrote into the app's wp-config.php.
fn db_password(machine: &Machine, app: &str) -> String {
    let config = std::fs::read_to_string(machine.path(&format!("/srv/users/derek/apps/{app}/public/wp-config.php")));
    let config = config.unwrap();
    let line = config.lines().find(|l| l.contains("'DB_PASSWORD'")).unwrap().to_owned();
    line.split('\'').nth(3).unwrap().to_owned()
}

#[test]
fn wordpress_answers_its_title_and_its_admin_logs_in_on_both_stacks() {
    let machine = machine();
    for (app, stack) in [("blog", "nginx"), ("shop", "nginx-apache")] {
        let title = format!("Derek's {app} \"site\"");
        let (code, statuses, log) = machine.apply_logged(json!({"kind": "app.create", "params": {
            "name": app, "sysuser": "derek", "runtime": "php8.2", "domains": [format!("{app}.test")],
            "stack": stack, "wordpress": site(&title)}}));
        let done = &statuses[0];
        assert_eq!((code, done["status"].as_str()), (Some(0), Some("success")), "{done}");
        let wordpress = &done["result"]["wordpress"];
        assert_eq!(wordpress["database"], format!("{app}-wp"), "{done}");
        assert_eq!(wordpress["database_user"], format!("wp_{app}"), "{done}");
        assert!(wordpress["version"].as_str().unwrap().starts_with("6."), "{done}");

        // Secrets: in none of the job's reports, nor in berth's log.
        let password = db_password(&machine, app);
        assert_eq!(password.len(), 32);
        for text in [done.to_string(), log.clone()] {
            assert!(!text.contains(ADMIN_PASSWORD) && !text.contains(&password), "a secret leaked: {text}");
        }

        // wp-config.php: the user's, 0600; no Debian loader, no .htaccess link.
        let public = machine.path(&format!("/srv/users/derek/apps/{app}/public"));
        let config = std::fs::symlink_metadata(public.join("wp-config.php")).unwrap();
        let passwd = std::fs::read_to_string(machine.path("/etc/passwd")).unwrap();
        let uid: u32 =
            passwd.lines().find(|l| l.starts_with("derek:")).unwrap().split(':').nth(2).unwrap().parse().unwrap();
        assert_eq!((config.mode() & 0o7777, config.uid(), config.is_file()), (0o600, uid, true));
        assert!(!std::fs::read_to_string(public.join("wp-config.php")).unwrap().contains("debian"));
        assert!(std::fs::symlink_metadata(public.join(".htaccess")).is_err());
        let jquery = std::fs::symlink_metadata(public.join("wp-includes/js/underscore.min.js")).unwrap();
        assert!(jquery.is_file() && jquery.uid() == uid, "Debian's links are copied as files, the user's");

        let home = machine.at_once_get(&format!("{app}.test"), "/", 200);
        let escaped = format!("<title>Derek&#039;s {app} &quot;site&quot;</title>");
        assert!(home.contains(&escaped), "{app}: {home}");

        // The admin logs in through wp-login.php and sees the dashboard.
        let url = format!("http://{app}.test");
        curl(&machine, app, &[&format!("{url}/wp-login.php")]);
        let dashboard = curl(
            &machine,
            app,
            &[
                "-L",
                "--data-urlencode",
                "log=boss",
                "--data-urlencode",
                &format!("pwd={ADMIN_PASSWORD}"),
                "--data-urlencode",
                &format!("redirect_to={url}/wp-admin/"),
                "-d",
                "testcookie=1",
                &format!("{url}/wp-login.php"),
            ],
        );
        assert!(
            dashboard.contains("<title>Dashboard"),
            "{app}: no dashboard: {}",
            &dashboard[..dashboard.len().min(2000)]
        );

        // Again: nothing changes, the content stays.
        let before = std::fs::read(public.join("wp-config.php")).unwrap();
        std::fs::write(public.join("wp-content/mine.txt"), "kept").unwrap();
        let again = machine.job(
            "app.wordpress",
            json!({"app": app, "site_title": "Other", "admin_user": "other", "admin_password": "another-password",
                   "admin_email": "o@example.com"}),
        );
        assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(false)), "{again}");
        assert_eq!(std::fs::read(public.join("wp-config.php")).unwrap(), before);
        assert!(public.join("wp-content/mine.txt").is_file());
        assert_eq!(create(&machine, app, stack, Some(site(&title)))["changed"], false, "app.create again");

        // The site facts: WordPress, and the version its own files say.
        let source = std::fs::read_to_string("/usr/share/wordpress/wp-includes/version.php").unwrap();
        let version = source.lines().find_map(|l| l.strip_prefix("$wp_version = '")).unwrap().trim_end_matches("';");
        let info = machine.job("app.info", json!({"app": app}));
        assert_eq!(info["result"]["is_wordpress"], true, "{info}");
        assert_eq!(info["result"]["wordpress"]["version"], version, "{info}");
        assert_eq!(info["result"]["wordpress"]["installed_by_berth"], true, "{info}");
        assert_eq!(info["changed"], false, "{info}");
    }

    // app.delete drops the database and its user.
    assert_eq!(machine.job("app.delete", json!({"name": "blog"}))["status"], "success");
    let left = sql(&machine, "SHOW DATABASES; SELECT User FROM mysql.user");
    assert!(!left.contains("blog-wp") && !left.contains("wp_blog") && left.contains("shop-wp"), "{left}");
}

/// What `/srv/users/derek/apps` and the databases hold, to compare before and after.
fn host_state(machine: &Machine) -> (Vec<String>, String) {
    let mut files: Vec<String> = walkdir(&machine.path("/srv/users/derek/apps"));
    files.sort();
    (files, sql(machine, "SHOW DATABASES; SELECT User FROM mysql.user"))
}

fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if entry.file_type().unwrap().is_dir() {
            out.extend(walkdir(&path));
        }
    }
    out
}

#[test]
fn hostile_wordpress_fields_are_refused_naming_the_field_and_nothing_is_written() {
    let machine = machine();
    assert_eq!(create(&machine, "blog", "nginx", None)["status"], "success");
    let before = host_state(&machine);
    let long = "a".repeat(201);
    let long_email = format!("{}@example.com", "a".repeat(90));
    let cases: Vec<(&str, Value)> = vec![
        ("site_title", json!("")),
        ("site_title", json!("   ")),
        ("site_title", json!(long)),
        ("site_title", json!("line\nbreak")),
        ("site_title", json!("nul\u{0}byte")),
        ("site_title", json!(42)),
        ("admin_user", json!("")),
        ("admin_user", json!("bo'ss")),
        ("admin_user", json!("bo ss")),
        ("admin_user", json!("boss\";exec('id');//")),
        ("admin_user", json!("a".repeat(61))),
        ("admin_user", json!("bössé")),
        ("admin_password", json!("short")),
        ("admin_password", json!("p".repeat(201))),
        ("admin_password", json!("pass\u{0}word-nul")),
        ("admin_password", json!("pass\nword-newline")),
        ("admin_password", json!(" leading-space")),
        ("admin_email", json!("not-an-email")),
        ("admin_email", json!("boss@")),
        ("admin_email", json!("@example.com")),
        ("admin_email", json!("bo'ss@example.com")),
        ("admin_email", json!("boss@exa mple.com")),
        ("admin_email", json!("boss@example.com\n")),
        ("admin_email", json!(long_email)),
        ("admin_email", json!("a@b@example.com")),
        ("table_prefix", json!("wp")),
        ("table_prefix", json!("wp;DROP_")),
        ("table_prefix", json!("wp'_")),
        ("table_prefix", json!("")),
        ("table_prefix", json!("a_very_long_prefix_x_")),
        ("table_prefix", json!("wp-x_")),
    ];
    assert!(cases.len() >= 20);
    for (field, value) in &cases {
        let mut params = site("Blog");
        params[*field] = value.clone();
        params["app"] = json!("blog");
        let done = machine.job("app.wordpress", params.clone());
        assert_eq!(done["error"]["code"], "invalid_params", "{field}={value}: {done}");
        assert_eq!(done["error"]["field"], *field, "{field}={value}: {done}");
        if field == &"admin_password" {
            assert!(!done.to_string().contains(value.as_str().unwrap().trim()), "the password is echoed: {done}");
        }
    }
    // Through app.create the field is named under `wordpress.`, and no app is made.
    for (field, value) in cases.iter().step_by(5) {
        let mut wordpress = site("Blog");
        wordpress[*field] = value.clone();
        let done = create(&machine, "other", "nginx", Some(wordpress));
        assert_eq!(done["error"]["code"], "invalid_params", "{field}={value}: {done}");
        assert_eq!(done["error"]["field"], format!("wordpress.{field}"), "{done}");
    }
    assert_eq!(host_state(&machine), before, "nothing was written");
}

#[test]
fn a_failed_step_leaves_no_app_no_database_and_no_files() {
    // MariaDB is not running: the database step fails after the app was made.
    let machine = Machine::start();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    let done = create(&machine, "blog", "nginx", Some(site("Blog")));
    assert_eq!(done["status"], "error", "{done}");
    assert!(done["error"]["message"].as_str().unwrap().contains("not running"), "{done}");
    let gone = |machine: &Machine| {
        let inventory = std::fs::read_to_string(machine.dir.path().join("state/inventory.json")).unwrap();
        let inventory: Value = serde_json::from_str(&inventory).unwrap();
        assert!(inventory["apps"].get("blog").is_none(), "{inventory}");
        assert!(inventory["databases"].as_object().is_none_or(|d| d.is_empty()), "{inventory}");
        assert!(!machine.path("/srv/users/derek/apps/blog").exists());
        assert!(!machine.path("/etc/nginx/berth.d/blog.conf").exists());
    };
    gone(&machine);

    // The installer fails (php-cli broken) after the app and its database were made.
    machine.start_mariadb();
    machine.program("/usr/bin", "php8.2", Some("#!/bin/sh\ncat >/dev/null\necho 'PHP broke' >&2\nexit 3\n"));
    let done = create(&machine, "blog", "nginx-apache", Some(site("Blog")));
    assert_eq!(done["error"]["code"], "tool_failed", "{done}");
    assert!(done["error"]["message"].as_str().unwrap().contains("PHP broke"), "{done}");
    gone(&machine);
    let left = sql(&machine, "SHOW DATABASES; SELECT User FROM mysql.user");
    assert!(!left.contains("blog-wp") && !left.contains("wp_blog"), "{left}");

    // app.wordpress on an app that stays: its database and the files go, the app stays.
    assert_eq!(create(&machine, "blog", "nginx", None)["status"], "success");
    let done = machine.job(
        "app.wordpress",
        json!({"app": "blog", "site_title": "Blog", "admin_user": "boss",
        "admin_password": ADMIN_PASSWORD, "admin_email": "boss@example.com"}),
    );
    assert_eq!(done["error"]["code"], "tool_failed", "{done}");
    assert_eq!(walkdir(&machine.path("/srv/users/derek/apps/blog/public")), Vec::<String>::new());
    let left = sql(&machine, "SHOW DATABASES; SELECT User FROM mysql.user");
    assert!(!left.contains("blog-wp") && !left.contains("wp_blog"), "{left}");
}

/// Every process's argv and environment in the machine while the job runs: no
/// secret is in any of them (the admin's password, the database's from wp-config.php).
#[test]
fn secrets_are_in_no_process_argv_or_environment() {
    let machine = machine();
    assert_eq!(create(&machine, "blog", "nginx", None)["status"], "success");
    // A loop inside the machine reads every /proc/PID/{cmdline,environ} until told to stop.
    let script = "while [ ! -e /run/stop-watching ]; do for p in /proc/[0-9]*; do \
        tr '\\0' ' ' <$p/cmdline; echo; tr '\\0' ' ' <$p/environ; echo; done 2>/dev/null; done";
    let mut child = machine.command("/bin/sh", &["-c", script]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).collect::<std::collections::BTreeSet<_>>()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let done = machine.job(
        "app.wordpress",
        json!({"app": "blog", "site_title": "Blog", "admin_user": "boss",
        "admin_password": ADMIN_PASSWORD, "admin_email": "boss@example.com"}),
    );
    assert_eq!(done["status"], "success", "{done}");
    assert!(machine.run("/usr/bin/touch", &["/run/stop-watching"]).status.success());
    let seen = reader.join().unwrap();
    child.wait().unwrap();
    let password = db_password(&machine, "blog");
    assert!(
        seen.iter().any(|l| l.starts_with("/usr/bin/php8.2 ") || l.contains("setpriv")),
        "the installer was seen: {seen:?}"
    );
    for line in &seen {
        assert!(!line.contains(ADMIN_PASSWORD) && !line.contains(&password), "a secret in a process: {line}");
    }
}

/// The user plants links in the web root before `app.wordpress`: berth refuses,
/// and nothing outside the user's tree changes.
#[test]
fn links_planted_in_the_web_root_are_refused_and_nothing_outside_changes() {
    let machine = machine();
    assert_eq!(create(&machine, "blog", "nginx", None)["status"], "success");
    let public = machine.path("/srv/users/derek/apps/blog/public");
    let shadow = std::fs::read(machine.path("/etc/shadow")).unwrap();
    let etc = walkdir(&machine.path("/etc"));
    let params = json!({"app": "blog", "site_title": "Blog", "admin_user": "boss",
        "admin_password": ADMIN_PASSWORD, "admin_email": "boss@example.com"});
    for (name, target) in [("index.php", "/etc/shadow"), ("wp-content", "/etc"), ("wp-config.php", "/etc/passwd")] {
        std::os::unix::fs::symlink(target, public.join(name)).unwrap();
        let done = machine.job("app.wordpress", params.clone());
        assert_eq!(done["error"]["code"], "conflict", "{name}: {done}");
        assert!(done["error"]["message"].as_str().unwrap().contains(name), "{done}");
        std::fs::remove_file(public.join(name)).unwrap();
    }
    // A site of the user's own is not written over either.
    std::fs::write(public.join("index.php"), "<?php echo 'mine';").unwrap();
    assert_eq!(machine.job("app.wordpress", params.clone())["error"]["code"], "conflict");
    assert_eq!(std::fs::read_to_string(public.join("index.php")).unwrap(), "<?php echo 'mine';");
    std::fs::remove_file(public.join("index.php")).unwrap();

    assert_eq!(std::fs::read(machine.path("/etc/shadow")).unwrap(), shadow);
    assert_eq!(walkdir(&machine.path("/etc")), etc);
    assert_eq!(sql(&machine, "SHOW DATABASES").lines().filter(|l| l.ends_with("-wp")).count(), 0);
    // Once the links are gone, the install goes through.
    assert_eq!(machine.job("app.wordpress", params)["status"], "success");
}

/// While `app.wordpress` runs, the user swaps the web root with a link to a
/// root-owned directory, again and again (`renameat2(RENAME_EXCHANGE)`): whatever
/// the job then ends in, nothing lands in that directory.
#[test]
fn a_web_root_swapped_for_a_link_mid_job_leads_nothing_outside() {
    let machine = machine();
    assert_eq!(create(&machine, "blog", "nginx", None)["status"], "success");
    let apps = machine.path("/srv/users/derek/apps/blog");
    let victim = machine.path("/etc/victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "root's").unwrap();
    // The link names the victim as the machine sees it.
    std::os::unix::fs::symlink("/etc/victim", apps.join("decoy")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, apps) = (stop.clone(), apps.clone());
        std::thread::spawn(move || {
            let mut swaps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (public, decoy) = (apps.join("public"), apps.join("decoy"));
                let exchange = rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &public,
                    rustix::fs::CWD,
                    &decoy,
                    rustix::fs::RenameFlags::EXCHANGE,
                );
                swaps += usize::from(exchange.is_ok());
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            swaps
        })
    };
    let mut ended = Vec::new();
    for _ in 0..3 {
        let done = machine.job(
            "app.wordpress",
            json!({"app": "blog", "site_title": "Blog", "admin_user": "boss",
            "admin_password": ADMIN_PASSWORD, "admin_email": "boss@example.com"}),
        );
        ended.push(done["error"]["code"].as_str().unwrap_or("success").to_owned());
        if done["status"] == "success" {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{swaps} swaps; the jobs ended in {ended:?}");
    assert!(swaps > 10, "the race did not happen");
    let left: Vec<String> = walkdir(&victim);
    assert_eq!(left, [victim.join("keep").display().to_string()], "ended {ended:?}");
    assert_eq!(std::fs::read_to_string(victim.join("keep")).unwrap(), "root's");
}

/// berth and its installer are killed (SIGKILL) while the installer copies: the
/// install runs again to the end (the web root holds only what berth's install
/// left, and the database is berth's), and the site answers.
#[test]
fn an_install_killed_midway_runs_again_to_the_end() {
    let machine = machine();
    assert_eq!(create(&machine, "blog", "nginx-apache", None)["status"], "success");
    // Inside the machine: waits for the installer, then kills it and its parent, berth.
    let killer = "for i in $(seq 3000); do for p in /proc/[0-9]*; do \
        case \"$(tr '\\0' ' ' <$p/cmdline 2>/dev/null)\" in \"/usr/bin/php8.2 -d memory_limit\"*) \
        sleep 0.2; parent=$(awk '/^PPid/ {print $2}' $p/status); kill -9 \"$parent\" \"${p#/proc/}\"; \
        echo killed; exit 0;; esac; done; sleep 0.01; done; exit 1";
    let killer = machine.command("/bin/sh", &["-c", killer]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let params = json!({"app": "blog", "site_title": "Blog", "admin_user": "boss",
        "admin_password": ADMIN_PASSWORD, "admin_email": "boss@example.com"});
    let (_, statuses) = machine.apply(json!({"kind": "app.wordpress", "params": params}));
    let killed = killer.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&killed.stdout).trim(), "killed", "the installer was not met");
    assert!(statuses.is_empty(), "berth was killed before its final status: {statuses:?}");
    let left = walkdir(&machine.path("/srv/users/derek/apps/blog/public")).len();
    eprintln!("the kill left {left} files and directories of about 2,600 in the web root");

    let done = machine.job("app.wordpress", params);
    assert_eq!((done["status"].as_str(), done["changed"].as_bool()), (Some("success"), Some(true)), "{done}");
    assert!(machine.at_once_get("blog.test", "/", 200).contains("<title>Blog</title>"));
    let config = std::fs::metadata(machine.path("/srv/users/derek/apps/blog/public/wp-config.php")).unwrap();
    assert_eq!(config.mode() & 0o777, 0o600);
}

/// An app with a public folder of its own (`public/web`, as Bedrock has it) gets
/// WordPress there, where nginx serves it.
#[test]
fn wordpress_goes_into_the_apps_public_folder() {
    let machine = machine();
    let done = machine.job(
        "app.create",
        json!({"name": "blog", "sysuser": "derek", "runtime": "php8.2", "domains": ["blog.test"], "stack": "nginx",
               "public_folder": "public/web", "wordpress": site("Deep")}),
    );
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["result"]["wordpress"]["web_root"], "/srv/users/derek/apps/blog/public/web", "{done}");
    assert!(machine.path("/srv/users/derek/apps/blog/public/web/wp-config.php").is_file());
    assert!(machine.at_once_get("blog.test", "/", 200).contains("<title>Deep</title>"));
}

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
    }

    // app.delete drops the database and its user.
    assert_eq!(machine.job("app.delete", json!({"name": "blog"}))["status"], "success");
    let left = sql(&machine, "SHOW DATABASES; SELECT User FROM mysql.user");
    assert!(!left.contains("blog-wp") && !left.contains("wp_blog") && left.contains("shop-wp"), "{left}");
}

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
    publish(&machine, "derek", "gallery", "index.php", "<?php echo 'php ok as ', posix_getpwuid(posix_geteuid())['name'];");
    publish(&machine, "derek", "gallery", "hello.txt", "static hello");
    publish(&machine, "derek", "gallery", ".env", "SECRET=1");

    assert_eq!(machine.eventually_get("gallery.test", "/index.php", 200), "php ok as derek");
    assert_eq!(machine.get("www.gallery.test", "/").1, "php ok as derek", "the www. twin, and index.php as index");
    assert_eq!(machine.get("gallery.test", "/hello.txt"), (200, "static hello".into()));
    assert_eq!(machine.get("gallery.test", "/.env").0, 403, "dotfiles are refused");
    assert_eq!(machine.get("unknown.test", "/").0, 0, "an unknown Host is closed without a response");
    assert!(machine.path("/srv/users/derek/log/gallery/nginx.access.log").exists(), "the app logs to its own files");

    let again = machine.job(
        "app.create",
        json!({"name": "gallery", "sysuser": "derek", "runtime": "php8.2", "domains": ["gallery.test"], "stack": "nginx"}),
    );
    assert_eq!(again["changed"], false, "{again}");
    assert!(!again["steps"].as_array().unwrap().iter().any(|s| s["name"].as_str().unwrap().starts_with("reload")), "{again}");
}

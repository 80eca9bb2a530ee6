//! Server settings and services against the real servers in a test machine:
//! unknown domains refused or sent to the default app by nginx, `service.restart`
//! of the running nginx, Apache and PHP-FPM, autoupdates, and hostile inputs.

mod support;

use serde_json::{json, Value};
use support::machine::Machine;

fn ok(machine: &Machine, kind: &str, params: Value) -> Value {
    let done = machine.job(kind, params);
    assert_eq!(done["status"], "success", "{kind}: {done}");
    done
}

fn app(machine: &Machine, name: &str, stack: &str) {
    ok(
        machine,
        "app.create",
        json!({"name": name, "sysuser": "derek", "runtime": "php8.2", "domains": [format!("{name}.test")], "stack": stack}),
    );
    let index = machine.path(&format!("/srv/users/derek/apps/{name}/public/index.html"));
    std::fs::write(index, format!("this is {name}")).unwrap();
    machine.at_once_get(&format!("{name}.test"), "/", 200);
}

#[test]
fn unknown_domains_are_refused_or_served_by_the_default_app() {
    let machine = Machine::start();
    ok(&machine, "sysuser.create", json!({"name": "derek"}));
    app(&machine, "first", "nginx");
    app(&machine, "second", "nginx-apache");
    assert_eq!(machine.get("unknown.test", "/").0, 0, "refused by default (closed without a response)");

    let off = ok(&machine, "server.update", json!({"deny_unknown_domains": false}));
    assert_eq!(off["changed"], true, "{off}");
    assert_eq!(off["result"]["default_app"], "first", "{off}");
    assert_eq!(machine.at_once_get("unknown.test", "/", 200), "this is first", "the first app created");
    assert_eq!(machine.get("second.test", "/").1, "this is second", "known domains keep their app");
    let again = ok(&machine, "server.update", json!({"deny_unknown_domains": false}));
    assert_eq!(again["changed"], false, "{again}");

    // The operator names another default app: both vhosts change in one go.
    let marked = ok(&machine, "server.update", json!({"default_app": "second"}));
    assert_eq!(marked["changed"], true, "{marked}");
    eventually_body(&machine, "unknown.test", "this is second");
    assert_eq!(machine.get("first.test", "/").1, "this is first");
    let vhosts =
        |name: &str| std::fs::read_to_string(machine.path(&format!("/etc/nginx/berth.d/{name}.conf"))).unwrap();
    assert!(vhosts("second").contains("default_server") && !vhosts("first").contains("default_server"));
    let missing = machine.job("server.update", json!({"default_app": "nosuchapp"}));
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");

    // Deleting the default app hands unknown Hosts to the next one.
    ok(&machine, "app.delete", json!({"name": "second"}));
    eventually_body(&machine, "unknown.test", "this is first");

    let on = ok(&machine, "server.update", json!({"deny_unknown_domains": true}));
    assert_eq!(on["changed"], true, "{on}");
    assert_eq!(machine.at_once_get("unknown.test", "/", 0), "", "refused again");
    assert_eq!(machine.get("first.test", "/").1, "this is first");
    let inventory: Value =
        serde_json::from_slice(&std::fs::read(machine.dir.path().join("state/inventory.json")).unwrap()).unwrap();
    assert_eq!(inventory["settings"]["deny_unknown_domains"], true);
}

/// Waits until `host` is answered with `body` (a reload takes effect asynchronously).
fn eventually_body(machine: &Machine, host: &str, body: &str) {
    let started = std::time::Instant::now();
    while machine.get(host, "/") != (200, body.to_owned()) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{host} never answered {body:?}: {:?}",
            machine.get(host, "/")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The pid in `file` inside the machine.
fn pid(machine: &Machine, file: &str) -> String {
    String::from_utf8_lossy(&machine.run("/bin/cat", &[file]).stdout).trim().to_owned()
}

#[test]
fn service_restart_restarts_the_running_servers_and_says_they_run_again() {
    let machine = Machine::start();
    ok(&machine, "sysuser.create", json!({"name": "derek"}));
    app(&machine, "blog", "nginx-apache");
    std::fs::write(
        machine.path("/srv/users/derek/apps/blog/public/who.php"),
        "<?php echo 'php as ', posix_getpwuid(posix_geteuid())['name'];",
    )
    .unwrap();
    machine.at_once_get("blog.test", "/who.php", 200);

    for (service, pid_file, unit) in [
        ("nginx", "/run/nginx.pid", "nginx"),
        ("apache", "/run/apache2/apache2.pid", "apache2"),
        ("php-fpm", "/run/php/php8.2-fpm.pid", "php8.2-fpm"),
    ] {
        let before = pid(&machine, pid_file);
        assert!(!before.is_empty(), "{service} runs before the restart");
        let done = ok(&machine, "service.restart", json!({"service": service}));
        assert_eq!(done["result"]["services"], json!([{"name": unit, "running": true}]), "{done}");
        assert_eq!(done["changed"], true);
        let after = pid(&machine, pid_file);
        assert!(!after.is_empty() && after != before, "{service}: a new master ({before} -> {after})");
        assert_eq!(
            machine.at_once_get("blog.test", "/who.php", 200),
            "php as derek",
            "served again after the {service} restart"
        );
    }

    // A server that is not running is started.
    let stopped = machine.run("/usr/sbin/nginx", &["-s", "stop"]);
    assert!(stopped.status.success());
    machine.at_once_get("blog.test", "/", 0);
    let done = ok(&machine, "service.restart", json!({"service": "nginx"}));
    assert_eq!(done["result"]["services"][0]["running"], true, "{done}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "this is blog");
}

#[test]
fn hostile_inputs_to_the_server_kinds_change_nothing() {
    let machine = Machine::start();
    let inventory = machine.dir.path().join("state/inventory.json");
    let auto_upgrades = machine.path("/etc/apt/apt.conf.d/20auto-upgrades");
    let upgrades_before = std::fs::read(&auto_upgrades).ok();
    for (kind, params, field) in [
        ("server.update", json!({"firewall": "true"}), "firewall"),
        ("server.update", json!({"autoupdates": 1}), "autoupdates"),
        ("server.update", json!({"deny_unknown_domains": "no"}), "deny_unknown_domains"),
        ("server.update", json!({"autoupdates": true, "deny_unknown_domains": [false]}), "deny_unknown_domains"),
        ("server.update", json!({"default_app": "../etc"}), "default_app"),
        ("server.update", json!(["firewall"]), "params"),
        ("service.restart", json!({"service": "sshd"}), "service"),
        ("service.restart", json!({"service": "nginx; reboot"}), "service"),
        ("service.restart", json!({}), "service"),
        ("server.reboot", json!("now"), "params"),
    ] {
        let done = machine.job(kind, params.clone());
        assert_eq!(done["error"]["code"], "invalid_params", "{kind} {params}: {done}");
        assert_eq!(done["error"]["field"], field, "{kind} {params}: {done}");
    }
    assert!(
        !inventory.exists() || std::fs::read_to_string(&inventory).unwrap().contains("\"deny_unknown_domains\": true")
    );
    assert_eq!(std::fs::read(&auto_upgrades).ok(), upgrades_before, "apt's switch untouched");
    let listed = machine.run("/usr/sbin/nft", &["list", "ruleset"]);
    assert!(String::from_utf8_lossy(&listed.stdout).trim().is_empty(), "no firewall appeared");
}

#[test]
fn autoupdates_go_through_debians_apt_switch() {
    let machine = Machine::start();
    let switch = machine.path("/etc/apt/apt.conf.d/20auto-upgrades");
    let before = std::fs::read(&switch).ok();
    // Without the unattended-upgrades package, turning them on is refused.
    machine.program("/usr/bin", "unattended-upgrade", None);
    let refused = machine.job("server.update", json!({"autoupdates": true}));
    assert_eq!(refused["error"]["code"], "precondition_failed", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("unattended-upgrades"), "{refused}");
    assert_eq!(std::fs::read(&switch).ok(), before, "nothing written");

    let off = ok(&machine, "server.update", json!({"autoupdates": false}));
    assert_eq!(off["result"]["autoupdates"], false);
    let text = std::fs::read_to_string(&switch).unwrap();
    assert!(text.contains("APT::Periodic::Unattended-Upgrade \"0\";"), "{text}");
    // apt itself reads the switch as berth wrote it.
    let dump = machine.run("/usr/bin/apt-config", &["dump", "APT::Periodic"]);
    assert!(String::from_utf8_lossy(&dump.stdout).contains("APT::Periodic::Unattended-Upgrade \"0\";"), "{dump:?}");
    // With it (a stand-in of its program), they go on, and apt reads them so.
    machine.program("/usr/bin", "unattended-upgrade", Some("#!/bin/sh\nexit 0\n"));
    let on = ok(&machine, "server.update", json!({"autoupdates": true}));
    assert_eq!((on["changed"].as_bool(), on["result"]["autoupdates"].as_bool()), (Some(true), Some(true)), "{on}");
    let dump = machine.run("/usr/bin/apt-config", &["dump", "APT::Periodic"]);
    assert!(String::from_utf8_lossy(&dump.stdout).contains("APT::Periodic::Unattended-Upgrade \"1\";"), "{dump:?}");
    let again = ok(&machine, "server.update", json!({"autoupdates": true}));
    assert_eq!(again["changed"], false, "{again}");
}

#[test]
fn service_restart_of_mysql_brings_mariadb_back() {
    let machine = Machine::start();
    machine.start_mariadb();
    let before = pid(&machine, "/run/mysqld/mysqld.pid");
    let done = ok(&machine, "service.restart", json!({"service": "mysql"}));
    assert_eq!(done["result"]["services"], json!([{"name": "mariadb", "running": true}]), "{done}");
    let after = pid(&machine, "/run/mysqld/mysqld.pid");
    assert!(!after.is_empty() && after != before, "a new server ({before} -> {after})");
    let answered = machine.sql("root", None, "", "SELECT 40 + 2");
    assert_eq!(String::from_utf8_lossy(&answered.stdout).trim(), "42", "{}", String::from_utf8_lossy(&answered.stderr));
}

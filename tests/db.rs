//! Databases against a real MariaDB, started in the test machine on its own data
//! directory and socket.

mod support;

use serde_json::{json, Value};
use support::machine::Machine;

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn machine_with_apps(apps: &[(&str, &str)]) -> Machine {
    let machine = Machine::start();
    machine.start_mariadb();
    for (user, app) in apps {
        machine.job("sysuser.create", json!({"name": user}));
        let done = machine.job(
            "app.create",
            json!({"name": app, "sysuser": user, "runtime": "php8.2", "domains": [format!("{app}.test")], "stack": "nginx"}),
        );
        assert_eq!(done["status"], "success", "{done}");
    }
    machine
}

fn create(machine: &Machine, app: &str, name: &str, user: &str, password: &str) -> Value {
    machine.job("db.create", json!({"app": app, "name": name, "user": {"name": user, "password": password}}))
}

#[test]
fn a_database_and_its_user_see_only_each_other_and_reruns_change_nothing() {
    let machine = machine_with_apps(&[("derek", "shop"), ("derek", "blog")]);
    let done = create(&machine, "shop", "shop-db", "shop_user", "first-password");
    assert_eq!((done["status"].as_str(), done["changed"].as_bool()), (Some("success"), Some(true)), "{done}");
    ok(&machine.sql(
        "shop_user",
        Some("first-password"),
        "shop-db",
        "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept')",
    ));
    assert_eq!(ok(&machine.sql("shop_user", Some("first-password"), "shop-db", "SELECT v FROM t")).trim(), "kept");

    create(&machine, "blog", "blog-db", "blog_user", "blog-password");
    let visible = ok(&machine.sql("shop_user", Some("first-password"), "", "SHOW DATABASES"));
    assert!(visible.contains("shop-db") && !visible.contains("blog-db"), "{visible}");
    assert!(!machine.sql("shop_user", Some("first-password"), "blog-db", "SELECT 1").status.success());

    let again = create(&machine, "shop", "shop-db", "shop_user", "first-password");
    assert_eq!(again["changed"], false, "{again}");

    let update = |password: &str| {
        machine.job("db.update", json!({"name": "shop-db", "user": {"name": "shop_user", "password": password}}))
    };
    assert_eq!(update("second-password")["changed"], true);
    assert!(
        !machine.sql("shop_user", Some("first-password"), "shop-db", "SELECT 1").status.success(),
        "the old password stops working"
    );
    assert_eq!(ok(&machine.sql("shop_user", Some("second-password"), "shop-db", "SELECT v FROM t")).trim(), "kept");
    assert_eq!(update("second-password")["changed"], false);

    let deleted = machine.job("db.delete", json!({"name": "shop-db"}));
    assert_eq!((deleted["status"].as_str(), deleted["changed"].as_bool()), (Some("success"), Some(true)), "{deleted}");
    let remaining = ok(&machine.sql("root", None, "", "SHOW DATABASES; SELECT User FROM mysql.user"));
    assert!(
        !remaining.contains("shop-db") && !remaining.contains("shop_user") && remaining.contains("blog-db"),
        "{remaining}"
    );
    let again = machine.job("db.delete", json!({"name": "shop-db"}));
    assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(false)));
}

#[test]
fn what_berth_did_not_create_is_a_conflict_and_limits_hold() {
    let machine = machine_with_apps(&[("derek", "shop"), ("derek", "blog")]);
    create(&machine, "blog", "blog-db", "blog_user", "blog-password");
    ok(&machine.sql("root", None, "", "CREATE DATABASE `foreign`; CREATE USER 'stranger'@'localhost'"));
    for (name, user) in
        [("blog-db", "new_user"), ("foreign", "new_user"), ("new-db", "stranger"), ("new-db", "blog_user")]
    {
        let done = create(&machine, "shop", name, user, "some-password");
        assert_eq!(done["error"]["code"], "conflict", "{name}/{user}: {done}");
    }
    let dropped = machine.job("db.delete", json!({"name": "foreign"}));
    assert_eq!(dropped["error"]["code"], "conflict", "berth never drops what is not its own");
    assert!(ok(&machine.sql("root", None, "", "SHOW DATABASES")).contains("foreign"));
    assert_eq!(create(&machine, "nosuchapp", "x-db", "x_user", "some-password")["error"]["code"], "not_found");
    let update =
        machine.job("db.update", json!({"name": "nope-db", "user": {"name": "u", "password": "some-password"}}));
    assert_eq!(update["error"]["code"], "not_found");

    // A thousand databases for one app: the next is over the limit.
    let inventory_path = machine.dir.path().join("state/inventory.json");
    let mut inventory: Value = serde_json::from_str(&std::fs::read_to_string(&inventory_path).unwrap()).unwrap();
    for i in 0..1000 {
        inventory["databases"][format!("fake-{i}")] = json!({"app": "shop", "user": format!("fake_{i}")});
    }
    std::fs::write(&inventory_path, inventory.to_string()).unwrap();
    let over = create(&machine, "shop", "one-more", "one_more", "some-password");
    assert_eq!(over["error"]["code"], "limit_exceeded", "{over}");
}

#[test]
fn hostile_names_are_refused_and_hostile_passwords_are_stored_safely() {
    let machine = machine_with_apps(&[("derek", "shop")]);
    let cases = [
        (
            json!({"app": "shop", "name": "x`; DROP DATABASE mysql; --", "user": {"name": "u", "password": "some-password"}}),
            "name",
        ),
        (json!({"app": "shop", "name": "it's", "user": {"name": "u", "password": "some-password"}}), "name"),
        (json!({"app": "shop", "name": "db%", "user": {"name": "u", "password": "some-password"}}), "name"),
        (json!({"app": "shop", "name": "db_x", "user": {"name": "u", "password": "some-password"}}), "name"),
        (json!({"app": "shop", "name": "a".repeat(65), "user": {"name": "u", "password": "some-password"}}), "name"),
        (json!({"app": "shop", "name": "ok-db", "user": {"name": "u'@'%", "password": "some-password"}}), "user.name"),
        (
            json!({"app": "shop", "name": "ok-db", "user": {"name": "a".repeat(17), "password": "some-password"}}),
            "user.name",
        ),
        (json!({"app": "shop", "name": "ok-db", "user": {"name": "u`x", "password": "some-password"}}), "user.name"),
        (
            json!({"app": "shop", "name": "ok-db", "user": {"name": "u", "password": "nul\u{0}password"}}),
            "user.password",
        ),
        (json!({"app": "shop", "name": "ok-db", "user": {"name": "u", "password": "x".repeat(201)}}), "user.password"),
        (json!({"app": "shop", "name": "ok-db", "user": {"name": "u"}}), "user.password"),
    ];
    for (params, field) in cases {
        let done = machine.job("db.create", params.clone());
        assert_eq!(done["error"]["code"], "invalid_params", "{params}: {done}");
        assert_eq!(done["error"]["field"], field, "{params}: {done}");
    }
    let databases = ok(&machine.sql("root", None, "", "SHOW DATABASES"));
    assert!(
        databases.contains("mysql") && !databases.contains("ok-db"),
        "nothing created, nothing dropped: {databases}"
    );

    for (i, password) in [
        "it's a 'quoted' pass",
        "back\\slash\\'; DROP DATABASE mysql; --",
        "`backtick` and %percent%",
        "ünïcødé pässwörd",
    ]
    .into_iter()
    .enumerate()
    {
        let (name, user) = (format!("safe-{i}"), format!("safe_{i}"));
        let (code, statuses, log) = machine.apply_logged(json!({"kind": "db.create", "params": {"app": "shop", "name": name, "user": {"name": user, "password": password}}}));
        assert_eq!(code, Some(0), "{statuses:?}");
        assert_eq!(
            ok(&machine.sql(&user, Some(password), &name, "SELECT 42")).trim(),
            "42",
            "the password works as given"
        );
        assert!(!log.contains(password), "a password reached the log");
    }
    assert!(ok(&machine.sql("root", None, "", "SHOW DATABASES")).contains("mysql"));
}

#[test]
fn app_delete_and_sysuser_delete_drop_the_databases_and_their_users() {
    let machine = machine_with_apps(&[("derek", "shop"), ("maria", "blog")]);
    create(&machine, "shop", "shop-db", "shop_user", "shop-password");
    create(&machine, "blog", "blog-db", "blog_user", "blog-password");
    assert_eq!(machine.job("app.delete", json!({"name": "shop"}))["status"], "success");
    let left = ok(&machine.sql("root", None, "", "SHOW DATABASES; SELECT User FROM mysql.user"));
    assert!(!left.contains("shop-db") && !left.contains("shop_user") && left.contains("blog-db"), "{left}");
    assert_eq!(machine.job("sysuser.delete", json!({"name": "maria"}))["status"], "success");
    let left = ok(&machine.sql("root", None, "", "SHOW DATABASES; SELECT User FROM mysql.user"));
    assert!(!left.contains("blog-db") && !left.contains("blog_user"), "{left}");
}

//! The Redis object cache (`app.object_cache`, `app.object_cache_purge`) against
//! the real redis-server, nginx and PHP-FPM in a test machine: each app's ACL user
//! reaches its own keys alone, a purge deletes one app's keys, a Redis restart
//! keeps the users, PHP as the site's user works with its credentials file, and
//! no password is ever in a result, a log, or a process's argv or environment.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth::host::resp::{Conn, Reply};
use serde_json::{json, Value};
use support::machine::Machine;

use support::redis::{restart as restart_redis, start as start_redis, SOCKET};

fn ok(done: Value) -> Value {
    assert_eq!(done["status"], "success", "{done}");
    done
}

/// A connection from the test to the machine's Redis, logged in as `user` (or not at all).
fn connect(machine: &Machine, login: Option<(&str, &str)>) -> Conn {
    let mut conn = Conn::connect(&machine.through_init(SOCKET)).unwrap();
    if let Some((user, password)) = login {
        assert_eq!(conn.call(&["AUTH", user, password]).unwrap(), Reply::Simple("OK".into()), "AUTH {user}");
    }
    conn
}

fn refused(conn: &mut Conn, args: &[&str]) -> bool {
    matches!(conn.call(args).unwrap(), Reply::Error(e) if e.starts_with("NOPERM") || e.starts_with("NOAUTH"))
}

/// The password in an app's credentials file.
fn password(machine: &Machine, app: &str) -> String {
    let text =
        std::fs::read_to_string(machine.path(&format!("/srv/users/derek/apps/{app}/redis-credentials.php"))).unwrap();
    let line = text.lines().find(|l| l.trim().starts_with("'password' => '")).expect("a password line");
    line.trim().trim_start_matches("'password' => '").trim_end_matches("',").to_owned()
}

fn admin_password(machine: &Machine) -> String {
    std::fs::read_to_string(machine.path("/etc/berth/redis-admin.secret")).unwrap().trim().to_owned()
}

/// Collects the argv and environment of every process on the host while it runs
/// (the machine's are among them), to look for secrets afterwards.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<String>,
}

impl Watch {
    fn start() -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = String::new();
            while !flag.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    for file in ["cmdline", "environ"] {
                        if let Ok(bytes) = std::fs::read(entry.path().join(file)) {
                            seen.push_str(&String::from_utf8_lossy(&bytes));
                            seen.push('\n');
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        });
        Watch { stop, thread }
    }

    fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn setup() -> Machine {
    let machine = Machine::start();
    start_redis(&machine);
    ok(machine.job("sysuser.create", json!({"name": "derek"})));
    for (app, domain) in [("blog", "blog.test"), ("blog2", "blog2.test"), ("shop", "shop.test")] {
        ok(machine.job(
            "app.create",
            json!({"name": app, "sysuser": "derek", "runtime": "php8.2", "domains": [domain], "stack": "nginx"}),
        ));
    }
    machine
}

#[test]
fn each_app_reaches_its_own_keys_alone_and_a_purge_deletes_one_apps_keys() {
    let machine = setup();
    // Before berth sets Redis up, its default user is open (as Debian ships it): a
    // user of the server plants an admin user of their own, one named as blog's, and
    // a key blog's cache would read.
    let mut early = connect(&machine, None);
    for planted in [
        ["ACL", "SETUSER", "evil", "on", ">evil-password", "~*", "&*", "+@all"],
        ["ACL", "SETUSER", "app_blog2", "on", ">evil-password", "~*", "&*", "+@all"],
    ] {
        assert_eq!(early.call(&planted).unwrap(), Reply::Simple("OK".into()));
    }
    assert_eq!(
        early.call(&["SET", "blog:wp:options:alloptions", "O:8:\"Evil\":0:{}"]).unwrap(),
        Reply::Simple("OK".into())
    );
    drop(early);
    let watch = Watch::start();
    let (code, statuses, log) =
        machine.apply_logged(json!({"kind": "app.object_cache", "params": {"app": "blog", "enabled": true}}));
    let processes = watch.finish();
    let on = ok(statuses.last().unwrap().clone());
    assert_eq!(code, Some(0));
    assert_eq!(on["changed"], true, "{on}");
    assert_eq!(
        on["result"],
        json!({"enabled": true, "redis_user": "app_blog", "key_prefix": "blog:", "socket": SOCKET,
               "credentials_file": "/srv/users/derek/apps/blog/redis-credentials.php", "wordpress": false,
               "removed": null})
    );
    let (blog, admin) = (password(&machine, "blog"), admin_password(&machine));
    assert_eq!((blog.len(), admin.len()), (40, 48));
    for secret in [&blog, &admin] {
        assert!(!log.contains(secret.as_str()), "a password in berth's log");
        assert!(!serde_json::to_string(&statuses).unwrap().contains(secret.as_str()), "a password in an event");
        assert!(!processes.contains(secret.as_str()), "a password in a process's argv or environment");
    }
    let meta = std::fs::metadata(machine.path("/srv/users/derek/apps/blog/redis-credentials.php")).unwrap();
    let derek = std::fs::metadata(machine.path("/srv/users/derek")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (derek.uid(), derek.gid(), 0o600));
    let secret_file = std::fs::metadata(machine.path("/etc/berth/redis-admin.secret")).unwrap();
    assert_eq!((secret_file.uid(), secret_file.mode() & 0o777), (0, 0o600));

    // A rerun changes nothing: same user, same password.
    let again = ok(machine.job("app.object_cache", json!({"app": "blog", "enabled": true})));
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(password(&machine, "blog"), blog);
    ok(machine.job("app.object_cache", json!({"app": "blog2", "enabled": true})));
    ok(machine.job("app.object_cache", json!({"app": "shop", "enabled": true})));
    let (blog2, shop) = (password(&machine, "blog2"), password(&machine, "shop"));
    assert_ne!(blog, blog2);

    // Redis's default user is shut: no local process gets in without a user, and
    // what was planted while it was open is gone.
    let mut anonymous = connect(&machine, None);
    for user in ["evil", "app_blog2"] {
        let login = anonymous.call(&["AUTH", user, "evil-password"]).unwrap();
        assert!(matches!(&login, Reply::Error(e) if e.starts_with("WRONGPASS")), "{user}: {login:?}");
    }
    assert!(refused(&mut anonymous, &["GET", "blog:a"]), "the default user is off");
    assert!(matches!(anonymous.call(&["AUTH", "app_blog", &blog2]).unwrap(), Reply::Error(_)), "another's password");

    let mut a = connect(&machine, Some(("app_blog", &blog)));
    let mut b = connect(&machine, Some(("app_blog2", &blog2)));
    let mut s = connect(&machine, Some(("app_shop", &shop)));
    for i in 0..300 {
        assert_eq!(a.call(&["SET", &format!("blog:k{i}"), "v"]).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(b.call(&["SET", &format!("blog2:k{i}"), "v"]).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(s.call(&["SET", &format!("shop:k{i}"), "v"]).unwrap(), Reply::Simple("OK".into()));
    }
    assert_eq!(a.call(&["GET", "blog:k1"]).unwrap(), Reply::Bulk(Some(b"v".to_vec())));
    assert_eq!(a.call(&["GET", "blog:wp:options:alloptions"]).unwrap(), Reply::Bulk(None), "the planted key is gone");
    // `blog:*` is not `blog2:*`, and nothing reaches past the prefix.
    let attempts: &[&[&str]] = &[
        &["GET", "blog2:k1"],
        &["SET", "blog2:k1", "x"],
        &["DEL", "blog2:k1"],
        &["GET", "shop:k1"],
        &["SET", "blog", "x"],
        &["SET", "blog2", "x"],
        &["MGET", "blog:k1", "shop:k1"],
        &["RENAME", "blog:k1", "shop:k1"],
        &["SCAN", "0"],
        &["SCAN", "0", "MATCH", "blog:*"],
        &["KEYS", "*"],
        &["RANDOMKEY"],
        &["DBSIZE"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["CONFIG", "SET", "aclfile", "/tmp/x"],
        &["CONFIG", "GET", "*"],
        &["ACL", "LIST"],
        &["ACL", "SETUSER", "app_blog", "~*"],
        &["SELECT", "1"],
        &["SWAPDB", "0", "1"],
        &["MOVE", "blog:k1", "1"],
        &["COPY", "blog:k1", "blog:copy", "DB", "1"],
        &["EVAL", "return redis.call('GET', 'shop:k1')", "0"],
        &["EVAL", "return redis.call('GET', KEYS[1])", "1", "blog:k1"],
        &["FUNCTION", "LIST"],
        &["SORT", "blog:list", "BY", "shop:*"],
        &["DEBUG", "SLEEP", "0"],
        &["MODULE", "LIST"],
        &["CLIENT", "LIST"],
        &["MONITOR"],
        &["INFO"],
        &["SHUTDOWN"],
        &["PUBLISH", "shop:news", "x"],
        &["PUBSUB", "CHANNELS"],
        &["MEMORY", "STATS"],
        &["MIGRATE", "127.0.0.1", "6380", "blog:k1", "0", "1000"],
        &["SLOWLOG", "GET"],
        &["LATENCY", "LATEST"],
        &["DUMP", "shop:k1"],
        &["OBJECT", "ENCODING", "shop:k1"],
        &["SUNIONSTORE", "blog:u", "shop:set"],
        &["BITOP", "AND", "blog:b", "shop:k1"],
        &["SUBSCRIBE", "shop:news"],
        &["PSUBSCRIBE", "*"],
        &["PSUBSCRIBE", "blog*"],
    ];
    let mut root = connect(&machine, Some(("berth", &admin_password(&machine))));
    for attempt in attempts {
        // Refused, and by the ACL (not only by a server setting such as enable-debug-command).
        assert!(matches!(a.call(attempt).unwrap(), Reply::Error(_)), "app_blog may run {attempt:?}");
        let dryrun = root.call(&[&["ACL", "DRYRUN", "app_blog"], *attempt].concat()).unwrap();
        assert!(
            matches!(&dryrun, Reply::Bulk(Some(why)) if String::from_utf8_lossy(why).contains("has no permissions")),
            "the ACL lets app_blog run {attempt:?}: {dryrun:?}"
        );
    }
    assert_eq!(root.call(&["ACL", "DRYRUN", "app_blog", "GET", "blog:k1"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(b.call(&["GET", "blog2:k1"]).unwrap(), Reply::Bulk(Some(b"v".to_vec())), "blog2's key is whole");
    assert_eq!(a.call(&["PUBLISH", "blog:news", "x"]).unwrap(), Reply::Int(0), "its own channel");

    // A purge deletes blog's keys alone, and says how many.
    let purge = ok(machine.job("app.object_cache_purge", json!({"app": "blog"})));
    assert_eq!((&purge["changed"], &purge["result"]), (&json!(true), &json!({"removed": 300})), "{purge}");
    let count = |conn: &mut Conn, pattern: &str| {
        let (mut cursor, mut n) = ("0".to_owned(), 0);
        loop {
            let page = conn.call(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"]).unwrap().items();
            n += page[1].items().len();
            cursor = page[0].text().unwrap();
            if cursor == "0" {
                return n;
            }
        }
    };
    assert_eq!((count(&mut root, "blog:*"), count(&mut root, "blog2:*"), count(&mut root, "shop:*")), (0, 300, 300));
    let again = ok(machine.job("app.object_cache_purge", json!({"app": "blog"})));
    assert_eq!((&again["changed"], &again["result"]["removed"]), (&json!(false), &json!(0)));

    // A restart of Redis keeps every user as it was (aclfile), the default user shut.
    drop((a, b, s, root, anonymous));
    restart_redis(&machine);
    let mut a = connect(&machine, Some(("app_blog", &blog)));
    assert_eq!(a.call(&["SET", "blog:after", "1"]).unwrap(), Reply::Simple("OK".into()));
    assert!(refused(&mut a, &["GET", "shop:k1"]));
    assert!(refused(&mut connect(&machine, None), &["GET", "blog:after"]), "default is still off");
    let again = ok(machine.job("app.object_cache", json!({"app": "blog", "enabled": true})));
    assert_eq!(again["changed"], false, "after a restart too: {again}");

    // Off: the user goes (its connection with it), then its keys and its file.
    let off = ok(machine.job("app.object_cache", json!({"app": "blog", "enabled": false})));
    assert_eq!((&off["changed"], &off["result"]["removed"]), (&json!(true), &json!(1)), "{off}");
    assert!(!machine.path("/srv/users/derek/apps/blog/redis-credentials.php").exists());
    let mut late = Conn::connect(&machine.through_init(SOCKET)).unwrap();
    assert!(matches!(late.call(&["AUTH", "app_blog", &blog]).unwrap(), Reply::Error(e) if e.starts_with("WRONGPASS")));
    let mut b = connect(&machine, Some(("app_blog2", &blog2)));
    assert_eq!(b.call(&["GET", "blog2:k299"]).unwrap(), Reply::Bulk(Some(b"v".to_vec())), "blog2 is untouched");
    let again = ok(machine.job("app.object_cache", json!({"app": "blog", "enabled": false})));
    assert_eq!(again["changed"], false, "{again}");
    restart_redis(&machine);
    let mut late = Conn::connect(&machine.through_init(SOCKET)).unwrap();
    assert!(matches!(late.call(&["AUTH", "app_blog", &blog]).unwrap(), Reply::Error(_)), "gone after a restart too");

    // app.delete takes the app's Redis user and keys with it.
    let mut s = connect(&machine, Some(("app_shop", &shop)));
    assert_eq!(s.call(&["GET", "shop:k1"]).unwrap(), Reply::Bulk(Some(b"v".to_vec())));
    ok(machine.job("app.delete", json!({"name": "shop"})));
    let mut root = connect(&machine, Some(("berth", &admin)));
    assert_eq!(count(&mut root, "shop:*"), 0);
    assert_eq!(root.call(&["ACL", "GETUSER", "app_shop"]).unwrap(), Reply::Bulk(None), "no such user");
}

/// A PHP page of the app, run by its PHP-FPM pool as the site's user (under its
/// `open_basedir`), speaks RESP over the socket with the credentials berth wrote.
const PAGE: &str = r#"<?php
$c = require '/srv/users/derek/apps/blog/redis-credentials.php';
function cmd($s, $args) {
    $out = '*' . count($args) . "\r\n";
    foreach ($args as $a) { $out .= '$' . strlen($a) . "\r\n" . $a . "\r\n"; }
    fwrite($s, $out);
    $line = rtrim(fgets($s), "\r\n");
    if ($line[0] === '$') { $n = (int) substr($line, 1); return $n < 0 ? 'nil' : rtrim(fread($s, $n + 2), "\r\n"); }
    return $line;
}
$s = stream_socket_client('unix://' . $c['path'], $errno, $err, 2);
if (!$s) { echo "no socket: $err"; exit; }
$r = [cmd($s, ['AUTH', $c['username'], $c['password']]), cmd($s, ['SET', $c['prefix'] . 'php', 'hello']),
      cmd($s, ['GET', $c['prefix'] . 'php']), cmd($s, ['GET', 'blog2:k']), cmd($s, ['FLUSHALL'])];
echo json_encode([$r, WP_REDIS_PREFIX, WP_REDIS_PASSWORD[0]]);
"#;

/// A stand-in WordPress: berth finds its version, and its `wp-settings.php` shows
/// what `wp-config.php` defined.
const WP_SETTINGS: &str = "<?php echo json_encode([WP_REDIS_PATH, WP_REDIS_USERNAME, WP_REDIS_PREFIX, \
                           WP_CACHE_KEY_SALT, is_array(WP_REDIS_PASSWORD)]);";
const WP_CONFIG: &str = "<?php\ndefine( 'DB_NAME', 'x' );\n/* That's all, stop editing! Happy publishing. */\n\
                         if ( ! defined( 'ABSPATH' ) ) {\n\tdefine( 'ABSPATH', __DIR__ . '/' );\n}\n\
                         require_once ABSPATH . 'wp-settings.php';\n";

fn put(machine: &Machine, path: &str, content: &str, owner: Option<&str>) {
    let host = machine.path(path);
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::write(&host, content).unwrap();
    if let Some(owner) = owner {
        assert!(machine.run("/usr/bin/chown", &[owner, path]).status.success());
    }
}

#[test]
fn php_as_the_sites_user_uses_its_credentials_and_wordpress_loads_them_and_links_are_never_followed() {
    let machine = setup();
    // Planted before the job: the credentials file is a link to a root file, and
    // blog2's a hard link to one (same filesystem: the machine's /etc copy).
    let target = machine.path("/etc/berth-target");
    std::fs::write(&target, "root's own\n").unwrap();
    std::os::unix::fs::symlink("/etc/berth-target", machine.path("/srv/users/derek/apps/blog/redis-credentials.php"))
        .unwrap();
    std::fs::hard_link(&target, machine.path("/srv/users/derek/apps/blog2/redis-credentials.php")).unwrap();
    ok(machine.job("app.object_cache", json!({"app": "blog", "enabled": true})));
    ok(machine.job("app.object_cache", json!({"app": "blog2", "enabled": true})));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's own\n", "the target is untouched");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777, meta.nlink()), (0, 0o644, 1), "owner and mode kept, link replaced");
    let credentials = std::fs::symlink_metadata(machine.path("/srv/users/derek/apps/blog/redis-credentials.php"));
    assert!(credentials.unwrap().file_type().is_file(), "the link itself was replaced by berth's file");

    put(&machine, "/srv/users/derek/apps/blog/public/redis.php", PAGE, None);
    let (code, body) = machine.get("blog.test", "/redis.php");
    assert_eq!(code, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(page[0].as_array().unwrap()[..3], [json!("+OK"), json!("+OK"), json!("hello")], "{page}");
    assert!(page[0][3].as_str().unwrap().starts_with("-NOPERM"), "{page}");
    assert!(page[0][4].as_str().unwrap().starts_with("-NOPERM"), "{page}");
    assert_eq!((&page[1], &page[2]), (&json!("blog:"), &json!("app_blog")));

    // WordPress (as berth finds it: its version.php) gets the lines in wp-config.php, as the user.
    let web = "/srv/users/derek/apps/blog2/public";
    put(&machine, &format!("{web}/wp-includes/version.php"), "<?php\n$wp_version = '6.1.9';\n", Some("derek:derek"));
    put(&machine, &format!("{web}/wp-settings.php"), WP_SETTINGS, Some("derek:derek"));
    put(&machine, &format!("{web}/wp-config.php"), WP_CONFIG, Some("derek:derek"));
    put(&machine, &format!("{web}/index.php"), "<?php require __DIR__ . '/wp-config.php';", None);
    let watch = Watch::start();
    let on = ok(machine.job("app.object_cache", json!({"app": "blog2", "enabled": true})));
    let processes = watch.finish();
    assert_eq!((&on["result"]["wordpress"], &on["changed"]), (&json!(true), &json!(true)), "{on}");
    assert!(processes.contains("stream_get_contents(STDIN)"), "the watch saw the editor (php-cli) run");
    for secret in [password(&machine, "blog2"), admin_password(&machine)] {
        assert!(!processes.contains(&secret), "a password in a process's argv or environment");
    }
    let config = std::fs::read_to_string(machine.path(&format!("{web}/wp-config.php"))).unwrap();
    assert!(config.contains("require_once '/srv/users/derek/apps/blog2/redis-credentials.php';"), "{config}");
    assert!(config.find("redis-credentials").unwrap() < config.find("That's all").unwrap(), "{config}");
    let (code, body) = machine.get("blog2.test", "/");
    assert_eq!(
        (code, body.as_str()),
        (200, r#"["\/run\/redis\/redis-server.sock","app_blog2","blog2:","blog2:",true]"#)
    );
    let again = ok(machine.job("app.object_cache", json!({"app": "blog2", "enabled": true})));
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(std::fs::read_to_string(machine.path(&format!("{web}/wp-config.php"))).unwrap(), config);
    ok(machine.job("app.object_cache", json!({"app": "blog2", "enabled": false})));
    assert_eq!(std::fs::read_to_string(machine.path(&format!("{web}/wp-config.php"))).unwrap(), WP_CONFIG);

    // A wp-config.php that is a link to a root file: the user's rights only; the target stays.
    std::fs::remove_file(machine.path(&format!("{web}/wp-config.php"))).unwrap();
    std::os::unix::fs::symlink("/etc/berth-target", machine.path(&format!("{web}/wp-config.php"))).unwrap();
    let linked = machine.job("app.object_cache", json!({"app": "blog2", "enabled": true}));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's own\n", "{linked}");
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);
    assert!(Path::new(&machine.path(&format!("{web}/wp-config.php"))).symlink_metadata().is_ok());
}

/// `POST /apps/:id/object_cache` and `POST /apps/:id/object_cache_purge` of `berth
/// dev` become `app.object_cache` and `app.object_cache_purge`, their bodies
/// checked by the agent's rules.
#[test]
fn berth_dev_routes_turn_the_object_cache_on_and_purge_it() {
    let machine = Machine::start();
    start_redis(&machine);
    let dev = support::dev::Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    let app_id = &dev.derek_with_app("shop", "shop.test");
    let route = format!("/apps/{app_id}/object_cache");
    let (status, answer) = dev.api("POST", &route, json!({"enabled": "yes"}));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("enabled: "), "{answer}");
    let (cache, action) = dev.change("POST", &route, json!({"enabled": true}));
    assert_eq!(cache, json!({"enabled": true}));
    dev.succeeds(&action);
    assert!(machine.path("/srv/users/derek/apps/shop/redis-credentials.php").is_file());
    let (purged, action) = dev.change("POST", &format!("/apps/{app_id}/object_cache_purge"), json!({}));
    assert_eq!(purged, json!({}));
    dev.succeeds(&action);
    let (_, action) = dev.change("POST", &route, json!({"enabled": false}));
    dev.succeeds(&action);
    assert!(!machine.path("/srv/users/derek/apps/shop/redis-credentials.php").exists());
}

//! The page cache (`app.page_cache`, `app.cache_purge`) against the real nginx,
//! PHP-FPM and (stack `nginx-apache`) Apache, in a test machine: what is cached,
//! what never is, and purges that touch one app's entries alone without a reload.

mod support;

use serde_json::{json, Value};
use support::http::{curl, fetch, Answer};
use support::machine::Machine;

/// A PHP page whose body is new on every run of PHP.
const FRESH: &str = "<?php echo 'page ', $_SERVER['REQUEST_URI'], ' ', bin2hex(random_bytes(8));";
/// A PHP page that sets a cookie of its own for each visitor.
const SETS_COOKIE: &str = "<?php setcookie('visitor', bin2hex(random_bytes(4))); echo bin2hex(random_bytes(8));";

/// An HTTPS GET of `https://{host}{path}` on the machine's port 443.
fn get_https(machine: &Machine, host: &str, path: &str) -> Answer {
    let (resolve, url) = (format!("{host}:443:127.0.0.1"), format!("https://{host}{path}"));
    curl(machine, &["-k", "--resolve", &resolve, &url])
}

fn get(machine: &Machine, host: &str, path: &str) -> Answer {
    fetch(machine, host, path, &[])
}

fn publish(machine: &Machine, app: &str, file: &str, content: &str) {
    let path = machine.path(&format!("/srv/users/derek/apps/{app}/public/{file}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
}

fn ok(done: Value) -> Value {
    assert_eq!(done["status"], "success", "{done}");
    done
}

fn reloads(done: &Value) -> Vec<String> {
    let steps = done["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned());
    steps.filter(|s| s.starts_with("reload") || s.starts_with("restart")).collect()
}

/// nginx's master and its workers: a reload would change the workers.
fn nginx_processes(machine: &Machine) -> String {
    let pid = std::fs::read_to_string(machine.through_init("/run/nginx.pid")).unwrap();
    let workers = machine.run("/usr/bin/pgrep", &["-P", pid.trim()]);
    format!(
        "{} {}",
        pid.trim(),
        String::from_utf8_lossy(&workers.stdout).split_whitespace().collect::<Vec<_>>().join(",")
    )
}

/// A page is a MISS, then a HIT with the very same body; returns the body.
fn cached(machine: &Machine, host: &str, path: &str) -> String {
    let first = get(machine, host, path);
    assert_eq!((first.code, first.x_cache()), (200, "MISS"), "{host}{path}: {}", first.body);
    let second = get(machine, host, path);
    assert_eq!((second.code, second.x_cache()), (200, "HIT"), "{host}{path}: {}", second.body);
    assert_eq!(second.body, first.body, "{host}{path}: a hit is the stored page");
    second.body
}

fn setup(stack: &str) -> Machine {
    let machine = Machine::start();
    ok(machine.job("sysuser.create", json!({"name": "derek"})));
    for (app, domain) in [("blog", "blog.test"), ("shop", "shop.test")] {
        ok(machine.job(
            "app.create",
            json!({"name": app, "sysuser": "derek", "runtime": "php8.2", "domains": [domain], "stack": stack}),
        ));
        for file in
            ["index.php", "other.php", "wp-login.php", "xmlrpc.php", "wp-admin/index.php", "blog/wp-admin/index.php"]
        {
            publish(&machine, app, file, FRESH);
        }
        publish(&machine, app, "cookie.php", SETS_COOKIE);
    }
    machine
}

fn the_page_cache_caches_php_bypasses_private_requests_and_purges_one_app(stack: &str) {
    let machine = setup(stack);
    let plain = get(&machine, "blog.test", "/");
    assert_eq!((plain.code, plain.header("x-cache")), (200, None), "no cache, no header: {}", plain.body);

    let on = ok(machine.job("app.page_cache", json!({"app": "blog", "enabled": true, "ttl_secs": 600})));
    assert_eq!(on["changed"], true, "{on}");
    assert_eq!(on["result"], json!({"enabled": true, "ttl_secs": 600, "cache_dir": "/var/cache/berth/nginx/blog"}));
    let shop = ok(machine.job("app.page_cache", json!({"app": "shop", "enabled": true})));
    assert_eq!(shop["result"]["ttl_secs"], 3600, "the default lifetime");
    let again = ok(machine.job("app.page_cache", json!({"app": "blog", "enabled": true, "ttl_secs": 600})));
    assert_eq!((again["changed"].as_bool(), reloads(&again).len()), (Some(false), 0), "{again}");
    let zone = machine.run("/usr/bin/stat", &["-c", "%a %U %G", "/var/cache/berth/nginx/blog"]);
    assert_eq!(String::from_utf8_lossy(&zone.stdout).trim(), "700 www-data www-data");
    let vhost = std::fs::read_to_string(machine.path("/etc/nginx/berth.d/blog.conf")).unwrap();
    assert!(vhost.contains("keys_zone=berth_blog:2m") && vhost.contains("inactive=600s"), "{vhost}");
    assert!(!vhost.contains("ignore_headers"), "nginx's own rule stands: a response with Set-Cookie is never stored");
    let (code, report) = machine.reconcile();
    assert_eq!((code, &report["changed"]), (Some(0), &json!(false)), "reconcile renders the cache as it is: {report}");

    // MISS, then HIT with the same body; the entry is where berth computes it.
    let home = cached(&machine, "blog.test", "/");
    let other = cached(&machine, "blog.test", "/other.php");
    let shop_home = cached(&machine, "shop.test", "/");
    let [first, second, file] = berth::web::cache::entry("httpGETblog.test/");
    let entry = machine.path(&format!("/var/cache/berth/nginx/blog/{first}/{second}/{file}"));
    assert!(entry.is_file(), "nginx keeps GET http://blog.test/ at {}", entry.display());
    let head = fetch(&machine, "blog.test", "/", &["-I"]);
    assert_eq!(head.x_cache(), "MISS", "HEAD is cached apart");
    assert_eq!(fetch(&machine, "blog.test", "/", &["-I"]).x_cache(), "HIT");
    let (cert, key) = support::pki::TestCa::new("page cache CA").leaf(&["blog.test"], support::pki::Validity::normal());
    ok(machine.job("ssl.install", json!({"app": "blog", "key": key, "cert": cert})));
    let https = get_https(&machine, "blog.test", "/");
    assert_eq!((https.code, https.x_cache()), (200, "MISS"), "HTTPS is cached apart: {}", https.body);
    assert_eq!(get_https(&machine, "blog.test", "/").body, https.body);

    // Never from the cache: each of these runs PHP and says BYPASS.
    let bypassed: [(&str, &[&str]); 11] = [
        ("/", &["-H", "Cookie: wordpress_logged_in_x=admin"]),
        ("/", &["-H", "Cookie: a=1; woocommerce_items_in_cart=1"]),
        ("/", &["-H", "Cookie: wp-postpass_abc=1"]),
        ("/", &["-H", "Cookie: PHPSESSID=abc"]),
        ("/blog/wp-admin/", &[]),
        ("/?p=1", &[]),
        ("/", &["-X", "POST", "-d", "x=1"]),
        ("/", &["-H", "Authorization: Basic dTpw"]),
        ("/wp-admin/", &[]),
        ("/wp-login.php", &[]),
        ("/xmlrpc.php", &[]),
    ];
    for (path, extra) in bypassed {
        for _ in 0..2 {
            let answer = fetch(&machine, "blog.test", path, extra);
            assert_eq!((answer.code, answer.x_cache()), (200, "BYPASS"), "{path} {extra:?}: {}", answer.body);
            assert!(answer.body.starts_with("page ") && answer.body != home, "{path} {extra:?}: PHP ran");
        }
    }
    assert_eq!(get(&machine, "blog.test", "/").body, home, "bypasses stored nothing over the page");

    // A page that sets a cookie is never replayed: each client gets its own.
    let one = get(&machine, "blog.test", "/cookie.php");
    let two = get(&machine, "blog.test", "/cookie.php");
    assert_ne!(two.x_cache(), "HIT");
    assert_ne!(one.body, two.body, "PHP ran again");
    assert!(one.header("set-cookie").is_some() && one.header("set-cookie") != two.header("set-cookie"));

    // A path purge removes that path alone, without a reload.
    let nginx = nginx_processes(&machine);
    let purged = ok(machine.job("app.cache_purge", json!({"app": "blog", "paths": ["/"]})));
    assert_eq!((purged["changed"].as_bool(), reloads(&purged).len()), (Some(true), 0), "{purged}");
    assert_eq!(purged["result"], json!({"removed": 3, "enabled": true}), "GET and HEAD of http, GET of https");
    assert!(!entry.exists());
    let idle = ok(machine.job("app.cache_purge", json!({"app": "blog", "paths": ["/"]})));
    assert_eq!(idle["changed"], false, "idempotent: {idle}");
    assert_eq!(get_https(&machine, "blog.test", "/").x_cache(), "MISS");
    let after = get(&machine, "blog.test", "/");
    assert_eq!(after.x_cache(), "MISS");
    assert_ne!(after.body, home);
    assert_eq!(
        (get(&machine, "blog.test", "/other.php").x_cache(), get(&machine, "shop.test", "/").body),
        ("HIT", shop_home.clone())
    );

    // Purging one app leaves the other's pages cached.
    let all = ok(machine.job("app.cache_purge", json!({"app": "blog"})));
    assert_eq!((all["changed"].as_bool(), reloads(&all).len()), (Some(true), 0), "{all}");
    assert!(all["result"]["removed"].as_u64().unwrap() >= 2, "{all}");
    assert_eq!(get(&machine, "blog.test", "/other.php").x_cache(), "MISS");
    assert_ne!(get(&machine, "blog.test", "/other.php").body, other);
    let shop_after = get(&machine, "shop.test", "/");
    assert_eq!((shop_after.x_cache(), &shop_after.body), ("HIT", &shop_home));
    assert_eq!(nginx_processes(&machine), nginx, "no purge reloaded nginx");

    // app.update keeps the cache: the new name is cached too.
    ok(machine.job("app.update", json!({"name": "blog", "domains": ["blog.test", "blog2.test"]})));
    cached(&machine, "blog2.test", "/");

    // Whatever removed berth's cache directory (no user can), reconcile puts it back
    // (nginx's own check would fail without its parents) and the cache works on.
    std::fs::remove_dir_all(machine.path("/var/cache/berth")).unwrap();
    let (code, report) = machine.reconcile();
    assert_eq!(code, Some(0), "{report}");
    let zone = machine.run("/usr/bin/stat", &["-c", "%a %U %G", "/var/cache/berth/nginx/blog"]);
    assert_eq!(String::from_utf8_lossy(&zone.stdout).trim(), "700 www-data www-data");
    cached(&machine, "blog.test", "/");

    // Off: no cache, no header, no directory; app.delete takes the other's directory.
    let off = ok(machine.job("app.page_cache", json!({"app": "blog", "enabled": false})));
    assert_eq!((off["changed"].as_bool(), &off["result"]["enabled"]), (Some(true), &json!(false)), "{off}");
    let plain = get(&machine, "blog.test", "/");
    assert_eq!((plain.header("x-cache"), plain.body != get(&machine, "blog.test", "/").body), (None, true));
    assert!(!machine.path("/var/cache/berth/nginx/blog").exists());
    let none = ok(machine.job("app.cache_purge", json!({"app": "blog"})));
    assert_eq!(none["result"], json!({"removed": 0, "enabled": false}));
    // Behind basic auth, shop's cached page is never shown without credentials, and
    // with them (an Authorization header) nothing is taken from the cache.
    let auth = json!({"app": "shop", "enabled": true, "username": "ann", "password": "staging-only-2026"});
    ok(machine.job("app.basic_auth", auth));
    assert_eq!(get(&machine, "shop.test", "/").code, 401);
    let with = fetch(&machine, "shop.test", "/", &["-u", "ann:staging-only-2026"]);
    assert_eq!((with.code, with.x_cache()), (200, "BYPASS"), "{}", with.body);
    ok(machine.job("app.delete", json!({"name": "shop"})));
    assert!(!machine.path("/var/cache/berth/nginx/shop").exists());
    let missing = machine.job("app.cache_purge", json!({"app": "shop"}));
    assert_eq!(missing["error"]["code"], "not_found", "{missing}");
}

#[test]
fn on_stack_nginx_the_page_cache_caches_php_bypasses_private_requests_and_purges_one_app() {
    the_page_cache_caches_php_bypasses_private_requests_and_purges_one_app("nginx");
}

#[test]
fn on_stack_nginx_apache_the_page_cache_caches_php_bypasses_private_requests_and_purges_one_app() {
    the_page_cache_caches_php_bypasses_private_requests_and_purges_one_app("nginx-apache");
}

/// Hostile params end in `invalid_params` naming the field, and nothing is written.
#[test]
fn hostile_params_are_refused_and_change_nothing() {
    let machine = Machine::start();
    ok(machine.job("sysuser.create", json!({"name": "derek"})));
    ok(machine.job(
        "app.create",
        json!({"name": "blog", "sysuser": "derek", "runtime": "php8.2", "domains": ["blog.test"], "stack": "nginx"}),
    ));
    let vhost = std::fs::read_to_string(machine.path("/etc/nginx/berth.d/blog.conf")).unwrap();
    let inventory = std::fs::read_to_string(machine.dir.path().join("state/inventory.json")).ok();
    let cases = [
        ("app.page_cache", json!({"app": "blog", "enabled": true, "ttl_secs": 0}), "ttl_secs"),
        ("app.page_cache", json!({"app": "blog", "enabled": true, "ttl_secs": -1}), "ttl_secs"),
        ("app.page_cache", json!({"app": "blog", "enabled": true, "ttl_secs": 31_536_001}), "ttl_secs"),
        ("app.page_cache", json!({"app": "blog", "enabled": true, "ttl_secs": "60; evil"}), "ttl_secs"),
        ("app.page_cache", json!({"app": "blog", "enabled": true, "ttl_secs": 0.5}), "ttl_secs"),
        ("app.page_cache", json!({"app": "blog", "enabled": "true"}), "enabled"),
        ("app.page_cache", json!({"app": "blog;", "enabled": true}), "app"),
        ("app.page_cache", json!({"app": "../../etc", "enabled": true}), "app"),
        ("app.cache_purge", json!({"app": "blog", "paths": []}), "paths"),
        ("app.cache_purge", json!({"app": "blog", "paths": "/"}), "paths"),
        ("app.cache_purge", json!({"app": "blog", "paths": ["/", "/ok", "../../etc/passwd"]}), "paths[2]"),
        ("app.cache_purge", json!({"app": "blog", "paths": ["/a/../../b"]}), "paths[0]"),
        ("app.cache_purge", json!({"app": "blog", "paths": ["/a b"]}), "paths[0]"),
        ("app.cache_purge", json!({"app": "blog", "paths": ["/a\nb"]}), "paths[0]"),
        ("app.cache_purge", json!({"app": "blog", "paths": ["/?p=1"]}), "paths[0]"),
        ("app.cache_purge", json!({"app": "blog", "paths": ["/\u{202e}x"]}), "paths[0]"),
        ("app.cache_purge", json!({"app": "blog", "paths": [format!("/{}", "x".repeat(4096))]}), "paths[0]"),
        ("app.cache_purge", json!({"app": "blog", "paths": vec!["/"; 101]}), "paths"),
    ];
    let jobs: Vec<Value> = cases.iter().map(|(kind, params, _)| json!({"kind": kind, "params": params})).collect();
    let (_, statuses) = machine.apply(Value::Array(jobs));
    assert_eq!(statuses.len(), cases.len());
    for ((kind, params, field), status) in cases.iter().zip(&statuses) {
        assert_eq!(status["error"]["code"], "invalid_params", "{kind} {params}: {status}");
        assert_eq!(status["error"]["field"], *field, "{kind} {params}: {status}");
    }
    assert_eq!(std::fs::read_to_string(machine.path("/etc/nginx/berth.d/blog.conf")).unwrap(), vhost);
    assert_eq!(std::fs::read_to_string(machine.dir.path().join("state/inventory.json")).ok(), inventory);
    assert!(!machine.path("/var/cache/berth").exists(), "no cache directory was made");
}

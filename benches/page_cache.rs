//! `cargo bench --bench page_cache` (as root): the page cache figures quoted in
//! README.md.
//!
//! In a test machine (namespaces, the real nginx, Apache and PHP-FPM; see
//! tests/support/machine.rs), on each stack:
//! - requests per second of a PHP page, without the cache and from it (`wrk`, run
//!   inside the machine on loopback), for three pages: one that only prints, and
//!   two that make PHP work (20,000 and 100,000 md5 calls), and WordPress's home
//!   page (Debian's WordPress with MariaDB, installed by `app.create`);
//! - `app.cache_purge` (the job's own started_at to finished_at) of every entry and
//!   of one path, with 10,000 pages in the cache.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::machine::Machine;

/// The pages: (name, file, what it does).
const PAGES: [(&str, &str, &str); 3] = [
    ("hello.php", "<?php echo 'hello ', time();", "prints a line"),
    (
        "render.php",
        "<?php $h = ''; for ($i = 0; $i < 20000; $i++) { $h = md5($h . $i); } echo 'rendered ', $h;",
        "20,000 md5 calls",
    ),
    (
        "heavy.php",
        "<?php $h = ''; for ($i = 0; $i < 100000; $i++) { $h = md5($h . $i); } echo 'rendered ', $h;",
        "100,000 md5 calls",
    ),
];
const ENTRIES: usize = 10_000;
const SECONDS: &str = "10s";

fn main() {
    let machine = Machine::start();
    machine.start_mariadb();
    assert_eq!(machine.job("sysuser.create", json!({"name": "bench"}))["status"], "success");
    let mut lines = Vec::new();
    for stack in ["nginx", "nginx-apache"] {
        let app = stack.replace('-', "");
        let host = format!("{app}.test");
        let done = machine.job(
            "app.create",
            json!({"name": app, "sysuser": "bench", "runtime": "php8.2", "domains": [host], "stack": stack}),
        );
        assert_eq!(done["status"], "success", "{done}");
        for (file, code, _) in PAGES {
            std::fs::write(machine.path(&format!("/srv/users/bench/apps/{app}/public/{file}")), code).unwrap();
        }
        std::fs::write(machine.path(&format!("/srv/users/bench/apps/{app}/public/index.php")), PAGES[0].1).unwrap();
        // WordPress's rules: what is not a file goes to index.php (Apache; nginx's own
        // vhost does the same on stack nginx).
        let htaccess = "RewriteEngine On\nRewriteCond %{REQUEST_FILENAME} !-f\nRewriteRule . /index.php [L]\n";
        std::fs::write(machine.path(&format!("/srv/users/bench/apps/{app}/public/.htaccess")), htaccess).unwrap();
        for (file, _, what) in PAGES {
            let path = format!("/{file}");
            let uncached = wrk(&machine, &host, &path);
            switch(&machine, &app, true);
            let warm = curl(&machine, &host, &path);
            assert!(warm.contains("X-Cache: MISS"), "{warm}");
            let cached = wrk(&machine, &host, &path);
            assert!(curl(&machine, &host, &path).contains("X-Cache: HIT"));
            switch(&machine, &app, false);
            lines.push(format!(
                "stack {stack:<12} {file:<11} ({what:<17}): uncached {uncached:>8.0} req/s, cached {cached:>8.0} req/s: {:.1}x",
                cached / uncached
            ));
        }
        // A real page: WordPress's home (Debian's WordPress, offline), on the same stack.
        let wp = format!("{app}wp");
        let wp_host = format!("{wp}.test");
        let done = machine.job(
            "app.create",
            json!({"name": wp, "sysuser": "bench", "runtime": "php8.2", "domains": [wp_host], "stack": stack,
                   "wordpress": {"site_title": "Bench", "admin_user": "boss", "admin_password": "bench-password-1",
                                 "admin_email": "boss@example.com"}}),
        );
        assert_eq!(done["status"], "success", "{done}");
        assert!(curl(&machine, &wp_host, "/").contains("<title>Bench"), "WordPress answers its home");
        let uncached = wrk(&machine, &wp_host, "/");
        switch(&machine, &wp, true);
        assert!(curl(&machine, &wp_host, "/").contains("X-Cache: MISS"));
        let cached = wrk(&machine, &wp_host, "/");
        assert!(curl(&machine, &wp_host, "/").contains("X-Cache: HIT"));
        lines.push(format!(
            "stack {stack:<12} {:<11} ({:<17}): uncached {uncached:>8.0} req/s, cached {cached:>8.0} req/s: {:.1}x",
            "/",
            "WordPress home",
            cached / uncached
        ));

        switch(&machine, &app, true);
        let filled = fill(&machine, &app, &host);
        let one = purge(&machine, &app, Some(json!(["/p/5000"])));
        let all = purge(&machine, &app, None);
        lines.push(format!(
            "stack {stack:<12} purge with {filled} pages cached: one path {:.1} ms ({} files), everything {:.1} ms ({} files)",
            one.0, one.1, all.0, all.1
        ));
    }
    println!(
        "berth page cache benchmark (release build; test machine, wrk -t2 -c32 -d{SECONDS} --timeout 10s on loopback)"
    );
    for line in lines {
        println!("{line}");
    }
}

fn switch(machine: &Machine, app: &str, enabled: bool) {
    let done = machine.job("app.page_cache", json!({"app": app, "enabled": enabled, "ttl_secs": 3600}));
    assert_eq!(done["status"], "success", "{done}");
}

fn curl(machine: &Machine, host: &str, path: &str) -> String {
    let out =
        machine.run("/usr/bin/curl", &["-s", "-i", "-H", &format!("Host: {host}"), &format!("http://127.0.0.1{path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// wrk inside the machine; requests per second (non-2xx answers fail the bench).
fn wrk(machine: &Machine, host: &str, path: &str) -> f64 {
    let (host, url) = (format!("Host: {host}"), format!("http://127.0.0.1{path}"));
    let out = machine.run("/usr/bin/wrk", &["-t2", "-c32", "-d", SECONDS, "--timeout", "10s", "-H", &host, &url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("Non-2xx") && !text.contains("Socket errors"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk said: {text}"))
}

/// Caches [`ENTRIES`] distinct pages (`/p/N`, through the app's index.php) with a
/// wrk script that asks each once; returns how many entry files the zone holds.
fn fill(machine: &Machine, app: &str, host: &str) -> usize {
    let script = machine.path("/srv/users/fill.lua");
    // wrk calls `request` once before it sends anything: /p/1 is never asked, so the
    // pages are /p/2 to /p/10001.
    let lua = format!(
        "n = 0\nrequest = function()\n  if n <= {ENTRIES} then n = n + 1 end\n  return wrk.format(\"GET\", \"/p/\" .. n)\nend\n"
    );
    std::fs::write(&script, lua).unwrap();
    let host = format!("Host: {host}");
    let out = machine
        .run("/usr/bin/wrk", &["-t1", "-c8", "-d30s", "-H", &host, "-s", "/srv/users/fill.lua", "http://127.0.0.1/"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let count = machine.run("/bin/sh", &["-c", &format!("find /var/cache/berth/nginx/{app} -type f | wc -l")]);
    String::from_utf8_lossy(&count.stdout).trim().parse().unwrap()
}

/// `app.cache_purge`: the job's own time in ms, and the files it removed.
fn purge(machine: &Machine, app: &str, paths: Option<Value>) -> (f64, u64) {
    let mut params = json!({"app": app});
    if let Some(paths) = paths {
        params["paths"] = paths;
    }
    let done = machine.job("app.cache_purge", params);
    assert_eq!(done["status"], "success", "{done}");
    (support::job_ms(&done), done["result"]["removed"].as_u64().unwrap())
}

//! `cargo bench --bench apps` (as root): the apps figures quoted in README.md.
//!
//! In a test machine (namespaces, the real nginx, Apache and PHP-FPM; see
//! tests/support/machine.rs):
//! - `app.create` latency (the job's own started_at to finished_at), median and p95,
//!   with 10 and with 1,000 apps already present;
//! - `berth reconcile` of 1,000 apps when nothing changed, and after a template change;
//! - the agent's peak memory (VmHWM of the berth process) in each.
//!
//! The 1,000 apps are loaded through the inventory and one reconcile (the same
//! files app.create writes), so setting up takes seconds rather than a thousand jobs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::{json, Value};
use support::machine::Machine;

const SAMPLES: usize = 20;
const MANY: usize = 1000;

fn main() {
    let machine = Machine::start();
    machine.job("sysuser.create", json!({"name": "bench"}));
    for i in 0..10 {
        create(&machine, &format!("seed{i}"));
    }
    let (few, few_rss) = latencies(&machine, "few");
    let few_checks = checks(&machine);

    load_apps(&machine, MANY);
    let started = Instant::now();
    let (code, report, log) = machine.reconcile_logged();
    assert_eq!(code, Some(0), "{report}");
    println!(
        "loaded {MANY} apps with one reconcile in {:.2}s (peak RSS {} KiB)",
        started.elapsed().as_secs_f64(),
        peak(&log)
    );

    let (many, many_rss) = latencies(&machine, "many");
    let many_checks = checks(&machine);

    let started = Instant::now();
    let (_, report, log) = machine.reconcile_logged();
    let unchanged = started.elapsed();
    assert_eq!(report["changed"], false, "{report}");
    let unchanged_rss = peak(&log);

    let overrides = machine.path("/etc/berth/templates");
    std::fs::create_dir_all(&overrides).unwrap();
    let pool = include_str!("../templates/php-fpm-pool.conf").replace("pm.max_children = 10", "pm.max_children = 9");
    std::fs::write(overrides.join("php-fpm-pool.conf"), pool).unwrap();
    let started = Instant::now();
    let (_, report, log) = machine.reconcile_logged();
    let changed = started.elapsed();
    let files = report["result"]["changed_files"].as_array().map(Vec::len).unwrap_or(0);

    println!("berth apps benchmark (release build; test machine with the real nginx, Apache and PHP-FPM)");
    println!(
        "app.create with 10 apps present:    median {:.0} ms, p95 {:.0} ms ({SAMPLES} creates; peak RSS {few_rss} KiB)",
        few.0, few.1
    );
    println!("app.create with {MANY} apps present:  median {:.0} ms, p95 {:.0} ms ({SAMPLES} creates; peak RSS {many_rss} KiB)", many.0, many.1);
    for ((tool, few_ms), (_, many_ms)) in few_checks.iter().zip(&many_checks) {
        println!(
            "  of which the server's own check {tool}: {few_ms:.0} ms with 30 apps, {many_ms:.0} ms with {} apps",
            MANY + 50
        );
    }
    println!(
        "reconcile, {MANY} apps, nothing changed: {:.3} s (whole process; peak RSS {unchanged_rss} KiB)",
        unchanged.as_secs_f64()
    );
    println!(
        "reconcile, {MANY} apps, after a template change: {:.3} s, {files} files rewritten (peak RSS {} KiB)",
        changed.as_secs_f64(),
        peak(&log)
    );
}

/// The median time of each server's own config check, as the transaction runs it.
fn checks(machine: &Machine) -> Vec<(&'static str, f64)> {
    let tools: [(&'static str, &str, &[&str]); 3] = [
        ("nginx -t", "/usr/sbin/nginx", &["-t", "-q"]),
        ("apachectl -t", "/usr/sbin/apache2ctl", &["-t"]),
        ("php-fpm8.2 -t", "/usr/sbin/php-fpm8.2", &["--fpm-config", "/etc/php/8.2/fpm/php-fpm.conf", "-t"]),
    ];
    tools
        .into_iter()
        .map(|(name, program, args)| {
            let mut times: Vec<f64> = (0..5)
                .map(|_| {
                    let started = Instant::now();
                    assert!(machine.run(program, args).status.success(), "{name}");
                    started.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            (name, times[2])
        })
        .collect()
}

fn create(machine: &Machine, name: &str) -> Value {
    let done = machine.job(
        "app.create",
        json!({"name": name, "sysuser": "bench", "runtime": "php8.2", "domains": [format!("{name}.test")], "stack": "nginx"}),
    );
    assert_eq!(done["status"], "success", "{done}");
    done
}

/// Median and p95 of `app.create` in milliseconds, and the largest peak RSS.
fn latencies(machine: &Machine, prefix: &str) -> ((f64, f64), u64) {
    let mut millis = Vec::new();
    let mut rss = 0;
    for i in 0..SAMPLES {
        let name = format!("{prefix}{i}");
        let params = json!({"name": name, "sysuser": "bench", "runtime": "php8.2", "domains": [format!("{name}.test")], "stack": "nginx"});
        let (_, statuses, log) = machine.apply_logged(json!({"kind": "app.create", "params": params}));
        let done = &statuses[0];
        assert_eq!(done["status"], "success", "{done}");
        millis.push(support::job_ms(done));
        rss = rss.max(peak(&log));
    }
    millis.sort_by(f64::total_cmp);
    ((millis[SAMPLES / 2], millis[SAMPLES * 95 / 100]), rss)
}

fn peak(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("peak_rss_kib=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Adds `count` apps (over 10 system users) to the inventory with their
/// directories, as app.create would.
fn load_apps(machine: &Machine, count: usize) {
    let users: Vec<String> = (0..10).map(|u| format!("bulk{u}")).collect();
    let jobs: Vec<Value> = users.iter().map(|u| json!({"kind": "sysuser.create", "params": {"name": u}})).collect();
    assert_eq!(machine.apply(json!(jobs)).0, Some(0));
    let inventory_path = machine.dir.path().join("state/inventory.json");
    let mut inventory: Value = serde_json::from_str(&std::fs::read_to_string(&inventory_path).unwrap()).unwrap();
    let passwd = std::fs::read_to_string(machine.path("/etc/passwd")).unwrap();
    let ids = |user: &str| -> Vec<u32> {
        let line = passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).unwrap();
        line.split(':').skip(2).take(2).map(|f| f.parse().unwrap()).collect()
    };
    for i in 0..count {
        let name = format!("bulk{i:04}");
        let user = &users[i % users.len()];
        let ids = ids(user);
        inventory["apps"][&name] = json!({"sysuser": user, "runtime": "php8.2", "domains": [format!("{name}.test")], "stack": "nginx", "created_ms": 0});
        for dir in [
            format!("/srv/users/{user}/apps/{name}/public"),
            format!("/srv/users/{user}/tmp/{name}"),
            format!("/var/log/berth/{user}/{name}"),
        ] {
            let path = machine.path(&dir);
            std::fs::create_dir_all(&path).unwrap();
            std::os::unix::fs::chown(&path, Some(ids[0]), Some(ids[1])).unwrap();
        }
    }
    std::fs::write(&inventory_path, inventory.to_string()).unwrap();
}

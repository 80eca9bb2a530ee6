//! `cargo bench --bench wordpress` (as root): the WordPress figures quoted in
//! README.md, offline.
//!
//! In a test machine (namespaces, the real nginx, PHP-FPM and MariaDB; see
//! tests/support/machine.rs), from Debian's `wordpress` package:
//! - `app.create` with `wordpress` (app, database and install in one job), from the
//!   job's own started_at to finished_at;
//! - `app.wordpress` into an app that exists (the database and the install alone);
//! - the agent's peak memory (VmHWM of the berth process) in each.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use support::machine::Machine;

const SAMPLES: usize = 5;

fn main() {
    let machine = Machine::start();
    machine.start_mariadb();
    assert_eq!(machine.job("sysuser.create", json!({"name": "bench"}))["status"], "success");
    let mut created = Vec::new();
    let mut installed = Vec::new();
    let (mut created_rss, mut installed_rss) = (0, 0);
    for i in 0..SAMPLES {
        let name = format!("wpnew{i}");
        let params = json!({"name": name, "sysuser": "bench", "runtime": "php8.2", "domains": [format!("{name}.test")],
                            "stack": "nginx", "wordpress": site()});
        let (ms, rss) = timed(&machine, "app.create", params);
        created.push(ms);
        created_rss = created_rss.max(rss);

        let name = format!("wpold{i}");
        let params = json!({"name": name, "sysuser": "bench", "runtime": "php8.2", "domains": [format!("{name}.test")],
                            "stack": "nginx"});
        timed(&machine, "app.create", params);
        let mut params = site();
        params["app"] = json!(name);
        let (ms, rss) = timed(&machine, "app.wordpress", params);
        installed.push(ms);
        installed_rss = installed_rss.max(rss);
    }
    println!("berth WordPress benchmark (release build; test machine, offline, Debian's WordPress)");
    println!("app.create with wordpress: {} (peak RSS {created_rss} KiB)", summary(&mut created));
    println!("app.wordpress into an existing app: {} (peak RSS {installed_rss} KiB)", summary(&mut installed));
}

fn site() -> Value {
    json!({"site_title": "Bench", "admin_user": "bench", "admin_password": "bench-password-1",
           "admin_email": "bench@example.com"})
}

/// Runs one job: its own time in milliseconds, and berth's peak RSS.
fn timed(machine: &Machine, kind: &str, params: Value) -> (f64, u64) {
    let (_, statuses, log) = machine.apply_logged(json!({"kind": kind, "params": params}));
    let done = &statuses[0];
    assert_eq!(done["status"], "success", "{done}");
    let rss = log
        .lines()
        .filter_map(|l| l.split("peak_rss_kib=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0);
    (support::job_ms(done), rss)
}

fn summary(millis: &mut [f64]) -> String {
    millis.sort_by(f64::total_cmp);
    format!(
        "median {:.0} ms, min {:.0} ms, max {:.0} ms ({} runs)",
        millis[millis.len() / 2],
        millis[0],
        millis[millis.len() - 1],
        millis.len()
    )
}

//! `cargo bench --bench permissions` (as root): the `app.fix_permissions` figures
//! quoted in README.md.
//!
//! In a test machine (tests/support/machine.rs), an app of 100,000 files in 1,000
//! directories, all root's and world-writable (as a root's `cp -r` of a
//! `chmod -R 777` tree would leave them): the job that gives them all back to
//! the user, and the rerun that finds nothing to change, each as the walk's own
//! time (`elapsed_ms` of the result) and the job's, from started_at to
//! finished_at, with berth's peak RSS.

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::{json, Value};
use support::machine::Machine;

const DIRS: usize = 1_000;
const FILES_PER_DIR: usize = 100;
const SAMPLES: usize = 3;

fn main() {
    let machine = Machine::start();
    assert_eq!(machine.job("sysuser.create", json!({"name": "bench"}))["status"], "success");
    let app =
        json!({"name": "files", "sysuser": "bench", "runtime": "php8.2", "domains": ["files.test"], "stack": "nginx"});
    assert_eq!(machine.job("app.create", app)["status"], "success");
    let public = machine.path("/srv/users/bench/apps/files/public");
    let (mut fixing, mut rerun) = (Vec::new(), Vec::new());
    let mut rss = 0;
    for sample in 0..SAMPLES {
        for d in 0..DIRS {
            let dir = public.join(format!("d{d:04}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..FILES_PER_DIR {
                let file = dir.join(format!("f{f:03}.php"));
                if sample == 0 {
                    std::fs::write(&file, "<?php echo 1;").unwrap();
                }
                std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
            std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let (result, ms, peak) = timed(&machine);
        assert_eq!(result["changed"], (DIRS * (FILES_PER_DIR + 1)) as u64, "{result}");
        fixing.push((result["elapsed_ms"].as_f64().unwrap(), ms));
        rss = rss.max(peak);
        let (result, ms, peak) = timed(&machine);
        assert_eq!(result["changed"], 0, "{result}");
        rerun.push((result["elapsed_ms"].as_f64().unwrap(), ms));
        rss = rss.max(peak);
    }
    println!(
        "berth fix-permissions benchmark (release build; test machine; {} files in {DIRS} directories)",
        DIRS * FILES_PER_DIR
    );
    println!("app.fix_permissions, every file changed: {}", summary(&mut fixing));
    println!("app.fix_permissions, rerun (nothing to change): {}", summary(&mut rerun));
    println!("berth's peak RSS: {rss} KiB");
}

/// Runs the job: its result, its own time in milliseconds, and berth's peak RSS.
fn timed(machine: &Machine) -> (Value, f64, u64) {
    let (_, statuses, log) = machine.apply_logged(json!({"kind": "app.fix_permissions", "params": {"app": "files"}}));
    let done = &statuses[0];
    assert_eq!(done["status"], "success", "{done}");
    let rss = log
        .lines()
        .filter_map(|l| l.split("peak_rss_kib=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0);
    (done["result"].clone(), support::job_ms(done), rss)
}

/// The walk's and the job's milliseconds: medians, and the slowest job.
fn summary(runs: &mut [(f64, f64)]) -> String {
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mid = runs[runs.len() / 2];
    format!(
        "walk median {:.0} ms, job median {:.0} ms (max {:.0} ms; {} runs)",
        mid.0,
        mid.1,
        runs[runs.len() - 1].1,
        runs.len()
    )
}

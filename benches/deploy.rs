//! `cargo bench --bench deploy` (as root): the git deploy figures quoted in
//! README.md.
//!
//! In a test machine (namespaces, the real git, nginx and PHP-FPM; see
//! tests/support/machine.rs): a repository of 1,000 files (100 directories of 10
//! PHP files of about 1 KiB) in a bare repository over `file://`, owned by the
//! site's user; `app.deploy` run N times (`force`, so each makes a new release;
//! `keep` 5, so the later ones also prune). Reported: the first deploy (which also
//! points the vhost at `current` and reloads nginx), and the median and spread of
//! the others, as the job's own `duration_ms` and as the whole `berth apply` run.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::{json, Value};
use support::machine::Machine;

const RUNS: usize = 9;
const FILES: usize = 1000;

fn ok(done: Value) -> Value {
    assert_eq!(done["status"], "success", "{done}");
    done
}

fn as_bench(machine: &Machine, args: &[&str]) {
    let mut all = vec!["--reuid=bench", "--regid=bench", "--clear-groups", "--", "/usr/bin/env", "HOME=/srv/git"];
    all.extend(args);
    let out = machine.run("/usr/bin/setpriv", &all);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let machine = Machine::start();
    ok(machine.job("sysuser.create", json!({"name": "bench"})));
    ok(machine.job(
        "app.create",
        json!({"name": "site", "sysuser": "bench", "runtime": "php8.2", "domains": ["site.test"], "stack": "nginx"}),
    ));
    assert!(machine.run("/usr/bin/install", &["-d", "-o", "bench", "-g", "bench", "/srv/git"]).status.success());
    let work = machine.path("/srv/git/work");
    for i in 0..FILES {
        let dir = work.join(format!("public/lib{:02}", i / 10));
        std::fs::create_dir_all(&dir).unwrap();
        let body = format!("<?php\n// file {i}\n{}\nreturn {i};\n", "// padding padding padding padding\n".repeat(28));
        std::fs::write(dir.join(format!("f{i}.php")), body).unwrap();
    }
    std::fs::write(work.join("public/index.php"), "<?php echo 'ok ', (include __DIR__ . '/lib00/f0.php');").unwrap();
    assert!(machine.run("/usr/bin/chown", &["-R", "bench:bench", "/srv/git/work"]).status.success());
    let git = ["/usr/bin/git", "-c", "user.name=b", "-c", "user.email=b@example.test", "-c", "init.defaultBranch=main"];
    as_bench(&machine, &[&git[..], &["init", "-q", "--bare", "/srv/git/site.git"]].concat());
    as_bench(&machine, &[&git[..], &["-C", "/srv/git/work", "init", "-q"]].concat());
    as_bench(&machine, &[&git[..], &["-C", "/srv/git/work", "add", "-A"]].concat());
    as_bench(&machine, &[&git[..], &["-C", "/srv/git/work", "commit", "-qm", "1000 files"]].concat());
    as_bench(&machine, &[&git[..], &["-C", "/srv/git/work", "push", "-q", "/srv/git/site.git", "HEAD:main"]].concat());
    ok(machine.job("app.git", json!({"app": "site", "repo": "file:///srv/git/site.git", "branch": "main", "keep": 5})));

    let mut job_ms = Vec::new();
    let mut wall_ms = Vec::new();
    for run in 0..=RUNS {
        let started = Instant::now();
        let done = ok(machine.job("app.deploy", json!({"app": "site", "force": true})));
        let wall = started.elapsed().as_secs_f64() * 1000.0;
        let ms = done["result"]["duration_ms"].as_f64().unwrap();
        if run == 0 {
            println!("first deploy (vhost to current, nginx reload): job {ms:.0} ms, berth apply {wall:.0} ms");
            assert_eq!(machine.at_once_get("site.test", "/", 200), "ok 0");
        } else {
            job_ms.push(ms);
            wall_ms.push(wall);
        }
    }
    let (min, max) = (job_ms.iter().cloned().fold(f64::MAX, f64::min), job_ms.iter().cloned().fold(0.0, f64::max));
    println!(
        "deploy of {FILES} files, {RUNS} runs: job median {:.0} ms (min {min:.0}, max {max:.0}); berth apply median {:.0} ms",
        median(job_ms),
        median(wall_ms)
    );
}

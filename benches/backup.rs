//! `cargo bench --bench backup` (as root): the backup figures quoted in README.md.
//!
//! In a test machine (namespaces, the real restic, MariaDB, nginx and PHP-FPM; see
//! tests/support/machine.rs): an app of 1 GiB of files (1,024 files of 1 MiB of
//! pseudo-random bytes, which neither compress nor deduplicate, in 32 directories)
//! and a database of about 100 MiB, backed up to a fresh local repository, backed
//! up again (nothing new: restic's deduplication), then restored. For each: the
//! job's own time (started_at to finished_at), and the peak RSS (`VmHWM`) of berth
//! and of each tool, read from /proc inside the machine every 50 ms while the job
//! runs (a process's VmHWM is its peak over its whole life, so a late sample sees it).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};
use support::machine::Machine;

const FILES: usize = 1024;
const FILE_SIZE: usize = 1 << 20;

/// The job's own time, started_at to finished_at (same day).
fn seconds(done: &Value) -> f64 {
    let clock = |key: &str| -> f64 {
        let text = done[key].as_str().unwrap_or_else(|| panic!("{done}"));
        let time = text.split('T').nth(1).unwrap().trim_end_matches('Z');
        let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
    };
    clock("finished_at") - clock("started_at")
}

/// Runs `job` while a loop inside the machine samples every process's VmHWM; returns
/// the final status and the peak per program name (KiB).
fn measured(machine: &Machine, kind: &str, params: Value) -> (Value, BTreeMap<String, u64>) {
    let script = "while [ ! -e /run/stop-sampling ]; do for p in /proc/[0-9]*; do \
        awk '/^Name:/ {n=$2} /^VmHWM:/ {print n, $2}' $p/status; done 2>/dev/null; sleep 0.05; done";
    let _ = std::fs::remove_file(machine.through_init("/run/stop-sampling"));
    let mut child = machine.command("/bin/sh", &["-c", script]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut peaks: BTreeMap<String, u64> = BTreeMap::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(kib)) = (parts.next(), parts.next().and_then(|k| k.parse::<u64>().ok())) else {
                continue;
            };
            let peak = peaks.entry(name.to_owned()).or_default();
            *peak = (*peak).max(kib);
        }
        peaks
    });
    let done = machine.job(kind, params);
    assert!(machine.run("/usr/bin/touch", &["/run/stop-sampling"]).status.success());
    let peaks = reader.join().unwrap();
    child.wait().unwrap();
    assert_eq!(done["status"], "success", "{done}");
    let wanted = ["berth", "restic", "tar", "mariadb-dump", "mariadb"];
    (done, peaks.into_iter().filter(|(name, _)| wanted.contains(&name.as_str())).collect())
}

fn main() {
    let machine = Machine::start();
    machine.start_mariadb();
    assert_eq!(machine.job("sysuser.create", json!({"name": "bench"}))["status"], "success");
    let done = machine.job(
        "app.create",
        json!({"name": "big", "sysuser": "bench", "runtime": "php8.2", "domains": ["big.test"], "stack": "nginx"}),
    );
    assert_eq!(done["status"], "success", "{done}");
    let db = machine.job(
        "db.create",
        json!({"app": "big", "name": "bigdb", "user": {"name": "bigu", "password": "bench-password-1"}}),
    );
    assert_eq!(db["status"], "success", "{db}");

    // 1 GiB of files, xorshift bytes (neither compressible nor repeated).
    let public = machine.path("/srv/users/bench/apps/big/public");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buffer = vec![0u8; FILE_SIZE];
    for i in 0..FILES {
        for chunk in buffer.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let dir = public.join(format!("d{:02}", i % 32));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(dir.join(format!("f{i:04}.bin"))).unwrap().write_all(&buffer).unwrap();
    }
    let chown = machine.run("/bin/chown", &["-R", "bench:bench", "/srv/users/bench/apps/big"]);
    assert!(chown.status.success());
    // About 100 MiB of rows.
    let out = machine.sql(
        "root",
        None,
        "bigdb",
        "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, body LONGTEXT); \
         INSERT INTO t (body) SELECT REPEAT(MD5(seq), 16384) FROM seq_1_to_200;",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let repository = json!({"path": "/srv/backups", "password": "bench-repository-password"});
    let backup = json!({"app": "big", "repository": repository, "files": true, "database": true,
                        "retention": {"keep_last": 5}});
    let mut lines = Vec::new();
    let (first, peaks) = measured(&machine, "app.backup", backup.clone());
    lines.push(format!("backup, first (1 GiB files + database): {:.1} s, peak RSS KiB {peaks:?}", seconds(&first)));
    let (second, peaks) = measured(&machine, "app.backup", backup);
    lines.push(format!("backup, again (nothing new): {:.1} s, peak RSS KiB {peaks:?}", seconds(&second)));
    let snapshot = first["result"]["snapshot"].as_str().unwrap();
    let restore = json!({"app": "big", "repository": repository, "snapshot": snapshot});
    let (restored, peaks) = measured(&machine, "app.restore", restore);
    lines.push(format!("restore (1 GiB files + database): {:.1} s, peak RSS KiB {peaks:?}", seconds(&restored)));
    let du = machine.run("/usr/bin/du", &["-sm", "/srv/backups", "/srv/users/bench/apps/big"]);
    lines.push(format!("du -sm: {}", String::from_utf8_lossy(&du.stdout).replace('\n', "; ")));
    for line in lines {
        println!("{line}");
    }
}

//! `cargo bench --bench object_cache` (as root): the object cache figure quoted in
//! README.md.
//!
//! In a test machine (namespaces, the real redis-server; see tests/support/redis.rs):
//! `app.object_cache_purge` (the job's own started_at to finished_at) of one app's
//! 100,000 keys while another app holds 100,000 keys of its own (which must all
//! stay), and a purge run again with nothing left to delete.

#[path = "../tests/support/mod.rs"]
mod support;

use berth::host::resp::{Conn, Reply};
use serde_json::json;
use support::machine::Machine;

const KEYS: usize = 100_000;

fn main() {
    let machine = Machine::start();
    support::redis::start(&machine);
    assert_eq!(machine.job("sysuser.create", json!({"name": "bench"}))["status"], "success");
    for app in ["blog", "blog2"] {
        let done = machine.job(
            "app.create",
            json!({"name": app, "sysuser": "bench", "runtime": "php8.2", "domains": [format!("{app}.test")]}),
        );
        assert_eq!(done["status"], "success", "{done}");
        let on = machine.job("app.object_cache", json!({"app": app, "enabled": true}));
        assert_eq!(on["status"], "success", "{on}");
    }
    let admin = std::fs::read_to_string(machine.path("/etc/berth/redis-admin.secret")).unwrap();
    let mut conn = Conn::connect(&machine.through_init(support::redis::SOCKET)).unwrap();
    assert_eq!(conn.call(&["AUTH", "berth", admin.trim()]).unwrap(), Reply::Simple("OK".into()));
    for app in ["blog", "blog2"] {
        for batch in 0..KEYS / 1000 {
            let mut args = vec!["MSET".to_owned()];
            for i in 0..1000 {
                args.push(format!("{app}:wp:posts:{}", batch * 1000 + i));
                args.push("x".repeat(200));
            }
            assert_eq!(conn.call(&args).unwrap(), Reply::Simple("OK".into()));
        }
    }
    let (ms, removed) = purge(&machine);
    assert_eq!(removed, KEYS as u64);
    let (again_ms, none) = purge(&machine);
    assert_eq!(none, 0);
    let left = conn.call(&["DBSIZE"]).unwrap();
    assert_eq!(left, Reply::Int(KEYS as i64), "the other app's keys all stay");
    println!("| `app.object_cache_purge`, {KEYS} keys of one app among {KEYS} of another | {ms:.0} ms |");
    println!("| `app.object_cache_purge` again, nothing left to delete | {again_ms:.0} ms |");
}

fn purge(machine: &Machine) -> (f64, u64) {
    let done = machine.job("app.object_cache_purge", json!({"app": "blog"}));
    assert_eq!(done["status"], "success", "{done}");
    (support::job_ms(&done), done["result"]["removed"].as_u64().unwrap())
}

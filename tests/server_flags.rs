//! The honest server flags of `metrics` (issue 18, item 4): an outdated kernel makes
//! `reboot_required`, services mapping deleted libraries are named in
//! `services_need_restart`, and `upgrade_required` says `berth reconcile` would change
//! files (`berth reconcile --check` is the same dry run).

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{json, Value};
use support::machine::Machine;
use support::{ControlPlane, Sandbox};

/// A fake x86 kernel image (1 MiB, sparse) whose boot header names `version`.
fn bzimage(path: &Path, version: &str) {
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(1 << 20).unwrap();
    file.seek(SeekFrom::Start(0x202)).unwrap();
    file.write_all(b"HdrS").unwrap();
    file.seek(SeekFrom::Start(0x20e)).unwrap();
    file.write_all(&0x3a00u16.to_le_bytes()).unwrap();
    file.seek(SeekFrom::Start(0x3c00)).unwrap();
    file.write_all(version.as_bytes()).unwrap();
    file.write_all(b"\0").unwrap();
}

/// The sandbox's root stands in for the host: a /boot with a newer kernel than the one
/// /proc says runs, and a /proc in which nginx maps a deleted libssl.
#[tokio::test]
async fn metrics_name_an_outdated_kernel_and_the_services_that_map_deleted_libraries() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    let root = agent.root();
    std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
    std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-9-amd64\n").unwrap();
    std::fs::write(root.join("proc/sys/kernel/version"), "#1 SMP PREEMPT_DYNAMIC Debian 6.1.27-1\n").unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    bzimage(&root.join("boot/vmlinuz-6.1.0-9-amd64"), "6.1.0-9-amd64 (x) #1 SMP PREEMPT_DYNAMIC Debian 6.1.27-1");
    bzimage(&root.join("boot/vmlinuz-6.1.0-18-amd64"), "6.1.0-18-amd64 (x) #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1");
    for (pid, unit, maps) in [
        (100, "nginx", "7f-8f r-xp 0 08:01 7 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)\n"),
        (101, "nginx", "7f-8f r-xp 0 08:01 7 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)\n"),
        (102, "cron", "7f-8f r-xp 0 08:01 8 /usr/sbin/cron\n"),
        (103, "php8.2-fpm", "7f-8f r-xp 0 08:01 9 /usr/sbin/php-fpm8.2 (deleted)\n"),
    ] {
        let dir = root.join(format!("proc/{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), format!("0::/system.slice/{unit}.service\n")).unwrap();
        std::fs::write(dir.join("maps"), maps).unwrap();
    }
    agent.start();
    let mut session = cp.session().await;
    let hello = session.recv_type("hello").await;
    assert!(hello.get("monitor").is_none(), "{hello}");
    session.send(json!({"type": "welcome", "acked_seq": 0, "heartbeat_secs": 20, "metrics_secs": 1})).await;
    let first = session.recv_type("metrics").await;
    assert_eq!(first["reboot_required"], true, "no reboot-required file, but a newer kernel: {first}");
    assert_eq!(first["upgrade_required"], false, "no app, nothing to reconcile: {first}");
    // The services are found in the background: by the next snapshots.
    let mut seen = first["services_need_restart"].clone();
    for _ in 0..5 {
        if seen != json!([]) {
            break;
        }
        seen = session.recv_type("metrics").await["services_need_restart"].clone();
    }
    assert_eq!(seen, json!(["nginx", "php8.2-fpm"]));
}

fn check(machine: &Machine) -> Value {
    let config = machine.config();
    let out = machine.run(env!("CARGO_BIN_EXE_berth"), &["reconcile", "--check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn reconcile_check_sees_a_hand_edited_file_and_nothing_once_reconciled() {
    let machine = Machine::start();
    assert_eq!(check(&machine), json!({"upgrade_required": false, "files": []}), "no app");
    machine.job("sysuser.create", json!({"name": "derek"}));
    let done = machine.job(
        "app.create",
        json!({"name": "one", "sysuser": "derek", "runtime": "php8.2", "domains": ["one.test"], "stack": "nginx"}),
    );
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(check(&machine), json!({"upgrade_required": false, "files": []}), "all holds after the job");

    let vhost = machine.path("/etc/nginx/berth.d/one.conf");
    let pristine = std::fs::read_to_string(&vhost).unwrap();
    std::fs::write(&vhost, format!("{pristine}\n# edited by hand\n")).unwrap();
    let report = check(&machine);
    assert_eq!(report, json!({"upgrade_required": true, "files": ["/etc/nginx/berth.d/one.conf"]}));
    assert!(std::fs::read_to_string(&vhost).unwrap().contains("edited by hand"), "the check wrote nothing");

    let (code, report) = machine.reconcile();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["changed"], true, "{report}");
    assert_eq!(check(&machine), json!({"upgrade_required": false, "files": []}), "reconciled");
    assert_eq!(std::fs::read_to_string(&vhost).unwrap(), pristine);
}

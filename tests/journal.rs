//! Native journald logging: berth, run the way systemd runs it (stderr connected to
//! the journal, `JOURNAL_STREAM` naming it), sends its events to the journal socket
//! with `JOB_ID`, `KIND` and `STATUS` as fields of their own.
//!
//! The test machine has a private `/run`, so the test binds the journal's socket
//! (`/run/systemd/journal/socket`) there and reads what berth sends; the host's
//! journal never sees it.

mod support;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use std::process::Stdio;

use support::machine::Machine;
use support::{ControlPlane, Sandbox};

/// One entry of the journal's native protocol: `KEY=value\n`, or `KEY\n`, a 64-bit
/// little-endian length, the value and `\n` for values with newlines.
fn parse_entry(mut bytes: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    while !bytes.is_empty() {
        let end = bytes.iter().position(|&b| b == b'\n').expect("field ends in a newline");
        let line = &bytes[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            bytes = &bytes[end + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &bytes[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.insert(key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned());
            assert_eq!(rest[8 + len], b'\n');
            bytes = &rest[9 + len..];
        }
    }
    fields
}

/// Every entry that arrives within a short quiet period.
fn drain(journal: &UnixDatagram, entries: &mut Vec<BTreeMap<String, String>>) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = journal.recv(&mut buf) {
        if n > 0 {
            entries.push(parse_entry(&buf[..n]));
        }
    }
}

/// The journal's socket, bound in the machine's private /run.
fn journal_socket(machine: &Machine) -> UnixDatagram {
    let socket_path = machine.through_init("/run/systemd/journal/socket");
    std::fs::create_dir_all(socket_path.parent().unwrap()).unwrap();
    let journal = UnixDatagram::bind(&socket_path).unwrap();
    journal.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    journal
}

/// As systemd starts a unit with StandardError=journal: JOURNAL_STREAM is stderr's device:inode.
const AS_SYSTEMD: &str = "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec";

#[tokio::test]
async fn the_daemon_logs_each_job_to_the_journal_with_job_id_kind_and_status() {
    let machine = Machine::start();
    let journal = journal_socket(&machine);
    let mut cp = ControlPlane::start().await;
    let agent = Sandbox::new(&cp);
    // Outside the machine's pid namespace its /proc shows no /proc/self: the test names
    // the pipe it hands over as stderr, as systemd names its journal stream.
    let (read, write) = nix::unistd::pipe().unwrap();
    let pipe = nix::sys::stat::fstat(&write).unwrap();
    let script = format!("exec {} run --config {}", env!("CARGO_BIN_EXE_berth"), agent.config_path().display());
    let mut berth = machine
        .shell_in_mounts(&script)
        .env("JOURNAL_STREAM", format!("{}:{}", pipe.st_dev, pipe.st_ino))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write))
        .spawn()
        .unwrap();
    let mut stderr = std::fs::File::from(read);

    let (mut session, _) = cp.welcomed(0, 20).await;
    session.job("journal-daemon-1", "test.sleep", serde_json::json!({"ms": 0})).await;
    session.until_final("journal-daemon-1").await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(berth.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = session.end(support::PATIENCE).await;
    assert_eq!(berth.wait().unwrap().code(), Some(0));
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut printed).unwrap();
    assert!(printed.is_empty(), "logs went to the journal, not stderr: {printed}");

    let mut entries = Vec::new();
    drain(&journal, &mut entries);
    assert!(entries.iter().any(|e| e["MESSAGE"] == "connected to the control plane"), "{entries:#?}");
    let of_job: Vec<_> = entries.iter().filter(|e| e.get("JOB_ID").is_some_and(|j| j == "journal-daemon-1")).collect();
    assert!(of_job.len() >= 2, "the job's lines carry JOB_ID: {entries:#?}");
    assert!(of_job.iter().all(|e| e["KIND"] == "test.sleep"), "{of_job:#?}");
    let finished = of_job.iter().find(|e| e["MESSAGE"] == "job finished").expect("a 'job finished' entry");
    assert_eq!(finished["STATUS"], "success", "{finished:#?}");
    assert_eq!(finished["SYSLOG_IDENTIFIER"], "berth", "{finished:#?}");
    assert_eq!(finished["PRIORITY"], "6", "INFO is priority 6 (informational): {finished:#?}");
    assert!(!finished.keys().any(|k| k.starts_with("F_")), "fields carry no prefix: {finished:#?}");
}

#[test]
fn berth_apply_under_systemd_logs_to_the_journal_too() {
    let machine = Machine::start();
    let journal = journal_socket(&machine);
    let dir = machine.dir.path();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let config = dir.join("journal.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = \"machine\"\napi_key = \"unused-key\"\ncontrol_plane_url = \"wss://localhost/agent\"\n\
             state_dir = {:?}\nroot = {root:?}\ntest_jobs = true\n",
            dir.join("state")
        ),
    )
    .unwrap();
    let jobs = dir.join("jobs.json");
    std::fs::write(&jobs, r#"{"job_id": "journal-job-1", "kind": "test.sleep", "params": {"ms": 0}}"#).unwrap();

    let script =
        format!("{AS_SYSTEMD} {} apply --config {} {}", env!("CARGO_BIN_EXE_berth"), config.display(), jobs.display());
    let out = machine.run("/bin/sh", &["-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "logs went to the journal, not stderr: {}", String::from_utf8_lossy(&out.stderr));

    let mut entries = Vec::new();
    drain(&journal, &mut entries);
    let finished = entries
        .iter()
        .find(|e| e.get("MESSAGE").is_some_and(|m| m == "job finished"))
        .unwrap_or_else(|| panic!("no 'job finished' entry in {entries:#?}"));
    assert_eq!(finished["JOB_ID"], "journal-job-1", "{finished:#?}");
    assert_eq!(finished["KIND"], "test.sleep", "{finished:#?}");
    assert_eq!(finished["STATUS"], "success", "{finished:#?}");
    assert_eq!(finished["SYSLOG_IDENTIFIER"], "berth", "{finished:#?}");
    assert_eq!(finished["PRIORITY"], "6", "INFO is priority 6: {finished:#?}");
}

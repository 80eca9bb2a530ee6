//! `cargo bench --bench agent --no-default-features`: the agent-core figures quoted
//! in README.md.
//!
//! Starts the release `berth run` of the package's feature set (no `dev`, no
//! `test-jobs`: `--no-default-features`, which also builds this bench's binary)
//! against the test control plane (TLS on loopback) and measures, from outside the
//! process:
//! - idle RSS while connected, metrics every 10 s (VmRSS and VmHWM, /proc), started
//!   with the binary out of the page cache, as after a boot;
//! - idle CPU over 60 s (utime + stime from /proc/PID/stat);
//! - time from a 1012 close to the next `welcome`, over 10 drops;
//! - the size of the stripped release binary;
//! - then, with a monitoring policy of 50 port and 50 process checks read every
//!   10 s (`monitor_secs`' default): idle CPU over 60 s and RSS growth over it
//!   (goals: CPU < 0.1 % of a core, RSS growth <= 1 MiB);
//! - the metrics history after a simulated year of 10-s readings: its size on
//!   disk, the cost of a reading, and the time of a LAST_365D and a LAST_24H query.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{ControlPlane, Sandbox};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const IDLE: Duration = Duration::from_secs(60);
const DROPS: usize = 10;

// One thread: the packaged daemon's tokio has no multi-threaded runtime, and this
// build's features are the binary's too (see Cargo.toml, `dev`).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The binary under test is this build's: with the default features it carries
    // `berth dev` and the `test.*` kinds, and its figures are not the package's.
    if cfg!(any(feature = "dev", feature = "test-jobs")) {
        eprintln!("the agent benchmark measures the packaged daemon: cargo bench --bench agent --no-default-features");
        std::process::exit(2);
    }
    let mut cp = ControlPlane::start().await;
    // No `test_jobs`: the packaged binary refuses the key.
    let mut agent = Sandbox::with_config(&cp, &[("test_jobs", "")]);
    out_of_page_cache(env!("CARGO_BIN_EXE_berth"));
    agent.start();
    let mut session = cp.session().await;
    session.recv_type("hello").await;
    session.send(json!({"type": "welcome", "acked_seq": 0, "heartbeat_secs": 20, "metrics_secs": 10})).await;
    session.recv_type("metrics").await;
    let pid = agent.pid();

    // Idle: keep reading (metrics, pongs) for a minute.
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let mut metrics = 0;
    while started.elapsed() < IDLE {
        if let Some(message) = session.try_recv(IDLE - started.elapsed()).await {
            metrics += usize::from(message["type"] == "metrics");
        }
    }
    let cpu_ticks = cpu_ticks(pid) - cpu_before;
    let ticks_per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap().unwrap() as f64;
    let cpu_percent = cpu_ticks as f64 / ticks_per_sec / IDLE.as_secs_f64() * 100.0;
    let (rss, hwm) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));

    // Reconnect after a 1012 close, timed to the next welcome.
    let mut gaps = Vec::new();
    for _ in 0..DROPS {
        let closed = Instant::now();
        session.close(CloseCode::Restart).await;
        session = cp.session().await;
        session.welcome(0, 20).await;
        gaps.push(closed.elapsed());
    }
    gaps.sort();

    // Monitoring: 50 ports and 50 processes, every 10 s. Checks that stay ok (nothing
    // listens on those ports, no process has those names) so the figures are the
    // readings' own; the thresholds are judged but never alert.
    let quiet =
        |w: u32, c: u32| json!({"warning": {"value": w, "alert": false}, "critical": {"value": c, "alert": false}});
    let ports: Vec<_> = (0..50).map(|i| json!({"protocol": if i % 2 == 0 { "TCP" } else { "UDP" }, "port": 40_000 + i, "alert_if": "RESPONDING"})).collect();
    let processes: Vec<_> =
        (0..50).map(|i| json!({"process": format!("bench-absent-{i}"), "alert_if": "RUNNING"})).collect();
    let policy = json!({"thresholds": {"cpu": quiet(90, 95), "ram": quiet(90, 95), "disk": quiet(80, 90),
        "transfer": quiet(1000, 2000), "internal_ping": quiet(50, 100)}, "ports": ports, "processes": processes});
    session.job("policy", "monitor.policy", policy).await;
    loop {
        let m = session.recv().await;
        if m["type"] == "job.status" && m["job_id"] == "policy" && m["status"] == "success" {
            break;
        }
        assert!(m["status"] != "error", "{m}");
    }
    // Two readings with the policy, then measure.
    tokio::time::sleep(Duration::from_secs(21)).await;
    let (rss_before, cpu_before) = (status_kib(pid, "VmRSS:"), crate::cpu_ticks(pid));
    let started = Instant::now();
    let mut alerts = 0;
    while started.elapsed() < IDLE {
        if let Some(message) = session.try_recv(IDLE - started.elapsed()).await {
            alerts += usize::from(message["type"] == "monitor.alert");
        }
    }
    let monitor_ticks = crate::cpu_ticks(pid) - cpu_before;
    let monitor_cpu = monitor_ticks as f64 / ticks_per_sec / IDLE.as_secs_f64() * 100.0;
    let (rss_after, hwm_after) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));

    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_berth")).unwrap().len();
    println!("berth agent benchmark (release build without default features, connected over TLS on loopback)");
    println!(
        "idle RSS after {}s, metrics every 10s ({metrics} sent): {:.2} MiB (peak {:.2} MiB)",
        IDLE.as_secs(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!("idle CPU over {}s: {cpu_percent:.3}% of one core ({cpu_ticks} ticks)", IDLE.as_secs());
    println!(
        "1012 close -> next welcome over {DROPS} drops: median {:.2}s, max {:.2}s, min {:.2}s",
        gaps[DROPS / 2].as_secs_f64(),
        gaps[DROPS - 1].as_secs_f64(),
        gaps[0].as_secs_f64()
    );
    println!("stripped release binary: {:.2} MiB ({binary} bytes)", binary as f64 / 1048576.0);
    println!(
        "monitor, 50 ports + 50 processes every 10s, idle {}s: CPU {monitor_cpu:.3}% of one core ({monitor_ticks} ticks; goal < 0.1%), \
         RSS {:.2} -> {:.2} MiB, growth {} KiB (goal <= 1024 KiB), peak {:.2} MiB, {alerts} alerts",
        IDLE.as_secs(),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after as i64 - rss_before as i64,
        hwm_after as f64 / 1024.0
    );
    history_figures();
}

/// Starts the daemon as after a boot: its binary read from disk, not from the page
/// cache the build just wrote. The file-backed part of RSS depends on it: a kernel
/// with large page-cache folios (ext4 since Linux 6.16) maps a whole folio on a
/// fault, and the folios a linker's writes leave are not those readahead makes (seen
/// here: 7.1 to 7.6 MiB for one binary warm, 7.2 MiB cold run after run).
fn out_of_page_cache(path: &str) {
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that closes the command name; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn status_kib(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The metrics history (`state::history`) after a simulated year of readings every
/// 10 s (3,153,600 of them, one disk), fed directly with chosen times: the files'
/// size, the cost of `record`, and the time of the seed's longest queries.
fn history_figures() {
    use berth::model::reading::{DiskUse, Reading};
    use berth::state::history::History;
    const DAY: u64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let start = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    let end = start + 365 * DAY;
    let mut reading = Reading {
        at_ms: start,
        ram_percent: 50.0,
        disks: vec![DiskUse { mount: "/".into(), used_percent: 40.0 }],
        ping_ms: Some(12.0),
        ..Reading::default()
    };
    let began = Instant::now();
    let mut readings = 0u64;
    while reading.at_ms <= end {
        reading.cpu_percent = (reading.at_ms / 3_600_000 % 97) as f32;
        history.record(&reading);
        reading.at_ms += 10_000;
        readings += 1;
    }
    let fed = began.elapsed();
    let size: u64 =
        std::fs::read_dir(dir.path().join("history")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let now = end + 30_000;
    let timed = |from: u64, step: u64| {
        let runs = 20;
        let began = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(history.query_at(now, from, now, step));
        }
        began.elapsed() / runs
    };
    let (year, day) = (timed(now - 365 * DAY, 43_200), timed(now - DAY, 600));
    println!(
        "metrics history after a simulated year ({readings} readings every 10s): {size} bytes ({:.2} MiB) on disk; \
         {:.2} us per reading on average ({:.1}s for the year); LAST_365D query (step 43200) {:.2} ms, \
         LAST_24H (step 600) {:.2} ms",
        size as f64 / 1048576.0,
        fed.as_secs_f64() * 1e6 / readings as f64,
        fed.as_secs_f64(),
        year.as_secs_f64() * 1000.0,
        day.as_secs_f64() * 1000.0
    );
}

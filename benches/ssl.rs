//! `cargo bench --bench ssl` (as root): the AutoSSL figures quoted in README.md.
//!
//! In a test machine with the real nginx and Debian's pebble (see tests/support/):
//! `ssl.auto` from the job's own started_at to finished_at (the self-probe, the
//! ACME order, HTTP-01 validation through nginx, the certificate, nginx -t and the
//! reload), median and spread over several issuances, and the agent's peak memory
//! (VmHWM of the berth process) during them. pebble runs with no validation sleep,
//! so the figure is berth's work plus one real ACME exchange on loopback.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use support::machine::Machine;
use support::pebble::Pebble;

const SAMPLES: usize = 10;

fn main() {
    let machine = Machine::start();
    machine.add_hosts(&["bench.test", "www.bench.test", "bench2.test", "www.bench2.test"]);
    let pebble = Pebble::start(&machine);
    pebble.configure_berth();
    machine.job("sysuser.create", json!({"name": "bench"}));
    let app = json!({"name": "bench", "sysuser": "bench", "runtime": "php8.2", "domains": ["bench.test", "bench2.test"], "stack": "nginx"});
    assert_eq!(machine.job("app.create", app)["status"], "success");

    let mut millis = Vec::new();
    let mut rss = 0;
    // The first issuance also creates the ACME account: counted apart.
    let (first, first_rss) = issue(&machine);
    for _ in 0..SAMPLES {
        assert_eq!(machine.job("ssl.delete", json!({"app": "bench"}))["status"], "success");
        let (ms, peak) = issue(&machine);
        millis.push(ms);
        rss = rss.max(peak);
    }
    millis.sort_by(f64::total_cmp);
    drop(pebble);
    println!("berth ssl benchmark (test machine: real nginx, pebble 2.4 on loopback, 4 names per certificate)");
    println!("ssl.auto, first (creates the ACME account): {first:.0} ms (peak RSS {first_rss} KiB)");
    println!(
        "ssl.auto, {SAMPLES} issuances: median {:.0} ms, min {:.0} ms, max {:.0} ms (peak RSS {rss} KiB)",
        millis[SAMPLES / 2],
        millis[0],
        millis[SAMPLES - 1]
    );
}

/// One `ssl.auto`: its duration in ms and the agent's peak RSS in KiB.
fn issue(machine: &Machine) -> (f64, u64) {
    let (_, statuses, log) = machine.apply_logged(json!({"kind": "ssl.auto", "params": {"app": "bench"}}));
    let done = &statuses[0];
    assert_eq!((done["status"].as_str(), done["changed"].as_bool()), (Some("success"), Some(true)), "{done}");
    (support::job_ms(done), peak(&log))
}

fn peak(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("peak_rss_kib=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

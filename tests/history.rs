//! `metrics.history` through the wire, from a real `berth run`: what the history
//! files hold comes back as averages, an hour with nothing recorded as `null`s in
//! exactly that hour (so a control plane can fill its own outage from the agent),
//! and bad params are refused naming the field.
//!
//! The monitor loop that records readings is another module's: here the history
//! files are written before berth starts, with `History` itself, as the loop would.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth::model::reading::{DiskUse, Reading};
use berth::state::history::{History, DISK_BYTES};
use serde_json::{json, Value};
use support::{ControlPlane, Sandbox};

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

fn stamp(ms: u64) -> String {
    let text = berth::time::rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
    text.replace(".000Z", "Z")
}

fn reading(at_ms: u64, cpu: f32) -> Reading {
    Reading {
        at_ms,
        cpu_percent: cpu,
        ram_percent: 61.5,
        disks: vec![DiskUse { mount: "/".into(), used_percent: 42.0 }],
        rx_kbps: 800.0,
        tx_kbps: 120.0,
        ping_ms: Some(9.0),
    }
}

async fn run(session: &mut support::Session, job_id: &str, params: Value) -> Value {
    session.job(job_id, "metrics.history", params).await;
    session.until_final(job_id).await.pop().unwrap()
}

#[tokio::test]
async fn metrics_history_answers_from_the_agents_files_with_nulls_for_a_gap() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    let now = berth::time::unix_millis(SystemTime::now());
    let base = now - now % HOUR - 4 * HOUR;
    {
        // Three hours: cpu 20, then nothing for an hour (berth down), then cpu 40.
        let history = History::open(&agent.state()).unwrap();
        let mut at = base;
        while at <= base + 3 * HOUR {
            match (at - base) / HOUR {
                0 => history.record(&reading(at, 20.0)),
                1 => {}
                _ => history.record(&reading(at, 40.0)),
            }
            at += 10_000;
        }
    }
    agent.start();
    let (mut session, hello) = cp.welcomed(0, 20).await;
    assert!(hello["job_kinds"].as_array().unwrap().contains(&json!("metrics.history")), "{hello}");

    let done = run(&mut session, "h1", json!({"from": stamp(base), "to": stamp(base + 3 * HOUR), "step": 600})).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["changed"], false);
    let result = &done["result"];
    assert_eq!((result["from"].as_str(), result["step"].as_u64()), (Some(stamp(base).as_str()), Some(600)));
    let series = result["series"].as_object().unwrap();
    let names: Vec<&str> = series.keys().map(String::as_str).collect();
    assert_eq!(names, ["cpu", "disk:/", "internal_ping", "ram", "transfer_in", "transfer_out"]);
    let cpu = series["cpu"].as_array().unwrap();
    assert_eq!(cpu.len(), 18);
    for (i, point) in cpu.iter().enumerate() {
        assert_eq!(point[0], stamp(base + i as u64 * 10 * MIN), "times are the steps' starts");
        let expected = match i / 6 {
            0 => json!(20.0),
            1 => Value::Null,
            _ => json!(40.0),
        };
        assert_eq!(point[1], expected, "step {i}: {point}");
    }
    assert_eq!(series["ram"][0][1], json!(61.5));
    assert_eq!(series["disk:/"][17][1], json!(42.0));
    assert_eq!(series["transfer_in"][0][1], json!(800.0));
    assert_eq!(series["internal_ping"][7][1], Value::Null);

    // A range with nothing: the same series, every point null, one a minute.
    let empty = run(&mut session, "h2", json!({"from": stamp(base - 10 * HOUR), "to": stamp(base - 9 * HOUR)})).await;
    assert_eq!(empty["result"]["step"], 60, "the finest resolution fits an hour: {empty}");
    for (name, points) in empty["result"]["series"].as_object().unwrap() {
        let points = points.as_array().unwrap();
        assert_eq!(points.len(), 60, "{name}");
        assert!(points.iter().all(|p| p.as_array().unwrap().len() == 2 && p[1].is_null()), "{name}: {points:?}");
    }

    // Refused, naming the field.
    for (job_id, params, field) in [
        ("bad1", json!({"from": stamp(base), "to": stamp(base + HOUR), "step": 90}), "step"),
        ("bad2", json!({"from": stamp(base), "to": stamp(now + 10 * MIN)}), "to"),
        ("bad3", json!({"from": "2026-02-30T00:00:00Z", "to": stamp(base)}), "from"),
        ("bad4", json!({"from": stamp(base - 40 * HOUR), "to": stamp(base), "step": 60}), "step"),
    ] {
        let done = run(&mut session, job_id, params).await;
        assert_eq!(done["error"]["code"], "invalid_params", "{done}");
        assert_eq!(done["error"]["field"], field, "{done}");
    }
    let size: u64 =
        std::fs::read_dir(agent.state().join("history")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(size, DISK_BYTES, "berth kept the files as they were made");
}

//! The history with a simulated clock: readings are fed with chosen `at_ms`.

use super::*;
use crate::model::reading::DiskUse;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// 2025-12-01T00:00:00Z.
const START: u64 = 1_764_547_200_000;

fn reading(at_ms: u64, cpu: f32) -> Reading {
    Reading {
        at_ms,
        cpu_percent: cpu,
        ram_percent: 50.0,
        disks: vec![DiskUse { mount: "/".into(), used_percent: 40.0 }],
        rx_kbps: 100.0,
        tx_kbps: 7.0,
        ping_ms: Some(12.0),
    }
}

fn column<'a>(series: &'a Series, name: &str) -> &'a [Option<f64>] {
    &series.series.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no series {name}")).1
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-3)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("history")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

/// cpu of a simulated year's hour `h` (since START): known, varying.
fn hourly_cpu(h: u64) -> f64 {
    (h % 97) as f64
}

#[test]
fn a_simulated_year_keeps_its_size_and_answers_every_period() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    assert_eq!(dir_bytes(dir.path()), DISK_BYTES);
    assert!(dir_bytes(dir.path()) <= 2 * 1024 * 1024);
    let end = START + 365 * DAY;
    let mut at = START;
    while at < end {
        history.record(&reading(at, hourly_cpu((at - START) / HOUR) as f32));
        at += 10_000;
    }
    // One reading into the next minute finishes the year's last minute.
    history.record(&reading(end, 0.0));
    assert_eq!(dir_bytes(dir.path()), DISK_BYTES, "a year later, the same size");
    let now = end + 30_000;
    let hour_of = |ms: u64| hourly_cpu((ms - START) / HOUR);

    // LAST_HOUR, step 60: 61 steps (from is mid-minute), the last one in progress.
    let last_hour = history.query_at(now, now - HOUR, now, 60);
    assert_eq!(last_hour.points, 61);
    let cpu = column(&last_hour, "cpu");
    for (i, value) in cpu[..60].iter().enumerate() {
        assert!(close(*value, hour_of(last_hour.start_ms + i as u64 * MIN)), "minute {i}: {value:?}");
    }
    assert_eq!(cpu[60], None, "the minute in progress");
    assert!(close(column(&last_hour, "ram")[0], 50.0));
    assert!(close(column(&last_hour, "disk:/")[59], 40.0));
    assert!(close(column(&last_hour, "transfer_in")[59], 100.0));
    assert!(close(column(&last_hour, "transfer_out")[59], 7.0));
    assert!(close(column(&last_hour, "internal_ping")[59], 12.0));

    // LAST_24H at ten minutes, LAST_7D at ten minutes, LAST_30D at an hour.
    for (from, step, points) in [(now - DAY, 600, 145), (now - 7 * DAY, 600, 1009), (now - 30 * DAY, 3600, 721)] {
        assert_eq!(resolution_for(from, now), if from + 48 * HOUR >= now { 60 } else { 600 });
        let answer = history.query_at(now, from, now, step);
        assert_eq!(answer.points, points, "from {from}, step {step}");
        let cpu = column(&answer, "cpu");
        for (i, value) in cpu[..points - 1].iter().enumerate() {
            let at = answer.start_ms + i as u64 * step * 1000;
            assert!(close(*value, hour_of(at)), "step {step}, point {i}: {value:?} for {}", hour_of(at));
        }
    }

    // LAST_365D: from the hour tier, a point a day, each the day's 24 hours' mean.
    let from = now - 365 * DAY;
    assert_eq!(resolution_for(from, now), 3600);
    let year = history.query_at(now, from, now, 86_400);
    assert_eq!(year.points, 366);
    assert_eq!(year.start_ms, START);
    let cpu = column(&year, "cpu");
    for (day, value) in cpu[..365].iter().enumerate() {
        let mean = (0..24).map(|h| hourly_cpu(day as u64 * 24 + h)).sum::<f64>() / 24.0;
        assert!(close(*value, mean), "day {day}: {value:?}, not {mean}");
    }
    assert_eq!(cpu[365], None, "the minute in progress is in no tier yet");
    assert!(close(column(&year, "disk:/")[0], 40.0));
}

#[test]
fn an_hour_without_readings_is_null_in_exactly_that_hour() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let gap = START + 2 * HOUR..START + 3 * HOUR;
    let mut at = START;
    while at < START + 4 * HOUR {
        if !gap.contains(&at) {
            history.record(&reading(at, 30.0));
        }
        at += 10_000;
    }
    let now = START + 4 * HOUR + 5_000;
    let minutes = history.query_at(now, START, START + 4 * HOUR, 60);
    assert_eq!(minutes.points, 240);
    for (name, values) in &minutes.series {
        for (i, value) in values[..239].iter().enumerate() {
            let at = START + i as u64 * MIN;
            assert_eq!(value.is_none(), gap.contains(&at), "{name} minute {i}: {value:?}");
        }
    }
    let tens = history.query_at(now, START, START + 4 * HOUR, 600);
    let nulls: Vec<usize> =
        column(&tens, "cpu").iter().enumerate().filter(|(_, v)| v.is_none()).map(|(i, _)| i).collect();
    assert_eq!(nulls, (12..18).collect::<Vec<_>>(), "ten-minute steps 12..18 are the gap");
    let hours = history.query_at(now, START, START + 4 * HOUR, 3600);
    let cpu = column(&hours, "cpu");
    assert_eq!(cpu[2], None);
    assert!(close(cpu[0], 30.0) && close(cpu[1], 30.0) && close(cpu[3], 30.0), "{cpu:?}");
}

#[test]
fn a_crash_mid_minute_loses_that_minute_only() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    // Five and a half minutes, then the History is dropped with no shutdown.
    for k in 0..33 {
        history.record(&reading(START + k * 10_000, k as f32));
    }
    drop(history);
    let history = History::open(dir.path()).unwrap();
    let now = START + 6 * MIN;
    let cpu = column(&history.query_at(now, START, now, 60), "cpu").to_vec();
    for (minute, value) in cpu[..5].iter().enumerate() {
        let mean = (minute * 6..minute * 6 + 6).sum::<usize>() as f64 / 6.0;
        assert!(close(*value, mean), "minute {minute}: {value:?}");
    }
    assert_eq!(cpu[5], None, "the minute in progress at the crash");
    assert!(close(column(&history.query_at(now, START, now, 600), "cpu")[0], 14.5), "the ten minutes have them too");
    // Recording goes on where it left off.
    for k in 40..49 {
        history.record(&reading(START + k * 10_000, 1.0));
    }
    let cpu = column(&history.query_at(START + 9 * MIN, START, START + 9 * MIN, 60), "cpu").to_vec();
    assert!(close(cpu[6], 1.0) && close(cpu[7], 1.0), "{cpu:?}");
}

#[test]
fn garbage_truncated_or_foreign_files_read_as_gaps_and_recording_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    for k in 0..13 {
        history.record(&reading(START + k * 10_000, 5.0));
    }
    drop(history);
    let files = dir.path().join("history");
    // The minutes: a good header, garbage slots (kept: each slot reads as a gap).
    let mut garbage = std::fs::read(files.join("minutes")).unwrap();
    for (i, byte) in garbage.iter_mut().enumerate().skip(ring::HEADER_LEN as usize) {
        *byte = (i * 7919 % 251) as u8;
    }
    std::fs::write(files.join("minutes"), &garbage).unwrap();
    std::fs::write(files.join("tenminutes"), b"torn").unwrap();
    let mut foreign = std::fs::read(files.join("hours")).unwrap();
    foreign[8] = 9;
    std::fs::write(files.join("hours"), &foreign).unwrap();
    std::fs::write(files.join("disks"), vec![0xff; 100]).unwrap();

    let history = History::open(dir.path()).unwrap();
    assert_eq!(dir_bytes(dir.path()), DISK_BYTES, "each file has its size again");
    assert_eq!(std::fs::read(files.join("minutes")).unwrap(), garbage, "a file of the right shape is kept");
    let now = START + 3 * MIN;
    for step in [60, 600, 3600] {
        let answer = history.query_at(now, START, now, step);
        assert!(answer.series.iter().all(|(_, v)| v.iter().all(Option::is_none)), "step {step}: {answer:?}");
    }
    for k in 0..13 {
        history.record(&reading(START + 10 * MIN + k * 10_000, 8.0));
    }
    let answer = history.query_at(START + 13 * MIN, START + 10 * MIN, START + 12 * MIN, 60);
    assert!(close(column(&answer, "cpu")[0], 8.0) && close(column(&answer, "cpu")[1], 8.0), "{answer:?}");
    assert!(close(column(&answer, "disk:/")[0], 40.0));
}

#[test]
fn odd_readings_and_odd_queries_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    let mut odd = reading(START, f32::NAN);
    odd.rx_kbps = f32::INFINITY;
    odd.disks.push(DiskUse { mount: "/x".repeat(300), used_percent: 1.0 });
    history.record(&odd);
    history.record(&reading(u64::MAX, 1.0));
    history.record(&reading(0, 1.0));
    history.record(&reading(START + MIN, 1.0));
    let answer = history.query_at(START + 2 * MIN, START, START + 2 * MIN, 60);
    assert_eq!(column(&answer, "cpu")[0], None, "NaN is no value");
    assert!(close(column(&answer, "ram")[0], 50.0));
    assert_eq!(answer.series.len(), FIXED + 1, "the over-long mount is not kept");
    for (from, to, step) in [
        (0, u64::MAX, 60),
        (u64::MAX - 1, u64::MAX, 86_400),
        (START, START + 1, 0),
        (START, START, 60),
        (5, 0, 60),
        (START, START + HOUR, 61),
        (START, START + HOUR, u64::MAX),
    ] {
        let answer = history.query_at(START, from, to, step);
        assert!(answer.points as u64 <= MAX_QUERY_POINTS);
    }
}

#[test]
fn a_mount_seen_late_has_no_values_before_it_was_seen() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path()).unwrap();
    for k in 0..61 {
        let mut r = reading(START + k * 10_000, 1.0);
        if k >= 30 {
            r.disks.push(DiskUse { mount: "/var/lib/mysql".into(), used_percent: 70.0 });
        }
        history.record(&r);
    }
    let answer = history.query_at(START + 11 * MIN, START, START + 10 * MIN, 60);
    let mysql = column(&answer, "disk:/var/lib/mysql");
    assert_eq!(&mysql[..5], &[None; 5]);
    assert!(close(mysql[5], 70.0) && close(mysql[9], 70.0));
}

#[test]
fn queries_while_recording_never_panic_and_see_only_whole_slots() {
    let dir = tempfile::tempdir().unwrap();
    let history = std::sync::Arc::new(History::open(dir.path()).unwrap());
    let writer = {
        let history = history.clone();
        std::thread::spawn(move || {
            for k in 0..(6 * 60 * 6) {
                history.record(&reading(START + k * 10_000, 25.0));
            }
        })
    };
    while !writer.is_finished() {
        let answer = history.query_at(START + 6 * HOUR, START, START + 6 * HOUR, 600);
        for value in column(&answer, "cpu").iter().flatten() {
            assert!((value - 25.0).abs() < 1e-3, "a torn slot is a gap, never a wrong value: {value}");
        }
    }
    writer.join().unwrap();
    let answer = history.query_at(START + 6 * HOUR, START, START + 6 * HOUR, 3600);
    assert!(column(&answer, "cpu")[..5].iter().all(|v| close(*v, 25.0)), "{answer:?}");
}

//! The agent's own history of the host's resources (cpu, ram, each disk, transfer
//! in and out, internal ping), so a control plane can draw the last hour, day,
//! week, month or year, and fill a gap of its own (an outage) from the agent.
//!
//! Three tiers, each a fixed-size ring file under `state_dir/history/` ([`ring`]):
//!
//! | tier          | resolution | slots | holds (answers `from` within) | file        |
//! |---------------|-----------:|------:|-------------------------------|------------:|
//! | `minutes`     |       60 s |  2940 | 49 h (48 h)                   | 214,684 B   |
//! | `tenminutes`  |      600 s |  5184 | 36 days (35 days)             | 378,496 B   |
//! | `hours`       |     3600 s |  9600 | 400 days (400 days)           | 700,864 B   |
//!
//! plus the disk table ([`disks`], 2,048 B): [`DISK_BYTES`] = 1,296,092 bytes
//! (1.24 MiB) in all, fixed at the first start, whatever the uptime.
//!
//! [`History::record`] adds a reading to the current minute's sums, the only data
//! kept in memory besides the disk table (≈ 150 bytes of sums, ≈ 400 bytes of
//! table with the mounts' names, and four open files). When a reading
//! of a later minute comes, the finished minute is written to its slot at once, and
//! its ten-minute and hour slots are recomputed from the finer tier (10 and 6 slots
//! read, one slot written each): the coarse tiers are derived, so nothing in them
//! is lost by a crash that the finer tier has. A kill of berth loses the minute in
//! progress, nothing else. No fsync: a crash of the machine also loses what the
//! kernel had not yet written back (typically ≤ 30 s more); a slot torn by it reads
//! as a gap (each slot has a CRC).
//!
//! A query does not take the lock `record` holds: a slot being rewritten while a
//! query reads it (the current ten minutes or hour) can read as a gap for that one
//! query. A write that fails (a full disk) is logged once until one succeeds.
//!
//! Averages: the minute tier averages its readings; the coarse tiers average the
//! minutes that have a value (each minute weighs the same). A disk has a value only
//! while mounted, the ping only while connected.

mod disks;
mod ring;

use std::io;
use std::path::Path;
use std::sync::Mutex;

use crate::model::reading::Reading;
use disks::Disks;
use ring::{Ring, Slot, FIXED, SERIES};

pub use disks::MAX_MOUNT_LEN;
pub use ring::MAX_DISKS;

/// The names of the fixed series, in slot order (units as in `monitor.alert`).
pub const FIXED_NAMES: [&str; FIXED] = ["cpu", "ram", "transfer_in", "transfer_out", "internal_ping"];

/// One tier: minutes per slot, slots, and how far back it answers a query's `from`.
struct Tier {
    name: &'static str,
    res_min: u32,
    capacity: u32,
    holds_ms: u64,
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

const TIERS: [Tier; 3] = [
    Tier { name: "minutes", res_min: 1, capacity: 49 * 60, holds_ms: 48 * HOUR_MS },
    Tier { name: "tenminutes", res_min: 10, capacity: 36 * 144, holds_ms: 35 * DAY_MS },
    Tier { name: "hours", res_min: 60, capacity: 400 * 24, holds_ms: 400 * DAY_MS },
];

/// The history's size on disk, in bytes: fixed.
pub const DISK_BYTES: u64 = disks::FILE_LEN
    + ring::HEADER_LEN * 3
    + (TIERS[0].capacity + TIERS[1].capacity + TIERS[2].capacity) as u64 * ring::SLOT_LEN as u64;

const _: () = assert!(DISK_BYTES <= 2 * 1024 * 1024, "a year of history in at most 2 MiB");

/// Queries give at most this many points (the job allows 1,440).
pub const MAX_QUERY_POINTS: u64 = 10_000;

/// The resolution, in seconds, the history holds for a range that starts at `from_ms`.
pub fn resolution_for(from_ms: u64, now_ms: u64) -> u64 {
    let tier = TIERS.iter().find(|t| from_ms.saturating_add(t.holds_ms) >= now_ms).unwrap_or(&TIERS[2]);
    u64::from(tier.res_min) * 60
}

/// The stored resolutions, in seconds, finest first.
pub fn resolutions() -> [u64; 3] {
    TIERS.map(|t| u64::from(t.res_min) * 60)
}

/// A query's answer: one value per step from `start_ms` on, per series; `None` is a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub start_ms: u64,
    pub step_secs: u64,
    pub points: usize,
    /// `cpu`, `ram`, `transfer_in`, `transfer_out`, `internal_ping`, then `disk:MOUNT` each.
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

/// The minute being recorded: sums and counts per series.
#[derive(Debug)]
struct Partial {
    minute: u32,
    sum: [f64; SERIES],
    count: [u16; SERIES],
}

#[derive(Debug)]
struct State {
    partial: Option<Partial>,
    disks: Disks,
    /// The last minute's write failed (a full disk): logged once until one succeeds.
    failing: bool,
}

/// The history: the tiers' files, open, and the current minute.
#[derive(Debug)]
pub struct History {
    rings: [Ring; 3],
    state: Mutex<State>,
}

impl History {
    /// Opens (making them when missing) the files under `state_dir/history/`. A file
    /// of the wrong size or version is replaced by an empty one (a log line says so).
    pub fn open(state_dir: &Path) -> io::Result<History> {
        let dir = state_dir.join("history");
        crate::host::fs::ensure_dir(&dir, 0o700)?;
        let ring = |t: &Tier| Ring::open(&dir, t.name, t.res_min, t.capacity);
        let rings = [ring(&TIERS[0])?, ring(&TIERS[1])?, ring(&TIERS[2])?];
        let disks = Disks::open(&dir)?;
        Ok(History { rings, state: Mutex::new(State { partial: None, disks, failing: false }) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a reading (called every `monitor_secs`). When it is of a later (or, the
    /// clock set back, earlier) minute than the one in progress, that one is written
    /// first. Non-finite values are skipped; a reading past year 10000 is dropped.
    pub fn record(&self, reading: &Reading) {
        let Ok(minute) = u32::try_from(reading.at_ms / 60_000) else { return };
        let mut state = self.state();
        if let Some(done) = state.partial.take_if(|p| p.minute != minute) {
            let written = self.finish(&done, &state.disks.since());
            match &written {
                Err(e) if !state.failing => tracing::warn!("cannot write the metrics history: {e}"),
                Ok(()) if state.failing => tracing::info!("the metrics history is written again"),
                _ => {}
            }
            state.failing = written.is_err();
        }
        let State { partial, disks, .. } = &mut *state;
        let partial = partial.get_or_insert(Partial { minute, sum: [0.0; SERIES], count: [0; SERIES] });
        let mut add = |series: usize, value: f32| {
            if value.is_finite() {
                partial.sum[series] += f64::from(value);
                partial.count[series] = partial.count[series].saturating_add(1);
            }
        };
        add(0, reading.cpu_percent);
        add(1, reading.ram_percent);
        add(2, reading.rx_kbps);
        add(3, reading.tx_kbps);
        if let Some(ping) = reading.ping_ms {
            add(4, ping);
        }
        for disk in &reading.disks {
            if let Some(index) = disks.index_of(&disk.mount, u64::from(minute) * 60_000) {
                add(FIXED + index, disk.used_percent);
            }
        }
    }

    /// Writes a finished minute, then recomputes its ten-minute and hour slots.
    fn finish(&self, partial: &Partial, since: &[u64; MAX_DISKS]) -> io::Result<()> {
        let mut slot = Slot::empty(partial.minute);
        for s in 0..SERIES {
            if partial.count[s] > 0 {
                slot.avg[s] = (partial.sum[s] / f64::from(partial.count[s])) as f32;
                slot.count[s] = u8::try_from(partial.count[s]).unwrap_or(u8::MAX);
            }
        }
        self.rings[0].write(&slot)?;
        for tier in 1..TIERS.len() {
            let (fine, coarse) = (&self.rings[tier - 1], &self.rings[tier]);
            let start = partial.minute - partial.minute % coarse.res_min;
            let parts = fine.read(start, coarse.res_min / fine.res_min);
            coarse.write(&roll_up(start, &parts, tier - 1, since))?;
        }
        Ok(())
    }

    /// [`History::query_at`] now.
    pub fn query(&self, from_ms: u64, to_ms: u64, step_secs: u64) -> Series {
        self.query_at(crate::time::unix_millis(std::time::SystemTime::now()), from_ms, to_ms, step_secs)
    }

    /// The averages per `step_secs` (a multiple of 60) from the step that holds
    /// `from_ms` to the one that holds `to_ms` (exclusive), steps aligned to
    /// multiples of the step since the epoch, read from the finest tier whose
    /// resolution divides the step and that holds `from_ms` at `now_ms`. The minute
    /// in progress is not in it. A bad step gives no points.
    pub fn query_at(&self, now_ms: u64, from_ms: u64, to_ms: u64, step_secs: u64) -> Series {
        let (since, mounts): (_, Vec<(usize, String)>) = {
            let state = self.state();
            let entries = state.disks.entries.iter().enumerate();
            (
                state.disks.since(),
                entries.filter_map(|(i, d)| Some((i, format!("disk:{}", d.as_ref()?.mount)))).collect(),
            )
        };
        let step_ms = step_secs.saturating_mul(1000);
        let usable = step_secs > 0 && step_secs % 60 == 0 && step_secs <= u64::from(u32::MAX);
        let start_ms = if usable { from_ms - from_ms % step_ms } else { from_ms };
        let points = if usable && to_ms > start_ms { (to_ms - start_ms).div_ceil(step_ms) } else { 0 };
        let points = points.min(MAX_QUERY_POINTS) as usize;
        let mut sums = vec![[(0.0f64, 0u32); SERIES]; points];
        if points > 0 {
            let end_ms = start_ms.saturating_add(points as u64 * step_ms);
            let dividing = || TIERS.iter().enumerate().filter(|(_, t)| step_secs % (u64::from(t.res_min) * 60) == 0);
            let tier = dividing()
                .find(|(_, t)| from_ms.saturating_add(t.holds_ms) >= now_ms)
                .or_else(|| dividing().next_back())
                .map_or(0, |(i, _)| i);
            let ring = &self.rings[tier];
            let res_ms = u64::from(ring.res_min) * 60_000;
            // Only slots that can still hold data: the last lap of the ring, up to a minute ahead.
            let oldest = now_ms.saturating_sub(u64::from(ring.capacity - 1) * res_ms);
            let lo = start_ms.max(oldest - oldest % res_ms);
            let hi = end_ms.min(now_ms.saturating_add(60_000));
            if hi > lo && lo / 60_000 <= u64::from(u32::MAX) {
                let first_min = (lo / 60_000) as u32;
                let n = ((hi - lo).div_ceil(res_ms)).min(u64::from(ring.capacity)) as u32;
                for slot in ring.read(first_min, n).into_iter().flatten() {
                    let bucket = ((u64::from(slot.start_min) * 60_000 - start_ms) / step_ms) as usize;
                    let Some(bucket) = sums.get_mut(bucket) else { continue };
                    for s in shown(&slot, tier, &since) {
                        let weight = if tier == 0 { 1 } else { u32::from(slot.count[s]) };
                        bucket[s].0 += f64::from(slot.avg[s]) * f64::from(weight);
                        bucket[s].1 += weight;
                    }
                }
            }
        }
        let column = |s: usize| sums.iter().map(|b| (b[s].1 > 0).then(|| b[s].0 / f64::from(b[s].1))).collect();
        let mut series: Vec<(String, Vec<Option<f64>>)> =
            FIXED_NAMES.iter().enumerate().map(|(s, name)| ((*name).to_owned(), column(s))).collect();
        series.extend(mounts.into_iter().map(|(i, name)| (name, column(FIXED + i))));
        Series { start_ms, step_secs, points, series }
    }
}

/// The series of `slot` (of tier `tier`) that have a value for what its index
/// holds now: a disk's values from periods ending at or before its `since` are
/// another mount's.
fn shown<'a>(slot: &'a Slot, tier: usize, since: &'a [u64; MAX_DISKS]) -> impl Iterator<Item = usize> + 'a {
    let end_ms = (u64::from(slot.start_min) + u64::from(TIERS[tier].res_min)) * 60_000;
    (0..SERIES).filter(move |&s| slot.count[s] > 0 && (s < FIXED || end_ms > since[s - FIXED]))
}

/// The slot of a coarser tier starting at `start` from the finer tier's `parts`:
/// each minute weighs the same (a minute slot counts once, a coarser one by its count).
fn roll_up(start: u32, parts: &[Option<Slot>], fine_tier: usize, since: &[u64; MAX_DISKS]) -> Slot {
    let mut sum = [(0.0f64, 0u32); SERIES];
    for part in parts.iter().flatten() {
        for s in shown(part, fine_tier, since) {
            let weight = if fine_tier == 0 { 1 } else { u32::from(part.count[s]) };
            sum[s].0 += f64::from(part.avg[s]) * f64::from(weight);
            sum[s].1 += weight;
        }
    }
    let mut slot = Slot::empty(start);
    for (s, &(total, weight)) in sum.iter().enumerate() {
        if weight > 0 {
            slot.avg[s] = (total / f64::from(weight)) as f32;
            slot.count[s] = u8::try_from(weight).unwrap_or(u8::MAX);
        }
    }
    slot
}

#[cfg(test)]
mod tests;

//! The checks of a monitoring policy as state machines: readings in, `monitor.alert`
//! bodies out, on transitions only. Pure: no I/O and no clock (each reading carries
//! its time), so the flapping cases run on a simulated clock in the unit tests.
//!
//! Hysteresis (docs/protocol.md "Monitoring"): a level is raised after its
//! condition held for [`RAISE_READINGS`] consecutive readings ([`RAISE_READINGS_BINARY`]
//! for ports and processes), and left downwards only after [`CLEAR_READINGS`]
//! consecutive readings below `threshold − margin`, the margin being 10 % of the
//! threshold's value (Netdata's "warn above 85, clear below 75"). So a value that
//! swings around a threshold raises once and clears once, not every reading.
//! A level whose `alert` is false is not judged. A check that leaves the policy (or
//! a disk that is no longer mounted) is dropped silently; a new check starts at `ok`
//! and says nothing until it leaves it.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use crate::model::monitor::{Metric, Policy, PortAlertIf, ProcessAlertIf, Threshold};
use crate::model::protocol::MonitorAlert;
use crate::model::reading::Reading;

/// Readings a resource level's condition must hold before it is raised.
pub const RAISE_READINGS: u32 = 3;
/// Readings a port's or process's condition must hold before it is raised.
pub const RAISE_READINGS_BINARY: u32 = 2;
/// Readings below `threshold − margin` before a level is left downwards.
pub const CLEAR_READINGS: u32 = 3;

/// A check's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// What the host showed at one reading besides its resources, in the policy's order:
/// per port check, whether something listens; per process check, how many
/// non-zombie processes have the name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub ports: Vec<bool>,
    pub processes: Vec<u32>,
}

/// How one check stands between readings.
#[derive(Debug, Clone)]
struct State {
    level: Level,
    /// A run of readings above the level: (readings, the lowest level they reached, first reading's time).
    rising: Option<(u32, Level, u64)>,
    /// A run of readings below the level's clear line: (readings, the highest level they stay at, first time).
    falling: Option<(u32, Level, u64)>,
}

impl State {
    fn new() -> State {
        State { level: Level::Ok, rising: None, falling: None }
    }
}

/// The checks' states, kept across readings and policies.
#[derive(Debug, Default)]
pub struct Alerting {
    states: BTreeMap<String, State>,
}

/// One check's judgement of one reading: what level the value reaches going up,
/// and whether (and to which level) it has cleared the current level going down.
struct Judged {
    up: Level,
    /// `Some(level)`: below the current level's clear line, at most `level`.
    down: Option<Level>,
}

impl Alerting {
    pub fn new() -> Alerting {
        Alerting::default()
    }

    /// Judges one reading against `policy`; returns the transitions, in check order.
    /// `facts` must follow `policy`'s ports and processes (missing entries count as
    /// not listening / not running). `now_ms` is when the alerts are made (`at`).
    pub fn observe(&mut self, policy: &Policy, reading: &Reading, facts: &Facts, now_ms: u64) -> Vec<MonitorAlert> {
        let mut out = Vec::new();
        let t = reading.at_ms;
        let mut judge = |states: &mut BTreeMap<String, State>,
                         check: String,
                         kind: &str,
                         value: f64,
                         raise: u32,
                         judged: &dyn Fn(Level) -> Judged| {
            let state = states.entry(check.clone()).or_insert_with(State::new);
            if let Some((level, since)) = step(state, judged(state.level), raise, t) {
                out.push(MonitorAlert {
                    check,
                    kind: kind.to_owned(),
                    level: level.as_str().to_owned(),
                    value: round(value),
                    since: rfc3339(since),
                    at: rfc3339(now_ms),
                });
            }
        };
        let mut names: Vec<String> = Vec::new();
        let mut resource = |states: &mut BTreeMap<String, State>, check: String, metric: Metric, value: f64| {
            let threshold = policy.threshold(metric);
            names.push(check.clone());
            judge(states, check, "resources", value, RAISE_READINGS, &|level| judge_threshold(threshold, level, value));
        };
        resource(&mut self.states, "cpu".into(), Metric::Cpu, f64::from(reading.cpu_percent));
        resource(&mut self.states, "ram".into(), Metric::Ram, f64::from(reading.ram_percent));
        for disk in &reading.disks {
            resource(&mut self.states, format!("disk:{}", disk.mount), Metric::Disk, f64::from(disk.used_percent));
        }
        resource(&mut self.states, "transfer".into(), Metric::Transfer, f64::from(reading.transfer_kbps()));
        match reading.ping_ms {
            Some(ping) => resource(&mut self.states, "internal_ping".into(), Metric::InternalPing, f64::from(ping)),
            // No reading while disconnected: the check keeps its state, neither raised nor cleared.
            None => names.push("internal_ping".into()),
        }
        for (i, port) in policy.ports.iter().enumerate() {
            let listening = facts.ports.get(i).copied().unwrap_or(false);
            let holds = listening == (port.alert_if == PortAlertIf::Responding);
            let check = port.check_name();
            names.push(check.clone());
            judge(&mut self.states, check, "ports", f64::from(u8::from(listening)), RAISE_READINGS_BINARY, &|l| {
                judge_binary(holds, l)
            });
        }
        for (i, process) in policy.processes.iter().enumerate() {
            let count = facts.processes.get(i).copied().unwrap_or(0);
            let holds = (count > 0) == (process.alert_if == ProcessAlertIf::Running);
            let check = process.check_name();
            names.push(check.clone());
            judge(&mut self.states, check, "process", f64::from(count), RAISE_READINGS_BINARY, &|l| {
                judge_binary(holds, l)
            });
        }
        self.states.retain(|check, _| names.contains(check));
        out
    }

    /// The level a check stands at (`None`: not tracked).
    pub fn level(&self, check: &str) -> Option<Level> {
        self.states.get(check).map(|s| s.level)
    }

    /// How many checks are tracked.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// Advances `state` by one judged reading taken at `t`; on a transition, the new
/// level and when the run of readings that brought it started.
fn step(state: &mut State, judged: Judged, raise: u32, t: u64) -> Option<(Level, u64)> {
    if judged.up > state.level {
        state.falling = None;
        let (count, lowest, since) = match state.rising {
            Some((count, lowest, since)) => (count + 1, lowest.min(judged.up), since),
            None => (1, judged.up, t),
        };
        if count >= raise {
            state.rising = None;
            state.level = lowest;
            return Some((lowest, since));
        }
        state.rising = Some((count, lowest, since));
        return None;
    }
    state.rising = None;
    match judged.down {
        Some(to) if state.level > Level::Ok => {
            let (count, highest, since) = match state.falling {
                Some((count, highest, since)) => (count + 1, highest.max(to), since),
                None => (1, to, t),
            };
            if count >= CLEAR_READINGS {
                state.falling = None;
                state.level = highest;
                return Some((highest, since));
            }
            state.falling = Some((count, highest, since));
        }
        _ => state.falling = None,
    }
    None
}

/// A threshold's judgement of `value` while the check stands at `current`.
fn judge_threshold(threshold: Threshold, current: Level, value: f64) -> Judged {
    let line = |level: Level| -> Option<f64> {
        let l = match level {
            Level::Ok => return None,
            Level::Warning => threshold.warning,
            Level::Critical => threshold.critical,
        };
        l.alert.then_some(f64::from(l.value))
    };
    let clear_line = |level: Level| line(level).map(|v| v - v / 10.0);
    let up = [Level::Critical, Level::Warning]
        .into_iter()
        .find(|&level| line(level).is_some_and(|v| value > v))
        .unwrap_or(Level::Ok);
    // Cleared: below the current level's clear line (or the level is no longer judged).
    let cleared = current > Level::Ok && clear_line(current).is_none_or(|c| value < c);
    let down = cleared.then(|| {
        [Level::Warning]
            .into_iter()
            .filter(|&level| level < current)
            .find(|&level| clear_line(level).is_some_and(|c| value >= c))
            .unwrap_or(Level::Ok)
    });
    Judged { up, down }
}

/// A port's or process's judgement: the condition holding is `critical`.
fn judge_binary(holds: bool, current: Level) -> Judged {
    if holds {
        Judged { up: Level::Critical, down: None }
    } else {
        Judged { up: Level::Ok, down: (current > Level::Ok).then_some(Level::Ok) }
    }
}

/// The value as sent: two decimals are plenty for percent, kbps and ms.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn rfc3339(ms: u64) -> String {
    crate::time::rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::monitor::tests::seed;
    use crate::model::reading::DiskUse;
    use serde_json::json;

    const START: u64 = 1_795_348_800_000;

    fn policy(edit: impl FnOnce(&mut serde_json::Value)) -> Policy {
        let mut value = seed();
        edit(&mut value);
        Policy::from_value(&value).unwrap()
    }

    fn reading(i: u64, cpu: f32) -> Reading {
        Reading { at_ms: START + i * 10_000, cpu_percent: cpu, ping_ms: Some(5.0), ..Reading::default() }
    }

    fn facts(policy: &Policy, nginx: u32) -> Facts {
        Facts { ports: vec![nginx > 0; policy.ports.len()], processes: vec![nginx; policy.processes.len()] }
    }

    fn levels(alerts: &[MonitorAlert]) -> Vec<(&str, &str)> {
        alerts.iter().map(|a| (a.check.as_str(), a.level.as_str())).collect()
    }

    #[test]
    fn a_value_swinging_around_a_threshold_raises_once_and_clears_once() {
        // cpu critical at 95 (alerting); the value swings ±3 around it for 30 minutes of 10-s readings.
        let policy = policy(|_| {});
        let mut alerting = Alerting::new();
        let mut all = Vec::new();
        for i in 0..180 {
            let cpu = if i % 2 == 0 { 98.0 } else { 92.0 };
            all.extend(alerting.observe(&policy, &reading(i, cpu), &facts(&policy, 1), START + i * 10_000));
        }
        // Swinging above and below every other reading never holds 3 in a row: nothing at all.
        assert!(all.len() <= 2, "{:?}", levels(&all));
        // Now hold above, swing, then drop: one raise, one clear.
        let mut i = 180;
        for cpu in [98.0, 97.0, 99.0].into_iter().chain((0..180).map(|n| if n % 2 == 0 { 98.0 } else { 92.0 })) {
            all.extend(alerting.observe(&policy, &reading(i, cpu), &facts(&policy, 1), START + i * 10_000));
            i += 1;
        }
        for _ in 0..5 {
            all.extend(alerting.observe(&policy, &reading(i, 10.0), &facts(&policy, 1), START + i * 10_000));
            i += 1;
        }
        assert_eq!(levels(&all), [("cpu", "critical"), ("cpu", "ok")]);
        assert_eq!(all[0].since, rfc3339(START + 180 * 10_000));
        assert_eq!(all[0].value, 99.0);
        assert_eq!(all[1].since, rfc3339(START + 363 * 10_000));
    }

    #[test]
    fn a_raise_needs_three_readings() {
        let policy = policy(|_| {});
        let mut alerting = Alerting::new();
        for i in 0..2 {
            assert!(alerting.observe(&policy, &reading(i, 99.0), &facts(&policy, 1), 0).is_empty());
        }
        assert!(alerting.observe(&policy, &reading(2, 50.0), &facts(&policy, 1), 0).is_empty());
        for i in 3..5 {
            assert!(alerting.observe(&policy, &reading(i, 99.0), &facts(&policy, 1), 0).is_empty());
        }
        let raised = alerting.observe(&policy, &reading(5, 99.0), &facts(&policy, 1), 0);
        assert_eq!(levels(&raised), [("cpu", "critical")]);
        assert_eq!(raised[0].since, rfc3339(START + 3 * 10_000));
    }

    #[test]
    fn a_level_whose_alert_is_false_never_raises() {
        // The seed's cpu warning (90) has alert false; transfer has both false.
        let policy = policy(|_| {});
        let mut alerting = Alerting::new();
        for i in 0..50 {
            let r = Reading { rx_kbps: 5000.0, ..reading(i, 93.0) };
            assert!(alerting.observe(&policy, &r, &facts(&policy, 1), 0).is_empty());
        }
        assert_eq!(alerting.level("cpu"), Some(Level::Ok));
    }

    #[test]
    fn warning_then_critical_then_ok() {
        let policy = policy(|_| {});
        let disk = |i: u64, used: f32| Reading {
            disks: vec![DiskUse { mount: "/srv".into(), used_percent: used }],
            ..reading(i, 1.0)
        };
        let mut alerting = Alerting::new();
        let mut all = Vec::new();
        let values = [50.0, 85.0, 85.0, 85.0, 85.0, 95.0, 95.0, 95.0, 95.0, 85.0, 80.0, 80.0, 80.0, 10.0, 10.0, 10.0];
        for (i, used) in values.into_iter().enumerate() {
            all.extend(alerting.observe(&policy, &disk(i as u64, used), &facts(&policy, 1), 0));
        }
        // 85 and 80 are above critical's clear line (81)? 80 < 81: it clears to warning, whose clear line is 72.
        assert_eq!(
            levels(&all),
            [("disk:/srv", "warning"), ("disk:/srv", "critical"), ("disk:/srv", "warning"), ("disk:/srv", "ok")]
        );
        assert_eq!(all[2].since, rfc3339(START + 10 * 10_000));
    }

    #[test]
    fn ports_and_processes_raise_after_two_and_clear_after_three() {
        let policy = policy(|_| {});
        let mut alerting = Alerting::new();
        let mut all = Vec::new();
        for (i, nginx) in [2, 0, 0, 0, 2, 2, 2].into_iter().enumerate() {
            all.extend(alerting.observe(&policy, &reading(i as u64, 1.0), &facts(&policy, nginx), 0));
            if i == 2 {
                assert_eq!(levels(&all), [("port:TCP:80", "critical"), ("process:nginx", "critical")]);
                assert_eq!(all[1].value, 0.0);
            }
        }
        assert_eq!(levels(&all[2..]), [("port:TCP:80", "ok"), ("process:nginx", "ok")]);
        assert_eq!(all[3].value, 2.0);
    }

    #[test]
    fn a_check_removed_from_the_policy_is_dropped() {
        let with = policy(|_| {});
        let mut alerting = Alerting::new();
        for i in 0..3 {
            alerting.observe(&with, &reading(i, 1.0), &facts(&with, 0), 0);
        }
        assert_eq!(alerting.level("process:nginx"), Some(Level::Critical));
        let without = policy(|p| p["processes"] = json!([]));
        let alerts = alerting.observe(&without, &reading(3, 1.0), &facts(&without, 0), 0);
        assert_eq!(alerting.level("process:nginx"), None);
        assert!(alerts.is_empty(), "{:?}", levels(&alerts));
        // Back in the policy: a new check, which says nothing while it is ok.
        assert!(alerting.observe(&with, &reading(4, 1.0), &facts(&with, 1), 0).is_empty());
    }

    #[test]
    fn no_ping_while_disconnected_neither_raises_nor_clears() {
        let policy = policy(|_| {});
        let mut alerting = Alerting::new();
        let ping = |i: u64, ms: Option<f32>| Reading { ping_ms: ms, ..reading(i, 1.0) };
        let mut all = Vec::new();
        for (i, ms) in [Some(150.0), None, Some(150.0), None, Some(150.0)].into_iter().enumerate() {
            all.extend(alerting.observe(&policy, &ping(i as u64, ms), &facts(&policy, 1), 0));
        }
        assert_eq!(levels(&all), [("internal_ping", "critical")]);
        for i in 5..20 {
            assert!(alerting.observe(&policy, &ping(i, None), &facts(&policy, 1), 0).is_empty());
        }
        assert_eq!(alerting.level("internal_ping"), Some(Level::Critical));
    }
}

//! A monitoring policy (`monitor.policy`), in the IONOS Cloud Panel seed's shape:
//! five thresholds (cpu, ram, disk, transfer, internal_ping), each with a warning
//! and a critical level, plus port checks and process checks.
//!
//! Every field is a checked type, checked once by [`Policy::from_value`], which the
//! job's parser, serde (the inventory keeps the policy) and `berth dev`'s
//! `/monitoring_policies` routes all use: a policy that breaks a bound is refused
//! naming the field (`thresholds.cpu.warning.value`, `ports[3].port`,
//! `processes[0].process`), and a hand-edited inventory with one fails to load.
//! A process name is later compared with what a hosted user's process may call
//! itself, so it is held to printable ASCII without `/` or whitespace: never a path.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::model::validate::{shown, FieldError, Params};

/// At most this many port checks, and this many process checks.
pub const MAX_CHECKS: usize = 100;
/// Longest process name, in bytes (`comm` holds 15; argv[0]'s basename more).
pub const MAX_PROCESS_LEN: usize = 64;

/// The whole policy, as the inventory keeps it and `hello` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub thresholds: Thresholds,
    pub ports: Vec<PortCheck>,
    pub processes: Vec<ProcessCheck>,
}

/// The five resource thresholds; all required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    pub cpu: Threshold,
    pub ram: Threshold,
    pub disk: Threshold,
    pub transfer: Threshold,
    pub internal_ping: Threshold,
}

/// What a threshold measures, and so its unit and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cpu,
    Ram,
    Disk,
    Transfer,
    InternalPing,
}

impl Metric {
    pub const ALL: [Metric; 5] = [Metric::Cpu, Metric::Ram, Metric::Disk, Metric::Transfer, Metric::InternalPing];

    /// The key in `thresholds`, and the check's name (disks add `:/MOUNT`).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Ram => "ram",
            Metric::Disk => "disk",
            Metric::Transfer => "transfer",
            Metric::InternalPing => "internal_ping",
        }
    }

    /// `(lowest, highest)` of the warning value, then of the critical value (the seed's).
    fn bounds(self) -> ((u32, u32), (u32, u32)) {
        match self {
            Metric::Cpu | Metric::Ram | Metric::Disk => ((1, 95), (1, 100)),
            Metric::Transfer => ((1, 2000), (1, 2000)),
            Metric::InternalPing => ((1, 100), (1, 100)),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::Cpu | Metric::Ram | Metric::Disk => "percent",
            Metric::Transfer => "kbps",
            Metric::InternalPing => "ms",
        }
    }
}

/// One threshold's two levels; `warning.value < critical.value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    pub warning: Level,
    pub critical: Level,
}

/// One level of a threshold: its value (in the metric's unit, within its bounds) and
/// whether it is judged at all (`alert: false` never raises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Level {
    pub value: u32,
    pub alert: bool,
}

/// `TCP` or `UDP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PortProtocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

/// When a port check alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PortAlertIf {
    Responding,
    NotResponding,
}

/// When a process check alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessAlertIf {
    Running,
    NotRunning,
}

/// A port number, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    pub fn get(self) -> u16 {
        self.0
    }
}

/// One port check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortCheck {
    pub protocol: PortProtocol,
    pub port: Port,
    pub alert_if: PortAlertIf,
}

/// A process's name as `comm` or argv[0]'s basename shows it: 1–64 bytes of
/// printable ASCII, no `/`, no whitespace, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ProcessName(String);

impl ProcessName {
    /// `value`, checked; an error names `field`.
    pub fn parse(field: &str, value: &str) -> Result<ProcessName, FieldError> {
        let fail = |message: String| Err(FieldError::new(field, message));
        if value.is_empty() || value.len() > MAX_PROCESS_LEN {
            return fail(format!("must be 1 to {MAX_PROCESS_LEN} bytes long"));
        }
        if let Some(bad) = value.chars().find(|c| !c.is_ascii_graphic() || *c == '/') {
            return fail(format!(
                "may only contain printable ASCII without '/' or whitespace; found {} in {}",
                shown(&bad.to_string()),
                shown(value)
            ));
        }
        if value == "." || value == ".." {
            return fail(format!("must not be {}", shown(value)));
        }
        Ok(ProcessName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProcessName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One process check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessCheck {
    pub process: ProcessName,
    pub alert_if: ProcessAlertIf,
}

impl Policy {
    /// The params of `monitor.policy` (or a stored policy), every field checked;
    /// unknown keys (the seed's `name`, `email`, `agent`, ...) are ignored.
    pub fn from_value(value: &Value) -> Result<Policy, FieldError> {
        Policy::parse(&Params::new(value)?)
    }

    /// [`Policy::from_value`] on params already opened (a job's, or a nested object).
    pub fn parse(params: &Params) -> Result<Policy, FieldError> {
        let thresholds = params.object("thresholds")?;
        let threshold = |metric: Metric| Threshold::parse(&thresholds.object(metric.key())?, metric);
        let thresholds = Thresholds {
            cpu: threshold(Metric::Cpu)?,
            ram: threshold(Metric::Ram)?,
            disk: threshold(Metric::Disk)?,
            transfer: threshold(Metric::Transfer)?,
            internal_ping: threshold(Metric::InternalPing)?,
        };
        let ports = params.object_array("ports")?.unwrap_or_default();
        if ports.len() > MAX_CHECKS {
            return Err(FieldError::new(params.field("ports"), format!("must hold at most {MAX_CHECKS} checks")));
        }
        let ports = ports.iter().map(PortCheck::parse).collect::<Result<Vec<_>, _>>()?;
        let mut seen = BTreeSet::new();
        if let Some(dup) = ports.iter().find(|p| !seen.insert((p.protocol, p.port))) {
            return Err(FieldError::new(
                params.field("ports"),
                format!("must not name {} port {} twice", protocol_name(dup.protocol), dup.port.0),
            ));
        }
        let processes = params.object_array("processes")?.unwrap_or_default();
        if processes.len() > MAX_CHECKS {
            return Err(FieldError::new(params.field("processes"), format!("must hold at most {MAX_CHECKS} checks")));
        }
        let processes = processes.iter().map(ProcessCheck::parse).collect::<Result<Vec<_>, _>>()?;
        let mut seen = BTreeSet::new();
        if let Some(dup) = processes.iter().find(|p| !seen.insert(p.process.clone())) {
            return Err(FieldError::new(
                params.field("processes"),
                format!("must not name process {} twice", shown(dup.process.as_str())),
            ));
        }
        Ok(Policy { thresholds, ports, processes })
    }

    /// The threshold of `metric`.
    pub fn threshold(&self, metric: Metric) -> Threshold {
        let t = &self.thresholds;
        match metric {
            Metric::Cpu => t.cpu,
            Metric::Ram => t.ram,
            Metric::Disk => t.disk,
            Metric::Transfer => t.transfer,
            Metric::InternalPing => t.internal_ping,
        }
    }

    /// Off: no threshold alerts, no ports, no processes (there is no removal job).
    pub fn is_off(&self) -> bool {
        self.ports.is_empty()
            && self.processes.is_empty()
            && Metric::ALL.iter().all(|m| {
                let t = self.threshold(*m);
                !t.warning.alert && !t.critical.alert
            })
    }
}

fn protocol_name(protocol: PortProtocol) -> &'static str {
    match protocol {
        PortProtocol::Tcp => "TCP",
        PortProtocol::Udp => "UDP",
    }
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(protocol_name(*self))
    }
}

impl Threshold {
    fn parse(params: &Params, metric: Metric) -> Result<Threshold, FieldError> {
        let (warning_bounds, critical_bounds) = metric.bounds();
        let warning = Level::parse(&params.object("warning")?, metric, warning_bounds)?;
        let critical = Level::parse(&params.object("critical")?, metric, critical_bounds)?;
        if warning.value >= critical.value {
            return Err(FieldError::new(
                params.field("warning.value"),
                format!("must be below critical.value ({} is not below {})", warning.value, critical.value),
            ));
        }
        Ok(Threshold { warning, critical })
    }
}

impl Level {
    fn parse(params: &Params, metric: Metric, (low, high): (u32, u32)) -> Result<Level, FieldError> {
        let field = params.field("value");
        let unit = metric.unit();
        let value = params
            .opt_u64("value")
            .map_err(|_| FieldError::new(&field, format!("must be an integer from {low} to {high} ({unit})")))?
            .ok_or_else(|| FieldError::new(&field, "is required"))?;
        if !(u64::from(low)..=u64::from(high)).contains(&value) {
            return Err(FieldError::new(field, format!("must be from {low} to {high} ({unit}), not {value}")));
        }
        let alert = params.bool("alert")?;
        Ok(Level { value: u32::try_from(value).expect("bounded"), alert })
    }
}

impl PortCheck {
    fn parse(params: &Params) -> Result<PortCheck, FieldError> {
        let protocol = match params.str("protocol")? {
            "TCP" => PortProtocol::Tcp,
            "UDP" => PortProtocol::Udp,
            other => {
                return Err(FieldError::new(
                    params.field("protocol"),
                    format!("must be TCP or UDP, not {}", shown(other)),
                ))
            }
        };
        let port_field = params.field("port");
        let port = params
            .opt_u64("port")
            .map_err(|_| FieldError::new(&port_field, "must be an integer from 1 to 65535"))?
            .ok_or_else(|| FieldError::new(&port_field, "is required"))?;
        let port = match u16::try_from(port) {
            Ok(p) if p >= 1 => Port(p),
            _ => return Err(FieldError::new(port_field, format!("must be from 1 to 65535, not {port}"))),
        };
        let alert_if = match params.str("alert_if")? {
            "RESPONDING" => PortAlertIf::Responding,
            "NOT_RESPONDING" => PortAlertIf::NotResponding,
            other => {
                return Err(FieldError::new(
                    params.field("alert_if"),
                    format!("must be RESPONDING or NOT_RESPONDING, not {}", shown(other)),
                ))
            }
        };
        Ok(PortCheck { protocol, port, alert_if })
    }

    /// The check's name: `port:TCP:80`.
    pub fn check_name(&self) -> String {
        format!("port:{}:{}", self.protocol, self.port.0)
    }
}

impl ProcessCheck {
    fn parse(params: &Params) -> Result<ProcessCheck, FieldError> {
        let process = ProcessName::parse(&params.field("process"), params.str("process")?)?;
        let alert_if = match params.str("alert_if")? {
            "RUNNING" => ProcessAlertIf::Running,
            "NOT_RUNNING" => ProcessAlertIf::NotRunning,
            other => {
                return Err(FieldError::new(
                    params.field("alert_if"),
                    format!("must be RUNNING or NOT_RUNNING, not {}", shown(other)),
                ))
            }
        };
        Ok(ProcessCheck { process, alert_if })
    }

    /// The check's name: `process:nginx`.
    pub fn check_name(&self) -> String {
        format!("process:{}", self.process)
    }
}

impl<'de> Deserialize<'de> for Policy {
    /// Through [`Policy::from_value`]: a stored policy meets the job's rules.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Policy::from_value(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The seed's example policy.
    pub(crate) fn seed() -> Value {
        json!({"thresholds": {
            "cpu":           {"warning": {"value": 90,   "alert": false}, "critical": {"value": 95,   "alert": true}},
            "ram":           {"warning": {"value": 90,   "alert": false}, "critical": {"value": 95,   "alert": true}},
            "disk":          {"warning": {"value": 80,   "alert": true},  "critical": {"value": 90,   "alert": true}},
            "transfer":      {"warning": {"value": 1000, "alert": false}, "critical": {"value": 2000, "alert": false}},
            "internal_ping": {"warning": {"value": 50,   "alert": false}, "critical": {"value": 100,  "alert": true}}},
         "ports":     [{"protocol": "TCP", "port": 80, "alert_if": "NOT_RESPONDING"}],
         "processes": [{"process": "nginx", "alert_if": "NOT_RUNNING"}],
         "name": "Default", "email": "x@example.com", "agent": true, "email_notification": true})
    }

    #[test]
    fn the_seed_round_trips_without_its_ignored_keys() {
        let policy = Policy::from_value(&seed()).unwrap();
        let shown = serde_json::to_value(&policy).unwrap();
        let mut expected = seed();
        for key in ["name", "email", "agent", "email_notification"] {
            expected.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(shown, expected);
        let again: Policy = serde_json::from_value(shown).unwrap();
        assert_eq!(again, policy);
        assert_eq!(policy.ports[0].check_name(), "port:TCP:80");
        assert_eq!(policy.processes[0].check_name(), "process:nginx");
        assert!(!policy.is_off());
    }

    #[test]
    fn a_stored_policy_that_breaks_a_bound_does_not_load() {
        let mut bad = seed();
        bad["thresholds"]["cpu"]["critical"]["value"] = json!(101);
        let err = serde_json::from_value::<Policy>(bad).unwrap_err().to_string();
        assert!(err.contains("thresholds.cpu.critical.value"), "{err}");
    }

    #[test]
    fn process_names_are_never_paths() {
        for ok in ["nginx", "php-fpm8.3", "a", "(sd-pam)", &"x".repeat(64)] {
            ProcessName::parse("p", ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "/usr/sbin/nginx", "a b", "a\tb", "a\n", "é", &"x".repeat(65)] {
            assert_eq!(ProcessName::parse("p", bad).unwrap_err().field, "p", "{bad:?}");
        }
    }
}

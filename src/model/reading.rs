//! One reading of the host's resources, taken every `monitor_secs` by the monitor
//! loop (`agent::monitor`): what the threshold checks of a `monitor.policy` judge,
//! and what the metrics history (`state::history`) keeps.
//!
//! Plain numbers only, already in the units the policy speaks (percent, kbps, ms),
//! so the checks and the history never look at the host themselves.

/// The host's resources at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// CPU in use, percent of all cores, since the previous reading.
    pub cpu_percent: f32,
    /// Memory in use (total minus available), percent of total.
    pub ram_percent: f32,
    /// Each real disk (the `metrics` message's `disks`), in use as a percent.
    pub disks: Vec<DiskUse>,
    /// Received, kilobits per second, since the previous reading.
    pub rx_kbps: f32,
    /// Sent, kilobits per second, since the previous reading.
    pub tx_kbps: f32,
    /// The last websocket ping's round trip to the control plane; `None` while
    /// disconnected (no reading, which neither raises nor clears a check).
    pub ping_ms: Option<f32>,
}

/// One disk of a [`Reading`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiskUse {
    /// Where it is mounted.
    pub mount: String,
    /// Used, percent of its size.
    pub used_percent: f32,
}

impl Reading {
    /// The `transfer` threshold's value: both directions, kilobits per second.
    pub fn transfer_kbps(&self) -> f32 {
        self.rx_kbps + self.tx_kbps
    }
}

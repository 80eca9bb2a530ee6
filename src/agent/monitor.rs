//! The monitor loop: every `monitor_secs`, one [`Reading`] of the host (plus the
//! last websocket ping), the port and process facts the policy asks about, the
//! checks of [`crate::model::alerting`], and each transition stored in the outbox as
//! a `monitor.alert` event, which the connection sends when it can: alerts raised
//! while the control plane is away arrive after it returns, in seq order.
//!
//! It runs whether or not the control plane is connected, and whether or not a
//! policy is set (the readings also go to the optional recorder, the metrics
//! history). The reading itself is blocking file I/O under /proc (and statvfs of
//! the disks), so it runs on tokio's blocking pool, its buffers moved there and back.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::MissedTickBehavior;

use crate::host::usage::Usage;
use crate::host::watch::Watcher;
use crate::model::alerting::{Alerting, Facts};
use crate::model::monitor::{Policy, PortProtocol, ProcessName};
use crate::model::protocol::{Event, MonitorAlert};
use crate::model::reading::Reading;
use crate::shutdown::Shutdown;
use crate::state::inventory::InventoryStore;
use crate::state::outbox::Outbox;

/// Takes each reading (the metrics history, wired by the daemon).
pub type Recorder = Arc<dyn Fn(&Reading) + Send + Sync>;

pub struct Monitor {
    pub every: Duration,
    pub inventory: Arc<InventoryStore>,
    pub outbox: Arc<Outbox>,
    /// The connection's last ping round trip in ms; 0: none (disconnected).
    pub ping_ms: Arc<AtomicU32>,
    pub recorder: Option<Recorder>,
    /// Mounts counted as disks whatever their filesystem (config `monitor_mounts`).
    pub mounts: Vec<String>,
}

/// What one reading needs, kept between readings (buffers, counters, check states).
pub struct Probe {
    usage: Usage,
    watcher: Watcher,
    alerting: Alerting,
    facts: Facts,
    names: Vec<ProcessName>,
}

impl Probe {
    pub fn new(proc_dir: &Path, mounts: Vec<String>) -> Probe {
        Probe {
            usage: Usage::new(proc_dir, mounts),
            watcher: Watcher::new(proc_dir),
            alerting: Alerting::new(),
            facts: Facts::default(),
            names: Vec::new(),
        }
    }

    /// One reading at `at_ms` judged against `policy` (none: nothing is judged).
    pub fn tick(&mut self, policy: Option<&Policy>, ping_ms: u32, at_ms: u64) -> (Reading, Vec<MonitorAlert>) {
        let mut reading = self.usage.read(at_ms);
        reading.ping_ms = (ping_ms > 0).then_some(ping_ms as f32);
        let Some(policy) = policy else {
            self.alerting = Alerting::new();
            return (reading, Vec::new());
        };
        let tcp = policy.ports.iter().any(|p| p.protocol == PortProtocol::Tcp);
        let udp = policy.ports.iter().any(|p| p.protocol == PortProtocol::Udp);
        self.facts.ports.clear();
        if tcp || udp {
            self.watcher.read_ports(tcp, udp);
            let watcher = &self.watcher;
            self.facts.ports.extend(policy.ports.iter().map(|p| watcher.listening(p.protocol, p.port.get())));
        }
        self.names.clear();
        self.names.extend(policy.processes.iter().map(|p| p.process.clone()));
        self.watcher.count_processes(&self.names, &mut self.facts.processes);
        let now = crate::time::unix_millis(SystemTime::now());
        let alerts = self.alerting.observe(policy, &reading, &self.facts, now);
        (reading, alerts)
    }
}

impl Monitor {
    /// Reads every `every` until `shutdown` fires.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut probe = Some(Probe::new(Path::new("/proc"), self.mounts.clone()));
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait() => return,
            }
            let policy = self.inventory.read(|inv| inv.monitor.clone());
            let ping = self.ping_ms.load(Ordering::Relaxed);
            let mut taken = probe.take().expect("the probe is back after each reading");
            let done = tokio::task::spawn_blocking(move || {
                let at_ms = crate::time::unix_millis(SystemTime::now());
                let (reading, alerts) = taken.tick(policy.as_ref(), ping, at_ms);
                (taken, reading, alerts)
            })
            .await;
            let Ok((back, reading, alerts)) = done else {
                tracing::error!("a monitor reading panicked; the monitor stops");
                return;
            };
            probe = Some(back);
            for alert in alerts {
                tracing::info!(check = %alert.check, level = %alert.level, value = alert.value, "monitor alert");
                self.outbox.push(Event::MonitorAlert(alert));
            }
            if let Some(recorder) = &self.recorder {
                recorder(&reading);
            }
        }
    }
}

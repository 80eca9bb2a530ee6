//! The monitor loop: every `monitor_secs`, one [`Reading`] of the host (plus the
//! last websocket ping), the port and process facts the policy asks about, the
//! checks of [`crate::model::alerting`], and each transition stored in the outbox as
//! a `monitor.alert` event, which the connection sends when it can: alerts raised
//! while the control plane is away arrive after it returns, in seq order.
//!
//! It runs whether or not the control plane is connected, and whether or not a
//! policy is set (the readings also go to the optional recorder, the metrics
//! history). The reading itself is blocking file I/O under /proc (and statvfs of
//! the disks): with process checks it runs on tokio's blocking pool, its buffers
//! moved there and back; without, it is quick and cannot be stalled by a user, and
//! runs on the runtime's own thread.

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
            let watches_processes = policy.as_ref().is_some_and(|p| !p.processes.is_empty());
            let ping = self.ping_ms.load(Ordering::Relaxed);
            let mut taken = probe.take().expect("the probe is back after each reading");
            let read = move || {
                let at_ms = crate::time::unix_millis(SystemTime::now());
                let (reading, alerts) = taken.tick(policy.as_ref(), ping, at_ms);
                (taken, reading, alerts)
            };
            // Process checks read other processes' /proc files, which their owners
            // can make slow (a held memory lock stalls a read of `cmdline`): those
            // readings go to the blocking pool, so only the monitor waits. The rest
            // (/proc/stat, meminfo, net/dev, statvfs of local disks, a netlink
            // question) cannot be held up by a user and take well under a
            // millisecond: they run here, and an idle agent keeps no extra thread.
            let (back, reading, alerts) = if watches_processes {
                match tokio::task::spawn_blocking(read).await {
                    Ok(done) => done,
                    Err(_) => {
                        tracing::error!("a monitor reading panicked; the monitor stops");
                        return;
                    }
                }
            } else {
                read()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(port: u16, alert_if: &str) -> Policy {
        let quiet =
            |w: u32, c: u32| json!({"warning": {"value": w, "alert": false}, "critical": {"value": c, "alert": false}});
        Policy::from_value(&json!({"thresholds": {"cpu": quiet(90, 95), "ram": quiet(90, 95), "disk": quiet(80, 90),
            "transfer": quiet(1000, 2000), "internal_ping": quiet(50, 100)},
            "ports": [{"protocol": "TCP", "port": port, "alert_if": alert_if}]}))
        .unwrap()
    }

    /// This host's real /proc: a listener this test holds is seen, and one it closed is not.
    #[test]
    fn a_listener_of_this_process_is_seen_and_its_closing_too() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut probe = Probe::new(Path::new("/proc"), Vec::new());
        let responding = policy(port, "RESPONDING");
        let mut alerts = Vec::new();
        for i in 0..2 {
            let (reading, raised) = probe.tick(Some(&responding), 7, 1000 * i);
            assert_eq!(reading.ping_ms, Some(7.0));
            alerts.extend(raised);
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(
            (alerts[0].check.as_str(), alerts[0].level.as_str()),
            (format!("port:TCP:{port}").as_str(), "critical")
        );
        drop(listener);
        let mut cleared = Vec::new();
        for i in 2..5 {
            let (reading, alerts) = probe.tick(Some(&responding), 0, 1000 * i);
            assert_eq!(reading.ping_ms, None, "0: no ping (disconnected)");
            cleared.extend(alerts);
        }
        assert_eq!(cleared.iter().map(|a| a.level.as_str()).collect::<Vec<_>>(), ["ok"]);
        assert!(probe.tick(None, 0, 6000).1.is_empty(), "no policy: nothing judged");
    }
}

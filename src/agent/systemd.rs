//! sd_notify: READY, WATCHDOG and STOPPING when systemd supervises the agent
//! (`Type=notify`); without `NOTIFY_SOCKET` every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

pub fn ready() {
    notify(NotifyState::Ready);
}

pub fn stopping() {
    notify(NotifyState::Stopping);
}

pub fn watchdog() {
    notify(NotifyState::Watchdog);
}

/// Half the `WatchdogSec` systemd asked for, when it asked.
///
/// As libsystemd's `sd_watchdog_enabled`: `WATCHDOG_USEC` set, and `WATCHDOG_PID`
/// either unset or this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|&usec| usec > 0)?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

fn notify(state: NotifyState) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

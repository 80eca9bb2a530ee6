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
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec) / 2)
}

fn notify(state: NotifyState) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

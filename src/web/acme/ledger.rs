//! What berth has asked of the CA lately, so it stays inside the CA's rate limits
//! instead of finding them (Let's Encrypt: 5 failed validations per account,
//! hostname and hour; 300 new orders per account per 3 hours).
//!
//! Kept in `state_dir/acme/ledger.json`, so a restart does not forget; entries
//! older than the longest window are dropped on every save.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::host::fs::{ensure_dir, write_atomic};
use crate::time::{rfc3339, unix_millis};

/// Failed validations of one name within [`FAILURE_WINDOW`] before berth stops
/// asking (one below Let's Encrypt's 5, so a manual retry still has room).
pub const MAX_FAILURES: usize = 4;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(3600);
/// New orders within [`ORDER_WINDOW`] (Let's Encrypt allows 300).
pub const MAX_ORDERS: usize = 250;
pub const ORDER_WINDOW: Duration = Duration::from_secs(3 * 3600);
/// How long berth waits after the CA says `rateLimited`.
pub const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Entries {
    /// Unix millis of each new order.
    #[serde(default)]
    orders: Vec<u64>,
    /// Unix millis of each failed validation, by name.
    #[serde(default)]
    failures: BTreeMap<String, Vec<u64>>,
    /// No order before this (unix millis): the CA said `rateLimited`.
    #[serde(default)]
    paused_until: u64,
}

pub struct Ledger {
    path: PathBuf,
}

/// One process's updates at a time.
static LOCK: Mutex<()> = Mutex::new(());

impl Ledger {
    pub fn open(dir: &Path) -> Ledger {
        Ledger { path: dir.join("ledger.json") }
    }

    /// Whether an order for `names` may go out now; if not, why and until when.
    pub fn admit(&self, names: &[String], now: SystemTime) -> Result<(), String> {
        let entries = self.load();
        let now_ms = unix_millis(now);
        if entries.paused_until > now_ms {
            return Err(format!(
                "the certificate authority said rate limited; berth orders again after {}",
                rfc3339(at(entries.paused_until))
            ));
        }
        let recent_orders = entries.orders.iter().filter(|&&t| t + millis(ORDER_WINDOW) > now_ms).count();
        if recent_orders >= MAX_ORDERS {
            return Err(format!(
                "{recent_orders} orders in the last 3 hours; berth waits to stay inside the CA's limit"
            ));
        }
        for name in names {
            let failures: Vec<u64> = entries
                .failures
                .get(name)
                .map(|f| f.iter().copied().filter(|&t| t + millis(FAILURE_WINDOW) > now_ms).collect())
                .unwrap_or_default();
            if failures.len() >= MAX_FAILURES {
                let next = failures.iter().min().copied().unwrap_or(now_ms) + millis(FAILURE_WINDOW);
                return Err(format!(
                    "{name} failed validation {} times in the last hour; berth tries again after {}",
                    failures.len(),
                    rfc3339(at(next))
                ));
            }
        }
        Ok(())
    }

    pub fn record_order(&self, now: SystemTime) {
        self.update(|e| e.orders.push(unix_millis(now)));
    }

    pub fn record_failures(&self, names: &[String], now: SystemTime) {
        self.update(|e| names.iter().for_each(|n| e.failures.entry(n.clone()).or_default().push(unix_millis(now))));
    }

    pub fn pause_until(&self, until: SystemTime) {
        self.update(|e| e.paused_until = e.paused_until.max(unix_millis(until)));
    }

    fn load(&self) -> Entries {
        std::fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut Entries)) {
        let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = self.load();
        change(&mut entries);
        let now = unix_millis(SystemTime::now());
        entries.orders.retain(|&t| t + millis(ORDER_WINDOW) > now);
        entries.failures.values_mut().for_each(|f| f.retain(|&t| t + millis(FAILURE_WINDOW) > now));
        entries.failures.retain(|_, f| !f.is_empty());
        let saved = self
            .path
            .parent()
            .map_or(Ok(()), |dir| ensure_dir(dir, 0o700))
            .and_then(|_| write_atomic(&self.path, &serde_json::to_vec(&entries).unwrap_or_default(), 0o600));
        if let Err(e) = saved {
            tracing::warn!(path = %self.path.display(), error = %e, "ACME ledger not saved; rate-limit accounting may undercount");
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_keeps_failing_is_not_ordered_again_within_the_hour() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path());
        let names = vec!["a.test".to_string()];
        let now = SystemTime::now();
        for _ in 0..MAX_FAILURES {
            assert!(ledger.admit(&names, now).is_ok());
            ledger.record_failures(&names, now);
        }
        let refused = ledger.admit(&names, now).unwrap_err();
        assert!(refused.contains("a.test failed validation 4 times"), "{refused}");
        assert!(ledger.admit(&["b.test".to_string()], now).is_ok(), "other names are not held back");
        assert!(Ledger::open(dir.path()).admit(&names, now + FAILURE_WINDOW + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn orders_and_rate_limit_pauses_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path());
        let now = SystemTime::now();
        for _ in 0..MAX_ORDERS {
            ledger.record_order(now);
        }
        assert!(ledger.admit(&[], now).unwrap_err().contains("orders in the last 3 hours"));
        assert!(ledger.admit(&[], now + ORDER_WINDOW).is_ok());
        let other = tempfile::tempdir().unwrap();
        let paused = Ledger::open(other.path());
        paused.pause_until(now + RATE_LIMIT_PAUSE);
        assert!(paused.admit(&[], now).unwrap_err().contains("rate limited"));
        assert!(paused.admit(&[], now + RATE_LIMIT_PAUSE).is_ok());
    }
}

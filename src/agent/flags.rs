//! The honest server flags of the `metrics` message: `reboot_required` also for an
//! outdated kernel, `services_need_restart` and `upgrade_required`.
//!
//! The kernel check ([`crate::host::kernel`]) reads a few hundred bytes of each image
//! in /boot, so it runs again only when /boot's mtime changes (dpkg renames an image
//! into place, which touches the directory). The other two walk every process's maps
//! ([`crate::host::stale`]) or render every app's config
//! ([`crate::engine::reconcile::unapplied`]): each runs on a background thread, as
//! `Upgrades` does, at most every [`RECHECK_EVERY`], and sooner (but not within
//! [`SETTLE`] of the last start) when the file it watches changes: dpkg's log for the
//! services, the inventory for the reconcile. Until a first result, they report
//! nothing stale and no upgrade; a failure keeps the last result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::state::inventory::InventoryStore;

/// The most time between two background checks.
pub const RECHECK_EVERY: Duration = Duration::from_secs(600);
/// The least time between two checks when what they watch changed (dpkg writes its
/// log all through a run: one check a minute follows it).
pub const SETTLE: Duration = Duration::from_secs(60);
/// dpkg's log: written at every package change.
const DPKG_LOG: &str = "var/log/dpkg.log";

/// The flags' state, kept by the metrics scraper.
pub struct Flags {
    root: PathBuf,
    /// /boot's mtime at the last kernel check, and its answer.
    kernel: Option<(Option<SystemTime>, bool)>,
    services: Background<Vec<String>>,
    upgrade: Option<Background<bool>>,
}

impl Flags {
    /// Flags of the host under `root`; `upgrade_required` stays false until
    /// [`Flags::watch_reconcile`] gives it the inventory.
    pub fn new(root: &Path) -> Flags {
        let proc = root.join("proc");
        let services = Background::new(
            "services_need_restart",
            Some(root.join(DPKG_LOG)),
            Arc::new(move || Ok(crate::host::stale::stale_units(&proc, crate::host::stale::SYSTEM_DIRS))),
        );
        Flags { root: root.to_owned(), kernel: None, services, upgrade: None }
    }

    /// Checks `upgrade_required` against this inventory (the daemon's; `inventory_file`
    /// is the file whose changes make the check due sooner).
    pub fn watch_reconcile(&mut self, inventory: Arc<InventoryStore>, inventory_file: PathBuf) {
        let root = self.root.clone();
        self.upgrade = Some(Background::new(
            "upgrade_required",
            Some(inventory_file),
            Arc::new(move || {
                crate::engine::reconcile::unapplied(&root, &inventory)
                    .map(|files| !files.is_empty())
                    .map_err(|e| e.to_string())
            }),
        ));
    }

    /// Whether the running kernel is older than the newest installed one, or its
    /// image was rebuilt (see [`crate::host::kernel`]).
    pub fn kernel_outdated(&mut self) -> bool {
        let mtime = mtime(&self.root.join("boot"));
        match self.kernel {
            Some((seen, outdated)) if seen == mtime && mtime.is_some() => outdated,
            _ => {
                let outdated = crate::host::kernel::check(&self.root).is_some_and(|c| c.reboot);
                self.kernel = Some((mtime, outdated));
                outdated
            }
        }
    }

    pub fn services_need_restart(&mut self, now: Instant) -> Vec<String> {
        self.services.current(now).clone()
    }

    pub fn upgrade_required(&mut self, now: Instant) -> bool {
        self.upgrade.as_mut().is_some_and(|u| *u.current(now))
    }

    /// Waits for the checks running now (a one-shot snapshot wants them).
    pub fn wait(&mut self) {
        self.services.collect(true);
        if let Some(upgrade) = &mut self.upgrade {
            upgrade.collect(true);
        }
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// How a background value is computed: `Err` is a message for the log.
type Compute<T> = Arc<dyn Fn() -> Result<T, String> + Send + Sync>;

/// A value recomputed on a background thread when due (see the module docs).
struct Background<T> {
    name: &'static str,
    watch: Option<PathBuf>,
    compute: Compute<T>,
    known: T,
    every: Duration,
    /// When the last check started, and the watched file's mtime then.
    started: Option<(Instant, Option<SystemTime>)>,
    running: Option<JoinHandle<Result<T, String>>>,
    failing: bool,
}

impl<T: Default + Send + 'static> Background<T> {
    fn new(name: &'static str, watch: Option<PathBuf>, compute: Compute<T>) -> Background<T> {
        Background {
            name,
            watch,
            compute,
            known: T::default(),
            every: RECHECK_EVERY,
            started: None,
            running: None,
            failing: false,
        }
    }

    /// The last result; picks up a finished check and starts one when due.
    fn current(&mut self, now: Instant) -> &T {
        self.collect(false);
        if self.running.is_none() {
            let watched = self.watch.as_deref().and_then(mtime);
            let due = match self.started {
                None => true,
                Some((at, seen)) => {
                    let since = now.saturating_duration_since(at);
                    since >= self.every || (seen != watched && since >= SETTLE)
                }
            };
            if due {
                self.started = Some((now, watched));
                let compute = Arc::clone(&self.compute);
                match thread::Builder::new().name(self.name.into()).spawn(move || compute()) {
                    Ok(handle) => self.running = Some(handle),
                    Err(e) => self.finished(Err(format!("cannot start a thread: {e}"))),
                }
            }
        }
        &self.known
    }

    fn collect(&mut self, wait: bool) {
        let Some(handle) = self.running.take_if(|handle| wait || handle.is_finished()) else { return };
        let result = handle.join().unwrap_or_else(|_| Err("the check panicked".to_owned()));
        self.finished(result);
    }

    fn finished(&mut self, result: Result<T, String>) {
        match result {
            Ok(value) => {
                self.known = value;
                self.failing = false;
            }
            Err(e) if self.failing => tracing::debug!(flag = self.name, "check failed again: {e}"),
            Err(e) => {
                tracing::warn!(flag = self.name, "check failed (the last answer stays): {e}");
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(answers: Vec<Result<u32, String>>) -> (Compute<u32>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let compute: Compute<u32> = Arc::new(move || {
            let i = seen.fetch_add(1, Ordering::SeqCst);
            answers[i.min(answers.len() - 1)].clone()
        });
        (compute, calls)
    }

    #[test]
    fn rechecks_every_ten_minutes_or_a_minute_after_the_watched_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dpkg.log");
        let (compute, calls) = counting(vec![Ok(1), Ok(2), Ok(3), Err("boom".into()), Ok(5)]);
        let mut bg = Background::new("test", Some(log.clone()), compute);
        let t0 = Instant::now();
        assert_eq!(*bg.current(t0), 0, "nothing known before the first check ends");
        bg.collect(true);
        assert_eq!(*bg.current(t0 + Duration::from_secs(1)), 1);
        assert_eq!(*bg.current(t0 + Duration::from_secs(599)), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not due");
        bg.current(t0 + RECHECK_EVERY);
        bg.collect(true);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let t1 = t0 + RECHECK_EVERY;
        assert_eq!(*bg.current(t1), 2);

        fs::write(&log, "upgrade libssl3\n").unwrap();
        bg.current(t1 + Duration::from_secs(30));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "dpkg wrote, but within a minute of the last check");
        bg.current(t1 + SETTLE);
        bg.collect(true);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "dpkg wrote: checked again");
        assert_eq!(*bg.current(t1 + SETTLE), 3);
        bg.current(t1 + 3 * SETTLE);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the log did not change since");

        bg.current(t1 + SETTLE + RECHECK_EVERY);
        bg.collect(true);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(bg.failing);
        assert_eq!(*bg.current(t1 + SETTLE + RECHECK_EVERY), 3, "a failure keeps the last answer");
    }

    #[test]
    fn a_panicking_check_keeps_the_last_answer() {
        let mut bg: Background<u32> = Background::new("test", None, Arc::new(|| panic!("test panic")));
        bg.current(Instant::now());
        bg.collect(true);
        assert!(bg.failing);
        assert_eq!(bg.known, 0);
    }

    #[test]
    fn flags_under_a_temp_root() {
        let root = tempfile::tempdir().unwrap();
        let unit = root.path().join("proc/42");
        fs::create_dir_all(&unit).unwrap();
        fs::write(unit.join("cgroup"), "0::/system.slice/nginx.service\n").unwrap();
        fs::write(unit.join("maps"), "7f-8f r-xp 0 08:01 9 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)\n").unwrap();
        let mut flags = Flags::new(root.path());
        let now = Instant::now();
        assert!(flags.services_need_restart(now).is_empty(), "computed in the background");
        flags.wait();
        assert_eq!(flags.services_need_restart(now), ["nginx"]);
        assert!(!flags.upgrade_required(now), "no inventory watched");
        assert!(!flags.kernel_outdated(), "no running kernel known under this root");

        fs::create_dir_all(root.path().join("proc/sys/kernel")).unwrap();
        fs::write(root.path().join("proc/sys/kernel/osrelease"), "6.1.0-9-amd64\n").unwrap();
        fs::create_dir_all(root.path().join("boot")).unwrap();
        let image = fs::File::create(root.path().join("boot/vmlinuz-6.1.0-18-amd64")).unwrap();
        image.set_len(1 << 20).unwrap();
        // A new image appears: /boot changed, checked again.
        assert!(flags.kernel_outdated());
    }
}

//! The `metrics` message (PROTOCOL 2.7): one snapshot of the host per `metrics_secs`.
//!
//! A [`Scraper`] keeps one sysinfo state alive between scrapes: CPU usage is the
//! difference between two samples of /proc/stat, so the state must outlive a tick, and
//! rebuilding it every tick would also re-read what does not change. Only CPU, memory,
//! mounts and interface counters are ever refreshed, never processes: sysinfo keeps a
//! record per process, and the whole agent should idle under 8 MiB RSS.
//!
//! Host paths the metrics look at (`reboot-required`, dpkg and apt state) are read under a
//! `root` directory: "/" in production, a temp dir in tests. CPU, memory, mounts and
//! interfaces are always the real host's (sysinfo reads /proc and /sys).
//!
//! `upgrades_pending` is the expensive one (it may run `apt-get --simulate`), so it is
//! cached and recounted on a background thread, rarely (see `Upgrades`). The kernel's
//! part of `reboot_required`, `services_need_restart` and `upgrade_required` are
//! [`crate::agent::flags`]'s.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use sysinfo::{DiskRefreshKind, Disks, MemoryRefreshKind, Networks, System};

use crate::agent::flags::Flags;
use crate::model::protocol::{Disk, Memory, Metrics, Network, Swap};
use crate::state::inventory::InventoryStore;

/// Filesystem types that are not disks: kernel and memory filesystems, container layers,
/// images mounted read-only, and remote filesystems (not this server's disks, and statvfs
/// on an unreachable one can hang, so they are not even asked for their sizes).
const NOT_DISKS: &[&str] = &[
    // memory and kernel interfaces
    "tmpfs",
    "devtmpfs",
    "ramfs",
    "rootfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "nsfs",
    "autofs",
    "efivarfs",
    "tracefs",
    "debugfs",
    "securityfs",
    "selinuxfs",
    "pstore",
    "bpf",
    "mqueue",
    "hugetlbfs",
    "devpts",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "rpc_pipefs",
    "nfsd",
    // container layers and read-only images (snaps, ISOs)
    "overlay",
    "aufs",
    "squashfs",
    "iso9660",
    "fuse.lxcfs",
    "fuse.snapfuse",
    "fuse.squashfuse",
    // remote filesystems
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.sshfs",
    "fuse.rclone",
];

/// Ubuntu's cached count of upgrades, written by update-notifier's apt and dpkg hooks.
const UPDATE_NOTIFIER: &str = "var/lib/update-notifier/updates-available";
/// What changes when packages are installed or removed (dpkg) or the lists are updated (apt).
const PACKAGE_STATE: [&str; 3] = ["var/lib/dpkg/status", "var/lib/apt/lists", UPDATE_NOTIFIER];
/// The least time between two counts of the pending upgrades.
const RECOUNT_EVERY: Duration = Duration::from_secs(3600);
/// How long `apt-get --simulate upgrade` may take.
const APT_TIMEOUT: Duration = Duration::from_secs(60);

/// The sysinfo state kept between scrapes, and what the metrics read under `root`.
pub struct Scraper {
    system: System,
    disks: Disks,
    networks: Networks,
    root: PathBuf,
    upgrades: Upgrades,
    flags: Flags,
}

impl Scraper {
    /// `root` is the directory host paths are read under (tests point it at a temp dir); "/" in production.
    pub fn new(root: &Path) -> Scraper {
        let mut system = System::new();
        // The first CPU sample, so the first scrape already has a difference to report.
        system.refresh_cpu_usage();
        Scraper {
            system,
            disks: Disks::new(),
            networks: Networks::new(),
            root: root.to_owned(),
            upgrades: Upgrades::new(root, Arc::new(count_upgrades)),
            flags: Flags::new(root),
        }
    }

    /// Reports `upgrade_required` for this inventory (stored in `inventory_file`).
    pub fn watch_reconcile(&mut self, inventory: Arc<InventoryStore>, inventory_file: PathBuf) {
        self.flags.watch_reconcile(inventory, inventory_file);
    }

    /// One snapshot shaped as PROTOCOL 2.7 (`kind: "metrics"`, `at` = the `at` argument, an RFC 3339 string the caller gives).
    ///
    /// Cheap and synchronous (reads under /proc and /sys, statvfs per disk): it never runs
    /// a program itself; `upgrades_pending` is the last count known (0 until the first).
    pub fn scrape(&mut self, at: String) -> Metrics {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let (total, available) = (self.system.total_memory(), self.system.available_memory());
        let (swap_total, swap_free) = (self.system.total_swap(), self.system.free_swap());
        let load = System::load_average();
        Metrics {
            kind: "metrics",
            at,
            uptime_secs: System::uptime(),
            load: [load.one, load.five, load.fifteen],
            cpu_percent: self.system.global_cpu_usage(),
            memory: Memory { total, used: total.saturating_sub(available), available },
            swap: Swap { total: swap_total, used: swap_total.saturating_sub(swap_free) },
            disks: self.disks(),
            network: self.network(),
            reboot_required: reboot_required(&self.root) || self.flags.kernel_outdated(),
            upgrades_pending: self.upgrades.pending(Instant::now()),
            services_need_restart: self.flags.services_need_restart(Instant::now()),
            upgrade_required: self.flags.upgrade_required(Instant::now()),
        }
    }

    /// Waits for a running count of pending upgrades (a one-shot snapshot wants it;
    /// the daemon never waits).
    pub fn wait_for_upgrades(&mut self) {
        self.upgrades.collect(true);
        self.flags.wait();
    }

    fn disks(&mut self) -> Vec<Disk> {
        // Re-read the mount table (mounts come and go) without asking anything of the
        // filesystems, then statvfs only those that can be disks.
        self.disks.refresh_specifics(true, DiskRefreshKind::nothing());
        let mut mounts = Vec::with_capacity(self.disks.list().len());
        for disk in self.disks.list_mut() {
            let fs = disk.file_system().to_string_lossy().into_owned();
            if !is_disk_fs(&fs) {
                continue;
            }
            // statvfs directly: sysinfo gives no f_bfree, and df's "Used" needs it.
            // (The casts are for targets where fsblkcnt_t is 32 bits.)
            let Ok(stat) = nix::sys::statvfs::statvfs(disk.mount_point()) else { continue };
            #[allow(clippy::unnecessary_cast)]
            let block = stat.fragment_size() as u64;
            #[allow(clippy::unnecessary_cast)]
            mounts.push(Mount {
                device: disk.name().to_string_lossy().into_owned(),
                mount: disk.mount_point().to_string_lossy().into_owned(),
                fs,
                total: stat.blocks() as u64 * block,
                free: Some(stat.blocks_free() as u64 * block),
                available: stat.blocks_available() as u64 * block,
            });
        }
        real_disks(mounts)
    }

    fn network(&mut self) -> Network {
        self.networks.refresh(true);
        let mut total = Network::default();
        for (name, data) in self.networks.list() {
            if name != "lo" {
                total.rx_bytes = total.rx_bytes.saturating_add(data.total_received());
                total.tx_bytes = total.tx_bytes.saturating_add(data.total_transmitted());
            }
        }
        total
    }
}

/// A mounted filesystem as the mount table and statvfs describe it: the input of [`real_disks`].
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    device: String,
    mount: String,
    fs: String,
    total: u64,
    /// Free to root (f_bfree): `None` when unknown.
    free: Option<u64>,
    available: u64,
}

fn is_disk_fs(fs: &str) -> bool {
    !NOT_DISKS.contains(&fs)
}

/// The disks of `mounts` (in mount table order), sorted by mount path.
///
/// * Filesystems of a [`NOT_DISKS`] type, and those of no size, are left out.
/// * A path mounted over keeps only its last (the visible) mount.
/// * One filesystem mounted at several paths (bind mounts, btrfs subvolumes: same device,
///   type and size) is reported once, at its shortest path.
/// * `used` is `total - free` when `free` is known, like df's "Used": on ext4 the blocks
///   reserved for root (5% by default) are neither used nor available. Otherwise it is
///   `total - available`, which counts the reserve as used. [`Scraper`] reads all three
///   with statvfs, so it always knows `free`.
fn real_disks(mounts: Vec<Mount>) -> Vec<Disk> {
    let mut by_path: BTreeMap<String, Mount> = BTreeMap::new();
    for m in mounts {
        if is_disk_fs(&m.fs) && m.total > 0 {
            by_path.insert(m.mount.clone(), m);
        }
    }
    let mut by_fs: BTreeMap<(String, String, u64), Mount> = BTreeMap::new();
    for m in by_path.into_values() {
        match by_fs.entry((m.device.clone(), m.fs.clone(), m.total)) {
            Entry::Vacant(slot) => {
                slot.insert(m);
            }
            Entry::Occupied(mut slot) => {
                if (m.mount.len(), &m.mount) < (slot.get().mount.len(), &slot.get().mount) {
                    slot.insert(m);
                }
            }
        }
    }
    let mut disks: Vec<Disk> = by_fs
        .into_values()
        .map(|m| Disk {
            mount: m.mount,
            fs: m.fs,
            total: m.total,
            used: m.total.saturating_sub(m.free.unwrap_or(m.available)),
            available: m.available.min(m.total),
        })
        .collect();
    disks.sort_by(|a, b| a.mount.cmp(&b.mount));
    disks
}

/// Whether a package asked for a reboot (`<root>/var/run/reboot-required`, or the same
/// file in `<root>/run`, which /var/run links to).
fn reboot_required(root: &Path) -> bool {
    ["var/run/reboot-required", "run/reboot-required"].iter().any(|path| root.join(path).exists())
}

/// How the pending upgrades are counted: `Err` is a message for the log.
type Count = Arc<dyn Fn(&Path) -> Result<u32, String> + Send + Sync>;

/// The mtimes of [`PACKAGE_STATE`] when a count started (absent files as `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs([Option<SystemTime>; 3]);

impl Inputs {
    fn read(root: &Path) -> Inputs {
        Inputs(PACKAGE_STATE.map(|path| fs::metadata(root.join(path)).and_then(|m| m.modified()).ok()))
    }
}

/// The cached count of pending upgrades.
///
/// A count runs on a background thread (it may take apt many seconds), started from
/// [`Upgrades::pending`] when one is due: never counted yet, or at least an hour since the
/// last count started and the package state ([`PACKAGE_STATE`]'s mtimes) changed since the
/// last successful one. A failed count is retried after the hour even if nothing changed.
/// Until a count finishes, the last known value (0 at first) is reported; a failure keeps it.
struct Upgrades {
    root: PathBuf,
    count: Count,
    known: u32,
    /// When the last count started.
    started: Option<Instant>,
    /// The inputs of the last successful count.
    counted: Option<Inputs>,
    running: Option<(JoinHandle<Result<u32, String>>, Inputs)>,
    /// The last count failed (it was logged; the next failures are not).
    failing: bool,
}

impl Upgrades {
    fn new(root: &Path, count: Count) -> Upgrades {
        Upgrades { root: root.to_owned(), count, known: 0, started: None, counted: None, running: None, failing: false }
    }

    /// The last known count; picks up a finished count and starts one when it is due.
    fn pending(&mut self, now: Instant) -> u32 {
        self.collect(false);
        if self.running.is_none() {
            let inputs = Inputs::read(&self.root);
            if self.due(now, &inputs) {
                self.start(now, inputs);
            }
        }
        self.known
    }

    fn due(&self, now: Instant, inputs: &Inputs) -> bool {
        match self.started {
            None => true,
            Some(started) => {
                now.saturating_duration_since(started) >= RECOUNT_EVERY && self.counted.as_ref() != Some(inputs)
            }
        }
    }

    fn start(&mut self, now: Instant, inputs: Inputs) {
        self.started = Some(now);
        let (count, root) = (Arc::clone(&self.count), self.root.clone());
        match thread::Builder::new().name("upgrades".into()).spawn(move || count(&root)) {
            Ok(handle) => self.running = Some((handle, inputs)),
            Err(err) => self.finished(Err(format!("cannot start a thread: {err}")), inputs),
        }
    }

    /// Takes the result of a running count if it is done (or, with `wait`, when it is).
    fn collect(&mut self, wait: bool) {
        let Some((handle, inputs)) = self.running.take_if(|(handle, _)| wait || handle.is_finished()) else {
            return;
        };
        let result = handle.join().unwrap_or_else(|_| Err("the count panicked".to_owned()));
        self.finished(result, inputs);
    }

    fn finished(&mut self, result: Result<u32, String>, inputs: Inputs) {
        match result {
            Ok(n) => {
                if self.failing {
                    tracing::info!("pending upgrades counted again: {n}");
                }
                self.known = n;
                self.counted = Some(inputs);
                self.failing = false;
            }
            Err(err) => {
                if self.failing {
                    tracing::debug!("cannot count pending upgrades: {err}");
                } else {
                    tracing::warn!("cannot count pending upgrades (reporting {}): {err}", self.known);
                }
                self.counted = None;
                self.failing = true;
            }
        }
    }
}

/// Counts the pending upgrades: Ubuntu's update-notifier file when it is there and reads
/// well, else (only on the real root "/") a simulated `apt-get upgrade`. Under another
/// root with no such file, 0.
fn count_upgrades(root: &Path) -> Result<u32, String> {
    if let Some(n) = fs::read_to_string(root.join(UPDATE_NOTIFIER)).ok().and_then(|t| parse_update_notifier(&t)) {
        return Ok(n);
    }
    if root != Path::new("/") {
        return Ok(0);
    }
    // No locking: as root, apt-get --simulate takes the dpkg lock, and would make an
    // administrator's (or unattended-upgrades') apt run fail while it reads.
    let args = ["--simulate", "--quiet", "--quiet", "-o", "Debug::NoLocking=true", "upgrade"];
    let out = crate::host::cmd::run_bounded(Path::new("/usr/bin/apt-get"), &args, APT_TIMEOUT)
        .map_err(|err| format!("apt-get --simulate upgrade: {err}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("apt-get --simulate upgrade: {}: {}", out.status, stderr.trim()));
    }
    Ok(count_inst_lines(&String::from_utf8_lossy(&out.stdout)))
}

/// The count in update-notifier's text: "N updates can be applied immediately." (Ubuntu
/// 20.04 and later) or "N packages can be updated." (earlier), singular too. Lines about
/// ESM ("N additional security updates can be applied with ESM Apps.") do not count.
fn parse_update_notifier(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let (digits, rest) = line.trim().split_once(' ')?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        matches!(
            rest,
            "updates can be applied immediately."
                | "update can be applied immediately."
                | "packages can be updated."
                | "package can be updated."
        )
        .then_some(n)
    })
}

/// The packages `apt-get --simulate upgrade` would install: its "Inst " lines.
fn count_inst_lines(output: &str) -> u32 {
    output.lines().filter(|line| line.starts_with("Inst ")).count().try_into().unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn mount(device: &str, mount: &str, fs: &str, total: u64, available: u64) -> Mount {
        Mount { device: device.into(), mount: mount.into(), fs: fs.into(), total, free: None, available }
    }

    #[test]
    fn deny_list() {
        for fs in ["tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup2", "fuse.lxcfs", "nfs4"] {
            assert!(!is_disk_fs(fs), "{fs}");
        }
        for fs in ["ext4", "xfs", "btrfs", "zfs", "vfat", "fuseblk"] {
            assert!(is_disk_fs(fs), "{fs}");
        }
        let mut sorted = NOT_DISKS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), NOT_DISKS.len(), "duplicates in NOT_DISKS");
    }

    #[test]
    fn only_real_disks_once_each() {
        let mounts = vec![
            mount("/dev/sda1", "/srv/users/a/apps", "ext4", 100, 60), // bind mount of /
            mount("/dev/sda1", "/", "ext4", 100, 60),
            mount("/dev/sda1", "/var/lib/docker/x", "ext4", 100, 60),
            mount("/dev/sda15", "/boot/efi", "vfat", 10, 9),
            mount("tmpfs", "/dev/shm", "tmpfs", 50, 50),
            mount("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay", 100, 60),
            mount("/dev/loop0", "/snap/core22/1621", "squashfs", 70, 0),
            mount("proc", "/proc", "proc", 0, 0),
            mount("/dev/sdb1", "/mnt/empty", "ext4", 0, 0), // statvfs failed: no size
            mount("/dev/sdc1", "/data", "xfs", 500, 100),
            mount("/dev/sdd1", "/data", "xfs", 900, 800), // mounted over /data: the visible one
            mount("/dev/sde1", "/z", "ext4", 100, 60),    // same size as sda1, other device
        ];
        let disks = real_disks(mounts);
        let got: Vec<_> =
            disks.iter().map(|d| (d.mount.as_str(), d.fs.as_str(), d.total, d.used, d.available)).collect();
        assert_eq!(
            got,
            [
                ("/", "ext4", 100, 40, 60),
                ("/boot/efi", "vfat", 10, 1, 9),
                ("/data", "xfs", 900, 100, 800),
                ("/z", "ext4", 100, 40, 60),
            ]
        );
        assert!(real_disks(Vec::new()).is_empty());
    }

    #[test]
    fn used_is_total_minus_free_when_free_is_known() {
        // ext4 with a reserve: 1000 blocks, 300 free, 250 of them available to users.
        let ext4 = Mount { free: Some(300), ..mount("/dev/vda1", "/", "ext4", 1000, 250) };
        let disk = &real_disks(vec![ext4.clone()])[0];
        assert_eq!((disk.total, disk.used, disk.available), (1000, 700, 250));
        let disk = &real_disks(vec![Mount { free: None, ..ext4 }])[0];
        assert_eq!((disk.total, disk.used, disk.available), (1000, 750, 250));
    }

    #[test]
    fn update_notifier_counts() {
        let focal = "\n12 updates can be applied immediately.\n5 of these updates are standard security updates.\n\
                     To see these additional updates run: apt list --upgradable\n\n";
        assert_eq!(parse_update_notifier(focal), Some(12));
        let esm = "Expanded Security Maintenance for Applications is not enabled.\n\n\
                   0 updates can be applied immediately.\n\n\
                   3 additional security updates can be applied with ESM Apps.\n\
                   Learn more about enabling ESM Apps service at https://ubuntu.com/esm\n";
        assert_eq!(parse_update_notifier(esm), Some(0));
        assert_eq!(parse_update_notifier("1 update can be applied immediately.\n"), Some(1));
        let bionic = "23 packages can be updated.\n12 updates are security updates.\n";
        assert_eq!(parse_update_notifier(bionic), Some(23));
        assert_eq!(parse_update_notifier("1 package can be updated.\n0 updates are security updates.\n"), Some(1));
        assert_eq!(parse_update_notifier(""), None);
        assert_eq!(parse_update_notifier("garbage\n\u{0}\u{1}"), None);
        assert_eq!(parse_update_notifier("3 additional security updates can be applied with ESM Apps.\n"), None);
        assert_eq!(parse_update_notifier("-1 updates can be applied immediately."), None);
        assert_eq!(parse_update_notifier("+4 updates can be applied immediately."), None);
        assert_eq!(parse_update_notifier("99999999999 packages can be updated."), None);
        assert_eq!(parse_update_notifier("12 paquets peuvent être mis à jour."), None);
    }

    #[test]
    fn apt_simulation_count() {
        let out = "Inst libc6 [2.36-9+deb12u7] (2.36-9+deb12u8 Debian-Security:12/stable-security [amd64])\n\
                   Inst libc-bin [2.36-9+deb12u7] (2.36-9+deb12u8 Debian-Security:12/stable-security [amd64])\n\
                   Conf libc6 (2.36-9+deb12u8 Debian-Security:12/stable-security [amd64])\n\
                   Conf libc-bin (2.36-9+deb12u8 Debian-Security:12/stable-security [amd64])\n";
        assert_eq!(count_inst_lines(out), 2);
        assert_eq!(count_inst_lines(""), 0);
        assert_eq!(count_inst_lines("NOTE: This is only a simulation!\n Inst x\n"), 0);
    }

    #[test]
    fn reboot_required_under_root() {
        let root = tempfile::tempdir().unwrap();
        assert!(!reboot_required(root.path()));
        fs::create_dir_all(root.path().join("run")).unwrap();
        fs::write(root.path().join("run/reboot-required"), "*** System restart required ***\n").unwrap();
        assert!(reboot_required(root.path()));

        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("var/run")).unwrap();
        fs::write(root.path().join("var/run/reboot-required"), "").unwrap();
        assert!(reboot_required(root.path()));
    }

    /// A count that records its calls and answers from `answers` in turn (the last one after).
    fn fake(answers: Vec<Result<u32, String>>) -> (Count, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let count: Count = Arc::new(move |_root: &Path| {
            let i = seen.fetch_add(1, Ordering::SeqCst);
            answers[i.min(answers.len() - 1)].clone()
        });
        (count, calls)
    }

    fn touch(path: &Path, secs: u64) {
        let file = fs::File::open(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
    }

    #[test]
    fn upgrades_recount_only_when_due_and_changed() {
        let root = tempfile::tempdir().unwrap();
        let status = root.path().join("var/lib/dpkg/status");
        let lists = root.path().join("var/lib/apt/lists");
        fs::create_dir_all(status.parent().unwrap()).unwrap();
        fs::create_dir_all(&lists).unwrap();
        fs::write(&status, "Package: x\n").unwrap();
        let (count, calls) = fake(vec![Ok(7), Ok(4), Ok(2)]);
        let mut up = Upgrades::new(root.path(), count);
        let t0 = Instant::now();

        assert_eq!(up.pending(t0), 0, "nothing known before the first count finishes");
        up.collect(true);
        assert_eq!(up.pending(t0), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Hours later, but nothing changed: no recount.
        assert_eq!(up.pending(t0 + 5 * HOUR), 7);
        up.collect(true);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // dpkg ran: recounted, but not within the hour of the last count.
        touch(&status, 1_000);
        assert_eq!(up.pending(t0 + HOUR / 2), 7);
        up.collect(true);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(up.pending(t0 + HOUR), 7);
        up.collect(true);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(up.pending(t0 + HOUR), 4);

        // The lists were updated: recounted an hour after the last count started.
        touch(&lists, 2_000);
        assert_eq!(up.pending(t0 + HOUR + HOUR / 2), 4);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        up.pending(t0 + 2 * HOUR);
        up.collect(true);
        assert_eq!(up.pending(t0 + 2 * HOUR), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(up.pending(t0 + 10 * HOUR), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn failed_count_keeps_the_value_and_retries_hourly() {
        let root = tempfile::tempdir().unwrap();
        let (count, calls) = fake(vec![Ok(3), Err("apt-get: boom".into()), Err("again".into()), Ok(5)]);
        let mut up = Upgrades::new(root.path(), count);
        let t0 = Instant::now();
        up.pending(t0);
        up.collect(true);
        assert_eq!(up.pending(t0), 3);
        // Make the next count due (inputs changed), then fail it: the last value stays.
        up.counted = None;
        up.pending(t0 + HOUR);
        up.collect(true);
        assert!(up.failing);
        assert_eq!(up.pending(t0 + HOUR + HOUR / 2), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Nothing changed on disk, yet a failed count is retried after the hour.
        up.pending(t0 + 2 * HOUR);
        up.collect(true);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        up.pending(t0 + 3 * HOUR);
        up.collect(true);
        assert_eq!(up.pending(t0 + 3 * HOUR), 5);
        assert!(!up.failing);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_panicking_count_is_a_failure() {
        let root = tempfile::tempdir().unwrap();
        let mut up = Upgrades::new(root.path(), Arc::new(|_: &Path| panic!("test panic")));
        up.pending(Instant::now());
        up.collect(true);
        assert!(up.failing);
        assert_eq!(up.known, 0);
    }

    #[test]
    fn counts_from_update_notifier_under_a_temp_root() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(count_upgrades(root.path()), Ok(0), "no file and not the real root: no apt");
        let file = root.path().join(UPDATE_NOTIFIER);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, "9 updates can be applied immediately.\n").unwrap();
        assert_eq!(count_upgrades(root.path()), Ok(9));
    }

    #[test]
    fn scraper_can_move_into_a_task() {
        fn send<T: Send + 'static>() {}
        send::<Scraper>();
    }

    #[test]
    fn scrape_of_this_machine() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join(UPDATE_NOTIFIER);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, "6 updates can be applied immediately.\n").unwrap();
        let mut scraper = Scraper::new(root.path());
        thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let m = scraper.scrape("2026-01-01T00:00:00.000Z".into());
        assert_eq!(m.kind, "metrics");
        assert_eq!(m.at, "2026-01-01T00:00:00.000Z");
        assert!(m.memory.total > 0);
        assert_eq!(m.memory.used + m.memory.available, m.memory.total);
        assert!(m.swap.used <= m.swap.total);
        assert!((0.0..=100.0).contains(&m.cpu_percent), "{}", m.cpu_percent);
        assert!(m.uptime_secs > 0);
        assert!(m.load.iter().all(|l| *l >= 0.0));
        let cpus = scraper.system.cpus().len();
        let usable = thread::available_parallelism().unwrap().get();
        assert!(cpus >= 1 && usable <= cpus, "{usable} usable of {cpus} CPUs");
        for disk in &m.disks {
            assert!(is_disk_fs(&disk.fs) && disk.total > 0, "{disk:?}");
            assert!(disk.used + disk.available <= disk.total, "{disk:?}");
        }
        assert!(!m.reboot_required);
        assert_eq!(m.upgrades_pending, 0, "the count runs in the background");
        scraper.upgrades.collect(true);
        let m = scraper.scrape("t".into());
        assert_eq!(m.upgrades_pending, 6);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["type"], "metrics");
        assert!(json["network"]["rx_bytes"].is_u64());
    }
}

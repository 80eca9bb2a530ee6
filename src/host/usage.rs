//! The host's resources for the monitor: CPU from `/proc/stat`, memory from
//! `/proc/meminfo`, network counters from `/proc/net/dev`, disks from
//! `/proc/self/mounts` and statvfs, turned into a [`Reading`] (rates since the
//! previous one).
//!
//! Its own small reader rather than the `metrics` message's sysinfo state: a reading
//! every 10 s must cost next to nothing, so each file is read into one buffer kept
//! between readings. Disks are mounts of a disk filesystem ([`DISK_FS`], the same
//! filesystem mounted twice counted once, at its shortest path) plus the mounts the
//! config names in `monitor_mounts` whatever their type (a tmpfs that holds data).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::reading::{DiskUse, Reading};

/// Filesystem types that are disks.
const DISK_FS: &[&str] =
    &["ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "bcachefs", "vfat", "exfat", "ntfs3"];

/// The counters of the previous reading.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    at_ms: u64,
    cpu_busy: u64,
    cpu_total: u64,
    rx_bytes: u64,
    tx_bytes: u64,
}

/// Reads the host's resources; keeps the previous counters and a buffer.
pub struct Usage {
    proc_dir: PathBuf,
    extra_mounts: Vec<String>,
    text: String,
    bytes: Vec<u8>,
    last: Option<Counters>,
}

impl Usage {
    /// `extra_mounts`: mounts that count as disks whatever their filesystem.
    pub fn new(proc_dir: &Path, extra_mounts: Vec<String>) -> Usage {
        Usage { proc_dir: proc_dir.to_owned(), extra_mounts, text: String::new(), bytes: Vec::new(), last: None }
    }

    /// One reading at `at_ms`; CPU and network are rates since the previous reading
    /// (0 at the first). `ping_ms` is left `None` for the caller.
    pub fn read(&mut self, at_ms: u64) -> Reading {
        let mut now = Counters { at_ms, ..Counters::default() };
        if self.load("stat") {
            if let Some((busy, total)) = cpu(&self.text) {
                (now.cpu_busy, now.cpu_total) = (busy, total);
            }
        }
        let ram_percent = if self.load("meminfo") { memory(&self.text) } else { 0.0 };
        if self.load("net/dev") {
            (now.rx_bytes, now.tx_bytes) = network(&self.text);
        }
        let disks = if self.load("self/mounts") { disks(&self.text, &self.extra_mounts) } else { Vec::new() };
        let mut reading = Reading { at_ms, ram_percent, disks, ..Reading::default() };
        if let Some(last) = self.last {
            let total = now.cpu_total.saturating_sub(last.cpu_total);
            if total > 0 {
                reading.cpu_percent = (now.cpu_busy.saturating_sub(last.cpu_busy) as f64 * 100.0 / total as f64) as f32;
            }
            let secs = at_ms.saturating_sub(last.at_ms) as f64 / 1000.0;
            if secs > 0.0 {
                let kbps = |now: u64, then: u64| (now.saturating_sub(then) as f64 * 8.0 / 1000.0 / secs) as f32;
                reading.rx_kbps = kbps(now.rx_bytes, last.rx_bytes);
                reading.tx_kbps = kbps(now.tx_bytes, last.tx_bytes);
            }
        }
        self.last = Some(now);
        reading
    }

    /// Reads `file` into `text`. Bytes that are not UTF-8 become U+FFFD: a mount
    /// table holds users' paths (a FUSE mount at `~/x\xff`), and one such line must
    /// not make the whole table unreadable (redteam18: it dropped every disk check).
    fn load(&mut self, file: &str) -> bool {
        self.text.clear();
        self.bytes.clear();
        let read = File::open(self.proc_dir.join(file)).and_then(|mut f| f.read_to_end(&mut self.bytes));
        self.text.push_str(&String::from_utf8_lossy(&self.bytes));
        read.is_ok()
    }
}

/// (busy, total) jiffies of `/proc/stat`'s `cpu` line; idle and iowait are not busy.
fn cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
    if values.len() < 5 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    Some((total - idle, total))
}

/// Memory in use (total minus available), percent of total.
fn memory(meminfo: &str) -> f32 {
    let field =
        |name: &str| meminfo.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse::<u64>().ok());
    match (field("MemTotal:"), field("MemAvailable:")) {
        (Some(total), Some(available)) if total > 0 => {
            (total.saturating_sub(available) as f64 * 100.0 / total as f64) as f32
        }
        _ => 0.0,
    }
}

/// Bytes received and sent on every interface but `lo`.
fn network(dev: &str) -> (u64, u64) {
    let mut total = (0u64, 0u64);
    for line in dev.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else { continue };
        if name.trim() == "lo" {
            continue;
        }
        let values: Vec<u64> = counters.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        if values.len() >= 9 {
            total.0 = total.0.saturating_add(values[0]);
            total.1 = total.1.saturating_add(values[8]);
        }
    }
    total
}

/// The disks of a mount table, by mount path: each filesystem once.
fn disks(mounts: &str, extra: &[String]) -> Vec<DiskUse> {
    // (device, mount) of each disk. Any later mount, of any type, at a disk's path or
    // at a directory above it hides that disk: its statvfs would ask the later
    // filesystem, which may be a user's FUSE daemon that answers zeros or never
    // (redteam18). Lines with bytes that were not UTF-8 are users' mounts, skipped.
    let mut found: Vec<(String, String)> = Vec::new();
    for line in mounts.lines().filter(|l| !l.contains('\u{FFFD}')) {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mount), Some(fs)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let mount = unescape(mount);
        let below = format!("{}/", mount.trim_end_matches('/'));
        found.retain(|(_, m)| *m != mount && !m.starts_with(&below));
        if !DISK_FS.contains(&fs) && !extra.contains(&mount) {
            continue;
        }
        found.push((device.to_owned(), mount));
    }
    let mut out: Vec<DiskUse> = Vec::new();
    let mut seen: Vec<(String, u64, usize)> = Vec::new(); // (device, size) → index in out
    for (device, mount) in found {
        let Ok(stat) = nix::sys::statvfs::statvfs(Path::new(&mount)) else { continue };
        #[allow(clippy::unnecessary_cast)]
        let (block, blocks, free) = (stat.fragment_size() as u64, stat.blocks() as u64, stat.blocks_free() as u64);
        let total = blocks * block;
        if total == 0 {
            continue;
        }
        let used_percent = (blocks.saturating_sub(free) as f64 * 100.0 / blocks as f64) as f32;
        let is_extra = extra.contains(&mount);
        match seen.iter().find(|(d, size, _)| *d == device && *size == total && !is_extra) {
            Some(&(_, _, i)) if mount.len() < out[i].mount.len() => out[i].mount = mount,
            Some(_) => {}
            None => {
                seen.push((device, total, out.len()));
                out.push(DiskUse { mount, used_percent });
            }
        }
    }
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out
}

/// A mount path of `/proc/self/mounts`, whose space, tab, newline and backslash are octal escapes.
fn unescape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_memory_and_network_from_proc_text() {
        assert_eq!(cpu("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 2 3\n"), Some((20, 100)));
        assert_eq!(memory("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:   250 kB\n"), 75.0);
        let dev = "Inter-| Receive\n face |bytes\n    lo: 500 1 0 0 0 0 0 0 500 1 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0 2000 5 0 0 0 0 0 0\n";
        assert_eq!(network(dev), (1000, 2000));
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
    }

    fn disks_of(mounts: &[u8]) -> Vec<String> {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("self")).unwrap();
        std::fs::write(proc.path().join("self/mounts"), mounts).unwrap();
        Usage::new(proc.path(), Vec::new()).read(1000).disks.into_iter().map(|d| d.mount).collect()
    }

    /// A user's FUSE mount whose path is not UTF-8 made the whole mount table
    /// unreadable, and every disk check went quiet (redteam18).
    #[test]
    fn a_mount_path_that_is_not_utf8_hides_no_disk_regression() {
        let disks = disks_of(b"/dev/vda / ext4 rw 0 0\nsshfs /srv/users/eve/x\xff fuse.sshfs rw 0 0\n");
        assert_eq!(disks, ["/"]);
    }

    /// A later mount at a disk's path or above it hides the disk: statvfs would ask
    /// the later filesystem (a user's FUSE daemon may never answer), redteam18.
    #[test]
    fn a_mount_over_a_disk_or_above_it_hides_the_disk_regression() {
        let disks = disks_of(
            b"/dev/vda / ext4 rw 0 0\n/dev/vdb /tmp ext4 rw 0 0\nfuse /tmp fuse.x rw 0 0\n\
              /dev/vdc /var/tmp ext4 rw 0 0\nfuse /var fuse.x rw 0 0\n/dev/vdd /srv ext4 rw 0 0\n",
        );
        assert_eq!(disks, ["/", "/srv"]);
    }

    #[test]
    fn a_reading_of_this_host() {
        let mut usage = Usage::new(Path::new("/proc"), Vec::new());
        let first = usage.read(1000);
        assert!(first.ram_percent > 0.0 && first.ram_percent <= 100.0);
        let second = usage.read(2000);
        assert!((0.0..=100.0).contains(&second.cpu_percent));
        assert!(second.disks.iter().all(|d| (0.0..=100.0).contains(&d.used_percent)));
    }
}

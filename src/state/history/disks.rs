//! Which disk (by mount) each of the history's [`MAX_DISKS`] disk series holds.
//!
//! A slot has room for a fixed number of disks, so each mount gets an index the
//! first time a reading names it, kept in `history/disks` (a fixed-size file like
//! the rings: one 256-byte entry per index, with a CRC; a bad entry reads as free).
//! When every index is taken, a new mount takes the index of the one seen least
//! recently, if that one was not seen for [`REUSE_AFTER_MS`]; its `since` is set so
//! the old mount's values under that index read as gaps, never as the new one's.
//! Otherwise the new mount is not kept (one log line).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::ring::MAX_DISKS;

const ENTRY_LEN: usize = 256;
/// Longest mount kept, in bytes.
pub const MAX_MOUNT_LEN: usize = ENTRY_LEN - 18 - 4;
/// A mount not seen for a day gives its index to a new one.
pub const REUSE_AFTER_MS: u64 = 86_400_000;
/// `last_seen` is written at most this often.
const SEEN_EVERY_MS: u64 = 3_600_000;

/// The table's file length.
pub const FILE_LEN: u64 = (MAX_DISKS * ENTRY_LEN) as u64;

/// One index's mount.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    pub mount: String,
    /// Values of this index from periods that end at or before this are another mount's.
    pub since_ms: u64,
    pub last_seen_ms: u64,
}

impl Disk {
    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[..8].copy_from_slice(&self.since_ms.to_le_bytes());
        out[8..16].copy_from_slice(&self.last_seen_ms.to_le_bytes());
        out[16..18].copy_from_slice(&(self.mount.len() as u16).to_le_bytes());
        out[18..18 + self.mount.len()].copy_from_slice(self.mount.as_bytes());
        let crc = crc32fast::hash(&out[..ENTRY_LEN - 4]);
        out[ENTRY_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Disk> {
        let crc = u32::from_le_bytes(bytes[ENTRY_LEN - 4..].try_into().ok()?);
        if crc != crc32fast::hash(&bytes[..ENTRY_LEN - 4]) {
            return None;
        }
        let len = usize::from(u16::from_le_bytes(bytes[16..18].try_into().ok()?));
        if len == 0 || len > MAX_MOUNT_LEN {
            return None;
        }
        Some(Disk {
            mount: String::from_utf8(bytes[18..18 + len].to_vec()).ok()?,
            since_ms: u64::from_le_bytes(bytes[..8].try_into().ok()?),
            last_seen_ms: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        })
    }
}

/// The table, read once at open and kept (a few hundred bytes: the mounts' names).
#[derive(Debug)]
pub struct Disks {
    file: File,
    pub entries: [Option<Disk>; MAX_DISKS],
    /// A mount was refused for want of an index (logged once).
    full_logged: bool,
}

impl Disks {
    pub fn open(dir: &Path) -> io::Result<Disks> {
        let path = dir.join("disks");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)?;
        let mut bytes = vec![0u8; FILE_LEN as usize];
        if file.metadata()?.len() != FILE_LEN || file.read_exact_at(&mut bytes, 0).is_err() {
            tracing::warn!(path = %path.display(), "history disk table of the wrong size: replaced by an empty one");
            file.set_len(0)?;
            bytes.fill(0);
            if let Err(e) = file.set_len(FILE_LEN) {
                tracing::warn!(path = %path.display(), "cannot size the history disk table: {e}");
            }
        }
        let entries = std::array::from_fn(|i| Disk::decode(&bytes[i * ENTRY_LEN..(i + 1) * ENTRY_LEN]));
        Ok(Disks { file, entries, full_logged: false })
    }

    fn save(&self, index: usize) {
        let Some(disk) = &self.entries[index] else { return };
        if let Err(e) = self.file.write_all_at(&disk.encode(), (index * ENTRY_LEN) as u64) {
            tracing::warn!("cannot write the history disk table: {e}");
        }
    }

    /// The index of `mount` at `now_ms` (the reading's minute start), taking one for
    /// a mount not seen before; `None` when none is free.
    pub fn index_of(&mut self, mount: &str, now_ms: u64) -> Option<usize> {
        if let Some(i) = self.entries.iter().position(|e| e.as_ref().is_some_and(|d| d.mount == mount)) {
            let disk = self.entries[i].as_mut().expect("found");
            if now_ms >= disk.last_seen_ms.saturating_add(SEEN_EVERY_MS) || now_ms < disk.last_seen_ms {
                disk.last_seen_ms = now_ms;
                self.save(i);
            }
            return Some(i);
        }
        if mount.is_empty() || mount.len() > MAX_MOUNT_LEN {
            return None;
        }
        let free = self.entries.iter().position(Option::is_none).or_else(|| {
            let (i, oldest) = self
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.as_ref().map(|d| (i, d.last_seen_ms)))
                .min_by_key(|&(_, seen)| seen)?;
            (now_ms >= oldest.saturating_add(REUSE_AFTER_MS)).then_some(i)
        });
        let Some(i) = free else {
            if !self.full_logged {
                self.full_logged = true;
                tracing::warn!(mount, "the metrics history keeps {MAX_DISKS} disks: this one is not kept");
            }
            return None;
        };
        self.entries[i] = Some(Disk { mount: mount.to_owned(), since_ms: now_ms, last_seen_ms: now_ms });
        self.save(i);
        Some(i)
    }

    /// Per index, the time before which its values are not its mount's
    /// (`u64::MAX` for a free index: nothing of it is shown).
    pub fn since(&self) -> [u64; MAX_DISKS] {
        std::array::from_fn(|i| self.entries[i].as_ref().map_or(u64::MAX, |d| d.since_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_keep_their_index_across_a_reopen_and_a_stale_one_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut disks = Disks::open(dir.path()).unwrap();
        let day = REUSE_AFTER_MS;
        for i in 0..MAX_DISKS {
            assert_eq!(disks.index_of(&format!("/m{i}"), 1000), Some(i));
        }
        assert_eq!(disks.index_of("/late", 2000), None, "full, and nobody is stale");
        assert_eq!(disks.index_of(&"/x".repeat(200), 2000), None, "too long to keep");
        for i in 1..MAX_DISKS {
            disks.index_of(&format!("/m{i}"), day + 5000);
        }
        let mut disks = Disks::open(dir.path()).unwrap();
        assert_eq!(disks.index_of("/m3", day + 6000), Some(3));
        assert_eq!(disks.index_of("/late", day + 6000), Some(0), "/m0 was not seen for a day");
        assert_eq!(disks.since()[0], day + 6000);
        assert_eq!(disks.index_of("/m0", day + 7000), None);
    }

    #[test]
    fn a_garbage_table_reads_as_free_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("disks"), vec![0xa5; FILE_LEN as usize]).unwrap();
        let mut disks = Disks::open(dir.path()).unwrap();
        assert!(disks.entries.iter().all(Option::is_none));
        assert_eq!(disks.index_of("/", 0), Some(0));
        std::fs::write(dir.path().join("disks"), b"short").unwrap();
        let disks = Disks::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("disks")).unwrap().len(), FILE_LEN);
        assert_eq!(disks.since(), [u64::MAX; MAX_DISKS]);
    }
}

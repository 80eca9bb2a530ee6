//! One tier of the metrics history on disk: a ring file of a fixed number of
//! fixed-size slots, written in place.
//!
//! Why a ring and not a log: the file never grows, so a year of history has a size
//! known in advance, and writing a slot is one `pwrite` at `slot = start /
//! resolution mod capacity`, with nothing held in memory. Each slot carries its own
//! start time and a CRC, so a slot left from an earlier lap of the ring (berth was
//! down), a slot torn by a crash or a file of garbage reads as a gap, never as data.
//!
//! Layout (little-endian): a 64-byte header (magic, version, resolution, capacity,
//! slot size, series count), then `capacity` slots of [`SLOT_LEN`] bytes:
//! the slot's start in minutes since the epoch (u32), one (average f32, count u8)
//! per series, then the CRC-32 of everything before it in the slot.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The fixed series: cpu, ram, transfer in, transfer out, internal ping.
pub const FIXED: usize = 5;
/// Disks kept, by mount: those seen first (see `disks`).
pub const MAX_DISKS: usize = 8;
/// Series per slot.
pub const SERIES: usize = FIXED + MAX_DISKS;
/// Bytes per slot: start (4), SERIES × (f32 + u8), CRC (4).
pub const SLOT_LEN: usize = 4 + SERIES * 5 + 4;
/// Bytes before the first slot.
pub const HEADER_LEN: u64 = 64;
const MAGIC: &[u8; 8] = b"berthhst";
const VERSION: u32 = 1;
/// Slots read with one `pread`.
const CHUNK: u64 = 1024;

/// One slot: a period's average per series (`count` 0: nothing recorded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    /// The period's start, minutes since the epoch.
    pub start_min: u32,
    pub avg: [f32; SERIES],
    /// Readings (the minute tier) or minutes (coarser tiers) behind each average.
    pub count: [u8; SERIES],
}

impl Slot {
    pub fn empty(start_min: u32) -> Slot {
        Slot { start_min, avg: [0.0; SERIES], count: [0; SERIES] }
    }

    fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        out[..4].copy_from_slice(&self.start_min.to_le_bytes());
        for s in 0..SERIES {
            let at = 4 + s * 5;
            out[at..at + 4].copy_from_slice(&self.avg[s].to_le_bytes());
            out[at + 4] = self.count[s];
        }
        let crc = crc32fast::hash(&out[..SLOT_LEN - 4]);
        out[SLOT_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The slot in `bytes` if its CRC holds and it starts at `start_min`; a
    /// non-finite average reads as nothing recorded.
    fn decode(bytes: &[u8], start_min: u32) -> Option<Slot> {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if bytes.len() != SLOT_LEN || word(SLOT_LEN - 4) != crc32fast::hash(&bytes[..SLOT_LEN - 4]) {
            return None;
        }
        if word(0) != start_min {
            return None;
        }
        let mut slot = Slot::empty(start_min);
        for s in 0..SERIES {
            let avg = f32::from_bits(word(4 + s * 5));
            if avg.is_finite() && bytes[8 + s * 5] > 0 {
                slot.avg[s] = avg;
                slot.count[s] = bytes[8 + s * 5];
            }
        }
        Some(slot)
    }
}

/// One tier's ring file.
#[derive(Debug)]
pub struct Ring {
    file: File,
    /// Minutes per slot.
    pub res_min: u32,
    pub capacity: u32,
}

impl Ring {
    /// The file's size: fixed by the capacity.
    pub fn file_len(capacity: u32) -> u64 {
        HEADER_LEN + u64::from(capacity) * SLOT_LEN as u64
    }

    fn header(res_min: u32, capacity: u32) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[..8].copy_from_slice(MAGIC);
        for (i, v) in [VERSION, res_min * 60, capacity, SLOT_LEN as u32, SERIES as u32].into_iter().enumerate() {
            h[8 + i * 4..12 + i * 4].copy_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// Opens `dir/name`, made when missing. A file of another size or header (a
    /// truncated file, another version's, garbage) is emptied and made anew, with
    /// a log line; slots that are garbage in a file of the right shape read as gaps.
    pub fn open(dir: &Path, name: &str, res_min: u32, capacity: u32) -> io::Result<Ring> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(&path)?;
        let want = Ring::header(res_min, capacity);
        let len = file.metadata()?.len();
        let mut have = [0u8; HEADER_LEN as usize];
        let fits = len == Ring::file_len(capacity) && file.read_exact_at(&mut have, 0).is_ok() && have == want;
        if !fits {
            if len > 0 {
                tracing::warn!(path = %path.display(), len, "history file of the wrong size or version: replaced by an empty one");
            }
            file.set_len(0)?;
            preallocate(&file, Ring::file_len(capacity));
            if let Err(e) = file.write_all_at(&want, 0) {
                tracing::warn!(path = %path.display(), "cannot write the history file's header: {e}");
            }
        }
        Ok(Ring { file, res_min, capacity })
    }

    fn offset(&self, start_min: u32) -> u64 {
        HEADER_LEN + u64::from(start_min / self.res_min % self.capacity) * SLOT_LEN as u64
    }

    /// Writes `slot` at its place (one `pwrite`).
    pub fn write(&self, slot: &Slot) -> io::Result<()> {
        self.file.write_all_at(&slot.encode(), self.offset(slot.start_min))
    }

    /// The `n` slots from `first_min` on (one per `res_min`), each `None` when it
    /// holds another period, is torn, or cannot be read. At most `capacity` slots
    /// are read; any after those are `None` (they would be the same slots again).
    pub fn read(&self, first_min: u32, n: u32) -> Vec<Option<Slot>> {
        let mut out = Vec::with_capacity(n as usize);
        let readable = n.min(self.capacity);
        let mut buf = Vec::new();
        while (out.len() as u32) < readable {
            let start = first_min.saturating_add((out.len() as u32).saturating_mul(self.res_min));
            let index = u64::from(start / self.res_min % self.capacity);
            let run = (u64::from(readable) - out.len() as u64).min(u64::from(self.capacity) - index).min(CHUNK);
            buf.resize(run as usize * SLOT_LEN, 0);
            let ok = self.file.read_exact_at(&mut buf, HEADER_LEN + index * SLOT_LEN as u64).is_ok();
            for (k, bytes) in buf.chunks_exact(SLOT_LEN).enumerate() {
                let expected = start.checked_add(k as u32 * self.res_min);
                out.push(expected.filter(|_| ok).and_then(|min| Slot::decode(bytes, min)));
            }
        }
        out.resize(n as usize, None);
        out
    }
}

/// `O_NOFOLLOW`: the state directory is root's, but a symlink in it is never followed.
fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Gives the file its blocks now, so a disk that fills later does not fail a slot's
/// write; on a file system without `fallocate` (or a full disk), a sparse file.
fn preallocate(file: &File, len: u64) {
    use rustix::fs::{fallocate, FallocateFlags};
    if fallocate(file, FallocateFlags::empty(), 0, len).is_err() {
        if let Err(e) = file.set_len(len) {
            tracing::warn!("cannot size a history file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_round_trips_and_a_torn_or_stale_one_is_a_gap() {
        let mut slot = Slot::empty(29_000_000);
        slot.avg[0] = 12.5;
        slot.count[0] = 6;
        slot.avg[1] = f32::NAN;
        slot.count[1] = 3;
        let bytes = slot.encode();
        let back = Slot::decode(&bytes, 29_000_000).unwrap();
        assert_eq!((back.avg[0], back.count[0]), (12.5, 6));
        assert_eq!(back.count[1], 0, "a NaN is nothing recorded");
        assert_eq!(Slot::decode(&bytes, 29_000_001), None, "another period's slot");
        let mut torn = bytes;
        torn[10] ^= 1;
        assert_eq!(Slot::decode(&torn, 29_000_000), None);
        assert_eq!(Slot::decode(&[0u8; SLOT_LEN], 0), None, "zeros are no slot");
    }

    #[test]
    fn a_ring_wraps_and_reads_a_lap_old_slot_as_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Ring::open(dir.path(), "r", 10, 6).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("r")).unwrap().len(), Ring::file_len(6));
        for start in (0..120).step_by(10) {
            let mut slot = Slot::empty(start);
            slot.avg[2] = start as f32;
            slot.count[2] = 1;
            ring.write(&slot).unwrap();
        }
        let read = ring.read(50, 2);
        assert_eq!(read[0], None, "minute 50 was overwritten by minute 110");
        assert_eq!(read[1].unwrap().avg[2], 60.0);
        let held: Vec<f32> = ring.read(60, 6).iter().map(|s| s.unwrap().avg[2]).collect();
        assert_eq!(held, [60.0, 70.0, 80.0, 90.0, 100.0, 110.0]);
        assert_eq!(ring.read(120, 1), vec![None], "not written yet");
        assert_eq!(ring.read(60, 8)[6..], [None, None], "past a lap: the same slots again, not read");
        assert_eq!(ring.read(u32::MAX - 5, 3), vec![None; 3], "no overflow at the end of time");
    }
}

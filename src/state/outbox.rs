//! The outbox: every event gets the next `seq` and is on disk before it is sent.
//!
//! One append-only file, `outbox.log`, one record per line:
//! `<crc32 of body, 8 hex> <body>\n`, where the body is `<seq> <event json>` or,
//! first in a compacted file, `next <seq>` (so the counter survives an empty outbox).
//! An append is fsynced before the event is visible to the connection. A torn last
//! line (a `kill -9` mid-write) fails its CRC and is dropped on open; an `ack`
//! compacts the file by writing the unacknowledged rest atomically.
//!
//! A full disk must not stop the agent: an event that cannot be written waits in
//! memory, unsent (the protocol allows sending only what is stored), the failure
//! is logged at ERROR, and every later push or [`Outbox::retry`] tries again.
//!
//! The counter never wraps and never goes back. The highest seq it assigns is
//! [`MAX_SEQ`] (2^63 − 1, the largest a control plane's signed 64-bit column holds),
//! so every `next_seq` fits a `u64` and all seq arithmetic is checked. A spent
//! counter (only a control plane's `acked_seq` can bring it near) stores nothing
//! more: new events wait in memory, unsent, as on a full disk. A `welcome` that
//! would leave no seq after it is refused by [`Outbox::continue_after`].

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::host::fs::{sync_dir, write_atomic};
use crate::model::protocol::{sequenced, Event, JobStatus};

pub const FILE_NAME: &str = "outbox.log";

/// The highest seq this agent ever assigns (`i64::MAX`).
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// A `welcome`'s `acked_seq` that leaves the counter no seq after it.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("acked_seq {acked} leaves no seq after it (the highest this agent assigns is {MAX_SEQ})")]
pub struct NoSeqAfter {
    pub acked: u64,
}

pub struct Outbox {
    inner: Mutex<Inner>,
    /// The highest seq on disk: the connection wakes on it to send.
    stored: watch::Sender<u64>,
}

struct Inner {
    path: PathBuf,
    /// Open for appending; `None` after a failure until a rewrite succeeds.
    file: Option<File>,
    next_seq: u64,
    /// Stored and not yet acknowledged, in seq order.
    pending: VecDeque<Stored>,
    /// Not yet stored (the disk refused), in push order.
    waiting: VecDeque<Event>,
    /// Acknowledged records still in the file: compaction is due.
    acked_in_file: bool,
}

#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub text: Arc<str>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `state_dir`, dropping a torn tail.
    pub fn open(state_dir: &Path) -> io::Result<Outbox> {
        let path = state_dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let recovered = recover(&bytes);
        if recovered.dropped > 0 {
            tracing::warn!(path = %path.display(), records = recovered.dropped, "outbox: dropped torn or corrupt records");
        }
        let mut inner = Inner {
            path,
            file: None,
            next_seq: recovered.next_seq,
            pending: recovered.pending,
            waiting: VecDeque::new(),
            acked_in_file: false,
        };
        // Always rewrite on open: appends then start on a clean file, whatever a crash left.
        inner.rewrite()?;
        let last = inner.next_seq - 1;
        Ok(Outbox { inner: Mutex::new(inner), stored: watch::channel(last).0 })
    }

    /// Stores `event` under the next seq, or keeps it waiting if the disk refuses.
    pub fn push(&self, event: Event) {
        let mut inner = self.lock();
        inner.waiting.push_back(event);
        self.store_waiting(&mut inner);
    }

    /// Tries again to store events the disk refused; true when none is left waiting.
    pub fn retry(&self) -> bool {
        let mut inner = self.lock();
        if !inner.waiting.is_empty() {
            self.store_waiting(&mut inner);
        }
        inner.waiting.is_empty()
    }

    /// Drops every event with `seq <= acked` and compacts the file.
    pub fn ack(&self, acked: u64) {
        let mut inner = self.lock();
        let before = inner.pending.len();
        while inner.pending.front().is_some_and(|e| e.seq <= acked) {
            inner.pending.pop_front();
        }
        if inner.pending.len() == before {
            return;
        }
        inner.acked_in_file = true;
        if let Err(e) = inner.rewrite() {
            // The acknowledged events stay in the file: resent after a restart, deduped by seq.
            tracing::warn!(error = %e, "outbox: compaction failed");
        }
    }

    /// Continues the counter after `acked` when the control plane has stored events
    /// up to a seq this agent has not reached (its state dir was reset): a new event
    /// must never be taken for one the control plane already has.
    ///
    /// An `acked` at or past [`MAX_SEQ`] leaves no seq to continue with: nothing
    /// changes and the caller must not act on it (a control-plane error).
    pub fn continue_after(&self, acked: u64) -> Result<(), NoSeqAfter> {
        let mut inner = self.lock();
        if acked < inner.next_seq {
            return Ok(());
        }
        if acked >= MAX_SEQ {
            return Err(NoSeqAfter { acked });
        }
        tracing::warn!(
            acked_seq = acked,
            next_seq = inner.next_seq,
            "control plane acknowledged events this agent has no record of (state reset?); continuing after them"
        );
        inner.next_seq = acked + 1; // acked < MAX_SEQ: no overflow
        inner.acked_in_file = true;
        if let Err(e) = inner.rewrite() {
            tracing::error!(error = %e, "outbox: cannot store the new seq counter");
        }
        Ok(())
    }

    /// Stored events with `seq > after`, in order.
    pub fn after(&self, after: u64) -> Vec<Stored> {
        self.lock().pending.iter().filter(|e| e.seq > after).cloned().collect()
    }

    /// The final status of `job_id` if one is stored or waiting, not yet acknowledged:
    /// on its way to the control plane, as a queued or running job's events are.
    pub fn final_on_its_way(&self, job_id: &str) -> Option<JobStatus> {
        let inner = self.lock();
        let stored = inner.pending.iter().rev().find_map(|e| final_of(&e.text, job_id));
        stored.or_else(|| {
            inner.waiting.iter().rev().find_map(|e| match e {
                Event::JobStatus(s) if s.job_id == job_id && s.status.is_final() => Some(s.clone()),
                _ => None,
            })
        })
    }

    /// Whether every event up to `seq` is stored and acknowledged (none waits for the disk).
    pub fn acked_through(&self, seq: u64) -> bool {
        let inner = self.lock();
        inner.waiting.is_empty() && inner.pending.front().is_none_or(|e| e.seq > seq)
    }

    /// The seq the next stored event will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Events not yet acknowledged: stored plus waiting for the disk.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.pending.len() + inner.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes with the highest stored seq whenever an event is stored.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store_waiting(&self, inner: &mut Inner) {
        let was_failing = inner.file.is_none();
        match inner.store_waiting() {
            Ok(0) => {}
            Ok(_) => {
                if was_failing {
                    tracing::info!("outbox: writing again; waiting events stored");
                }
                self.stored.send_replace(inner.next_seq - 1);
            }
            Err(e) => {
                // One line per attempt: pushes and the periodic retry are both rare.
                tracing::error!(error = %e, path = %inner.path.display(), waiting = inner.waiting.len(),
                    "outbox: cannot store events; they wait in memory, unsent, until they can be stored");
            }
        }
    }
}

impl Inner {
    /// Stores every waiting event; returns how many.
    fn store_waiting(&mut self) -> io::Result<usize> {
        if self.waiting.is_empty() {
            return Ok(0);
        }
        if self.file.is_none() || self.acked_in_file {
            self.rewrite()?;
        }
        // Seqs left: next_seq never exceeds MAX_SEQ + 1, so neither this nor the
        // additions below overflow.
        let room = usize::try_from((MAX_SEQ + 1).saturating_sub(self.next_seq)).unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::Error::other(format!("the seq counter is spent (its last seq is {MAX_SEQ})")));
        }
        let take = self.waiting.len().min(room);
        let mut buf = String::new();
        let mut stored = Vec::with_capacity(take);
        for (i, event) in self.waiting.iter().take(take).enumerate() {
            let seq = self.next_seq + i as u64;
            let text: Arc<str> = sequenced(seq, event).into();
            buf.push_str(&record(&format!("{seq} {text}")));
            stored.push(Stored { seq, text });
        }
        let file = self.file.as_mut().expect("rewrite opened the file");
        let len = file.metadata()?.len();
        if let Err(e) = file.write_all(buf.as_bytes()).and_then(|()| file.sync_data()) {
            // Cut the partial record off; if even that fails, the next attempt rewrites.
            if file.set_len(len).is_err() {
                self.file = None;
            }
            return Err(e);
        }
        let count = stored.len();
        self.next_seq += count as u64;
        self.waiting.drain(..count);
        self.pending.extend(stored);
        Ok(count)
    }

    /// Writes `next <seq>` and the pending events to a new file, atomically.
    fn rewrite(&mut self) -> io::Result<()> {
        if self.file.is_some() && !self.acked_in_file {
            return Ok(());
        }
        let text = file_text(self.next_seq, &self.pending);
        self.file = None;
        write_atomic(&self.path, text.as_bytes(), 0o600)?;
        let file = OpenOptions::new().append(true).mode(0o600).open(&self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = Some(file);
        self.acked_in_file = false;
        Ok(())
    }
}

/// A compacted file: `next <seq>`, then each pending event.
pub(crate) fn file_text<'a>(next_seq: u64, pending: impl IntoIterator<Item = &'a Stored>) -> String {
    let mut text = record(&format!("next {next_seq}"));
    for event in pending {
        text.push_str(&record(&format!("{} {}", event.seq, event.text)));
    }
    text
}

pub(crate) fn record(body: &str) -> String {
    debug_assert!(!body.contains('\n'));
    format!("{:08x} {body}\n", crc32fast::hash(body.as_bytes()))
}

pub(crate) struct Recovered {
    pub(crate) next_seq: u64,
    pub(crate) pending: VecDeque<Stored>,
    pub(crate) dropped: usize,
}

/// How many events the outbox file in `state_dir` holds unacknowledged (read-only,
/// for `berth status`; no outbox file is none).
pub fn stored_len(state_dir: &Path) -> io::Result<usize> {
    match std::fs::read(state_dir.join(FILE_NAME)) {
        Ok(bytes) => Ok(recover(&bytes).pending.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Reads the records of an outbox file; the seq counter never goes back.
pub(crate) fn recover(bytes: &[u8]) -> Recovered {
    let mut next_seq = 1;
    let mut pending = VecDeque::new();
    let mut dropped = 0;
    let mut lines = bytes.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let is_last = lines.peek().is_none();
        if is_last {
            // After the final '\n' an empty slice; anything else is a torn write.
            dropped += usize::from(!line.is_empty());
            break;
        }
        match parse_record(line) {
            Some(Record::Next(seq)) => next_seq = next_seq.max(seq.min(MAX_SEQ + 1)),
            Some(Record::Event(seq, text)) if pending.back().is_none_or(|e: &Stored| e.seq < seq) => {
                next_seq = next_seq.max(seq.saturating_add(1).min(MAX_SEQ + 1));
                pending.push_back(Stored { seq, text: text.into() });
            }
            _ => dropped += 1,
        }
    }
    Recovered { next_seq, pending, dropped }
}

enum Record<'a> {
    Next(u64),
    Event(u64, &'a str),
}

fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let (crc, body) = line.split_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) || crc.len() != 8 {
        return None;
    }
    let (head, rest) = body.split_once(' ')?;
    if head == "next" {
        return rest.parse().ok().map(Record::Next);
    }
    Some(Record::Event(head.parse().ok()?, rest))
}

/// A stored event's text, when it is a final `job.status` of `job_id`.
fn final_of(text: &str, job_id: &str) -> Option<JobStatus> {
    let event = serde_json::from_str::<serde_json::Value>(text).ok()?;
    if event["type"] != "job.status" || event["job_id"] != job_id {
        return None;
    }
    serde_json::from_value::<JobStatus>(event).ok().filter(|status| status.status.is_final())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::{JobStatus, Status};

    fn event(n: u32) -> Event {
        Event::JobStatus(JobStatus::progress(&format!("job{n}"), "test.sleep", Status::Queued, "t".into()))
    }

    /// An outbox in `dir` holding events 1..=count.
    fn outbox_with(dir: &Path, count: u32) -> Outbox {
        let outbox = Outbox::open(dir).unwrap();
        for n in 0..count {
            outbox.push(event(n));
        }
        outbox
    }

    fn seqs(outbox: &Outbox) -> Vec<u64> {
        outbox.after(0).iter().map(|e| e.seq).collect()
    }

    #[test]
    fn stored_len_reads_what_is_unacknowledged() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stored_len(dir.path()).unwrap(), 0);
        let outbox = outbox_with(dir.path(), 4);
        outbox.ack(1);
        assert_eq!(stored_len(dir.path()).unwrap(), 3);
    }

    #[test]
    fn seq_grows_and_survives_reopen_and_full_ack() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.next_seq(), 1);
        for n in 0..3 {
            outbox.push(event(n));
        }
        assert_eq!(seqs(&outbox), [1, 2, 3]);
        outbox.ack(3);
        assert!(outbox.is_empty());
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.next_seq(), 4, "the counter survives an empty outbox");
        outbox.push(event(9));
        assert_eq!(seqs(&outbox), [4]);
    }

    #[test]
    fn acked_through_waits_for_the_ack_of_every_earlier_event() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.acked_through(0));
        for n in 0..3 {
            outbox.push(event(n));
        }
        assert!(!outbox.acked_through(2));
        outbox.ack(1);
        assert!(!outbox.acked_through(2));
        outbox.ack(2);
        assert!(outbox.acked_through(2) && !outbox.acked_through(3));
    }

    #[test]
    fn ack_trims_the_file_and_keeps_the_rest_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox_with(dir.path(), 5);
        outbox.ack(2);
        assert_eq!(seqs(&outbox), [3, 4, 5]);
        assert_eq!(outbox.after(4).len(), 1);
        drop(outbox);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 4, "a next record and three events:\n{text}");
        assert_eq!(seqs(&Outbox::open(dir.path()).unwrap()), [3, 4, 5]);
    }

    #[test]
    fn regression_kill_during_append_loses_only_the_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox_with(dir.path(), 3);
        drop(outbox);
        let path = dir.path().join(FILE_NAME);
        let full = std::fs::read(&path).unwrap();
        // Cut the file at every byte of the last record: never more than that record is lost,
        // and the counter never reuses a seq that may have been sent.
        let last_start = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        for cut in last_start..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let outbox = Outbox::open(dir.path()).unwrap();
            assert_eq!(seqs(&outbox), [1, 2], "cut at {cut}");
            outbox.push(event(7));
            assert_eq!(seqs(&outbox), [1, 2, 3], "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_record_in_the_middle_is_dropped_not_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox_with(dir.path(), 3);
        drop(outbox);
        let path = dir.path().join(FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap().replacen("job1", "jobX", 1);
        std::fs::write(&path, text).unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(seqs(&outbox), [1, 3]);
        assert_eq!(outbox.next_seq(), 4);
    }

    #[test]
    fn counter_jumps_past_a_control_plane_that_knows_more() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.continue_after(41).unwrap();
        assert_eq!(outbox.next_seq(), 42);
        outbox.continue_after(3).unwrap();
        assert_eq!(outbox.next_seq(), 42);
        drop(outbox);
        assert_eq!(Outbox::open(dir.path()).unwrap().next_seq(), 42);
    }

    #[test]
    fn regression_welcome_acked_seq_u64_max_does_not_wrap_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox_with(dir.path(), 3);
        // Was: next_seq = acked + 1, an overflow (a panic in debug, seq 0 and then reused seqs in release).
        assert_eq!(outbox.continue_after(u64::MAX), Err(NoSeqAfter { acked: u64::MAX }));
        assert_eq!(outbox.continue_after(MAX_SEQ), Err(NoSeqAfter { acked: MAX_SEQ }));
        assert_eq!(outbox.next_seq(), 4, "a refused acked_seq changes nothing");
        assert_eq!(seqs(&outbox), [1, 2, 3], "and drops nothing");
        outbox.push(event(4));
        assert_eq!(seqs(&outbox), [1, 2, 3, 4]);
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!((outbox.next_seq(), seqs(&outbox)), (5, vec![1, 2, 3, 4]), "nor on disk");
    }

    #[test]
    fn regression_acked_seq_beyond_the_last_seq_never_reuses_or_wraps_a_seq() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox_with(dir.path(), 2);
        // Beyond the last seq with room left: everything is acknowledged, the counter continues after it.
        outbox.continue_after(1_000).unwrap();
        outbox.ack(1_000);
        assert!(outbox.is_empty());
        outbox.push(event(1));
        assert_eq!(seqs(&outbox), [1_001]);
        // Just below the end: the last seqs are assigned once each, then the counter is spent and
        // new events wait unsent (never a seq again, never a wrap), also after a reopen.
        outbox.continue_after(MAX_SEQ - 2).unwrap();
        outbox.ack(MAX_SEQ - 2);
        for n in 0..4 {
            outbox.push(event(n));
        }
        assert_eq!(seqs(&outbox), [MAX_SEQ - 1, MAX_SEQ]);
        assert_eq!(outbox.len(), 4, "two stored, two waiting");
        assert!(!outbox.retry());
        assert_eq!(outbox.next_seq(), MAX_SEQ + 1);
        assert_eq!(outbox.continue_after(MAX_SEQ), Ok(()), "acked below next_seq: nothing to do");
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!((outbox.next_seq(), seqs(&outbox)), (MAX_SEQ + 1, vec![MAX_SEQ - 1, MAX_SEQ]));
        outbox.push(event(9));
        assert_eq!(seqs(&outbox), [MAX_SEQ - 1, MAX_SEQ]);
    }

    #[test]
    fn recovery_never_overflows_on_a_huge_seq_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!("{} {{}}", u64::MAX);
        std::fs::write(dir.path().join(FILE_NAME), record(&body)).unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.next_seq(), MAX_SEQ + 1, "spent, not wrapped to 0");
        outbox.push(event(1));
        assert_eq!(seqs(&outbox), [u64::MAX]);
    }

    #[test]
    fn subscribers_see_the_highest_stored_seq() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let rx = outbox.subscribe();
        outbox.push(event(1));
        outbox.push(event(2));
        assert_eq!(*rx.borrow(), 2);
    }
}

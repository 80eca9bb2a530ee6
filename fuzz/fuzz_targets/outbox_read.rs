//! The outbox reader: what `state::outbox::Outbox::open` recovers from
//! `outbox.log` after a crash (any bytes: a torn append, a corrupt middle, a hand
//! edit). Proves, for any file:
//! - reading never panics;
//! - the events kept have strictly increasing seqs, the counter is in 1..=MAX_SEQ+1
//!   and past every kept seq it can assign, so a seq is never given twice;
//! - no line is counted twice: kept events plus dropped records fit in the lines;
//! - the compacted file `open` writes back reads to the same counter and events,
//!   with nothing dropped;
//! - a torn append (a partial last line) loses that record only;
//! - a new record appended after the compacted file is read back under its seq.
#![no_main]

use berth::fuzzing::{outbox_compacted, outbox_record, outbox_recover, OutboxRead};
use berth::state::outbox::MAX_SEQ;
use libfuzzer_sys::fuzz_target;

fn same(a: &OutboxRead, b: &OutboxRead) -> bool {
    a.next_seq == b.next_seq
        && a.pending.len() == b.pending.len()
        && a.pending.iter().zip(&b.pending).all(|(x, y)| x.seq == y.seq && x.text == y.text)
}

fuzz_target!(|data: &[u8]| {
    let read = outbox_recover(data);
    assert!((1..=MAX_SEQ + 1).contains(&read.next_seq), "counter {}", read.next_seq);
    assert!(read.pending.windows(2).all(|w| w[0].seq < w[1].seq), "seqs not increasing");
    for event in &read.pending {
        assert!(event.seq > MAX_SEQ || event.seq < read.next_seq, "seq {} not below the counter", event.seq);
        assert!(!event.text.contains('\n'));
    }
    let lines = data.split(|&b| b == b'\n').count();
    assert!(read.pending.len() + read.dropped <= lines, "more records than lines");

    // What open writes back reads the same, nothing dropped.
    let compacted = outbox_compacted(&read);
    let again = outbox_recover(compacted.as_bytes());
    assert!(same(&read, &again) && again.dropped == 0, "the compacted file reads differently:\n{compacted}");

    // A torn append loses that record only.
    if data.is_empty() || data.ends_with(b"\n") {
        let mut torn = data.to_vec();
        torn.extend_from_slice(b"0badc0de 1");
        let after = outbox_recover(&torn);
        assert!(same(&read, &after) && after.dropped == read.dropped + 1, "a torn tail changed the rest");
    }

    // The next event, appended, is read back under the next seq.
    if read.next_seq <= MAX_SEQ {
        let seq = read.next_seq;
        let mut file = compacted.clone();
        file.push_str(&outbox_record(&format!("{seq} {{\"seq\":{seq},\"type\":\"job.status\"}}")));
        let appended = outbox_recover(file.as_bytes());
        assert_eq!(appended.pending.last().map(|e| e.seq), Some(seq), "the appended event is lost");
        assert_eq!(appended.next_seq, seq + 1);
    }
});

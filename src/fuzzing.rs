//! Entry points for the fuzz targets (`fuzz/`, cargo feature `fuzzing`, off by
//! default and not in the package): the readers the targets exercise that are not
//! public API, each a thin call into the code the agent runs. The top layer: it
//! names `state` and `engine`, and nothing names it.

use crate::model::protocol::JobMsg;
use crate::state::outbox::{self, Stored};

/// What `Outbox::open` recovers from an outbox file.
#[derive(Debug, Clone)]
pub struct OutboxRead {
    /// The seq the next stored event gets.
    pub next_seq: u64,
    /// The events kept, unacknowledged, in file order.
    pub pending: Vec<Stored>,
    /// Torn or corrupt records dropped.
    pub dropped: usize,
}

/// Reads an outbox file's bytes as `Outbox::open` does after a crash.
#[doc(hidden)]
pub fn outbox_recover(bytes: &[u8]) -> OutboxRead {
    let recovered = outbox::recover(bytes);
    OutboxRead { next_seq: recovered.next_seq, pending: recovered.pending.into(), dropped: recovered.dropped }
}

/// The file `Outbox::open` writes back after reading one: `next <seq>`, then the events.
#[doc(hidden)]
pub fn outbox_compacted(read: &OutboxRead) -> String {
    outbox::file_text(read.next_seq, &read.pending)
}

/// One outbox record of `body` (`<seq> <json>` or `next <seq>`), with its CRC.
#[doc(hidden)]
pub fn outbox_record(body: &str) -> String {
    outbox::record(body)
}

/// The jobs of a `berth apply` file.
#[doc(hidden)]
pub fn apply_parse_jobs(text: &str) -> Result<Vec<JobMsg>, String> {
    crate::engine::apply::parse_jobs(text)
}

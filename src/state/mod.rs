//! What berth keeps on disk between runs, each file written atomically: the
//! inventory (what it manages), the job records, the outbox of events not yet
//! acknowledged, and the status file `berth status` reads. Above `host` and `model`.

pub mod inventory;
pub mod jobstore;
pub mod outbox;
pub mod status;

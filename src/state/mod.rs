//! What berth keeps on disk between runs, each file written atomically: the
//! inventory (what it manages), the job records, the outbox of events not yet
//! acknowledged, and the status file `berth status` reads. The metrics history is
//! the exception: fixed-size ring files, written in place. Above `host` and `model`.

pub mod history;
pub mod inventory;
pub mod jobstore;
pub mod outbox;
pub mod status;

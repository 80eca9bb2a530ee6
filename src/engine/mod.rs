//! Running jobs: the daemon's engine ([`daemon`]: persisted, scheduled by resource
//! ([`scheduler`]), final status through the outbox), and the commands that run
//! jobs or job-like work without a control plane: `berth apply`, `berth reconcile`,
//! AutoSSL renewal. Above the job families.

pub mod apply;
pub mod daemon;
pub mod lifecycle;
pub mod reconcile;
pub mod renewal;
pub mod scheduler;

pub use daemon::*;

//! The daemon: its one websocket to the control plane ([`connection`], with
//! [`tls`] and [`backoff`]), host metrics ([`metrics`]), the monitoring checks ([`monitor`]), systemd readiness
//! ([`systemd`]), and the wiring of them all with the engine ([`daemon`]).

pub mod backoff;
pub mod connection;
pub mod daemon;
pub mod flags;
pub mod metrics;
pub mod monitor;
pub mod systemd;
pub mod tls;

pub use daemon::*;

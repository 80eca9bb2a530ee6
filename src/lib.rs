//! berth: the on-server agent of a web-hosting control plane.
//!
//! It dials the control plane over a TLS websocket ([`connection`]), takes jobs
//! ([`protocol`]), stores every event before sending it ([`outbox`]), runs jobs
//! in order per resource and survives crashes ([`engine`], [`jobstore`],
//! [`scheduler`]), and changes the host only through [`host`]. Job families live
//! in [`jobs`]; the field rules they share in [`validate`].
//!
//! Two cargo features, both default, are left out of the package: `dev` ([`dev`],
//! `berth dev`) and `test-jobs` (the `test.*` job kinds).

pub mod accounts;
pub mod acme;
pub mod agent;
pub mod apply;
pub mod backoff;
pub mod certs;
pub mod cli;
pub mod config;
pub mod connection;
#[cfg(feature = "dev")]
pub mod dev;
pub mod doctor;
pub mod engine;
pub mod errors;
pub mod host;
pub mod inventory;
pub mod job;
pub mod jobs;
pub mod jobstore;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod probe;
pub mod protocol;
pub mod reconcile;
pub mod render;
pub mod renewal;
pub mod resource;
pub mod scheduler;
pub mod shutdown;
pub mod sitedirs;
pub mod stack;
pub mod status;
pub mod systemd;
pub mod templates;
pub mod time;
pub mod tls;
pub mod validate;
pub mod weblock;

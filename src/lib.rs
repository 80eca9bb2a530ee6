//! berth: the on-server agent of a web-hosting control plane.
//!
//! Built in layers, each importing only from those below it (README's Layout;
//! `tests/modules.rs` holds the same list): [`model`] (the data and its rules, no
//! I/O), [`host`] (the one way to the host), [`state`] (what is kept on disk),
//! [`config`], [`job`] (what a job is, and its errors), [`errors`] (host errors
//! mapped to the wire's codes), [`web`] (the web stack, rendered from state),
//! [`jobs`] (the job families), [`engine`] (running jobs: one lifecycle), [`agent`]
//! (the daemon and its connection), `dev` and [`cli`].
//!
//! Two cargo features, both default, are left out of the package: `dev` ([`dev`],
//! `berth dev`) and `test-jobs` (the `test.*` job kinds). A third, `fuzzing`, is
//! off by default: `fuzzing` opens private readers to the fuzz targets (`fuzz/`).

pub mod agent;
pub mod cli;
pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
pub mod engine;
pub mod errors;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod job;
pub mod jobs;
pub mod model;
pub mod shutdown;
pub mod state;
pub mod time;
pub mod web;

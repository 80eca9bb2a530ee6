//! The host boundary: everything berth does to the machine goes through here.
//!
//! `fs` writes files atomically and places every host path under the configured
//! `root`, so tests and trials run in a sandbox directory with the same code; `cmd`
//! runs commands without a shell, bounded in time and output.

pub mod cmd;
pub mod fs;

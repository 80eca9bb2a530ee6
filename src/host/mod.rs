//! The host boundary: everything berth does to the machine goes through here.
//!
//! `fs` writes files atomically and places every host path under the configured
//! `root`, so tests and trials run in a sandbox directory with the same code.

pub mod fs;

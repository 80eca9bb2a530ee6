//! The command line: `berth` and its subcommands ([`commands`]), `berth doctor`
//! ([`doctor`]) and the logging setup ([`logging`]). The top of the crate.

pub mod commands;
pub mod doctor;
pub mod logging;

pub use commands::*;

//! Logs: `tracing` to stderr, one line per event, filtered like `RUST_LOG`
//! (default `info`). Under systemd (`JOURNAL_STREAM` set) the journal stamps the
//! time, so lines carry none of their own.
//!
//! Levels have one meaning each: ERROR, an operator must act; WARN, something
//! failed and berth copes; INFO, what the agent did; DEBUG, for developers.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

//! Logs: `tracing`, filtered by `RUST_LOG` (default `info`): a level, or
//! `target=level` pairs such as `info,berth::engine=debug` (a `Targets` filter: the
//! same syntax as `EnvFilter` without span and field matching, and without its
//! regex engine in the daemon's memory).
//!
//! Under systemd the journal gets them natively (`tracing-journald`): each field
//! becomes a journal field of the same name in capitals, so `job_id`, `kind` and
//! `status` become `JOB_ID`, `KIND` and `STATUS`, and `journalctl -u berth
//! JOB_ID=...` finds one job's lines. "Under systemd" means the service manager
//! connected our stderr to the journal (`JOURNAL_STREAM` names stderr's device and
//! inode, as systemd.exec(5) says to check) or supervises us (`NOTIFY_SOCKET`).
//! When the journal socket cannot be reached, and everywhere else, logs go to stderr,
//! one line per event (without a timestamp when the journal stamps it anyway).
//!
//! Levels have one meaning each: ERROR, an operator must act; WARN, something
//! failed and berth copes; INFO, what the agent did; DEBUG, for developers.

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let stream = std::env::var("JOURNAL_STREAM").ok();
    let stderr_is_journal = stream.as_deref().is_some_and(stderr_is);
    if stderr_is_journal || std::env::var_os("NOTIFY_SOCKET").is_some() {
        match tracing_journald::layer() {
            Ok(journald) => {
                // syslog's meanings: INFO is "informational" (6), not "notice"; DEBUG is 7.
                let levels = PriorityMappings {
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    ..PriorityMappings::new()
                };
                let journald = journald
                    .with_field_prefix(None)
                    .with_syslog_identifier("berth".into())
                    .with_priority_mappings(levels);
                tracing_subscriber::registry().with(filter).with(journald).init();
                return;
            }
            Err(e) => eprintln!("berth: cannot reach the journal ({e}); logging to stderr"),
        }
    }
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    if stream.is_some() {
        tracing_subscriber::registry().with(filter).with(stderr.without_time()).init();
    } else {
        tracing_subscriber::registry().with(filter).with(stderr).init();
    }
}

/// `RUST_LOG`'s filter; `info` when it is unset or not understood.
fn filter(spec: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    // As EnvFilter did: blanks around directives and empty ones are ignored.
    let spec = spec.map(|s| s.split(',').map(str::trim).filter(|d| !d.is_empty()).collect::<Vec<_>>().join(","));
    match spec.as_deref() {
        None | Some("") => info(),
        Some(spec) => spec.parse().unwrap_or_else(|e| {
            eprintln!("berth: RUST_LOG={spec:?} not understood ({e}); logging at info");
            info()
        }),
    }
}

/// Whether `JOURNAL_STREAM` (`<device>:<inode>`) names our stderr (fstat: no /proc needed).
fn stderr_is(stream: &str) -> bool {
    let Some((dev, ino)) = stream.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_sets_levels_per_target() {
        use tracing::Level;
        use tracing_subscriber::filter::LevelFilter;
        assert_eq!(filter(None).default_level(), Some(LevelFilter::INFO));
        assert_eq!(filter(Some("not a filter ==")).default_level(), Some(LevelFilter::INFO));
        let spec = filter(Some("warn,berth::engine::renewal=debug"));
        assert!(spec.would_enable("berth::engine::renewal", &Level::DEBUG));
        assert!(!spec.would_enable("berth::engine::renewal", &Level::TRACE));
        assert!(!spec.would_enable("berth::agent", &Level::INFO));
        assert!(spec.would_enable("berth::agent", &Level::WARN));
        assert!(filter(Some("debug")).would_enable("rustls", &Level::DEBUG));
        // Regression (found in review): Targets alone read "info," as errors only and
        // " berth=debug" as a target named " berth".
        assert!(filter(Some("info,")).would_enable("berth", &Level::INFO));
        let spaced = filter(Some("info, berth=debug"));
        assert!(spaced.would_enable("berth::agent", &Level::DEBUG) && spaced.would_enable("rustls", &Level::INFO));
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        use std::os::unix::fs::MetadataExt;
        assert!(!stderr_is("garbage"));
        assert!(!stderr_is("1:"));
        let meta = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert!(stderr_is(&format!("{}:{}", meta.dev(), meta.ino())));
        assert!(!stderr_is(&format!("{}:{}", meta.dev(), meta.ino() + 1)));
    }
}

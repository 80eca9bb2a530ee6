//! The daemon: opens the state, starts the engine and the connection, and stops
//! them in order when `shutdown` resolves.
//!
//! Stopping order matters for the protocol: the engine stops first (running jobs
//! get [`crate::engine::SHUTDOWN_GRACE`] to finish and report), then the connection
//! sends what the outbox holds and closes with 1001. The whole stop stays under 10 s.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::agent::connection::{Connection, HelloFn};
use crate::agent::metrics::Scraper;
use crate::agent::monitor::{Monitor, Recorder};
use crate::config::Config;
use crate::engine::Engine;
use crate::host::fs::ensure_dir;
use crate::host::System;
use crate::job::Machine;
use crate::jobs::Catalogue;
use crate::model::protocol::{Hello, HelloSettings, PROTOCOL_VERSION};
use crate::state::history::History;
use crate::state::inventory::InventoryStore;
use crate::state::jobstore::JobStore;
use crate::state::outbox::Outbox;
use crate::{agent::systemd, agent::tls, host::probe, shutdown};

/// How often events the disk refused are tried again.
const OUTBOX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the state directory {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let config = Arc::new(config);
    let state_error = |source| StartError::State { path: config.state_dir.clone(), source };
    ensure_dir(&config.state_dir, 0o700).map_err(state_error)?;
    let outbox = Arc::new(Outbox::open(&config.state_dir).map_err(state_error)?);
    let store = JobStore::open(&config.state_dir).map_err(state_error)?;
    let tls = tls::client_config(&config)?;
    let catalogue = Arc::new(Catalogue::new(config.test_jobs));
    let inventory = Arc::new(InventoryStore::open(&config.state_dir).map_err(state_error)?);
    let history = Arc::new(History::open(&config.state_dir).map_err(state_error)?);
    // Every monitor reading goes to the metrics history (`metrics.history`).
    let recorder: Recorder = {
        let history = history.clone();
        Arc::new(move |reading| history.record(reading))
    };
    let machine = Machine {
        host: Arc::new(System::new(config.root.clone())),
        inventory: inventory.clone(),
        mysql: config.mysql.clone(),
        acme: Arc::new(config.acme.clone()),
        reboot_command: config.reboot_command.clone(),
        wordpress_source: config.wordpress_source.clone(),
        redis_socket: config.redis_socket.clone(),
        history,
    };
    crate::jobs::firewall::reapply_at_start(&machine);

    let (jobs_tx, jobs_rx) = mpsc::channel(1024);
    let (output_tx, output_rx) = mpsc::channel(256);
    let (stop_engine, engine_shutdown) = shutdown::channel();
    let (stop_connection, connection_shutdown) = shutdown::channel();
    let (stop_monitor, monitor_shutdown) = shutdown::channel();
    let ping_ms = Arc::new(AtomicU32::new(0));

    let renewal = tokio::spawn(crate::engine::renewal::run(
        machine.inventory.clone(),
        config.root.clone(),
        machine.acme.clone(),
        jobs_tx.clone(),
    ));
    let engine = Engine::new(catalogue.clone(), store, outbox.clone(), machine, output_tx, config.max_parallel_jobs);
    let engine = tokio::spawn(engine.run(jobs_rx, engine_shutdown));
    let connection = Connection {
        config: config.clone(),
        tls,
        outbox: outbox.clone(),
        jobs: jobs_tx,
        output: output_rx,
        hello: hello_fn(&config, catalogue, outbox.clone(), inventory.clone()),
        metrics: scraper(&config, inventory.clone()),
        ping_ms: ping_ms.clone(),
    };
    let monitor = Monitor {
        every: Duration::from_secs(config.monitor_secs),
        inventory: inventory.clone(),
        outbox: outbox.clone(),
        ping_ms,
        recorder: Some(recorder),
        mounts: config.monitor_mounts.clone(),
    };
    let monitor = tokio::spawn(monitor.run(monitor_shutdown));
    let connection = tokio::spawn(connection.run(connection_shutdown));
    let background = tokio::spawn(background(outbox));

    tracing::info!(server_id = %config.server_id, url = %config.control_plane_url, root = %config.root.display(),
        state_dir = %config.state_dir.display(), version = env!("CARGO_PKG_VERSION"), "berth started");
    systemd::ready();
    shutdown.await;

    tracing::info!("shutting down");
    systemd::stopping();
    renewal.abort();
    stop_monitor.trigger();
    let _ = monitor.await;
    stop_engine.trigger();
    let _ = engine.await;
    stop_connection.trigger();
    let _ = connection.await;
    background.abort();
    tracing::info!("berth stopped");
    Ok(())
}

/// The metrics scraper, its `upgrade_required` judged against the daemon's inventory.
fn scraper(config: &Config, inventory: Arc<InventoryStore>) -> Scraper {
    let mut scraper = Scraper::new(&config.root);
    let file = config.state_dir.join(crate::state::inventory::FILE_NAME);
    scraper.watch_reconcile(inventory, file);
    scraper
}

/// Timers that are not the connection's: the outbox retry and the systemd watchdog.
async fn background(outbox: Arc<Outbox>) {
    let mut retry = tokio::time::interval(OUTBOX_RETRY);
    let mut watchdog = tokio::time::interval(systemd::watchdog_interval().unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            _ = retry.tick() => { outbox.retry(); }
            _ = watchdog.tick() => systemd::watchdog(),
        }
    }
}

fn hello_fn(
    config: &Arc<Config>,
    catalogue: Arc<Catalogue>,
    outbox: Arc<Outbox>,
    inventory: Arc<InventoryStore>,
) -> HelloFn {
    let server_id = config.server_id.clone();
    let root = config.root.clone();
    Arc::new(move || Hello {
        kind: "hello",
        protocol: PROTOCOL_VERSION,
        server_id: server_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION"),
        host: probe::host_info(),
        runtimes: probe::runtimes(&root),
        services: probe::services(&root),
        job_kinds: catalogue.advertised(),
        next_seq: outbox.next_seq(),
        settings: inventory.read(|inv| HelloSettings {
            firewall: inv.settings.firewall,
            autoupdates: inv.settings.autoupdates,
            deny_unknown_domains: inv.settings.deny_unknown_domains,
        }),
        monitor: inventory.read(|inv| inv.monitor.clone()),
    })
}

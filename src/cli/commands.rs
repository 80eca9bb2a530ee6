//! The command line: `berth run`, `berth apply`, `berth reconcile`, `berth renew`,
//! `berth metrics`, `berth doctor`, `berth status`, `berth version`, and in a build
//! with the `dev` feature (a source build; not the package) `berth dev`.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a bad config or bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;

pub const DEFAULT_CONFIG: &str = "/etc/berth/agent.toml";

/// berth's command line over the commands `C`: by default those of this build; the
/// package's man pages and completions describe `Cli<Shipped>` (see the test below).
#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "The on-server agent of a web-hosting control plane")]
pub struct Cli<C: Subcommand = Command> {
    #[command(subcommand)]
    pub command: C,
}

/// The commands of this build: the shipped ones, and those of its features.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Shipped(Shipped),
    /// Start a local control plane with a ServerPilot-shaped REST API and an agent
    /// connected to it, in one process; print the API URL and its credentials.
    #[cfg(feature = "dev")]
    Dev {
        /// Where the store, certificates, agent config and state are kept across restarts.
        #[arg(long, default_value = "./berth-dev")]
        dir: PathBuf,
        /// The agent's root (default: the sandbox DIR/root; `/` applies jobs to this host).
        #[arg(long)]
        root: Option<PathBuf>,
        /// The API's address: a loopback address; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Keep the agent in the sandbox DIR/root even as root with the web stack
        /// installed (where it would otherwise run in a machine of its own).
        #[arg(long, conflicts_with = "root")]
        sandbox: bool,
    },
}

/// The commands of every build, the package's included.
#[derive(Debug, Subcommand)]
pub enum Shipped {
    /// Run the agent: connect to the control plane and carry out its jobs.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run jobs from a JSON file on this host, without a control plane; print each
    /// final status as a `job.status` JSON line. Exit 0 when all succeed, 1 otherwise.
    Apply {
        /// The agent config to take `state_dir`, `root` and `test_jobs` from
        /// (default: /etc/berth/agent.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Place every host path under this directory instead of the config's root.
        #[arg(long)]
        root: Option<PathBuf>,
        /// A job object or an array of them, shaped like PROTOCOL's `job` message.
        file: PathBuf,
    },
    /// Render every managed file again from the inventory and apply them as one
    /// change (after an upgrade or a template edit); print what changed as JSON.
    Reconcile {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        root: Option<PathBuf>,
        /// Change nothing: print `{"upgrade_required": bool, "files": [...]}`, the
        /// managed files a reconcile would write or remove.
        #[arg(long)]
        check: bool,
    },
    /// Renew now every AutoSSL certificate that is due, as the daemon does hourly;
    /// print each renewal's `ssl.renewal` event as a JSON line. Exit 1 if one failed.
    Renew {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Print one metrics snapshot as JSON.
    Metrics {
        /// Read host files (reboot-required, apt state) under this directory.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Check the config, the key file, the state dir, TLS to the control plane and
    /// the tools berth drives; one line per check. Exit 1 when a check fails.
    Doctor {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show whether the daemon is connected, since when, its last heartbeat, the
    /// outbox length and the last jobs, read from the state dir (no daemon needed).
    Status {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the version.
    Version,
}

pub fn main() -> ExitCode {
    crate::host::keep_inherited_descriptors_from_children();
    if let Err(e) = crate::host::raise_open_files_limit() {
        eprintln!("berth: cannot raise the open-files limit: {e}");
    }
    let cli = match <Cli>::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Shipped(command) => shipped(command),
        #[cfg(feature = "dev")]
        Command::Dev { dir, root, listen, sandbox } => dev(crate::dev::Options { dir, root, listen, sandbox }),
    }
}

fn shipped(command: Shipped) -> ExitCode {
    match command {
        Shipped::Run { config } => run(config),
        Shipped::Apply { config, root, file } => apply(config, root, file),
        Shipped::Reconcile { config, root, check } => reconcile(config, root, check),
        Shipped::Renew { config, root } => renew(config, root),
        Shipped::Metrics { root } => metrics(root),
        Shipped::Doctor { config } => doctor(config),
        Shipped::Status { config, json } => status(config, json),
        Shipped::Version => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// The config at `path`; a bad one is logged, and exit code 2.
fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        tracing::error!("{e}");
        ExitCode::from(2)
    })
}

/// The runtime of `berth run`: one thread (this one) runs the connection, the engine
/// and the timers, and a bounded blocking pool runs the jobs' commands and files
/// ([`crate::job::blocking`]). The agent is mostly idle and every job's work is on
/// the blocking pool, so worker threads would only add their stacks, their malloc
/// arenas and tokio's work-stealing scheduler to the idle RSS.
fn agent_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The blocking pool's ceiling: `max_parallel_jobs` at its highest (64), and room for
/// the agent's own blocking work (file writes, name lookups), so a full house of jobs
/// never makes the connection wait. Threads are made on demand: an idle agent has none.
const BLOCKING_THREADS: usize = 64 + 8;

/// The runtime of `berth dev`: two workers (one process serves the REST API, the
/// control plane and an agent at once), and a bounded blocking pool.
#[cfg(feature = "dev")]
fn dev_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn run(config_path: PathBuf) -> ExitCode {
    crate::cli::logging::init();
    let config = match load_config(&config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match agent_runtime().block_on(crate::agent::run(config, signals())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "dev")]
fn dev(options: crate::dev::Options) -> ExitCode {
    crate::cli::logging::init();
    match dev_runtime().block_on(crate::dev::run(options, signals())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "stop requested"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "stop requested"),
    }
}

/// Where `apply` and `reconcile` work: the config's state dir and root (or the
/// defaults when there is no config), `--root` overriding.
fn local_setup(config_path: Option<PathBuf>, root: Option<PathBuf>) -> Result<crate::engine::apply::Setup, ExitCode> {
    let config_path = config_path.or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()));
    let mut setup = match config_path.map(|path| Config::load(&path)).transpose() {
        Ok(Some(config)) => crate::engine::apply::Setup {
            state_dir: config.state_dir,
            root: config.root,
            test_jobs: config.test_jobs,
            mysql: config.mysql,
            acme: config.acme,
            reboot_command: config.reboot_command,
            wordpress_source: config.wordpress_source,
            redis_socket: config.redis_socket,
        },
        Ok(None) => crate::engine::apply::Setup {
            state_dir: PathBuf::from(crate::config::DEFAULT_STATE_DIR),
            root: PathBuf::from("/"),
            test_jobs: false,
            mysql: crate::host::mysql::MysqlSettings::under(std::path::Path::new("/")),
            acme: crate::web::acme::AcmeSettings::new(std::path::Path::new(crate::config::DEFAULT_STATE_DIR)),
            reboot_command: crate::config::DEFAULT_REBOOT_COMMAND.map(str::to_owned).to_vec(),
            wordpress_source: PathBuf::from(crate::config::DEFAULT_WORDPRESS_SOURCE),
            redis_socket: PathBuf::from(crate::config::DEFAULT_REDIS_SOCKET),
        },
        Err(e) => {
            tracing::error!("{e}");
            return Err(ExitCode::from(2));
        }
    };
    if let Some(root) = root {
        if !root.is_absolute() {
            tracing::error!("--root must be an absolute path, not {}", root.display());
            return Err(ExitCode::from(2));
        }
        setup.mysql = crate::host::mysql::MysqlSettings::under(&root);
        setup.root = root;
    }
    Ok(setup)
}

/// Peak memory of this process (VmHWM), for the log at the end of a one-shot command.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn reconcile(config_path: Option<PathBuf>, root: Option<PathBuf>, check: bool) -> ExitCode {
    crate::cli::logging::init();
    let setup = match local_setup(config_path, root) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    if check {
        return reconcile_check(&setup);
    }
    let machine = match crate::engine::apply::machine(&setup) {
        Ok(machine) => machine,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Job-like work: a panic ends it in an `internal` error, as it would a job.
    let result = crate::engine::lifecycle::caught(|| crate::engine::reconcile::run(&machine));
    tracing::debug!(peak_rss_kib = peak_rss_kib(), "reconcile done");
    match result {
        Ok(outcome) => {
            let report = serde_json::json!({"changed": outcome.changed(), "steps": outcome.steps, "result": outcome.result, "output": outcome.output});
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let report = serde_json::json!({"changed": false, "error": e.body()});
            println!("{report}");
            tracing::error!("reconcile failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn apply(config_path: Option<PathBuf>, root: Option<PathBuf>, file: PathBuf) -> ExitCode {
    crate::cli::logging::init();
    let setup = match local_setup(config_path, root) {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let jobs = match crate::engine::apply::read_jobs(&file) {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let print = |status: &crate::model::protocol::JobStatus| {
        let event = crate::model::protocol::Event::JobStatus(status.clone());
        println!("{}", serde_json::to_string(&event).expect("statuses serialize"));
    };
    let result = runtime.block_on(crate::engine::apply::run(&setup, jobs, print));
    tracing::debug!(peak_rss_kib = peak_rss_kib(), "apply done");
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn renew(config_path: Option<PathBuf>, root: Option<PathBuf>) -> ExitCode {
    crate::cli::logging::init();
    let machine = match local_setup(config_path, root).map(|setup| crate::engine::apply::machine(&setup)) {
        Ok(Ok(machine)) => machine,
        Ok(Err(e)) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
        Err(code) => return code,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let events = runtime.block_on(crate::engine::renewal::once(&machine));
    tracing::debug!(peak_rss_kib = peak_rss_kib(), "renew done");
    for event in &events {
        let event = crate::model::protocol::Event::SslRenewal(event.clone());
        println!("{}", serde_json::to_string(&event).expect("events serialize"));
    }
    match events.iter().all(|e| e.status == crate::model::protocol::Status::Success) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// `berth reconcile --check`: what a reconcile would change, nothing written.
fn reconcile_check(setup: &crate::engine::apply::Setup) -> ExitCode {
    let inventory = match crate::state::inventory::InventoryStore::open(&setup.state_dir) {
        Ok(inventory) => inventory,
        Err(e) => {
            tracing::error!("cannot open the state in {}: {e}", setup.state_dir.display());
            return ExitCode::FAILURE;
        }
    };
    match crate::engine::reconcile::unapplied(&setup.root, &inventory) {
        Ok(files) => {
            let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            println!("{}", serde_json::json!({"upgrade_required": !files.is_empty(), "files": files}));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", serde_json::json!({"error": e.body()}));
            tracing::error!("reconcile --check failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn metrics(root: PathBuf) -> ExitCode {
    let mut scraper = crate::agent::metrics::Scraper::new(&root);
    // CPU usage is the difference of two samples; the first also starts the upgrades count.
    scraper.scrape(crate::time::now());
    std::thread::sleep(Duration::from_millis(250));
    scraper.wait_for_upgrades();
    let snapshot = scraper.scrape(crate::time::now());
    println!("{}", serde_json::to_string_pretty(&snapshot).expect("metrics serialize"));
    ExitCode::SUCCESS
}

fn doctor(config_path: PathBuf) -> ExitCode {
    let passed = crate::cli::doctor::run(&config_path, |check| println!("{check}"));
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn status(config_path: PathBuf, json: bool) -> ExitCode {
    crate::cli::logging::init();
    let config = match load_config(&config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match crate::state::status::Report::read(&config.state_dir) {
        Ok(report) if json => {
            println!("{}", serde_json::to_string(&report).expect("the report serializes"));
            ExitCode::SUCCESS
        }
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("cannot read the state dir {}: {e}", config.state_dir.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    /// The CLI the package ships: the man pages and completions are installed with the
    /// packaged binary, built without default features, so they describe `Cli<Shipped>`
    /// and never `berth dev`. It is generated from [`Shipped`] rather than from this
    /// build's [`Command`], so the test gives the same pages in every feature set (a
    /// source build's `berth dev --help` documents `dev`).
    fn packaged() -> clap::Command {
        Cli::<Shipped>::command()
    }

    /// The completion script for `shell`, generated from the packaged CLI.
    fn completion(shell: clap_complete::Shell) -> Vec<u8> {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut packaged(), "berth", &mut out);
        out
    }

    /// The man pages and completions the package ships (`packaging/man`,
    /// `packaging/completions`) are what the packaged CLI definition generates;
    /// refresh them with `BERTH_BLESS=1 cargo test --lib cli` and commit. The
    /// generators are test code only, so the agent's binary does not carry them.
    #[test]
    fn shipped_man_pages_and_completions_are_current() {
        let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
        let bless = std::env::var_os("BERTH_BLESS").is_some();
        let fresh = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(packaged(), fresh.path()).unwrap();
        let mut expected: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(fresh.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (packaging.join("man").join(e.file_name()), std::fs::read(e.path()).unwrap())
            })
            .collect();
        for (shell, name) in [
            (clap_complete::Shell::Bash, "berth"),
            (clap_complete::Shell::Zsh, "_berth"),
            (clap_complete::Shell::Fish, "berth.fish"),
        ] {
            expected.push((packaging.join("completions").join(name), completion(shell)));
        }
        assert!(expected.iter().any(|(p, _)| p.ends_with("berth-doctor.1")), "a page per command");
        assert!(!expected.iter().any(|(p, _)| p.ends_with("berth-dev.1")), "no page for `berth dev`");
        // A page of a command the packaged CLI lacks would ship too (packaging/man/*.1).
        for page in std::fs::read_dir(packaging.join("man")).unwrap() {
            let page = page.unwrap().path();
            if !expected.iter().any(|(p, _)| *p == page) {
                assert!(bless, "{} describes no command: run BERTH_BLESS=1 cargo test --lib cli", page.display());
                std::fs::remove_file(&page).unwrap();
            }
        }
        for (path, bytes) in expected {
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let shipped = std::fs::read(&path).unwrap_or_default();
            assert!(shipped == bytes, "{} is stale: run BERTH_BLESS=1 cargo test --lib cli", path.display());
        }
    }

    /// This build's CLI has `berth dev` exactly when it has the feature.
    #[test]
    fn dev_is_a_command_only_with_the_dev_feature() {
        assert_eq!(<Cli>::command().find_subcommand("dev").is_some(), cfg!(feature = "dev"));
        assert!(packaged().find_subcommand("dev").is_none());
        assert!(<Cli>::try_parse_from(["berth", "version"]).is_ok());
    }
}

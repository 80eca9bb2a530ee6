//! `berth dev`: a control plane, a ServerPilot-shaped REST API and a berth agent
//! connected to them, in one process, so that a newcomer sees berth work with one
//! command and curl.
//!
//! The dev directory keeps everything across restarts: the store (`dev.redb`), the
//! CA and server certificate, the agent's config (`agent.toml`) and state dir, and
//! by default the sandbox root (`root/`) the agent works in. Only `berth dev`
//! reaches this module; `berth run` neither loads nor links its paths.

pub mod api;
pub mod backup;
pub mod ca;
pub mod cache;
pub mod center;
pub mod control_plane;
pub mod deploy;
pub mod error;
pub mod machine;
pub mod monitoring;
pub mod objcache;
pub mod resources;
pub mod servers;
pub mod sites;
pub mod siteview;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::sync::watch;

use crate::config::{Config, Secret};
use crate::host::fs::{ensure_dir, write_atomic};
use crate::jobs::Catalogue;

/// The user name of the API's Basic credentials (the password is generated).
pub const API_USER: &str = "dev";

/// What the API, the control plane and `berth dev` share.
pub struct Shared {
    pub store: store::Store,
    /// Each server's live state (hello, metrics, sessions), by server id.
    pub live: Mutex<HashMap<String, control_plane::Live>>,
    /// Bumped when the API adds a job: every session looks for its server's.
    pub wake: watch::Sender<u64>,
    /// The local server, whose agent `berth dev` runs; `POST /servers` adds others.
    pub server_id: String,
    agent_key: Secret,
    api_password: Secret,
    /// The agent's parsers: the API checks fields with them.
    pub catalogue: Catalogue,
    /// What a new server's installer line names: the control plane and its CA.
    pub control_plane_url: String,
    pub ca_file: PathBuf,
}

impl Shared {
    pub fn new(
        store: store::Store,
        server_id: String,
        agent_key: Secret,
        api_password: Secret,
        control_plane_url: String,
        ca_file: PathBuf,
    ) -> Self {
        Shared {
            store,
            live: Mutex::default(),
            wake: watch::Sender::new(0),
            server_id,
            agent_key,
            api_password,
            catalogue: Catalogue::new(false),
            control_plane_url,
            ca_file,
        }
    }

    /// The API key of `server` (the local one's, or one `POST /servers` made), if
    /// the server exists.
    pub fn agent_key(&self, server: &str) -> Option<Secret> {
        if server == self.server_id {
            return Some(self.agent_key.clone());
        }
        self.store.read(|w| w.meta(&format!("apikey/{server}"))).ok().flatten().map(Secret::new)
    }

    /// Wakes every session: a job may be waiting for its server.
    pub fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The `Authorization` header of an API request.
    pub fn api_authorization(&self) -> String {
        basic(API_USER, self.api_password.expose())
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Whether a presented credential is the expected one, in time that does not depend
/// on where they differ (the API's and the agent's Basic credentials).
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Seconds since the epoch (ServerPilot's `datecreated`, `lastconn`).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `berth dev`'s options.
pub struct Options {
    pub dir: PathBuf,
    pub root: Option<PathBuf>,
    pub listen: SocketAddr,
    /// The sandbox even where a trial machine could run ([`machine`]).
    pub sandbox: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("--listen {0}: the dev API listens on loopback addresses only (127.0.0.1, ::1)")]
    NotLoopback(SocketAddr),
    #[error("--root must be an absolute path, not {0}")]
    RootNotAbsolute(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Agent(#[from] crate::agent::StartError),
}

impl DevError {
    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DevError + 'a {
        move |source| DevError::Io { what, path: path.to_owned(), source }
    }

    /// 2 for bad usage, 1 for the rest (as the other commands).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            DevError::NotLoopback(_) | DevError::RootNotAbsolute(_) | DevError::Config(_) => ExitCode::from(2),
            DevError::Io { .. } | DevError::Store(_) | DevError::Ca(_) | DevError::Agent(_) => ExitCode::FAILURE,
        }
    }
}

/// Runs `berth dev` until `stop` resolves.
pub async fn run(options: Options, stop: impl std::future::Future<Output = ()>) -> Result<(), DevError> {
    if !options.listen.ip().is_loopback() {
        return Err(DevError::NotLoopback(options.listen));
    }
    if let Some(root) = options.root.as_ref().filter(|r| !r.is_absolute()) {
        return Err(DevError::RootNotAbsolute(root.clone()));
    }
    // A directory that exists keeps its mode (`--dir /tmp` must not change /tmp).
    if !options.dir.exists() {
        ensure_dir(&options.dir, 0o700).map_err(DevError::io("cannot create the dev directory", &options.dir))?;
    }
    let dir =
        std::fs::canonicalize(&options.dir).map_err(DevError::io("cannot open the dev directory", &options.dir))?;
    let store = store::Store::open(&dir.join("dev.redb"))?;
    let secret = || std::iter::repeat_with(fastrand::alphanumeric).take(24).collect::<String>();
    let (server_id, agent_key, api_password) = store.write(|w| {
        let server_id = w.meta_or("server_id", || std::iter::repeat_with(fastrand::alphanumeric).take(16).collect());
        servers::first_start(w, &server_id);
        (server_id, w.meta_or("agent_key", secret), w.meta_or("api_password", secret))
    })?;
    // As root with the web stack: the agent in a machine of its own (see `machine`).
    let mut trial = None;
    if options.root.is_none() && !options.sandbox {
        match machine::missing() {
            None => trial = Some(machine::Machine::create(&dir).await?),
            Some(why) => eprintln!("berth dev: {why}: the agent works in the sandbox {}", dir.join("root").display()),
        }
    }
    let root = match (options.root, &trial) {
        (Some(root), _) => root,
        (None, Some(_)) => PathBuf::from("/"),
        (None, None) => sandbox_root(&dir)?,
    };
    let identity = ca::Identity::load_or_create(&dir)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config()?);
    let cp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DevError::io("cannot listen on", Path::new("127.0.0.1:0")))?;
    let cp_port = cp_listener.local_addr().map_err(DevError::io("cannot listen on", Path::new("127.0.0.1:0")))?.port();
    // The machine's agent reaches the control plane on the machine's own loopback.
    let inside = trial.as_ref().map(machine::Machine::listen_inside).transpose()?;
    let agent_port = match &inside {
        Some(listener) => {
            listener.local_addr().map_err(DevError::io("cannot listen on", Path::new("the machine")))?.port()
        }
        None => cp_port,
    };
    let listen_path = PathBuf::from(options.listen.to_string());
    let api_listener =
        tokio::net::TcpListener::bind(options.listen).await.map_err(DevError::io("cannot listen on", &listen_path))?;
    let api_addr = api_listener.local_addr().map_err(DevError::io("cannot listen on", &listen_path))?;

    let config_path = dir.join("agent.toml");
    let config = format!(
        "server_id = {server_id:?}\napi_key = {:?}\ncontrol_plane_url = \"wss://127.0.0.1:{agent_port}/agent\"\nca_file = {:?}\n\
         state_dir = {:?}\nroot = {:?}\n",
        agent_key,
        identity.ca_file,
        dir.join("agent-state"),
        root
    );
    write_atomic(&config_path, config.as_bytes(), 0o600).map_err(DevError::io("cannot write", &config_path))?;
    let config = Config::load(&config_path)?;

    let shared = Arc::new(Shared::new(
        store,
        server_id,
        Secret::new(agent_key),
        Secret::new(api_password.clone()),
        format!("wss://127.0.0.1:{cp_port}/agent"),
        identity.ca_file.clone(),
    ));
    let url = format!("http://{api_addr}/v1");
    println!("berth dev: API {url}  user {API_USER}  password {api_password}");
    println!("berth dev: server {}  root {}  state {}", shared.server_id, root.display(), dir.display());
    // The machine's ports 80 and 443, on this host's loopback.
    let mut forwards = Vec::new();
    if trial.is_some() {
        for _ in [80, 443] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(DevError::io("cannot listen on", Path::new("127.0.0.1:0")))?;
            forwards.push(listener);
        }
        let port = |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.port()).unwrap_or_default();
        println!(
            "berth dev: the agent runs in a machine of its own; its port 80 is http://127.0.0.1:{} and 443 https://127.0.0.1:{}",
            port(&forwards[0]),
            port(&forwards[1])
        );
    }
    println!("try: curl -u {API_USER}:{api_password} {url}/servers/{}", shared.server_id);
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let (stop_services, services) = crate::shutdown::channel();
    let cp = tokio::spawn(control_plane::serve(cp_listener, acceptor.clone(), shared.clone(), services.clone()));
    if let Some(inside) = inside {
        tokio::spawn(control_plane::serve(inside, acceptor, shared.clone(), services.clone()));
    }
    if let Some(trial) = trial.as_mut() {
        for (listener, port) in forwards.into_iter().zip([80, 443]) {
            trial.forward(listener, port, services.clone())?;
        }
        trial.boot().await?;
    }
    let api = tokio::spawn(api::serve(api_listener, shared.clone(), api::Limits::default(), services));
    tracing::info!(api = %url, control_plane_port = cp_port, root = %root.display(), dir = %dir.display(), "berth dev started");
    // The agent stops first: its last events and its 1001 close reach a control plane still up.
    let agent = match trial {
        Some(trial) => {
            stop.await;
            trial.stop().await;
            Ok(())
        }
        None => crate::agent::run(config, stop).await,
    };
    stop_services.trigger();
    let _ = cp.await;
    let _ = api.await;
    tracing::info!("berth dev stopped");
    Ok(agent?)
}

/// `DIR/root`, the default sandbox: the account databases are copied in the first
/// time so `sysuser.*` jobs work there (useradd --prefix) and never on the host's.
fn sandbox_root(dir: &Path) -> Result<PathBuf, DevError> {
    let root = dir.join("root");
    let etc = root.join("etc");
    ensure_dir(&root, 0o755).map_err(DevError::io("cannot create", &root))?;
    ensure_dir(&etc, 0o755).map_err(DevError::io("cannot create", &etc))?;
    for (file, mode) in
        [("passwd", 0o644), ("group", 0o644), ("shadow", 0o640), ("gshadow", 0o640), ("login.defs", 0o644)]
    {
        let target = etc.join(file);
        if target.exists() {
            continue;
        }
        let source = Path::new("/etc").join(file);
        let bytes = match std::fs::read(&source) {
            Ok(bytes) => bytes,
            // Not root: the shadow files stay closed, and the sandbox starts without them.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Vec::new(),
            Err(e) => return Err(DevError::io("cannot read", &source)(e)),
        };
        write_atomic(&target, &bytes, mode).map_err(DevError::io("cannot write", &target))?;
    }
    Ok(root)
}

//! The host boundary: everything berth does to the machine goes through here.
//!
//! `fs` writes files atomically and places every host path under the configured
//! `root`, so tests and trials run in a sandbox directory with the same code; `cmd`
//! runs commands without a shell, bounded in time and output. Job families run
//! commands through the [`Host`] trait, so unit tests can fake the machine and see
//! exactly which commands a job would run. `services` knows how to check, reload
//! and start the web servers; `transaction` changes their config files as one;
//! `tree` changes directories in users' trees without following their links;
//! `watch` and `usage` read what the monitoring checks judge.

pub mod cmd;
pub mod fs;
pub mod generation;
pub mod kernel;
pub mod mysql;
pub mod nft;
pub mod pending;
pub mod perms;
pub mod pipeline;
pub mod probe;
pub mod resp;
pub mod restic;
pub mod services;
pub mod sockdiag;
pub mod stale;
pub mod stream;
pub mod transaction;
pub mod tree;
pub mod usage;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::generation::Generation;
use crate::host::services::{Service, Services};
use crate::model::Secret;

/// How long a host command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Raises this process's open-files limit to its hard limit, so the servers berth
/// starts (outside systemd, which sets its own) inherit room for thousands of
/// per-app log files. Returns the limit now in force.
/// Marks every descriptor this process inherited (3 and up) close-on-exec, so no
/// child, above all one run as a hosted user, holds what berth's own parent left
/// open (under systemd there is none; started by hand or by a leaky parent there may
/// be). Called first thing, before any thread or descriptor of berth's own.
pub fn keep_inherited_descriptors_from_children() {
    close_fds::set_fds_cloexec(3, &[]);
}

pub fn raise_open_files_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(hard)
}

/// A command: a program and its arguments, and an optional secret for its stdin.
/// Displays as the command line without the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Cmd {
    /// An absolute path, from code (never from job input).
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment (on top of `LC_ALL=C`); never secrets.
    pub env: Vec<(String, String)>,
    pub stdin: Option<Secret>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd { program: program.into(), args: Vec::new(), env: Vec::new(), stdin: None }
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, secret: Secret) -> Self {
        self.stdin = Some(secret);
        self
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.env.iter().try_for_each(|(k, v)| write!(f, "{k}={v} "))?;
        f.write_str(&self.program)?;
        self.args.iter().try_for_each(|arg| write!(f, " {arg}"))
    }
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} exited with {status}: {stderr}")]
    Failed { command: String, status: String, stderr: String },
}

/// Why a change to the host's config files (a [`transaction`], an [`nft`] ruleset)
/// did not hold. Nothing here knows the wire: `crate::errors` says how a job reports it.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// A command failed.
    #[error(transparent)]
    Command(#[from] HostError),
    /// `tool` refused the new config at `path` (its words); the previous files are back.
    #[error("{tool} rejected the new configuration ({path}): {message}")]
    Refused { tool: String, path: String, message: String },
    /// A service reloaded, then was not running when its new config should serve.
    #[error("{service} is not running after its reload (its log says why)")]
    DownAfterReload { service: String },
    /// A service would neither reload nor start: what each said.
    #[error("{service} reload, then start failed: {reload}; {start}")]
    ReloadThenStart { service: String, reload: String, start: String },
    /// A file could not be read, written, renamed or removed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The machine, as the job families see it.
pub trait Host: Send + Sync + 'static {
    /// Every host path is placed under this directory.
    fn root(&self) -> &Path;
    /// Runs `cmd`; on success, what it printed (stdout then stderr).
    fn run(&self, cmd: &Cmd) -> Result<String, HostError>;
    /// What serves `service`'s connections now ([`generation`]).
    fn generation(&self, services: &Services, service: &Service) -> Generation;
    /// After a reload or start: waits until the generation that replaced `before`
    /// serves new connections, or `deadline`. At the deadline a server that is not
    /// running is an error; one whose old workers still hold its listeners (Apache's
    /// prefork keeps one busy with a long request) is a WARN, and the job goes on:
    /// its config is in place.
    fn until_live(
        &self,
        services: &Services,
        service: &Service,
        before: &Generation,
        deadline: std::time::Instant,
    ) -> Result<(), ChangeError>;
}

/// How long a reloaded server gets to serve its new config.
pub const LIVE_PATIENCE: Duration = Duration::from_secs(30);

/// The real machine.
#[derive(Debug, Clone)]
pub struct System {
    root: PathBuf,
}

impl System {
    pub fn new(root: PathBuf) -> Self {
        System { root }
    }
}

impl Host for System {
    fn root(&self) -> &Path {
        &self.root
    }

    fn run(&self, cmd: &Cmd) -> Result<String, HostError> {
        let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let input = cmd.stdin.as_ref().map(|s| s.expose().as_bytes());
        let program = Path::new(&cmd.program);
        let output = cmd::run_bounded_with_input(program, &args, &cmd.env, input, COMMAND_TIMEOUT)
            .map_err(|source| HostError::Spawn { command: cmd.to_string(), source })?;
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().chars().take(4096).collect();
            return Err(HostError::Failed { command: cmd.to_string(), status: output.status.to_string(), stderr });
        }
        Ok(printed)
    }

    fn generation(&self, services: &Services, service: &Service) -> Generation {
        services.generation(service)
    }

    fn until_live(
        &self,
        services: &Services,
        service: &Service,
        before: &Generation,
        deadline: std::time::Instant,
    ) -> Result<(), ChangeError> {
        let started = std::time::Instant::now();
        let sockets = services.sockets(service);
        let mut pause = Duration::from_millis(1);
        while !services.live(service, before, &sockets) {
            if std::time::Instant::now() >= deadline {
                if services.generation(service).master.is_none() {
                    return Err(ChangeError::DownAfterReload { service: service.unit() });
                }
                tracing::warn!(service = %service, waited_secs = started.elapsed().as_secs(),
                    "reloaded, but the old processes still hold the listening sockets");
                return Ok(());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        tracing::debug!(service = %service, waited_ms = started.elapsed().as_millis() as u64, "new configuration serving");
        Ok(())
    }
}

/// A recording stand-in for the machine, for unit tests.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::sync::Mutex;

    pub struct FakeHost {
        root: PathBuf,
        ran: Mutex<Vec<String>>,
        failures: Mutex<Vec<(String, String)>>,
    }

    impl FakeHost {
        pub fn new(root: &Path) -> Self {
            FakeHost { root: root.to_owned(), ran: Mutex::default(), failures: Mutex::default() }
        }

        /// Commands whose line contains `needle` fail with `stderr`.
        pub fn fail_when(&self, needle: &str, stderr: &str) {
            self.failures.lock().unwrap().push((needle.to_owned(), stderr.to_owned()));
        }

        /// Every command line run so far.
        pub fn commands(&self) -> Vec<String> {
            self.ran.lock().unwrap().clone()
        }
    }

    impl Host for FakeHost {
        fn root(&self) -> &Path {
            &self.root
        }

        fn run(&self, cmd: &Cmd) -> Result<String, HostError> {
            let line = cmd.to_string();
            self.ran.lock().unwrap().push(line.clone());
            match self.failures.lock().unwrap().iter().find(|(needle, _)| line.contains(needle.as_str())) {
                Some((_, stderr)) => {
                    Err(HostError::Failed { command: line, status: "exit status: 1".into(), stderr: stderr.clone() })
                }
                None => Ok(String::new()),
            }
        }

        fn generation(&self, _: &Services, _: &Service) -> Generation {
            Generation::default()
        }

        /// Recorded as `live SERVICE`, so a test sees it follow the reload; down
        /// when [`FakeHost::fail_when`] names that line.
        fn until_live(
            &self,
            _: &Services,
            service: &Service,
            _: &Generation,
            _: std::time::Instant,
        ) -> Result<(), ChangeError> {
            let line = format!("live {service}");
            self.ran.lock().unwrap().push(line.clone());
            match self.failures.lock().unwrap().iter().any(|(needle, _)| line.contains(needle.as_str())) {
                true => Err(ChangeError::DownAfterReload { service: service.unit() }),
                false => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_never_shows_stdin() {
        let cmd = Cmd::new("/usr/sbin/chpasswd").arg("-e").stdin(Secret::new("derek:$6$salt$hash"));
        assert_eq!(cmd.to_string(), "/usr/sbin/chpasswd -e");
        assert!(!format!("{cmd:?}").contains("hash"));
    }

    #[test]
    fn system_runs_with_stdin_and_reports_failures() {
        let host = System::new(PathBuf::from("/"));
        let out = host.run(&Cmd::new("/bin/cat").stdin(Secret::new("piped"))).unwrap();
        assert_eq!(out, "piped");
        let err = host.run(&Cmd::new("/bin/sh").args(["-c", "echo oops >&2; exit 4"])).unwrap_err();
        assert!(err.to_string().contains("oops") && err.to_string().contains('4'), "{err}");
    }
}

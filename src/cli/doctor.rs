//! `berth doctor`: checks, one line each, what the daemon needs to work, so an
//! operator (or the installer) finds what is wrong without reading logs.
//!
//! The checks: the config parses; a key file, and a config holding the key inline,
//! are readable by root alone; the state dir exists, is 0700 and writable; the
//! control plane answers a TLS handshake and a websocket upgrade with the configured
//! CA and credentials; the tools berth drives are there, with their versions. Only
//! reads, plus one temp file in the state dir that is removed at once. A failed check
//! makes the exit code 1; a `warn` (a tool only some job kinds need) does not.

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::config::Config;

/// How long the control-plane check waits for TLS and the upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a tool gets to print its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub outcome: Outcome,
    pub name: String,
    pub detail: String,
}

impl Check {
    fn new(outcome: Outcome, name: &str, detail: impl Into<String>) -> Check {
        Check { outcome, name: name.to_owned(), detail: detail.into() }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.outcome {
            Outcome::Ok => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        write!(f, "{mark:<4}  {}: {}", self.name, self.detail)
    }
}

/// Runs every check that can run, calling `report` with each line as it is known.
/// Returns whether none failed.
pub fn run(config_path: &Path, mut report: impl FnMut(&Check)) -> bool {
    let mut failed = false;
    let mut emit = |check: Check| {
        failed |= check.outcome == Outcome::Fail;
        report(&check);
    };
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            emit(Check::new(Outcome::Fail, "config", e.to_string()));
            return false;
        }
    };
    emit(Check::new(
        Outcome::Ok,
        "config",
        format!("{} parses (server_id {})", config_path.display(), config.server_id),
    ));
    for check in secret_files(config_path) {
        emit(check);
    }
    emit(state_dir(&config.state_dir));
    emit(control_plane(&config));
    for check in tools(&config.root) {
        emit(check);
    }
    !failed
}

/// The files that hold the API key must be root's alone: the key file, and the config
/// itself when the key is inline.
fn secret_files(config_path: &Path) -> Vec<Check> {
    let text = std::fs::read_to_string(config_path).unwrap_or_default();
    let table: toml::Table = toml::from_str(&text).unwrap_or_default();
    let mut checks = Vec::new();
    if let Some(key_file) = table.get("api_key_file").and_then(|v| v.as_str()) {
        checks.push(private_file("key file", Path::new(key_file)));
    }
    if table.contains_key("api_key") {
        checks.push(private_file("config file", config_path));
    }
    checks
}

fn private_file(name: &str, path: &Path) -> Check {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                Check::new(
                    Outcome::Fail,
                    name,
                    format!("{} is mode {mode:04o}; it holds the API key: chmod 600 it", path.display()),
                )
            } else if meta.uid() != 0 {
                Check::new(Outcome::Fail, name, format!("{} is owned by uid {}, not root", path.display(), meta.uid()))
            } else {
                Check::new(Outcome::Ok, name, format!("{} is mode {mode:04o}, owned by root", path.display()))
            }
        }
        Err(e) => Check::new(Outcome::Fail, name, format!("cannot read {}: {e}", path.display())),
    }
}

fn state_dir(dir: &Path) -> Check {
    const NAME: &str = "state dir";
    let meta = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => return Check::new(Outcome::Fail, NAME, format!("{} is not a directory", dir.display())),
        Err(e) => return Check::new(Outcome::Fail, NAME, format!("{}: {e}", dir.display())),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o700 {
        return Check::new(
            Outcome::Fail,
            NAME,
            format!("{} is mode {mode:04o}, not 0700 (it holds job params)", dir.display()),
        );
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let written = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(_) => Check::new(Outcome::Ok, NAME, format!("{} exists, mode 0700, writable", dir.display())),
        Err(e) => Check::new(Outcome::Fail, NAME, format!("{} is not writable: {e}", dir.display())),
    }
}

/// A TLS handshake and a websocket upgrade, as the daemon makes them; closed at once.
fn control_plane(config: &Config) -> Check {
    const NAME: &str = "control plane";
    let url = &config.control_plane_url;
    let trust = match &config.ca_file {
        Some(ca) => format!("CA {}", ca.display()),
        None => "the system trust store".to_owned(),
    };
    let tls = match crate::agent::tls::client_config(config) {
        Ok(tls) => tls,
        Err(e) => return Check::new(Outcome::Fail, NAME, e.to_string()),
    };
    let request = match crate::agent::connection::upgrade_request(config) {
        Ok(request) => request,
        Err(e) => return Check::new(Outcome::Fail, NAME, e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return Check::new(Outcome::Fail, NAME, format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        use tokio_tungstenite::tungstenite::Error as WsError;
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok((mut ws, response))) => {
                use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "berth doctor".into() })).await;
                Check::new(
                    Outcome::Ok,
                    NAME,
                    format!("{url}: TLS verified with {trust}, websocket upgrade answered {}", response.status()),
                )
            }
            Ok(Err(WsError::Http(response))) => {
                let status = response.status();
                let hint = if matches!(status.as_u16(), 401 | 403) {
                    ": credentials rejected, check server_id and the API key"
                } else {
                    ""
                };
                Check::new(Outcome::Fail, NAME, format!("{url}: upgrade refused with HTTP {status}{hint}"))
            }
            Ok(Err(e)) => Check::new(Outcome::Fail, NAME, format!("{url} (trusting {trust}): {e}")),
            Err(_) => {
                Check::new(Outcome::Fail, NAME, format!("{url}: no answer within {}s", CONNECT_TIMEOUT.as_secs()))
            }
        }
    })
}

/// The programs jobs run, under `root` like the daemon finds them.
fn tools(root: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let services = crate::host::probe::services(root);
    let service = |key: &str, name: &str, missing: Outcome, why: &str| match services.get(key) {
        Some(version) => Check::new(Outcome::Ok, name, format!("version {version}")),
        None => Check::new(missing, name, format!("not installed ({why})")),
    };
    checks.push(service("nginx", "nginx", Outcome::Fail, "every app needs it"));
    checks.push(service("apache", "apache2", Outcome::Warn, "needed by the nginx-apache stack only"));
    checks.push(service("mysql", "mariadb", Outcome::Warn, "needed by db.* jobs only"));
    let runtimes = crate::host::probe::runtimes(root);
    if runtimes.is_empty() {
        checks.push(Check::new(Outcome::Fail, "php-fpm", "no php-fpmX.Y installed (every PHP app needs one)"));
    }
    for runtime in runtimes {
        let binary = root.join(format!("usr/sbin/{}", runtime.replace("php", "php-fpm")));
        let version =
            version_line(&binary, &["-v"], |t| t.strip_prefix("PHP ")?.split_whitespace().next().map(str::to_owned));
        checks.push(Check::new(Outcome::Ok, &format!("php-fpm ({runtime})"), format!("version {version}")));
    }
    let nft = root.join("usr/sbin/nft");
    checks.push(if nft.exists() {
        let version = version_line(&nft, &["--version"], |t| {
            t.strip_prefix("nftables v")?.split_whitespace().next().map(str::to_owned)
        });
        Check::new(Outcome::Ok, "nft", format!("version {version}"))
    } else {
        Check::new(Outcome::Fail, "nft", "not installed (the firewall needs it)")
    });
    let accounts: Vec<&str> = ["useradd", "usermod", "userdel", "chpasswd"]
        .into_iter()
        .filter(|tool| !root.join("usr/sbin").join(tool).exists())
        .collect();
    checks.push(if accounts.is_empty() {
        Check::new(Outcome::Ok, "shadow-utils", "useradd, usermod, userdel, chpasswd found")
    } else {
        Check::new(Outcome::Fail, "shadow-utils", format!("missing {} (package passwd)", accounts.join(", ")))
    });
    checks
}

/// The version `parse` finds in the first line that has one, else "unknown".
fn version_line(program: &Path, args: &[&str], parse: fn(&str) -> Option<String>) -> String {
    let Ok(out) = crate::host::cmd::run_bounded(program, args, VERSION_TIMEOUT) else {
        return "unknown".into();
    };
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.lines().find_map(|l| parse(l.trim())).unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_marked_and_named() {
        assert_eq!(Check::new(Outcome::Fail, "nft", "not installed").to_string(), "FAIL  nft: not installed");
        assert_eq!(Check::new(Outcome::Ok, "nginx", "version 1.22.1").to_string(), "ok    nginx: version 1.22.1");
    }

    #[test]
    fn state_dir_must_be_0700() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let check = state_dir(dir.path());
        assert_eq!(check.outcome, Outcome::Fail, "{check}");
        assert!(check.detail.contains("0755"), "{check}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(state_dir(dir.path()).outcome, Outcome::Ok);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file is gone");
        assert_eq!(state_dir(&dir.path().join("missing")).outcome, Outcome::Fail);
    }

    #[test]
    fn tools_under_an_empty_root_fail() {
        let dir = tempfile::tempdir().unwrap();
        let checks = tools(dir.path());
        for name in ["nginx", "php-fpm", "nft", "shadow-utils"] {
            let check = checks.iter().find(|c| c.name == name).unwrap();
            assert_eq!(check.outcome, Outcome::Fail, "{check}");
        }
        let apache = checks.iter().find(|c| c.name == "apache2").unwrap();
        assert_eq!(apache.outcome, Outcome::Warn, "{apache}");
    }
}

//! The agent's configuration file (`/etc/berth/agent.toml`), loaded and checked once.
//!
//! A bad config is the operator's to fix, so every error names the file and the key.
//! The API key is a secret: it lives in [`Secret`], which never prints, and a parse
//! error shows the line number and key but never the line itself.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::model::Secret;

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server_id: String,
    pub api_key: Secret,
    pub control_plane_url: String,
    pub ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    /// Allows `ws://` to a loopback address (PROTOCOL 1: "an explicit insecure flag").
    pub allow_insecure_ws: bool,
    /// How many unrelated jobs may run at once.
    pub max_parallel_jobs: usize,
    /// Registers the `test.*` job kinds (for the test suite and trials; never in
    /// production). Always false in a build without the `test-jobs` feature.
    pub test_jobs: bool,
    /// How berth reaches MySQL/MariaDB.
    pub mysql: crate::host::mysql::MysqlSettings,
    /// How berth orders certificates.
    pub acme: AcmeSettings,
    /// What `server.reboot` runs once its final status is acknowledged: an absolute
    /// program and its arguments.
    pub reboot_command: Vec<String>,
    /// The WordPress tree `app.wordpress` copies (an absolute directory).
    pub wordpress_source: PathBuf,
    /// Redis's Unix socket (`app.object_cache`), as the apps see it; berth connects
    /// to it under `root`.
    pub redis_socket: PathBuf,
    /// Seconds between two readings of the monitor (`monitor.policy`'s checks).
    pub monitor_secs: u64,
    /// Mounts the monitor counts as disks whatever their filesystem (a tmpfs that
    /// holds data); absolute paths.
    pub monitor_mounts: Vec<String>,
}

/// The file as written; checked into [`Config`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server_id: String,
    api_key: Option<String>,
    api_key_file: Option<PathBuf>,
    control_plane_url: String,
    ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    root: Option<PathBuf>,
    #[serde(default)]
    allow_insecure_ws: bool,
    max_parallel_jobs: Option<usize>,
    #[serde(default)]
    test_jobs: bool,
    mysql_socket: Option<PathBuf>,
    mysql_user: Option<String>,
    acme_directory: Option<String>,
    acme_ca_file: Option<PathBuf>,
    acme_profile: Option<String>,
    acme_email: Option<String>,
    reboot_command: Option<Vec<String>>,
    wordpress_source: Option<PathBuf>,
    redis_socket: Option<PathBuf>,
    monitor_secs: Option<u64>,
    monitor_mounts: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}{}{}: {message}",
        line.map(|l| format!(", line {l}")).unwrap_or_default(),
        key.as_deref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
    Parse { path: PathBuf, line: Option<usize>, key: Option<String>, message: String },
    #[error("config {path}, key `{key}`: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
}

pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth";
pub const DEFAULT_MAX_PARALLEL_JOBS: usize = 4;
/// systemd's reboot: units stop in order (the web servers and MariaDB shut down cleanly).
pub const DEFAULT_REBOOT_COMMAND: [&str; 2] = ["/usr/bin/systemctl", "reboot"];
/// Debian's `wordpress` package.
pub const DEFAULT_WORDPRESS_SOURCE: &str = "/usr/share/wordpress";
/// Where berth's installer has Debian's redis-server listen.
pub const DEFAULT_REDIS_SOCKET: &str = "/run/redis/redis-server.sock";
/// A monitor reading every 10 s: nginx killed is `critical` within 30 s.
pub const DEFAULT_MONITOR_SECS: u64 = 10;
/// At most this many `monitor_mounts`.
const MAX_MONITOR_MOUNTS: usize = 32;

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(path, &text)
    }

    /// Checks config text; `path` is only for messages and relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| parse_error(path, text, &e))?;
        let invalid = |key, message: String| ConfigError::Invalid { path: path.to_owned(), key, message };

        if file.server_id.is_empty()
            || file.server_id.len() > 128
            || !file.server_id.chars().all(|c| c.is_ascii_graphic() && c != ':')
        {
            return Err(invalid("server_id", "must be 1–128 printable ASCII characters without ':' or spaces".into()));
        }
        let api_key = match (file.api_key, &file.api_key_file) {
            (Some(_), Some(_)) => return Err(invalid("api_key", "give api_key or api_key_file, not both".into())),
            (None, None) => return Err(invalid("api_key", "missing: give api_key or api_key_file".into())),
            (Some(key), None) => key,
            (None, Some(key_file)) => std::fs::read_to_string(key_file)
                .map_err(|e| invalid("api_key_file", format!("cannot read {}: {e}", key_file.display())))?
                .trim()
                .to_owned(),
        };
        if api_key.is_empty() || !api_key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("api_key", "must be non-empty printable ASCII without spaces".into()));
        }
        check_url(&file.control_plane_url, file.allow_insecure_ws).map_err(|m| invalid("control_plane_url", m))?;
        match (&file.tls_cert_file, &file.tls_key_file) {
            (Some(_), None) => return Err(invalid("tls_key_file", "missing: tls_cert_file needs it".into())),
            (None, Some(_)) => return Err(invalid("tls_cert_file", "missing: tls_key_file needs it".into())),
            _ => {}
        }
        let root = file.root.unwrap_or_else(|| PathBuf::from("/"));
        if !root.is_absolute() {
            return Err(invalid("root", format!("must be an absolute path, not {}", root.display())));
        }
        let state_dir = file.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(invalid("state_dir", format!("must be an absolute path, not {}", state_dir.display())));
        }
        if file.test_jobs && !cfg!(feature = "test-jobs") {
            return Err(invalid(
                "test_jobs",
                "this berth was built without the `test-jobs` feature (as the package is): remove the key or set it \
                 to false"
                    .into(),
            ));
        }
        let max_parallel_jobs = file.max_parallel_jobs.unwrap_or(DEFAULT_MAX_PARALLEL_JOBS);
        if !(1..=64).contains(&max_parallel_jobs) {
            return Err(invalid("max_parallel_jobs", "must be between 1 and 64".into()));
        }
        let mut mysql = crate::host::mysql::MysqlSettings::under(&root);
        if let Some(socket) = file.mysql_socket {
            if !socket.is_absolute() {
                return Err(invalid("mysql_socket", format!("must be an absolute path, not {}", socket.display())));
            }
            mysql.socket = socket;
        }
        if let Some(user) = file.mysql_user {
            if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(invalid("mysql_user", "must be a plain user name".into()));
            }
            mysql.user = user;
        }
        let acme =
            acme_settings(&state_dir, file.acme_directory, file.acme_ca_file, file.acme_profile, file.acme_email)
                .map_err(|(key, message)| invalid(key, message))?;
        let reboot_command = file.reboot_command.unwrap_or_else(|| DEFAULT_REBOOT_COMMAND.map(str::to_owned).to_vec());
        if !reboot_command.first().is_some_and(|program| Path::new(program).is_absolute()) {
            return Err(invalid(
                "reboot_command",
                "must be an array whose first item is an absolute program path".into(),
            ));
        }
        let wordpress_source = file.wordpress_source.unwrap_or_else(|| PathBuf::from(DEFAULT_WORDPRESS_SOURCE));
        let dot_dot = wordpress_source.components().any(|c| c == std::path::Component::ParentDir);
        if !wordpress_source.is_absolute() || dot_dot || wordpress_source.to_str().is_none() {
            return Err(invalid(
                "wordpress_source",
                format!("must be an absolute path without '..', not {}", wordpress_source.display()),
            ));
        }
        let redis_socket = file.redis_socket.unwrap_or_else(|| PathBuf::from(DEFAULT_REDIS_SOCKET));
        let plain = redis_socket.to_str().is_some_and(|s| s.chars().all(|c| c.is_ascii_graphic()));
        if !redis_socket.is_absolute()
            || redis_socket.components().any(|c| c == std::path::Component::ParentDir)
            || !plain
        {
            return Err(invalid(
                "redis_socket",
                format!("must be an absolute path of printable ASCII without '..', not {}", redis_socket.display()),
            ));
        }
        let monitor_secs = file.monitor_secs.unwrap_or(DEFAULT_MONITOR_SECS);
        if !(1..=3600).contains(&monitor_secs) {
            return Err(invalid("monitor_secs", format!("must be between 1 and 3600 seconds, not {monitor_secs}")));
        }
        let monitor_mounts = file.monitor_mounts.unwrap_or_default();
        let bad_mount = monitor_mounts.iter().find(|m| {
            !m.starts_with('/') || !m.chars().all(|c| c.is_ascii_graphic()) || m.split('/').any(|s| s == "..")
        });
        if let Some(bad) = bad_mount {
            return Err(invalid(
                "monitor_mounts",
                format!(
                    "each must be an absolute path of printable ASCII without '..', not {}",
                    crate::model::validate::shown(bad)
                ),
            ));
        }
        if monitor_mounts.len() > MAX_MONITOR_MOUNTS {
            return Err(invalid("monitor_mounts", format!("must name at most {MAX_MONITOR_MOUNTS} mounts")));
        }
        Ok(Config {
            server_id: file.server_id,
            api_key: Secret::new(api_key),
            control_plane_url: file.control_plane_url,
            ca_file: file.ca_file,
            tls_cert_file: file.tls_cert_file,
            tls_key_file: file.tls_key_file,
            state_dir,
            root,
            allow_insecure_ws: file.allow_insecure_ws,
            max_parallel_jobs,
            test_jobs: file.test_jobs,
            mysql,
            acme,
            reboot_command,
            wordpress_source,
            redis_socket,
            monitor_secs,
            monitor_mounts,
        })
    }
}

/// The ACME keys: `acme_directory` is `letsencrypt` (the default),
/// `letsencrypt-staging`, or an `https://` directory URL.
fn acme_settings(
    state_dir: &Path,
    directory: Option<String>,
    ca_file: Option<PathBuf>,
    profile: Option<String>,
    email: Option<String>,
) -> Result<AcmeSettings, (&'static str, String)> {
    let mut acme = AcmeSettings::new(state_dir);
    match directory.as_deref() {
        None | Some("letsencrypt") => {}
        Some("letsencrypt-staging") => acme.directory = LETSENCRYPT_STAGING.into(),
        Some(url) if url.starts_with("https://") && url.len() > 8 && !url.contains(char::is_whitespace) => {
            acme.directory = url.into()
        }
        Some(_) => {
            return Err((
                "acme_directory",
                "must be \"letsencrypt\", \"letsencrypt-staging\" or an https:// URL".into(),
            ))
        }
    }
    if let Some(ca) = ca_file {
        if !ca.is_absolute() {
            return Err(("acme_ca_file", format!("must be an absolute path, not {}", ca.display())));
        }
        acme.ca_file = Some(ca);
    }
    if let Some(profile) = profile {
        if profile.is_empty()
            || profile.len() > 64
            || !profile.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(("acme_profile", "must be a profile name such as \"classic\" or \"shortlived\"".into()));
        }
        acme.profile = Some(profile);
    }
    if let Some(email) = email {
        let plausible = email.len() <= 254
            && email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
            && email.chars().all(|c| c.is_ascii_graphic() && c != '<' && c != '>' && c != ',');
        if !plausible {
            return Err(("acme_email", "must be one e-mail address".into()));
        }
        acme.email = Some(email);
    }
    Ok(acme)
}

/// `wss://host[:port]/path`, or `ws://` to a loopback host when insecure is allowed.
fn check_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("not a URL: {url:?}"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once('@') {
        Some(_) => return Err("must not carry credentials; use server_id and api_key".into()),
        None => host_of(authority),
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    match scheme {
        "wss" => Ok(()),
        "ws" if allow_insecure && is_loopback(host) => Ok(()),
        "ws" if allow_insecure => Err(format!("ws:// is allowed only to a loopback address, not {host:?}")),
        "ws" => Err("ws:// is refused: use wss:// (or set allow_insecure_ws for a loopback test)".into()),
        other => Err(format!("scheme must be wss://, not {other}://")),
    }
}

fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A parse error with its line and key, never the line's text (it may hold the key).
fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    // A span within one line points at a key or value; an empty one (a missing key)
    // or a wider one points at no line in particular.
    let located =
        |span: &std::ops::Range<usize>| text.get(span.clone()).is_some_and(|t| !t.is_empty() && !t.contains('\n'));
    let (line, key) = match e.span().filter(located) {
        Some(span) => {
            let line_no = text[..span.start].matches('\n').count() + 1;
            let line_text = text.lines().nth(line_no - 1).unwrap_or_default();
            let key = line_text
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_owned())
                .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            (Some(line_no), key)
        }
        None => (None, None),
    };
    ConfigError::Parse { path: path.to_owned(), line, key, message: without_values(e.message().trim()) }
}

/// toml quotes the offending value in backticks (`invalid type: string `hunter2``);
/// the value may be the key, so it goes. Key names in other messages stay.
fn without_values(message: &str) -> String {
    if !message.starts_with("invalid") {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "(value not shown)" } else { part });
    }
    out
}

/// The ACME directories `acme_directory = "letsencrypt"` and `"letsencrypt-staging"` name.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How berth talks to the CA (from the agent config).
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeSettings {
    pub directory: String,
    /// Trust this CA alone for the directory's HTTPS (a private or test CA such as pebble's).
    pub ca_file: Option<PathBuf>,
    /// The ACME profile to order (`classic`, `tlsserver`, `shortlived`, …); the CA's default when absent.
    pub profile: Option<String>,
    /// Contact e-mail for the account.
    pub email: Option<String>,
    /// The agent's state dir: the account and the rate-limit ledger live in `acme/` there.
    pub state_dir: PathBuf,
}

impl AcmeSettings {
    pub fn new(state_dir: &Path) -> Self {
        AcmeSettings {
            directory: LETSENCRYPT.into(),
            ca_file: None,
            profile: None,
            email: None,
            state_dir: state_dir.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
server_id = "UXOSIYrdtL4cSGp3"
api_key = "k3y-s3cr3t"
control_plane_url = "wss://cp.example.com/agent"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/berth/agent.toml"), text)
    }

    #[test]
    fn defaults_apply() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(config.root, Path::new("/"));
        assert_eq!(config.max_parallel_jobs, DEFAULT_MAX_PARALLEL_JOBS);
        assert!(!config.test_jobs);
        assert_eq!(config.reboot_command, ["/usr/bin/systemctl", "reboot"]);
        assert_eq!(format!("{:?}", config.api_key), "Secret(***)");
    }

    #[test]
    #[cfg(feature = "test-jobs")]
    fn test_jobs_are_taken_in_a_build_with_them() {
        assert!(parse(&format!("{GOOD}test_jobs = true\n")).unwrap().test_jobs);
    }

    #[test]
    #[cfg(not(feature = "test-jobs"))]
    fn test_jobs_are_refused_in_a_build_without_them() {
        let message = parse(&format!("{GOOD}test_jobs = true\n")).unwrap_err().to_string();
        assert!(
            message.contains("key `test_jobs`") && message.contains("without the `test-jobs` feature"),
            "{message}"
        );
        assert!(!parse(&format!("{GOOD}test_jobs = false\n")).unwrap().test_jobs);
    }

    #[test]
    fn type_error_names_key_and_line_but_not_the_value() {
        let text = GOOD.replace(r#"api_key = "k3y-s3cr3t""#, "api_key = 12345678");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("/etc/berth/agent.toml"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("`api_key`"), "{message}");
        assert!(!message.contains("12345678"), "{message}");
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let message = parse(&format!("{GOOD}sever_id = \"x\"\n")).unwrap_err().to_string();
        assert!(message.contains("sever_id"), "{message}");
        let message = parse("api_key = \"k\"\ncontrol_plane_url = \"wss://a\"\n").unwrap_err().to_string();
        assert!(message.contains("server_id"), "{message}");
        assert!(!message.contains("key `api_key`"), "a missing key is not blamed on another line: {message}");
    }

    #[test]
    fn acme_keys_default_to_lets_encrypt_and_are_checked() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.acme.directory, LETSENCRYPT);
        assert_eq!(config.acme.state_dir, Path::new(DEFAULT_STATE_DIR));
        let staging =
            parse(&format!("{GOOD}acme_directory = \"letsencrypt-staging\"\nacme_profile = \"shortlived\"\n")).unwrap();
        assert_eq!(staging.acme.directory, LETSENCRYPT_STAGING);
        assert_eq!(staging.acme.profile.as_deref(), Some("shortlived"));
        let own =
            parse(&format!("{GOOD}acme_directory = \"https://127.0.0.1:14000/dir\"\nacme_ca_file = \"/etc/ca.pem\"\n"))
                .unwrap();
        assert_eq!(
            (own.acme.directory.as_str(), own.acme.ca_file.as_deref()),
            ("https://127.0.0.1:14000/dir", Some(Path::new("/etc/ca.pem")))
        );
        for (line, key) in [
            ("acme_directory = \"http://ca.example/dir\"", "acme_directory"),
            ("acme_ca_file = \"ca.pem\"", "acme_ca_file"),
            ("acme_profile = \"a b\"", "acme_profile"),
            ("acme_email = \"not-an-address\"", "acme_email"),
            ("wordpress_source = \"wordpress\"", "wordpress_source"),
            ("wordpress_source = \"/srv/../etc\"", "wordpress_source"),
            ("redis_socket = \"redis.sock\"", "redis_socket"),
            ("monitor_secs = 0", "monitor_secs"),
            ("monitor_secs = 3601", "monitor_secs"),
            ("monitor_mounts = [\"mnt\"]", "monitor_mounts"),
            ("monitor_mounts = [\"/mnt/../etc\"]", "monitor_mounts"),
            ("monitor_mounts = [\"/mnt/a b\"]", "monitor_mounts"),
            ("redis_socket = \"/run/../etc/redis.sock\"", "redis_socket"),
            ("redis_socket = \"/run/redis/a b.sock\"", "redis_socket"),
        ] {
            let message = parse(&format!("{GOOD}{line}\n")).unwrap_err().to_string();
            assert!(message.contains(&format!("`{key}`")), "{line}: {message}");
        }
        assert_eq!(config.redis_socket, Path::new(DEFAULT_REDIS_SOCKET));
        let redis = parse(&format!("{GOOD}redis_socket = \"/var/run/redis/own.sock\"\n")).unwrap();
        assert_eq!(redis.redis_socket, Path::new("/var/run/redis/own.sock"));
    }

    #[test]
    fn url_rules() {
        assert!(check_url("wss://cp.example.com:8443/agent", false).is_ok());
        assert!(check_url("ws://127.0.0.1:9000/", false).is_err());
        assert!(check_url("ws://127.0.0.1:9000/", true).is_ok());
        assert!(check_url("ws://[::1]:9000/", true).is_ok());
        assert!(check_url("ws://localhost/", true).is_ok());
        assert!(check_url("ws://cp.example.com/", true).is_err());
        assert!(check_url("https://cp.example.com/", false).is_err());
        assert!(check_url("wss://user:pw@cp.example.com/", false).is_err());
        assert!(check_url("wss:///agent", false).is_err());
    }

    #[test]
    fn key_sources_are_exclusive_and_required() {
        let both = format!("{GOOD}api_key_file = \"/k\"\n");
        assert!(matches!(parse(&both), Err(ConfigError::Invalid { key: "api_key", .. })));
        let none = GOOD.replace(r#"api_key = "k3y-s3cr3t""#, "");
        assert!(matches!(parse(&none), Err(ConfigError::Invalid { key: "api_key", .. })));
    }

    #[test]
    fn api_key_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "from-file\n").unwrap();
        let text = GOOD.replace(r#"api_key = "k3y-s3cr3t""#, &format!("api_key_file = {:?}", key_file));
        assert_eq!(parse(&text).unwrap().api_key.expose(), "from-file");
    }

    #[test]
    fn reboot_command_must_name_an_absolute_program() {
        let custom = format!("{GOOD}reboot_command = [\"/usr/local/bin/stand-in\", \"now\"]\n");
        assert_eq!(parse(&custom).unwrap().reboot_command, ["/usr/local/bin/stand-in", "now"]);
        for bad in ["[]", "[\"reboot\"]", "\"/sbin/reboot\""] {
            let text = format!("{GOOD}reboot_command = {bad}\n");
            assert!(parse(&text).unwrap_err().to_string().contains("reboot_command"), "{bad}");
        }
    }

    #[test]
    fn relative_paths_and_half_mutual_tls_are_refused() {
        let relative = format!("{GOOD}root = \"sandbox\"\n");
        assert!(matches!(parse(&relative), Err(ConfigError::Invalid { key: "root", .. })));
        let half = format!("{GOOD}tls_cert_file = \"/c.pem\"\n");
        assert!(matches!(parse(&half), Err(ConfigError::Invalid { key: "tls_key_file", .. })));
    }
}

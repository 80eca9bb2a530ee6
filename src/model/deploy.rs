//! Git deploys' values (`app.git`, `app.deploy`), each a checked type: the
//! repository, the branch, the deploy script, how many releases are kept, the
//! pinned host keys, the shared paths, and what the inventory records of a release.
//!
//! A repository URL and a branch reach git's argv, a shared path reaches the paths
//! of commands run as the site's user, host keys reach ssh's `known_hosts`: each is
//! checked here once, by the job's parser and by serde alike, against the tricks
//! those tools fall for (`ext::` transports, an argument that starts with `-` and
//! becomes an option, `--upload-pack=`, control characters, `..`). The deploy
//! script is the user's own program, run as the user: it is only bounded.

use serde::{Deserialize, Serialize};

use crate::model::validate::{shown, FieldError, Params};

/// The most releases kept.
pub const MAX_KEEP: u64 = 20;
/// Releases kept when `app.git` names no `keep`.
pub const DEFAULT_KEEP: u8 = 5;
/// The largest deploy script, in bytes.
pub const MAX_SCRIPT: usize = 64 << 10;
/// The largest `host_keys`, in bytes, and its most lines.
pub const MAX_HOST_KEYS: usize = 64 << 10;
pub const MAX_HOST_KEY_LINES: usize = 100;
/// The most shared paths.
pub const MAX_SHARED: usize = 20;

/// Implements the string plumbing of a checked type: serde through `parse`.
macro_rules! checked {
    ($name:ident, $field:literal) => {
        impl $name {
            pub const FIELD: &'static str = $field;
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The required param `key`, checked; an error names the field.
            pub fn param(params: &Params, key: &str) -> Result<Self, FieldError> {
                $name::parse(&params.field(key), params.str(key)?)
            }
            /// [`Self::param`] for an optional param.
            pub fn opt_param(params: &Params, key: &str) -> Result<Option<Self>, FieldError> {
                params.opt_str(key)?.map(|v| $name::parse(&params.field(key), v)).transpose()
            }
        }
        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(value: String) -> Result<Self, FieldError> {
                $name::parse($field, &value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A repository berth clones: `ssh://user@host[:port]/path`, scp-like
/// `user@host:path`, or `file:///abs/path`. No other transport (git's `ext::`,
/// `http`), no part that starts with `-`, nothing outside `[A-Za-z0-9._~/+@-]` in a
/// path, no `..` component, at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoUrl(String);
checked!(RepoUrl, "repo");

impl RepoUrl {
    pub fn parse(field: &str, v: &str) -> Result<RepoUrl, FieldError> {
        let fail = |why: &str| Err(FieldError::new(field, format!("{why}: {}", shown(v))));
        if v.is_empty() || v.len() > 1024 {
            return fail("must be 1 to 1024 bytes");
        }
        if let Some(path) = v.strip_prefix("file://") {
            if !path.starts_with('/') || !repo_path(path) {
                return fail("a file:// repository must name an absolute path of [A-Za-z0-9._~/+@-] without ..");
            }
            return Ok(RepoUrl(v.to_owned()));
        }
        let (authority, path, port) = if let Some(rest) = v.strip_prefix("ssh://") {
            let Some(slash) = rest.find('/') else { return fail("an ssh:// repository needs a path") };
            let (authority, path) = rest.split_at(slash);
            let (authority, port) = match authority.rfind(':') {
                Some(colon) if !authority[colon..].contains(']') => {
                    (&authority[..colon], Some(&authority[colon + 1..]))
                }
                _ => (authority, None),
            };
            (authority, path, port)
        } else {
            match v.split_once(':') {
                Some((authority, path)) if !authority.contains('/') && !authority.contains('[') => {
                    (authority, path, None)
                }
                _ => return fail("must be ssh://user@host[:port]/path, user@host:path or file:///path"),
            }
        };
        if let Some(port) = port {
            if !port.bytes().all(|b| b.is_ascii_digit()) || !port.parse::<u16>().is_ok_and(|p| p > 0) {
                return fail("the port must be 1 to 65535");
            }
        }
        let Some((user, host)) = authority.split_once('@') else {
            return fail("must name the ssh user (user@host)");
        };
        let user_ok = !user.is_empty()
            && user.len() <= 32
            && !user.starts_with('-')
            && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !user_ok {
            return fail("the ssh user must be [A-Za-z0-9._-], not starting with -");
        }
        if !host_ok(host) {
            return fail("the host must be a DNS name or an IP address");
        }
        if path.is_empty() || path.starts_with('-') || !repo_path(path) {
            return fail("the path must be [A-Za-z0-9._~/+@-], not starting with -, without ..");
        }
        Ok(RepoUrl(v.to_owned()))
    }

    /// The host's part for ssh (`None` for `file://`).
    pub fn is_ssh(&self) -> bool {
        !self.0.starts_with("file://")
    }
}

fn repo_path(path: &str) -> bool {
    path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~/+@-".contains(&b))
        && !path.split('/').any(|part| part == "..")
        && !path.contains("/-")
}

fn host_ok(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    host.parse::<std::net::Ipv4Addr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

/// A branch: git's ref-name rules (`git check-ref-format --branch`), ASCII alone,
/// no leading `-`, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Branch(String);
checked!(Branch, "branch");

impl Branch {
    pub fn parse(field: &str, v: &str) -> Result<Branch, FieldError> {
        let fail = |why: &str| Err(FieldError::new(field, format!("{why}: {}", shown(v))));
        if v.is_empty() || v.len() > 255 {
            return fail("must be 1 to 255 bytes");
        }
        if v.starts_with('-') {
            return fail("must not start with -");
        }
        if !v.bytes().all(|b| b.is_ascii_graphic()) || v.bytes().any(|b| b"~^:?*[\\".contains(&b)) {
            return fail("must be printable ASCII without spaces or any of ~^:?*[\\");
        }
        if v == "@" || v.contains("..") || v.contains("@{") || v.ends_with('.') || v.ends_with(".lock") {
            return fail("is not a git branch name (.., @{, a final . or .lock)");
        }
        if v.split('/').any(|part| part.is_empty() || part.starts_with('.') || part.ends_with(".lock")) {
            return fail("is not a git branch name (an empty component or one starting with .)");
        }
        Ok(Branch(v.to_owned()))
    }
}

/// A deploy script: the user's shell program, run by `/bin/sh -c` as the user in
/// the new release. At most 64 KiB, no NUL (which no argv can carry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeployScript(String);
checked!(DeployScript, "deploy_script");

impl DeployScript {
    pub fn parse(field: &str, v: &str) -> Result<DeployScript, FieldError> {
        if v.len() > MAX_SCRIPT {
            return Err(FieldError::new(field, format!("must be at most {MAX_SCRIPT} bytes, not {}", v.len())));
        }
        if v.contains('\0') {
            return Err(FieldError::new(field, "must not contain NUL"));
        }
        Ok(DeployScript(v.to_owned()))
    }
}

/// Pinned host keys: `known_hosts` lines (`host[,host] keytype base64 [comment]`,
/// hosts as [`host_ok`] or `[host]:port`, or hashed `|1|…|…`), comments and blank
/// lines; no markers (`@cert-authority`, `@revoked`), no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostKeys(String);
checked!(HostKeys, "host_keys");

const KEY_TYPES: [&str; 8] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
];

impl HostKeys {
    pub fn parse(field: &str, v: &str) -> Result<HostKeys, FieldError> {
        let fail = |line: usize, why: &str| Err(FieldError::new(field, format!("line {}: {why}", line + 1)));
        if v.len() > MAX_HOST_KEYS || v.lines().count() > MAX_HOST_KEY_LINES {
            return Err(FieldError::new(
                field,
                format!("at most {MAX_HOST_KEYS} bytes and {MAX_HOST_KEY_LINES} lines"),
            ));
        }
        let mut keys = 0;
        for (i, line) in v.lines().enumerate() {
            if line.chars().any(|c| c.is_control() && c != '\t') {
                return fail(i, "holds a control character");
            }
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 3 {
                return fail(i, "must be: hosts keytype key [comment]");
            }
            let hosts_ok = parts[0].split(',').all(|h| {
                let hashed = h.starts_with("|1|")
                    && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"|+/=".contains(&b))
                    && h.split('|').count() == 4;
                let bracketed = h
                    .strip_prefix('[')
                    .and_then(|r| r.split_once("]:"))
                    .is_some_and(|(host, port)| host_ok(host) && port.parse::<u16>().is_ok_and(|p| p > 0));
                hashed || bracketed || host_ok(h)
            });
            if !hosts_ok {
                return fail(i, "names a host that is not a DNS name, an address, [host]:port or |1| hash");
            }
            if !KEY_TYPES.contains(&parts[1]) {
                return fail(i, "names an unknown key type");
            }
            use base64::Engine;
            if parts[2].len() > 8192 || base64::engine::general_purpose::STANDARD.decode(parts[2]).is_err() {
                return fail(i, "the key is not base64");
            }
            keys += 1;
        }
        if keys == 0 {
            return Err(FieldError::new(field, "must hold at least one host key"));
        }
        Ok(HostKeys(v.to_owned()))
    }
}

/// A path shared by every release, relative to the release (and to `shared/`):
/// components of `[A-Za-z0-9._-]`, none `.`/`..` or starting with `-`; a final
/// `/` means a directory (made empty when missing), else a file (linked when it
/// is there). At most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SharedPath(String);
checked!(SharedPath, "shared");

impl SharedPath {
    pub fn parse(field: &str, v: &str) -> Result<SharedPath, FieldError> {
        let path = v.strip_suffix('/').unwrap_or(v);
        let component = |c: &str| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && !c.starts_with('-')
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if v.len() > 255 || path.starts_with('/') || !path.split('/').all(component) {
            return Err(FieldError::new(
                field,
                format!("must be a relative path of [A-Za-z0-9._-] components, no . or .. or leading -: {}", shown(v)),
            ));
        }
        Ok(SharedPath(v.to_owned()))
    }

    /// The path without its final `/`.
    pub fn path(&self) -> &str {
        self.0.strip_suffix('/').unwrap_or(&self.0)
    }

    pub fn is_dir(&self) -> bool {
        self.0.ends_with('/')
    }

    /// `.env` and the uploads of WordPress in `public_folder`.
    pub fn defaults(public_folder: &str) -> Vec<SharedPath> {
        [".env".to_owned(), format!("{public_folder}/wp-content/uploads/")]
            .into_iter()
            .filter_map(|p| SharedPath::try_from(p).ok())
            .collect()
    }
}

/// How many releases are kept: 1..=[`MAX_KEEP`].
pub fn keep_param(params: &Params, key: &str) -> Result<u8, FieldError> {
    match params.opt_u64(key)? {
        None => Ok(DEFAULT_KEEP),
        Some(n) if (1..=MAX_KEEP).contains(&n) => Ok(u8::try_from(n).expect("bounded")),
        Some(n) => Err(FieldError::new(params.field(key), format!("must be between 1 and {MAX_KEEP}, not {n}"))),
    }
}

/// A release's id: its UTC time to the millisecond, `YYYYMMDDHHMMSSmmm` (17
/// digits), so names sort by age.
pub fn is_release_id(name: &str) -> bool {
    name.len() == 17 && name.bytes().all(|b| b.is_ascii_digit())
}

/// An app's git deploys, as the inventory keeps them (`app.git`, `app.deploy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitDeploy {
    pub repo: RepoUrl,
    pub branch: Branch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_script: Option<DeployScript>,
    #[serde(deserialize_with = "keep")]
    pub keep: u8,
    /// Pinned host keys; `None`: pinned on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_keys: Option<HostKeys>,
    pub shared: Vec<SharedPath>,
    /// The release serving now, once a deploy succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Release>,
}

/// A release that served: its id and commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    #[serde(deserialize_with = "release_id")]
    pub id: String,
    #[serde(deserialize_with = "commit")]
    pub commit: String,
}

fn keep<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let keep = u64::deserialize(d)?;
    match u8::try_from(keep) {
        Ok(n) if (1..=MAX_KEEP).contains(&keep) => Ok(n),
        _ => Err(serde::de::Error::custom(format!("keep: must be between 1 and {MAX_KEEP}, not {keep}"))),
    }
}

fn release_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = String::deserialize(d)?;
    if is_release_id(&id) {
        Ok(id)
    } else {
        Err(serde::de::Error::custom(format!("not a release id: {}", shown(&id))))
    }
}

/// A commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_commit(v: &str) -> bool {
    (v.len() == 40 || v.len() == 64) && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn commit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let sha = String::deserialize(d)?;
    if is_commit(&sha) {
        Ok(sha)
    } else {
        Err(serde::de::Error::custom(format!("not a commit id: {}", shown(&sha))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_the_three_forms_pass_and_tricks_do_not() {
        for good in [
            "ssh://git@github.com/acme/site.git",
            "ssh://deploy@10.0.0.5:2222/srv/git/site.git",
            "ssh://git@[::1]:22/site.git",
            "git@github.com:acme/site.git",
            "git@gitlab.example.com:group/sub/site",
            "file:///srv/users/derek/repo.git",
        ] {
            assert!(RepoUrl::parse("repo", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ext::sh -c touch% /tmp/pwned",
            "ext::ssh -oProxyCommand=touch /tmp/x",
            "-oProxyCommand=touch /tmp/x",
            "--upload-pack=touch /tmp/x",
            "ssh://-oProxyCommand=x@host/repo",
            "ssh://git@-oProxyCommand=x/repo",
            "git@-oProxyCommand=x:repo",
            "-git@host:repo",
            "git@host:--upload-pack=touch",
            "git@host:-repo",
            "git@host:a/-b",
            "git@host:repo with space",
            "git@host:repo\nother",
            "git@host:repo\0",
            "git@host:../../etc",
            "file://relative/path",
            "file:///srv/../etc",
            "file:///srv/repo;id",
            "file:///srv/$(id)",
            "http://example.com/repo.git",
            "https://example.com/repo.git",
            "ssh://git@host",
            "ssh://git@host:0/repo",
            "ssh://git@host:99999/repo",
            "ssh://git@host:22x/repo",
            "host:repo",
            "/srv/repo.git",
            "./repo",
            "ssh://git@ho_st/repo",
            "git@host:`id`",
            "fd::17",
        ] {
            let err = RepoUrl::parse("repo", bad).expect_err(bad);
            assert_eq!(err.field, "repo");
            assert!(!err.message.contains('\n'), "{err:?}");
        }
        assert!(RepoUrl::parse("repo", &format!("git@host:{}", "a".repeat(1024))).is_err());
    }

    #[test]
    fn branches_follow_gits_rules() {
        for good in ["main", "release/2.0", "feature/x-y_z", "v1.2.3"] {
            assert!(Branch::parse("branch", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-main",
            "--upload-pack=x",
            "a..b",
            "a b",
            "a\tb",
            "a\nb",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "@",
            "a@{1}",
            "a.",
            "a.lock",
            "a/.b",
            "/a",
            "a/",
            "a//b",
            "é",
            ".hidden",
            "x/y.lock/z",
        ] {
            assert_eq!(Branch::parse("branch", bad).expect_err(bad).field, "branch");
        }
        assert!(Branch::parse("branch", &"a".repeat(256)).is_err());
    }

    #[test]
    fn scripts_are_bounded_and_host_keys_are_known_hosts_lines() {
        assert!(DeployScript::parse("deploy_script", "composer install\nphp artisan migrate\n").is_ok());
        assert!(DeployScript::parse("deploy_script", "a\0b").is_err());
        assert!(DeployScript::parse("deploy_script", &"x".repeat(MAX_SCRIPT + 1)).is_err());
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        for good in [
            format!("github.com ssh-ed25519 {key}"),
            format!("# pinned\n[git.example.com]:2222,10.0.0.1 ssh-ed25519 {key} comment\n"),
            format!("|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 {key}"),
        ] {
            assert!(HostKeys::parse("host_keys", &good).is_ok(), "{good}");
        }
        for bad in [
            String::new(),
            "# only a comment".to_owned(),
            format!("@cert-authority *.example.com ssh-ed25519 {key}"),
            format!("@revoked host ssh-ed25519 {key}"),
            format!("host ssh-ed25519 {key}\u{1b}[2J"),
            format!("host\u{0} ssh-ed25519 {key}"),
            format!("host;id ssh-ed25519 {key}"),
            format!("* ssh-ed25519 {key}"),
            format!("host ssh-dss {key}"),
            "host ssh-ed25519 not!base64".to_owned(),
            "host ssh-ed25519".to_owned(),
            format!("[host]:0 ssh-ed25519 {key}"),
            format!("host ssh-ed25519 {key}\n").repeat(101),
        ] {
            assert_eq!(HostKeys::parse("host_keys", &bad).expect_err(&bad).field, "host_keys");
        }
    }

    #[test]
    fn shared_paths_stay_inside_the_release() {
        for good in [".env", "public/wp-content/uploads/", "storage/", "a-b_c.d"] {
            assert!(SharedPath::parse("shared[0]", good).is_ok(), "{good}");
        }
        for bad in ["", "/", "/etc", "../x", "a/../../x", "a/./b", "a//b", "-rf", "a/-b", "a b", "a\nb", "é", "~/x"] {
            assert_eq!(SharedPath::parse("shared[0]", bad).expect_err(bad).field, "shared[0]");
        }
        let defaults = SharedPath::defaults("public");
        assert_eq!(defaults.iter().map(|p| p.as_str()).collect::<Vec<_>>(), [".env", "public/wp-content/uploads/"]);
        assert!(defaults[1].is_dir() && defaults[1].path() == "public/wp-content/uploads");
    }

    #[test]
    fn a_hand_edited_inventory_value_is_checked_on_load() {
        let good = r#"{"repo": "git@host:r.git", "branch": "main", "keep": 5, "shared": [".env"],
            "current": {"id": "20261202100512345", "commit": "0123456789abcdef0123456789abcdef01234567"}}"#;
        assert!(serde_json::from_str::<GitDeploy>(good).is_ok());
        for bad in [
            good.replace("git@host:r.git", "ext::sh"),
            good.replace("\"main\"", "\"-x\""),
            good.replace("20261202100512345", "../../etc"),
            good.replace("0123456789abcdef0123456789abcdef01234567", "HEAD"),
            good.replace("\".env\"", "\"../x\""),
            good.replace("\"keep\": 5", "\"keep\": 0"),
            good.replace("\"keep\": 5", "\"keep\": 300"),
        ] {
            assert!(serde_json::from_str::<GitDeploy>(&bad).is_err(), "{bad}");
        }
    }
}

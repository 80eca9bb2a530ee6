//! The values of `app.backup` and `app.restore`, each a checked type: where the
//! repository is, how long snapshots are kept, what is left out, which snapshot.
//!
//! A local repository's path is opened and made by root, so it is checked here
//! once: absolute, plain components (no `.`, `..`, `//`), a conservative alphabet,
//! and never under `/srv/users` (a user's home: the user could swap it for a link)
//! nor in the kernel's or the runtime's trees. An S3 endpoint, bucket and prefix
//! end up in restic's repository string, so they are checked as host names and
//! plain names; the keys and the password are [`Secret`]s and never leave the job
//! but through a pipe. Exclude patterns reach `tar --exclude` (run as the site's
//! user): relative, no `..`, no leading `-`, a small alphabet.

use crate::model::validate::{FieldError, Params};
use crate::model::Secret;

/// At most this many exclude patterns.
pub const MAX_EXCLUDES: usize = 100;
/// Longest exclude pattern and repository path, in bytes.
pub const MAX_PATTERN_LEN: usize = 255;
/// Largest `keep_*` count.
pub const MAX_KEEP: u64 = 1000;
/// The `retention` keys, as `restic forget` takes them (`--keep-last` ...).
pub const KEEP_KEYS: [&str; 6] =
    ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"];

/// Trees a local repository may not be in (nor be one of their parents).
const FORBIDDEN: [&str; 6] = ["/srv/users", "/proc", "/sys", "/dev", "/run", "/boot"];

/// Where the snapshots go, and the repository's password.
#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    pub location: Location,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// A root-owned local directory (absolute, checked).
    Path(String),
    S3(S3),
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3 {
    /// `https://host[:port]` or `http://host[:port]` (a local test server).
    pub endpoint: String,
    pub bucket: String,
    pub prefix: Option<String>,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
}

impl Repository {
    /// `{"path": ...}` or `{"s3": {...}}` under `key`, and the `password` beside it.
    pub fn param(params: &Params, key: &str) -> Result<Repository, FieldError> {
        let repo = params.object(key)?;
        let location = match (repo.opt_str("path")?, repo.opt_object("s3")?) {
            (Some(path), None) => Location::Path(local_path(&repo.field("path"), path)?),
            (None, Some(s3)) => Location::S3(S3::parse(&s3)?),
            (Some(_), Some(_)) => {
                return Err(FieldError::new(params.field(key), "must name either path or s3, not both"))
            }
            (None, None) => return Err(FieldError::new(params.field(key), "must name a path or an s3 bucket")),
        };
        let password = repo.checked("password", crate::model::validate::password)?;
        Ok(Repository { location, password: Secret::new(password) })
    }
}

impl S3 {
    fn parse(s3: &Params) -> Result<S3, FieldError> {
        let endpoint = s3.str("endpoint")?;
        let field = s3.field("endpoint");
        let host = endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://"));
        let Some(host) = host else { return Err(FieldError::new(field, "must start with https:// (or http://)")) };
        let (name, port) = host.split_once(':').map_or((host, None), |(n, p)| (n, Some(p)));
        let ip = name.parse::<std::net::Ipv4Addr>().is_ok();
        if name.contains('*') || (!ip && crate::model::validate::server_name(&field, name).is_err()) {
            return Err(FieldError::new(field, "must be https://HOST[:PORT] with a DNS name or IPv4 address"));
        }
        if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0) || p.starts_with('0')) {
            return Err(FieldError::new(field, "has a port that is not 1-65535"));
        }
        let bucket = s3.str("bucket")?;
        let bucket_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !(3..=63).contains(&bucket.len())
            || !bucket.chars().all(bucket_ok)
            || !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(FieldError::new(s3.field("bucket"), "must be an S3 bucket name: 3-63 of [a-z0-9.-]"));
        }
        let prefix = s3.opt_str("prefix")?.map(|p| relative(&s3.field("prefix"), p, false)).transpose()?;
        let key = |name: &str| -> Result<Secret, FieldError> {
            let value = s3.str(name)?;
            if value.is_empty() || value.len() > 128 || !value.chars().all(|c| c.is_ascii_graphic()) {
                return Err(FieldError::new(s3.field(name), "must be 1-128 printable ASCII characters"));
            }
            Ok(Secret::new(value))
        };
        let (access_key_id, secret_access_key) = (key("access_key_id")?, key("secret_access_key")?);
        Ok(S3 { endpoint: endpoint.to_owned(), bucket: bucket.to_owned(), prefix, access_key_id, secret_access_key })
    }
}

/// An absolute local path for a repository: see the module's header.
fn local_path(field: &str, path: &str) -> Result<String, FieldError> {
    let fail = |message: &str| Err(FieldError::new(field, message));
    let Some(rest) = path.strip_prefix('/') else { return fail("must be an absolute path") };
    relative(field, rest, false)?;
    let under = |dir: &str| path == dir || path.starts_with(&format!("{dir}/")) || dir.starts_with(&format!("{path}/"));
    if path.split('/').count() < 3 {
        return fail("must be at least two directories deep (e.g. /var/backups/berth)");
    }
    if let Some(dir) = FORBIDDEN.iter().find(|dir| under(dir)) {
        return Err(FieldError::new(field, format!("must not be in or above {dir}")));
    }
    Ok(path.to_owned())
}

/// A relative path of plain components: `[A-Za-z0-9._-]` (and `*`, `?`, `[`, `]`
/// when `glob`), no empty, `.` or `..` component, no leading `-`.
fn relative(field: &str, value: &str, glob: bool) -> Result<String, FieldError> {
    let fail = |message: &str| Err(FieldError::new(field, message));
    if value.is_empty() || value.len() > MAX_PATTERN_LEN {
        return fail("must be 1-255 characters long");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c) || (glob && "*?[]".contains(c));
    if !value.chars().all(|c| ok(c) || c == '/') {
        return fail(if glob {
            "may only contain letters, digits, '.', '_', '-', '/', '*', '?', '[', ']'"
        } else {
            "may only contain letters, digits, '.', '_', '-' and '/'"
        });
    }
    if value.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return fail("must be relative, without empty, '.' or '..' components");
    }
    if value.split('/').any(|part| part.starts_with('-')) {
        return fail("must not have a component starting with '-'");
    }
    Ok(value.to_owned())
}

/// An exclude pattern, relative to the app's directory (`public/wp-content/cache`,
/// `*.log`), as `tar --exclude` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclude(String);

impl Exclude {
    /// The optional array `key`; element errors name `key[i]`.
    pub fn opt_params(params: &Params, key: &str) -> Result<Vec<Exclude>, FieldError> {
        let Some(values) = params.opt_str_array(key)? else { return Ok(Vec::new()) };
        if values.len() > MAX_EXCLUDES {
            return Err(FieldError::new(params.field(key), format!("must hold at most {MAX_EXCLUDES} patterns")));
        }
        let field = params.field(key);
        values.iter().enumerate().map(|(i, v)| relative(&format!("{field}[{i}]"), v, true).map(Exclude)).collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many snapshots of the app `restic forget` keeps: each count 1..=[`MAX_KEEP`],
/// at least one given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retention(pub Vec<(&'static str, u64)>);

impl Retention {
    pub fn param(params: &Params, key: &str) -> Result<Retention, FieldError> {
        let object = params.object(key)?;
        let mut kept = Vec::new();
        for name in KEEP_KEYS {
            if let Some(n) = object.opt_u64(name)? {
                if !(1..=MAX_KEEP).contains(&n) {
                    return Err(FieldError::new(object.field(name), format!("must be between 1 and {MAX_KEEP}")));
                }
                kept.push((name, n));
            }
        }
        if kept.is_empty() {
            return Err(FieldError::new(
                params.field(key),
                format!("must give at least one of {}", KEEP_KEYS.join(", ")),
            ));
        }
        Ok(Retention(kept))
    }

    /// `--keep-last 7 --keep-daily 30 ...`
    pub fn args(&self) -> Vec<String> {
        self.0.iter().flat_map(|(name, n)| [format!("--{}", name.replace('_', "-")), n.to_string()]).collect()
    }
}

/// A snapshot id as restic prints it: 8 (short) to 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId(String);

impl SnapshotId {
    pub fn parse(field: &str, value: &str) -> Result<SnapshotId, FieldError> {
        let hex = value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !(8..=64).contains(&value.len()) || !hex {
            return Err(FieldError::new(field, "must be a snapshot id: 8-64 lowercase hex digits"));
        }
        Ok(SnapshotId(value.to_owned()))
    }

    pub fn param(params: &Params, key: &str) -> Result<SnapshotId, FieldError> {
        SnapshotId::parse(&params.field(key), params.str(key)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo(value: serde_json::Value) -> Result<Repository, FieldError> {
        let params = json!({ "repository": value });
        Repository::param(&Params::new(&params).unwrap(), "repository")
    }

    #[test]
    fn a_local_repository_is_an_absolute_plain_path_outside_homes_and_system_trees() {
        for ok in ["/var/backups/berth", "/mnt/backup/restic", "/srv/backups"] {
            let r = repo(json!({"path": ok, "password": "a-long-password"})).unwrap();
            assert_eq!(r.location, Location::Path(ok.into()));
        }
        for bad in [
            "relative/path",
            "/var/../etc",
            "/var//x",
            "/var/./x",
            "/",
            "/var",
            "/srv/users/derek/bk",
            "/srv/users",
            "/srv",
            "/proc/self",
            "/dev/shm/x",
            "/run/x",
            "/var/a b",
            "/var/x\n",
            "/var/-x/",
            "/var/x/",
        ] {
            let err = repo(json!({"path": bad, "password": "a-long-password"})).unwrap_err();
            assert_eq!(err.field, "repository.path", "{bad:?}");
        }
        assert_eq!(repo(json!({"path": "/var/b/x"})).unwrap_err().field, "repository.password");
    }

    #[test]
    fn retention_takes_known_counts_in_range() {
        let params = json!({"retention": {"keep_last": 3, "keep_daily": 7}});
        let r = Retention::param(&Params::new(&params).unwrap(), "retention").unwrap();
        assert_eq!(r.args(), ["--keep-last", "3", "--keep-daily", "7"]);
    }
}

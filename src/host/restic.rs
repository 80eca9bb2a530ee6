//! restic (Debian's `restic`), the backup tool of `app.backup` and `app.restore`:
//! its command lines, and what berth reads of its answers.
//!
//! restic runs as root and touches no user's file: it reads a stream on its stdin
//! (`backup --stdin`) and writes one to its stdout (`dump`), and the repository is
//! root's (a 0700 directory, or an S3 bucket). Its password reaches it on
//! descriptor 3 (`--password-file /dev/fd/3`), S3 keys on descriptor 4
//! (`AWS_SHARED_CREDENTIALS_FILE=/dev/fd/4`, an AWS credentials file restic's S3
//! client reads once): neither is in argv, the environment or a file
//! ([`super::pipeline`]).
//!
//! Every snapshot carries the tags `berth`, `app:APP` and `set:SET` (the backup job
//! it belongs to: files and each database are snapshots of their own, one per
//! stream). `forget` is always scoped with `--tag app:APP`, so another app's
//! snapshots in the same repository are never pruned.
//!
//! App names are reused: a deleted app's snapshots stay in the repository, and a
//! later app of the same name (another user's, maybe) must neither list, restore
//! nor prune them. So every snapshot also carries `owner:SYSUSER.CREATED_MS` (the
//! app's system user and creation time, [`Scope`]), and every listing and
//! `forget` asks for both tags (`--tag app:APP,owner:...`, restic's AND).

use std::path::Path;

use serde::Deserialize;

use crate::host::pipeline::{self, Spec, Streamed};
use crate::host::{Cmd, HostError};
use crate::model::backup::{Location, Repository, Retention};

/// Which app's snapshots: its name and its incarnation (owner and creation time).
#[derive(Debug, Clone)]
pub struct Scope {
    pub app: String,
    pub owner: String,
}

impl Scope {
    pub fn new(app: &str, sysuser: &str, created_ms: u64) -> Scope {
        Scope { app: app.to_owned(), owner: format!("{sysuser}.{created_ms}") }
    }

    fn tags(&self) -> [String; 2] {
        [format!("app:{}", self.app), format!("owner:{}", self.owner)]
    }

    /// restic's filter for snapshots with both tags.
    fn filter(&self) -> String {
        self.tags().join(",")
    }
}

pub const RESTIC: &str = "/usr/bin/restic";
/// restic's cache, root's (restic makes it 0700).
pub const CACHE_DIR: &str = "/var/cache/berth/restic";
/// restic's temporary pack files (`TMPDIR`), root's 0700: a few packs of up to
/// 16 MiB at a time, whatever the size of the stream.
pub const TMP_DIR: &str = "/var/cache/berth/restic-tmp";
/// How often a command is tried while another holds the repository's lock.
const LOCK_TRIES: u32 = 40;
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// One snapshot, as `restic snapshots --json` prints it (what berth reads of it).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub short_id: String,
    pub time: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Snapshot {
    /// The value of tag `key:VALUE`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix(key)?.strip_prefix(':'))
    }

    /// The stream's name: `files.tar`, `db-NAME.sql`.
    pub fn file(&self) -> Option<&str> {
        self.paths.first().map(|p| p.trim_start_matches('/'))
    }
}

/// restic for one repository.
pub struct Restic {
    repository: String,
    password: Vec<u8>,
    s3_credentials: Option<Vec<u8>>,
    cache_dir: String,
    tmp_dir: String,
}

impl Restic {
    /// `local` is where a local repository is on this host (under berth's root).
    pub fn new(repository: &Repository, local: Option<&Path>, cache_dir: &Path, tmp_dir: &Path) -> Restic {
        let (repo, s3_credentials) = match &repository.location {
            Location::Path(path) => (local.map_or_else(|| path.clone(), |p| p.display().to_string()), None),
            Location::S3(s3) => {
                let prefix = s3.prefix.as_deref().map(|p| format!("/{p}")).unwrap_or_default();
                let credentials = format!(
                    "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                    s3.access_key_id.expose(),
                    s3.secret_access_key.expose()
                );
                (format!("s3:{}/{}{prefix}", s3.endpoint, s3.bucket), Some(credentials.into_bytes()))
            }
        };
        Restic {
            repository: repo,
            password: repository.password.expose().as_bytes().to_vec(),
            s3_credentials,
            cache_dir: cache_dir.display().to_string(),
            tmp_dir: tmp_dir.display().to_string(),
        }
    }

    /// `restic -r REPO --password-file /dev/fd/3 --cache-dir DIR ARGS…`.
    pub fn spec<I: IntoIterator<Item = S>, S: Into<String>>(&self, args: I) -> Spec {
        let mut cmd = Cmd::new(RESTIC)
            .args(["-r", &self.repository, "--password-file", "/dev/fd/3", "--cache-dir", &self.cache_dir])
            .args(args)
            .env("TMPDIR", &self.tmp_dir);
        let mut spec = Spec::new(Cmd::new("")).secret_fd(3, &self.password);
        if let Some(credentials) = &self.s3_credentials {
            cmd = cmd.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/fd/4").env("AWS_PROFILE", "default");
            spec = spec.secret_fd(4, credentials);
        }
        spec.cmd = cmd;
        spec
    }

    /// Whether the repository is there: `restic cat config` answers.
    pub fn exists(&self) -> Result<bool, HostError> {
        match pipeline::run(&self.spec(["cat", "config"])) {
            Ok(_) => Ok(true),
            Err(HostError::Failed { stderr, .. })
                if stderr.contains("Is there a repository") || stderr.contains("unable to open config") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub fn init(&self) -> Result<(), HostError> {
        pipeline::run(&self.spec(["init"])).map(drop)
    }

    /// `attempt`, again while the repository is locked by another job's restic
    /// (a prune holds it exclusively): up to [`LOCK_TRIES`] times, [`LOCK_WAIT`] apart.
    fn retrying<T>(attempt: impl Fn() -> Result<T, HostError>) -> Result<T, HostError> {
        let mut tries = 1;
        loop {
            match attempt() {
                Err(HostError::Failed { stderr, .. }) if stderr.contains("already locked") && tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(LOCK_WAIT);
                }
                other => return other,
            }
        }
    }

    /// `producer | restic backup --stdin --stdin-filename FILE` with the app's tags;
    /// the new snapshot's id.
    pub fn backup(
        &self,
        producer: &Spec,
        file: &str,
        scope: &Scope,
        set: &str,
    ) -> Result<(String, Streamed), HostError> {
        let [app, owner] = scope.tags();
        let tags = ["berth".to_owned(), app, owner, format!("set:{set}")];
        let mut args =
            vec!["backup".to_owned(), "--json".into(), "--stdin".into(), "--stdin-filename".into(), file.into()];
        args.extend(tags.iter().flat_map(|t| ["--tag".to_owned(), t.clone()]));
        let consumer = self.spec(args);
        // Nothing is committed by a stream that failed: it can start over.
        let streamed = Restic::retrying(|| pipeline::stream(producer, &consumer))?;
        let id = String::from_utf8_lossy(&streamed.consumer_stdout).lines().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["message_type"] == "summary").then(|| v["snapshot_id"].as_str().map(str::to_owned))?
        });
        let id = id.ok_or_else(|| HostError::Failed {
            command: consumer.cmd.to_string(),
            status: "no snapshot id".into(),
            stderr: "restic printed no summary".into(),
        })?;
        Ok((id, streamed))
    }

    /// The snapshots of the app `scope`, oldest first.
    pub fn snapshots(&self, scope: &Scope) -> Result<Vec<Snapshot>, HostError> {
        let spec = self.spec(["snapshots", "--json", "--tag", &scope.filter()]);
        let out = Restic::retrying(|| pipeline::run(&spec))?;
        serde_json::from_slice(&out).map_err(|e| HostError::Failed {
            command: spec.cmd.to_string(),
            status: "unreadable answer".into(),
            stderr: e.to_string(),
        })
    }

    /// `restic forget --prune` of `app`'s snapshots by `retention`, per stream
    /// (`--group-by host,paths`); another app's are outside `--tag app:APP`.
    pub fn forget(&self, scope: &Scope, retention: &Retention) -> Result<(), HostError> {
        let mut args = vec!["forget".to_owned(), "--prune".into(), "--tag".into(), scope.filter()];
        args.extend(["--group-by".to_owned(), "host,paths".into()]);
        args.extend(retention.args());
        let spec = self.spec(args);
        Restic::retrying(|| pipeline::run(&spec)).map(drop)
    }

    /// Forgets the snapshots `ids` (of a backup that failed halfway).
    pub fn forget_ids(&self, ids: &[String]) -> Result<(), HostError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["forget".to_owned()];
        args.extend(ids.iter().cloned());
        let spec = self.spec(args);
        Restic::retrying(|| pipeline::run(&spec)).map(drop)
    }

    /// `restic dump ID /FILE | consumer`.
    pub fn dump(&self, id: &str, file: &str, consumer: &Spec) -> Result<Streamed, HostError> {
        let producer = self.spec(["dump", id, &format!("/{file}")]);
        Restic::retrying(|| pipeline::stream(&producer, consumer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::backup::S3;
    use crate::model::Secret;

    #[test]
    fn secrets_go_on_descriptors_never_in_argv_or_environment() {
        let repository = Repository {
            location: Location::S3(S3 {
                endpoint: "https://s3.example.com".into(),
                bucket: "bk".into(),
                prefix: Some("srv1".into()),
                access_key_id: Secret::new("AKIDEXAMPLE"),
                secret_access_key: Secret::new("wJalrXUtnFEMI"),
            }),
            password: Secret::new("repo-password"),
        };
        let spec = Restic::new(&repository, None, Path::new(CACHE_DIR), Path::new(TMP_DIR)).spec(["snapshots"]);
        let shown = format!("{} {:?}", spec.cmd, spec.cmd.env);
        assert!(shown.contains("-r s3:https://s3.example.com/bk/srv1 --password-file /dev/fd/3"), "{shown}");
        for secret in ["AKIDEXAMPLE", "wJalrXUtnFEMI", "repo-password"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let fds: Vec<i32> = spec.secret_fds.iter().map(|(fd, _)| *fd).collect();
        assert_eq!(fds, [3, 4]);
        assert!(String::from_utf8_lossy(&spec.secret_fds[1].1).contains("aws_secret_access_key = wJalrXUtnFEMI"));
    }
}

//! Backups: `app.backup {app, repository, files, database, exclude?, retention}`
//! and `app.restore {app, repository, snapshot, files?, database?}`, with restic.
//!
//! A backup is a *set* of snapshots, one per stream (the files' tar, each database's
//! dump), tagged `app:APP` and `set:SET`; the job answers the set's first snapshot
//! id (`snapshot`), which is what a restore names. A stream that fails makes the
//! job forget the set's snapshots made so far: no half backup is ever listed (and a
//! failed stream never commits one, [`crate::host::pipeline`]). Retention is
//! applied per stream and per app (`restic forget --tag app:APP --prune`).
//!
//! A restore extracts the files into a fresh directory as the user, loads the
//! databases, and only then swaps the files in ([`crate::web::backup`]): a failure
//! before the swap leaves the app's files as they were. A database's load is not
//! undone when a later step fails (see docs/protocol.md).

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::host::fs::under_root;
use crate::host::restic::{Restic, Scope, Snapshot, CACHE_DIR, TMP_DIR};
use crate::host::services::{Service, Services};
use crate::host::transaction::reload_live;
use crate::host::tree::Dir;
use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::backup::{Exclude, Location, Repository, Retention, SnapshotId};
use crate::model::resource::Resource;
use crate::model::validate::{shown, FieldError, Params};
use crate::model::AppName;
use crate::state::inventory::App;
use crate::web::backup::{self as side, FILES};
use crate::web::{accounts, sitedirs};

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.backup", Backup::parse);
    catalogue.register("app.restore", Restore::parse);
}

#[derive(Debug)]
struct Backup {
    app: AppName,
    repository: Repository,
    files: bool,
    database: bool,
    exclude: Vec<Exclude>,
    retention: Retention,
}

#[derive(Debug)]
struct Restore {
    app: AppName,
    repository: Repository,
    snapshot: SnapshotId,
    files: bool,
    database: bool,
}

impl Backup {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let repository = Repository::param(&params, "repository")?;
        let files = params.bool("files")?;
        let database = params.bool("database")?;
        if !files && !database {
            return Err(FieldError::new("files", "files and database are both false: nothing to back up").into());
        }
        let exclude = Exclude::opt_params(&params, "exclude")?;
        let retention = Retention::param(&params, "retention")?;
        Ok(Box::new(Backup { app, repository, files, database, exclude, retention }))
    }
}

impl Restore {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let repository = Repository::param(&params, "repository")?;
        let snapshot = SnapshotId::param(&params, "snapshot")?;
        let files = params.opt_bool("files")?.unwrap_or(true);
        let database = params.opt_bool("database")?.unwrap_or(true);
        if !files && !database {
            return Err(FieldError::new("files", "files and database are both false: nothing to restore").into());
        }
        Ok(Box::new(Restore { app, repository, snapshot, files, database }))
    }
}

/// The app, its owner's ids and its databases (sorted), as the inventory has them.
fn load(ctx: &JobContext, name: &str) -> Result<(App, sitedirs::Owner, Vec<String>), JobError> {
    let (app, databases) = ctx.inventory.read(|inv| {
        let dbs = inv.databases.iter().filter(|(_, db)| db.app.as_str() == name).map(|(n, _)| n.to_string());
        (inv.apps.get(name).cloned(), dbs.collect::<Vec<_>>())
    });
    let app = app.ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(name))))?;
    let account = accounts::account(ctx.root(), &app.sysuser)?;
    Ok((app, sitedirs::Owner { uid: account.uid, gid: account.gid }, databases))
}

/// restic for the job's repository; a local one is made (root's, 0700) and
/// initialised when `create`, and must exist otherwise.
fn open(ctx: &JobContext, repository: &Repository, create: bool) -> Result<(Restic, bool), JobError> {
    let root = ctx.root();
    let local = match &repository.location {
        Location::Path(path) => Some(under_root(root, path)),
        Location::S3(_) => None,
    };
    let tmp = under_root(root, TMP_DIR);
    Dir::ensure_trusted(&tmp, 0o700, 0, 0)?;
    let restic = Restic::new(repository, local.as_deref(), &under_root(root, CACHE_DIR), &tmp);
    let mut made = false;
    if let Some(local) = &local {
        if !create && !local.join("config").is_file() {
            return Err(JobError::NotFound(format!("no restic repository at {}", local.display())));
        }
        if create && side::ensure_local_repository(local)? {
            restic.init()?;
            made = true;
        }
    } else if !restic.exists()? {
        if !create {
            return Err(JobError::NotFound("no restic repository at the S3 location".into()));
        }
        restic.init()?;
        made = true;
    }
    Ok((restic, made))
}

/// The app's backups, oldest first: one entry per set, its first snapshot's id.
fn listed(snapshots: &[Snapshot]) -> Vec<Value> {
    let mut sets: Vec<(String, Value)> = Vec::new();
    for s in snapshots {
        let set = s.tag("set").unwrap_or(&s.id).to_owned();
        let part = s.file().unwrap_or_default().to_owned();
        match sets.iter_mut().find(|(id, _)| *id == set) {
            Some((_, entry)) => entry["parts"].as_array_mut().expect("an array").push(json!(part)),
            None => sets.push((set, json!({"snapshot": s.short_id, "id": s.id, "time": s.time, "parts": [part]}))),
        }
    }
    sets.into_iter().map(|(_, entry)| entry).collect()
}

impl BlockingJob for Backup {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let (app, owner, databases) = load(ctx, &self.app)?;
        let (restic, made) = open(ctx, &self.repository, true)?;
        let scope = Scope::new(&self.app, &app.sysuser, app.created_ms);
        let mut outcome = Outcome::default();
        outcome.step("repository", made);
        let set = format!("{}", crate::time::unix_millis(SystemTime::now()));
        let mut made_ids: Vec<String> = Vec::new();
        let mut db_ids = serde_json::Map::new();
        let mut files_id = Value::Null;
        let done = (|| -> Result<(), JobError> {
            if self.files {
                let producer = side::files_producer(root, owner, &app.sysuser, &self.app, &self.exclude)?;
                let (id, streamed) = restic.backup(&producer, FILES, &scope, &set)?;
                ctx.output(format!("files: {} bytes of tar, snapshot {id}\n", streamed.bytes));
                made_ids.push(id.clone());
                files_id = json!(id);
            }
            if self.database {
                for db in &databases {
                    let producer = side::dump_producer(&ctx.mysql, db);
                    let (id, streamed) = restic.backup(&producer, &side::db_file(db), &scope, &set)?;
                    ctx.output(format!("database {db}: {} bytes of dump, snapshot {id}\n", streamed.bytes));
                    made_ids.push(id.clone());
                    db_ids.insert(db.clone(), json!(id));
                }
            }
            Ok(())
        })();
        if let Err(e) = done {
            if let Err(forget) = restic.forget_ids(&made_ids) {
                tracing::warn!(app = %self.app, "a failed backup's snapshots stay: {forget}");
            }
            return Err(e);
        }
        outcome.step("snapshot", true);
        restic.forget(&scope, &self.retention)?;
        let snapshots = restic.snapshots(&scope)?;
        let first = made_ids.first().cloned().unwrap_or_default();
        outcome.result = Some(json!({
            "snapshot": first,
            "snapshots": {"files": files_id, "databases": db_ids},
            "backups": listed(&snapshots),
        }));
        Ok(outcome)
    }
}

impl BlockingJob for Restore {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let (app, owner, databases) = load(ctx, &self.app)?;
        let (restic, _) = open(ctx, &self.repository, false)?;
        // This incarnation's only: an earlier app of the same name is not this one.
        let snapshots = restic.snapshots(&Scope::new(&self.app, &app.sysuser, app.created_ms))?;
        let named = snapshots.iter().find(|s| s.id.starts_with(self.snapshot.as_str())).ok_or_else(|| {
            JobError::NotFound(format!("app {} has no snapshot {}", self.app, self.snapshot.as_str()))
        })?;
        let set = named.tag("set").map(str::to_owned);
        let parts: Vec<&Snapshot> = match &set {
            Some(set) => snapshots.iter().filter(|s| s.tag("set") == Some(set)).collect(),
            None => vec![named],
        };
        let files = parts.iter().find(|s| s.file() == Some(FILES)).filter(|_| self.files);
        let mut loads = Vec::new();
        if self.database {
            for s in &parts {
                let Some(db) = s.file().and_then(|f| f.strip_prefix("db-")?.strip_suffix(".sql")) else { continue };
                if !databases.iter().any(|d| d == db) {
                    return Err(JobError::Conflict(format!(
                        "snapshot {} holds database {}, which is not app {}'s; create it with db.create first",
                        s.short_id,
                        shown(db),
                        self.app
                    )));
                }
                loads.push((db.to_owned(), s.id.clone()));
            }
        }
        if files.is_none() && loads.is_empty() {
            return Err(JobError::NotFound(format!("snapshot {} holds nothing to restore", self.snapshot.as_str())));
        }
        let mut outcome = Outcome::default();
        // Files out first, beside the app; nothing of the app changes yet.
        let fresh = match files {
            Some(s) => {
                let (apps, name, path) = side::fresh_dir(root, owner, &app.sysuser, &self.app)?;
                if let Err(e) = restic.dump(&s.id, FILES, &side::files_consumer(owner, &path)) {
                    side::discard(&apps, &name);
                    return Err(e.into());
                }
                Some((apps, name))
            }
            None => None,
        };
        for (db, id) in &loads {
            if let Err(e) = restic.dump(id, &side::db_file(db), &side::db_consumer(&ctx.mysql, db)) {
                if let Some((apps, name)) = &fresh {
                    side::discard(apps, name);
                }
                return Err(e.into());
            }
            outcome.step(format!("database {db}"), true);
        }
        if let Some((apps, name)) = &fresh {
            side::swap_in(apps, name, &self.app)?;
            outcome.step("files", true);
            let folder = crate::model::site::public_folder_or_default(app.public_folder.as_ref());
            sitedirs::prepare(root, owner, &app.sysuser, &self.app, folder)?;
            // Live at once: PHP's opcache would serve the replaced files' code for
            // up to its revalidate_freq (2 s), so the app's PHP-FPM reloads.
            let service = Service::PhpFpm(app.runtime.trim_start_matches("php").to_owned());
            reload_live(ctx.host.as_ref(), &Services::detect(root), &service)?;
            outcome.step(format!("reload {service}"), true);
        }
        outcome.result = Some(json!({
            "snapshot": named.short_id,
            "files": fresh.is_some(),
            "databases": loads.iter().map(|(db, _)| db.clone()).collect::<Vec<_>>(),
        }));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::refused;

    fn with(base: &Value, key: &str, value: Value) -> Value {
        let mut params = base.clone();
        if value.is_null() {
            params.as_object_mut().unwrap().remove(key);
        } else {
            params[key] = value;
        }
        params
    }

    /// Hostile and broken values of every field are refused at parse time, naming it.
    #[test]
    fn hostile_params_are_refused_naming_the_field() {
        let backup = json!({"app": "blog", "repository": {"path": "/var/backups/berth", "password": "a-long-password"},
                            "files": true, "database": true, "exclude": ["public/wp-content/cache", "*.log"],
                            "retention": {"keep_last": 7}});
        assert!(Catalogue::new(false).parse("app.backup", &backup).is_ok());
        let s3 = |k: &str, v: Value| {
            let mut s3 = json!({"endpoint": "https://s3.example.com", "bucket": "my-backups", "prefix": "srv1/apps",
                                "access_key_id": "AKIA1234", "secret_access_key": "abcdEFGH/1234+x"});
            s3[k] = v;
            json!({"s3": s3, "password": "a-long-password"})
        };
        assert!(Catalogue::new(false)
            .parse("app.backup", &with(&backup, "repository", s3("bucket", json!("ok-bucket"))))
            .is_ok());
        let repo = |path: &str| json!({"path": path, "password": "a-long-password"});
        let cases = [
            ("app", json!(null), "app"),
            ("app", json!("../etc"), "app"),
            ("app", json!("Blog"), "app"),
            ("repository", json!(null), "repository"),
            ("repository", json!("/var/backups"), "repository"),
            ("repository", json!({"password": "a-long-password"}), "repository"),
            ("repository", json!({"path": "/var/b/x", "s3": {}, "password": "a-long-password"}), "repository"),
            ("repository", repo("backups"), "repository.path"),
            ("repository", repo("/srv/users/derek/backups"), "repository.path"),
            ("repository", repo("/srv/users/../../etc"), "repository.path"),
            ("repository", repo("/var/backups/../../etc/ssl"), "repository.path"),
            ("repository", repo("/etc"), "repository.path"),
            ("repository", repo("/proc/1/root/x"), "repository.path"),
            ("repository", repo("/var/b\u{0}x"), "repository.path"),
            ("repository", repo("/var/b x/y"), "repository.path"),
            ("repository", repo("/var/b/-r"), "repository.path"),
            ("repository", repo(&format!("/var/{}", "a".repeat(300))), "repository.path"),
            ("repository", json!({"path": "/var/b/x", "password": "short"}), "repository.password"),
            ("repository", json!({"path": "/var/b/x", "password": "line\nbreak-pass"}), "repository.password"),
            ("repository", json!({"path": "/var/b/x", "password": 12345678}), "repository.password"),
            ("repository", s3("endpoint", json!("s3.example.com")), "repository.s3.endpoint"),
            ("repository", s3("endpoint", json!("ftp://s3.example.com")), "repository.s3.endpoint"),
            ("repository", s3("endpoint", json!("https://evil.test/x?y")), "repository.s3.endpoint"),
            ("repository", s3("endpoint", json!("https://a.test:0")), "repository.s3.endpoint"),
            ("repository", s3("endpoint", json!("https://a.test:99999")), "repository.s3.endpoint"),
            ("repository", s3("endpoint", json!("https://*.a.test")), "repository.s3.endpoint"),
            ("repository", s3("bucket", json!("B")), "repository.s3.bucket"),
            ("repository", s3("bucket", json!("a/b")), "repository.s3.bucket"),
            ("repository", s3("bucket", json!("-bucket")), "repository.s3.bucket"),
            ("repository", s3("prefix", json!("../x")), "repository.s3.prefix"),
            ("repository", s3("prefix", json!("/abs")), "repository.s3.prefix"),
            ("repository", s3("access_key_id", json!("")), "repository.s3.access_key_id"),
            ("repository", s3("access_key_id", json!("a b")), "repository.s3.access_key_id"),
            ("repository", s3("secret_access_key", json!("x\ny")), "repository.s3.secret_access_key"),
            ("repository", s3("secret_access_key", json!(null)), "repository.s3.secret_access_key"),
            ("files", json!(null), "files"),
            ("files", json!("yes"), "files"),
            ("database", json!(1), "database"),
            ("exclude", json!("cache"), "exclude"),
            ("exclude", json!([5]), "exclude[0]"),
            ("exclude", json!(["ok", "../etc"]), "exclude[1]"),
            ("exclude", json!(["/etc/shadow"]), "exclude[0]"),
            ("exclude", json!(["--files-from=/etc/shadow"]), "exclude[0]"),
            ("exclude", json!(["a b"]), "exclude[0]"),
            ("exclude", json!(["a\nb"]), "exclude[0]"),
            ("exclude", json!(["a//b"]), "exclude[0]"),
            ("exclude", json!([""]), "exclude[0]"),
            ("exclude", json!(vec!["x"; 101]), "exclude"),
            ("retention", json!(null), "retention"),
            ("retention", json!({}), "retention"),
            ("retention", json!({"keep_last": 0}), "retention.keep_last"),
            ("retention", json!({"keep_daily": -1}), "retention.keep_daily"),
            ("retention", json!({"keep_weekly": 1.5}), "retention.keep_weekly"),
            ("retention", json!({"keep_monthly": "3"}), "retention.keep_monthly"),
            ("retention", json!({"keep_yearly": 1001}), "retention.keep_yearly"),
            ("retention", json!({"keep_hourly": u64::MAX}), "retention.keep_hourly"),
            ("retention", json!(7), "retention"),
        ];
        for (key, value, field) in cases {
            let params = with(&backup, key, value);
            assert_eq!(refused("app.backup", params.clone()), field, "{params}");
        }
        let both_off = with(&with(&backup, "files", json!(false)), "database", json!(false));
        assert_eq!(refused("app.backup", both_off), "files");

        let restore = json!({"app": "blog", "repository": {"path": "/var/backups/berth", "password": "a-long-password"},
                             "snapshot": "1a2b3c4d"});
        assert!(Catalogue::new(false).parse("app.restore", &restore).is_ok());
        let cases = [
            ("app", json!("a/b"), "app"),
            ("repository", repo("/srv/users/x/y"), "repository.path"),
            ("snapshot", json!(null), "snapshot"),
            ("snapshot", json!("latest"), "snapshot"),
            ("snapshot", json!("1a2b3c"), "snapshot"),
            ("snapshot", json!("1A2B3C4D"), "snapshot"),
            ("snapshot", json!("1a2b3c4d --target /"), "snapshot"),
            ("snapshot", json!("a".repeat(65)), "snapshot"),
            ("snapshot", json!(12345678), "snapshot"),
            ("files", json!("no"), "files"),
            ("database", json!(0), "database"),
        ];
        for (key, value, field) in cases {
            let params = with(&restore, key, value);
            assert_eq!(refused("app.restore", params.clone()), field, "{params}");
        }
    }

    #[test]
    fn a_set_is_listed_once_with_its_parts() {
        let snap = |id: &str, set: &str, path: &str| Snapshot {
            id: format!("{id}000000000000"),
            short_id: id.into(),
            time: "2026-12-02T10:00:00Z".into(),
            paths: vec![path.into()],
            tags: vec!["berth".into(), "app:blog".into(), format!("set:{set}")],
        };
        let list = listed(&[
            snap("aaaa1111", "1", "/files.tar"),
            snap("bbbb2222", "1", "/db-blog.sql"),
            snap("cccc3333", "2", "/files.tar"),
        ]);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["snapshot"], "aaaa1111");
        assert_eq!(list[0]["parts"], json!(["files.tar", "db-blog.sql"]));
    }
}

//! The app's side of a backup and a restore: its files read and written *as the
//! site's user*, its databases dumped and loaded by the server's own tools, and the
//! local repository made as root's.
//!
//! **Why tar as the user into root's restic.** The tree under `/srv/users/USER` is
//! the user's and hostile: a hard link to `/etc/shadow`, a symlink to `/root`, a
//! directory swapped for a link mid-walk. restic run as root over it would read
//! whatever those lead to, store it, and a restore would hand it to the user. So
//! root never reads the tree: `setpriv --reuid --regid --clear-groups
//! --no-new-privs tar -c` reads it with exactly the user's rights (a link to a file
//! the user cannot read is a read error tar skips, `--ignore-failed-read`; one to a
//! file the user can read gives nothing the user did not have), and its stream goes
//! through berth into root's `restic backup --stdin`. restic itself never runs as
//! the user, so the user never sees the repository, its password, or another
//! app's snapshots. tar (POSIX format, sorted, numeric ids) keeps modes, symlinks
//! as symlinks, hard links inside the tree as hard links, and mtimes: a round trip
//! is byte-identical.
//!
//! **Why restore into a fresh directory, then swap.** `restic dump` streams the
//! archive into `tar -x` run as the user, into a new directory beside the app's
//! (`apps/.APP.restore`), made by root through descriptors and handed to the user.
//! Whatever the user planted at the app's path is never written through: only when
//! the whole archive is out does one `renameat2(RENAME_EXCHANGE)` (relative to the
//! `apps` directory's descriptor; neither name followed) put it in place, and the
//! old tree is removed by the descriptor walker. A failed restore removes the new
//! directory and leaves the app as it was.
//!
//! Databases: `mariadb-dump --single-transaction` (as root over the socket, of the
//! app's own databases from the inventory) streamed into restic, nothing on disk;
//! a restore streams `restic dump` into `mariadb`.

use std::path::{Path, PathBuf};

use crate::host::fs::under_root;
use crate::host::mysql::MysqlSettings;
use crate::host::pipeline::Spec;
use crate::host::tree::Dir;
use crate::host::Cmd;
use crate::job::JobError;
use crate::model::backup::Exclude;
use crate::model::validate::shown;
use crate::web::sitedirs::Owner;
use crate::web::stack::{app_dir, USERS_DIR};

/// The stream of the app's files in the repository.
pub const FILES: &str = "files.tar";
/// tar's exit status when a file changed while it was read (a live site): the
/// archive is whole, that file is as it was at some moment.
const TAR_CHANGED: i32 = 1;

/// The name of database `db`'s stream.
pub fn db_file(db: &str) -> String {
    format!("db-{db}.sql")
}

/// `setpriv` to `owner`, then `program args`.
fn as_user(owner: Owner, program: &str) -> Cmd {
    Cmd::new("/usr/bin/setpriv").args([format!("--reuid={}", owner.uid), format!("--regid={}", owner.gid)]).args([
        "--clear-groups",
        "--no-new-privs",
        "--",
        program,
    ])
}

/// The app's directory, opened from `/srv/users` without following a link: a link
/// in its place is `conflict`, a missing one `precondition_failed`.
fn apps_dir(root: &Path, sysuser: &str) -> Result<Dir, JobError> {
    let users = Dir::open_trusted(&under_root(root, USERS_DIR))?;
    let home = users.open_dir(sysuser)?.ok_or_else(|| {
        JobError::PreconditionFailed(format!("the home of system user {} is missing", shown(sysuser)))
    })?;
    home.open_dir("apps")?
        .ok_or_else(|| JobError::PreconditionFailed(format!("{USERS_DIR}/{sysuser}/apps is missing; run app.update")))
}

/// `tar -c` of the app's directory, as the user, to stdout.
pub fn files_producer(
    root: &Path,
    owner: Owner,
    sysuser: &str,
    app: &str,
    exclude: &[Exclude],
) -> Result<Spec, JobError> {
    let apps = apps_dir(root, sysuser)?;
    apps.open_dir(app)?
        .ok_or_else(|| JobError::PreconditionFailed(format!("the directory of app {app} is missing")))?;
    let dir = under_root(root, &app_dir(sysuser, app));
    let mut cmd = as_user(owner, "/usr/bin/tar")
        .args(["--create", "--file=-", "--format=posix", "--pax-option=delete=atime,delete=ctime"])
        .args(["--sort=name", "--numeric-owner", "--one-file-system", "--ignore-failed-read", "--anchored"]);
    for pattern in exclude {
        cmd = cmd.arg(format!("--exclude=./{}", pattern.as_str()));
    }
    cmd = cmd.arg(format!("--directory={}", dir.display())).args(["--", "."]);
    Ok(Spec::new(cmd).ok_code(TAR_CHANGED))
}

/// A fresh, empty directory for a restore beside the app's, the user's (0700),
/// made through descriptors; what an earlier failed restore left there is
/// removed first. Returns the `apps` directory, the fresh one's name and path.
pub fn fresh_dir(root: &Path, owner: Owner, sysuser: &str, app: &str) -> Result<(Dir, String, PathBuf), JobError> {
    let apps = apps_dir(root, sysuser)?;
    let name = format!(".{app}.restore");
    apps.remove_tree(&name)?;
    apps.ensure_dir(&name, 0o700, owner.uid, owner.gid)?;
    let path = under_root(root, &format!("{USERS_DIR}/{sysuser}/apps/{name}"));
    Ok((apps, name, path))
}

/// `tar -x` from stdin into `dir`, as the user: modes kept, no owner set (all
/// the user's), hard links and symlinks made as entries.
pub fn files_consumer(owner: Owner, dir: &Path) -> Spec {
    Spec::new(
        as_user(owner, "/usr/bin/tar")
            .args(["--extract", "--file=-", "--preserve-permissions", "--no-same-owner", "--numeric-owner"])
            .arg(format!("--directory={}", dir.display())),
    )
}

/// Puts the restored tree `fresh` in the app's place and removes the old one.
/// True when there was an old one.
pub fn swap_in(apps: &Dir, fresh: &str, app: &str) -> Result<bool, JobError> {
    let existed = apps.exchange(fresh, app)?;
    if existed {
        apps.remove_tree(fresh)?;
    }
    Ok(existed)
}

/// Removes what a failed restore left.
pub fn discard(apps: &Dir, fresh: &str) {
    if let Err(e) = apps.remove_tree(fresh) {
        tracing::warn!("a failed restore left {}: {e}", apps.path().join(fresh).display());
    }
}

/// `mariadb-dump --single-transaction` of database `db` to stdout (root, socket).
pub fn dump_producer(mysql: &MysqlSettings, db: &str) -> Spec {
    Spec::new(
        Cmd::new("/usr/bin/mariadb-dump")
            .args([format!("--socket={}", mysql.socket.display()), format!("--user={}", mysql.user)])
            .args(["--single-transaction", "--routines", "--triggers", "--hex-blob", "--skip-dump-date"])
            .args(["--default-character-set=utf8mb4", "--", db]),
    )
}

/// `mariadb` loading a dump of `db` from stdin into `db`. The dump is one database's
/// without `--databases`: it holds no `CREATE DATABASE` or `USE`, so it lands in `db`.
/// (`--one-database` is not used: with the database given as `--database=` it skips
/// every statement.)
pub fn db_consumer(mysql: &MysqlSettings, db: &str) -> Spec {
    Spec::new(
        Cmd::new("/usr/bin/mariadb")
            .args([format!("--socket={}", mysql.socket.display()), format!("--user={}", mysql.user)])
            .args(["--batch", "--default-character-set=utf8mb4", &format!("--database={db}")]),
    )
}

/// Makes a local repository's directory root's and 0700 (parents root's 0755 when
/// made), opened without following a link. An existing directory must be empty or
/// a restic repository (it has `config`): berth never changes the mode of a
/// directory of something else's. True when it is to be initialised.
pub fn ensure_local_repository(local: &Path) -> Result<bool, JobError> {
    match Dir::open_trusted(local) {
        Ok(dir) => {
            let entries = dir.entries()?;
            if !entries.is_empty() && !entries.iter().any(|e| e == "config") {
                return Err(JobError::Conflict(format!(
                    "{} holds files and is not a restic repository; berth keeps backups only in an empty or \
                     restic directory",
                    local.display()
                )));
            }
            Dir::ensure_trusted(local, 0o700, 0, 0)?;
            Ok(entries.is_empty())
        }
        Err(e) if e.is_not_found() => {
            Dir::ensure_trusted(local, 0o700, 0, 0)?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

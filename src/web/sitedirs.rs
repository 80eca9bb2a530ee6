//! The directories an app needs on the host, made and removed without ever
//! following a link a hosted user planted.
//!
//! An app has three places: its files under the user's home
//! (`/srv/users/USER/apps/APP/public`), its private temp directory there
//! (`/srv/users/USER/tmp/APP`), and its logs outside the home, in root-owned
//! `/var/log/berth/USER/APP`. The home is the user's, who may change anything in it
//! at any moment, so every step there goes through [`crate::host::tree`]: opened
//! from the root-owned `/srv/users` one component at a time, never through a link,
//! owner and mode set on the opened directory. The logs are root's because nginx's
//! and Apache's masters (root) open them: a user who could swap a log file for a
//! link could make root write anywhere. The user reads them through their group.
//!
//! The servers' checks (`nginx -t` opens every log file) need the log directories of
//! every app, so every web-config job makes sure they all exist
//! ([`ensure_all_logs`]) before it checks: what one user does never fails another
//! user's job, and `berth reconcile` puts back whatever a user removed ([`prepare`]).

use std::path::Path;

use crate::host::fs::under_root;
use crate::host::tree::{Dir, TreeError};
use crate::job::JobError;
use crate::state::inventory::Inventory;
use crate::web::stack::{app_dir, LOG_BASE, USERS_DIR};

/// Mode of an app's directories in the home: the user, and the web server through
/// the user's group.
const APP_MODE: u32 = 0o750;
/// Mode of the app's temp directory: the user's PHP alone.
const TMP_MODE: u32 = 0o700;
/// Mode of the user's and the app's log directories (`root:USER`).
const LOG_MODE: u32 = 0o750;

/// The ids of the user an app runs as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The user's home, opened from `/srv/users` without following a link.
fn home(root: &Path, sysuser: &str) -> Result<Dir, JobError> {
    let users = Dir::open_trusted(&under_root(root, USERS_DIR))?;
    users.open_dir(sysuser)?.ok_or_else(|| {
        JobError::PreconditionFailed(format!("the home of system user {sysuser} ({USERS_DIR}/{sysuser}) is missing"))
    })
}

/// Makes every directory of app `app` of `sysuser` exist with its owner and mode:
/// the app's directory and web root, its temp directory and its logs. True when
/// anything changed. A link planted on the way is `conflict`, with nothing changed
/// outside the home.
///
/// The public folder (`public`, or the app's own, validated: relative, no `..`) is
/// made component by component below the app's directory: a link anywhere on it is
/// refused, so the web root can never lead out of the app's directory when set.
pub fn prepare(root: &Path, owner: Owner, sysuser: &str, app: &str, public_folder: &str) -> Result<bool, JobError> {
    let home = home(root, sysuser)?;
    let (uid, gid) = (owner.uid, owner.gid);
    let mut chain = vec![("apps", APP_MODE, uid, gid), (app, APP_MODE, uid, gid)];
    chain.extend(public_folder.split('/').map(|part| (part, APP_MODE, uid, gid)));
    let web = home.ensure_chain(&chain)?;
    let tmp = home.ensure_chain(&[("tmp", APP_MODE, uid, gid), (app, TMP_MODE, uid, gid)])?;
    Ok(web.1 | tmp.1 | ensure_logs(root, owner, sysuser, app)?)
}

/// The app's log directory (`root:USER` 0750) and its PHP error log, which the
/// user's PHP writes (so it is the user's file, in root's directory: the user can
/// write to it but not put anything else in its place).
pub fn ensure_logs(root: &Path, owner: Owner, sysuser: &str, app: &str) -> Result<bool, JobError> {
    let (app_logs, changed) = logs(root, &[(sysuser, LOG_MODE, 0, owner.gid), (app, LOG_MODE, 0, owner.gid)])?;
    Ok(app_logs.ensure_file("php.error.log", 0o640, owner.uid, owner.gid)? | changed)
}

/// `/var/log/berth` (root's, 0755), and `chain` below it.
fn logs(root: &Path, chain: &[(&str, u32, u32, u32)]) -> Result<(Dir, bool), JobError> {
    let (logs, made) = Dir::ensure_trusted(&under_root(root, LOG_BASE), 0o755, 0, 0)?;
    let (dir, changed) = logs.ensure_chain(chain)?;
    Ok((dir, made | changed))
}

/// Makes the user's log directory exist, `/var/log/berth/USER` (`root:USER` 0750;
/// `sysuser.create`).
pub fn ensure_user_logs(root: &Path, gid: u32, sysuser: &str) -> Result<bool, JobError> {
    Ok(logs(root, &[(sysuser, LOG_MODE, 0, gid)])?.1)
}

/// Before a web-config job's checks: the log directory of every app in `inventory`
/// exists (a missing one would fail `nginx -t` for every user). Apps whose user
/// account is gone are left to their own jobs.
pub fn ensure_all_logs(root: &Path, inventory: &Inventory) -> Result<bool, JobError> {
    let mut changed = false;
    for (name, app) in &inventory.apps {
        // Root's directories, which no user can replace: a plain look is enough to
        // skip the ones that hold.
        if under_root(root, &crate::web::stack::log_dir(&app.sysuser, name))
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir())
        {
            continue;
        }
        let Ok(account) = crate::web::accounts::account(root, &app.sysuser) else { continue };
        changed |= ensure_logs(root, Owner { uid: account.uid, gid: account.gid }, &app.sysuser, name)?;
    }
    Ok(changed)
}

/// The app's directory (`/srv/users/USER/apps/APP`), opened from `/srv/users`
/// without following a link: a link on the way is `conflict`, a missing directory
/// `precondition_failed`.
pub fn open_app(root: &Path, sysuser: &str, app: &str) -> Result<Dir, JobError> {
    let missing =
        || JobError::PreconditionFailed(format!("the directory of app {app} ({}) is missing", app_dir(sysuser, app)));
    let apps = home(root, sysuser)?.open_dir("apps")?.ok_or_else(missing)?;
    apps.open_dir(app)?.ok_or_else(missing)
}

/// Removes the app's directory, temp directory and logs; true when there was
/// anything. Nothing outside them is touched: links are removed, never followed.
/// A link the user put in place of `apps` or `tmp` has nothing of the app behind it
/// that berth would touch, so it is left and the removal goes on: otherwise a user
/// could keep their own app, and so themselves, from ever being deleted.
pub fn remove(root: &Path, sysuser: &str, app: &str) -> Result<bool, JobError> {
    let mut removed = false;
    let users = Dir::open_trusted(&under_root(root, USERS_DIR))?;
    if let Some(home) = users.open_dir(sysuser)? {
        for parent in ["apps", "tmp"] {
            match home.open_dir(parent) {
                Ok(Some(dir)) => removed |= dir.remove_tree(app)?,
                Ok(None) | Err(TreeError::Planted { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(logs) = open_logs(root)? {
        if let Some(user_logs) = logs.open_dir(sysuser)? {
            removed |= user_logs.remove_tree(app)?;
        }
    }
    Ok(removed)
}

/// Removes the user's log directory (`sysuser.delete`, after its apps).
pub fn remove_user_logs(root: &Path, sysuser: &str) -> Result<bool, JobError> {
    match open_logs(root)? {
        Some(logs) => Ok(logs.remove_tree(sysuser)?),
        None => Ok(false),
    }
}

/// `/var/log/berth`, or `None` when there is none yet.
fn open_logs(root: &Path) -> Result<Option<Dir>, JobError> {
    match Dir::open_trusted(&under_root(root, LOG_BASE)) {
        Ok(logs) => Ok(Some(logs)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

//! An app's web config, applied and removed: shared by the job families that change
//! it (`app`, `ssl`, `sysuser`, `server`), below all of them.

use crate::host::fs::under_root;
use crate::host::transaction::{Applied, FileChange};
use crate::job::{JobContext, JobError, Outcome};
use crate::model::validate::shown;
use crate::model::{AppName, DbName};
use crate::state::inventory::{App, Inventory};
use crate::web::render::{self, WebConfig};
use crate::web::sitedirs;
use crate::web::stack::{self, Scope};

/// Renders `app` as `name` (and the default server's old and new app, when that
/// moves) for `before`, the inventory as the caller read it, with `app` recorded;
/// adds `extra` (certificate files), and applies them all as one transaction. `web`
/// was gathered by this job; the caller holds the web-config lock, read `app` and
/// `before` inside it, and records the app once this returns.
pub(crate) fn apply_config(
    ctx: &JobContext,
    web: &WebConfig,
    before: &Inventory,
    name: &AppName,
    app: &App,
    extra: Vec<FileChange>,
) -> Result<Applied, JobError> {
    let mut next = before.clone();
    next.apps.insert(name.to_owned(), app.clone());
    let (mut changes, skipped) = web.render(&next, Scope::Apps(&render::affected(before, &next, &[name])))?;
    if skipped.contains(name) {
        return Err(JobError::PreconditionFailed(format!(
            "runtime {} of app {} is not installed",
            shown(&app.runtime),
            shown(name)
        )));
    }
    changes.extend(extra);
    web.apply(ctx.host.as_ref(), &next, &changes)
}

/// Removes an app: its databases and their users, its config (checked and
/// reloaded like any change), its files and logs, then its record. An app that is
/// not there is a success. It takes the web-config lock itself: its callers
/// (`app.delete`, `sysuser.delete` for each of the user's apps) do not hold it.
pub(crate) fn remove(ctx: &JobContext, name: &AppName) -> Result<Outcome, JobError> {
    let root = ctx.root();
    let _web = crate::web::weblock::hold(root)?;
    let mut outcome = Outcome::default();
    let Some(app) = ctx.inventory.read(|inv| inv.apps.get(name).cloned()) else {
        outcome.step("app", false);
        return Ok(outcome);
    };
    // Its databases and their users go first.
    let databases: Vec<DbName> = ctx
        .inventory
        .read(|inv| inv.databases.iter().filter(|(_, db)| db.app == *name).map(|(n, _)| n.clone()).collect());
    for database in &databases {
        crate::jobs::db::drop_database(ctx, database)?;
    }
    outcome.step("databases", !databases.is_empty());
    let web = WebConfig::gather(root)?;
    let before = ctx.inventory.read(|inv| inv.clone());
    let mut next = before.clone();
    next.apps.remove(name);
    let mut changes = stack::app_removal(root, name, &web.facts().runtimes, web.facts().apache);
    // The default server moves on: to the next app, or back to the catch-all.
    changes.extend(web.render(&next, Scope::Apps(&render::affected(&before, &next, &[name])))?.0);
    outcome.applied(&web.apply(ctx.host.as_ref(), &next, &changes)?);
    let mut removed = sitedirs::remove(root, &app.sysuser, name)?;
    // The certificate directory is root's (0700), outside every home.
    let ssl_dir = under_root(root, &stack::ssl_dir(name));
    if ssl_dir.exists() {
        std::fs::remove_dir_all(&ssl_dir).map_err(|e| JobError::Internal(format!("{}: {e}", ssl_dir.display())))?;
        removed = true;
    }
    outcome.step("files, logs and certificates", removed);
    ctx.record(|inv| {
        inv.apps.remove(name);
        if inv.settings.default_app.as_deref() == Some(name) {
            inv.settings.default_app = None;
        }
    })?;
    Ok(outcome)
}

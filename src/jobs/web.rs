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
    let (changes, skipped) = web.render(&next, Scope::Apps(&render::affected(before, &next, &[name])))?;
    if skipped.contains(name) {
        return Err(JobError::PreconditionFailed(format!(
            "runtime {} of app {} is not installed",
            shown(&app.runtime),
            shown(name)
        )));
    }
    web.apply(ctx.host.as_ref(), &next, &crash_safe_order(changes, extra))
}

/// `configs` and the `extra` files they name (certificates), in an order a `kill -9`
/// between any two files cannot break: what the configs are to name is written
/// before them, and what they named is removed after them. Killed in between, the
/// servers' own checks still pass on what is on disk.
fn crash_safe_order(configs: Vec<FileChange>, extra: Vec<FileChange>) -> Vec<FileChange> {
    let (writes, removals): (Vec<FileChange>, Vec<FileChange>) = extra.into_iter().partition(|c| c.content.is_some());
    writes.into_iter().chain(configs).chain(removals).collect()
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
    // Its Redis user and keys (`app.object_cache`), when Redis runs with berth set up in it.
    if crate::web::objcache::forget(root, &ctx.redis_socket.display().to_string(), name)? {
        outcome.step("object cache", true);
    }
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
    removed |= crate::web::cache::remove(root, name)?;
    outcome.step("files, logs and certificates", removed);
    ctx.record(|inv| {
        inv.apps.remove(name);
        if inv.settings.default_app.as_deref() == Some(name) {
            inv.settings.default_app = None;
        }
    })?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::host::services::Service;

    fn paths(changes: &[FileChange]) -> Vec<(PathBuf, bool)> {
        changes.iter().map(|c| (c.path.clone(), c.content.is_some())).collect()
    }

    /// The chaos campaign (tests/chaos.rs) killed an `ssl.install` after it had
    /// written the vhost and before the certificate: `nginx -t` failed on the key
    /// the vhost named ("cannot load certificate key").
    #[test]
    fn a_certificate_is_written_before_the_vhost_that_names_it_and_removed_after_regression() {
        let vhost =
            || FileChange::write("/etc/nginx/berth.d/shop.conf".into(), "ssl_certificate …", 0o644, Service::Nginx);
        let root = Path::new("/");
        let installed = crash_safe_order(vec![vhost()], stack::ssl_changes(root, "shop", Some(("chain", "key"))));
        assert_eq!(
            paths(&installed),
            [
                ("/etc/berth/ssl/shop/fullchain.pem".into(), true),
                ("/etc/berth/ssl/shop/key.pem".into(), true),
                ("/etc/nginx/berth.d/shop.conf".into(), true),
            ]
        );
        let deleted = crash_safe_order(vec![vhost()], stack::ssl_changes(root, "shop", None));
        assert_eq!(
            paths(&deleted),
            [
                ("/etc/nginx/berth.d/shop.conf".into(), true),
                ("/etc/berth/ssl/shop/fullchain.pem".into(), false),
                ("/etc/berth/ssl/shop/key.pem".into(), false),
            ]
        );
    }
}

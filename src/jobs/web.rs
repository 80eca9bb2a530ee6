//! An app's web config, applied and removed: shared by the job families that change
//! it (`app`, `ssl`, `sysuser`, `server`), below all of them.

use crate::host::fs::under_root;
use crate::host::services::Services;
use crate::host::transaction::{self, Applied, FileChange};
use crate::inventory::{App, Inventory};
use crate::job::{JobContext, JobError, Outcome};
use crate::model::{AppName, DbName};
use crate::sitedirs;
use crate::stack::{self, AppSite};
use crate::templates::Templates;
use crate::validate::shown;

/// The scheduler resource of every job that writes web server config: they run in
/// arrival order. Their writes themselves are kept apart by the web-config lock
/// ([`crate::weblock`]); a job that goes on to wait on a CA gives this back first.
pub const WEB_STACK: &str = "webstack";

/// The services, the inventory as it is, and the host's facts with `app` recorded
/// as `name` (the settings as they will be: it may become the default server).
pub(crate) fn facts_with(ctx: &JobContext, name: &AppName, app: &App) -> (Services, Inventory, stack::Facts) {
    let services = Services::detect(ctx.root());
    let inventory = ctx.inventory.read(|inv| inv.clone());
    let mut next = inventory.clone();
    next.apps.insert(name.clone(), app.clone());
    let host = stack::Facts::detect(ctx.root(), &services, &next);
    (services, inventory, host)
}

/// Renders the base files and `app`'s files as `name`, adds `extra` (certificate
/// files), and applies them all as one transaction. The caller holds the
/// web-config lock ([`crate::weblock`]), and read `app` inside it.
pub(crate) fn apply_config(
    ctx: &JobContext,
    name: &AppName,
    app: &App,
    extra: Vec<FileChange>,
) -> Result<Applied, JobError> {
    let root = ctx.root();
    let (services, inventory, host) = facts_with(ctx, name, app);
    let php = app.runtime.trim_start_matches("php");
    if !host.runtimes.iter().any(|r| r == php) {
        return Err(JobError::PreconditionFailed(format!(
            "runtime {} of app {} is not installed",
            shown(&app.runtime),
            shown(name)
        )));
    }
    let templates = Templates::load(root).map_err(stack::template_error)?;
    sitedirs::ensure_all_logs(root, &inventory)?;
    let mut changes = stack::base_changes(&templates, root, &host)?;
    changes.extend(stack::app_changes(&templates, root, &AppSite::of(name, app, php), &host)?);
    changes.extend(previous_default(&templates, root, &inventory, name, &host)?);
    changes.extend(extra);
    transaction::apply(ctx.host.as_ref(), &services, &changes).map_err(JobError::from)
}

/// Removes an app: its databases and their users, its config (checked and
/// reloaded like any change), its files and logs, then its record. An app that is
/// not there is a success. It takes the web-config lock itself: its callers
/// (`app.delete`, `sysuser.delete` for each of the user's apps) do not hold it.
pub(crate) fn remove(ctx: &JobContext, name: &str) -> Result<Outcome, JobError> {
    let root = ctx.root();
    let _web = crate::weblock::hold(root)?;
    let mut outcome = Outcome::default();
    let Some(app) = ctx.inventory.read(|inv| inv.apps.get(name).cloned()) else {
        outcome.step("app", false);
        return Ok(outcome);
    };
    // Its databases and their users go first.
    let databases: Vec<DbName> = ctx
        .inventory
        .read(|inv| inv.databases.iter().filter(|(_, db)| db.app == name).map(|(n, _)| n.clone()).collect());
    for database in &databases {
        crate::jobs::db::drop_database(ctx, database)?;
    }
    outcome.step("databases", !databases.is_empty());
    let services = Services::detect(root);
    let inventory = ctx.inventory.read(|inv| inv.clone());
    let mut next = inventory.clone();
    next.apps.remove(name);
    let host = stack::Facts::detect(root, &services, &next);
    let templates = Templates::load(root).map_err(stack::template_error)?;
    let mut changes = stack::app_removal(root, name, &host.runtimes, host.apache);
    // The default server moves on: to the next app, or back to the catch-all.
    if stack::default_app(&inventory).as_deref() == Some(name) {
        changes.extend(stack::base_changes(&templates, root, &host)?);
        if let Some(heir) = host.default_app.as_deref() {
            changes.extend(
                stack::inventory_app_changes(&templates, root, heir, &next.apps[heir], &host)?.unwrap_or_default(),
            );
        }
    }
    sitedirs::ensure_all_logs(root, &next)?;
    outcome.applied(&transaction::apply(ctx.host.as_ref(), &services, &changes).map_err(JobError::from)?);
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

/// When another app was the default server and no longer is (this app took over),
/// that app's vhost is rendered again in the same transaction.
fn previous_default(
    templates: &Templates,
    root: &std::path::Path,
    inventory: &crate::inventory::Inventory,
    name: &str,
    host: &stack::Facts,
) -> Result<Vec<transaction::FileChange>, JobError> {
    match stack::default_app(inventory) {
        Some(previous) if previous != name && host.default_app.as_deref() != Some(previous.as_str()) => {
            Ok(stack::inventory_app_changes(templates, root, &previous, &inventory.apps[&previous], host)?
                .unwrap_or_default())
        }
        _ => Ok(Vec::new()),
    }
}

//! Apps: `app.create`, `app.update`, `app.delete` (PROTOCOL section 3).
//!
//! An app is a web root `/srv/users/USER/apps/APP/public`, logs in
//! `/srv/users/USER/log/APP/`, a PHP-FPM pool running as USER, and vhosts for its
//! domains (nginx, plus Apache behind it for stack `nginx-apache`). Create and
//! update converge on one desired state: directories, the web server's access to
//! them, then every config file at once through the transaction (checked by the
//! servers' own tools, restored on failure, reloaded once). The inventory records
//! the app only after its config holds.

use serde_json::{json, Value};

use crate::accounts;
use crate::host::fs::under_root;
use crate::host::services::Services;
use crate::host::transaction::{self, Applied, FileChange};
use crate::inventory::{App, Inventory, SslSource};
use crate::job::{blocking, within_limit, BlockingJob, BoxFuture, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::sitedirs;
use crate::stack::{self, AppSite, Stack};
use crate::templates::Templates;
use crate::validate::{self, shown, FieldError, Params};

pub const MAX_APPS_PER_USER: usize = 1000;
pub const MAX_DOMAINS: usize = 1000;
/// Every job that writes web server config holds this: their checks and reloads
/// must not interleave.
pub const WEB_STACK: &str = "webstack";

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.create", Create::parse);
    catalogue.register("app.update", Update::parse);
    catalogue.register("app.delete", Delete::parse);
}

/// `app.create {name, sysuser, runtime, domains, stack?}`.
#[derive(Debug)]
struct Create {
    name: String,
    sysuser: String,
    runtime: String,
    domains: Vec<String>,
    stack: Stack,
}

/// `app.update {name, runtime?, domains?}`.
#[derive(Debug)]
struct Update {
    name: String,
    runtime: Option<String>,
    domains: Option<Vec<String>>,
}

/// `app.delete {name}`.
#[derive(Debug)]
struct Delete {
    name: String,
}

fn app_name(params: &Params) -> Result<String, JobError> {
    Ok(params.checked("name", validate::app_name)?.to_owned())
}

fn domains(params: &Params, values: Vec<&str>) -> Result<Vec<String>, JobError> {
    let field = params.field("domains");
    if values.len() > MAX_DOMAINS {
        return Err(JobError::LimitExceeded {
            field,
            message: format!("at most {MAX_DOMAINS} domains per app are allowed"),
        });
    }
    validate::domain_list(&field, &values, MAX_DOMAINS)?;
    Ok(values.into_iter().map(str::to_owned).collect())
}

impl Create {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = app_name(&params)?;
        let sysuser = params.checked("sysuser", validate::sysuser_name)?;
        let runtime = params.checked("runtime", validate::runtime)?.to_owned();
        let domains = domains(&params, params.str_array("domains")?)?;
        let stack = match params.opt_str("stack")? {
            None => Stack::NginxApache,
            Some(value) => Stack::parse(value).ok_or_else(|| {
                FieldError::new(
                    params.field("stack"),
                    format!("must be \"nginx-apache\" or \"nginx\", not {}", shown(value)),
                )
            })?,
        };
        Ok(Box::new(Create { name, sysuser: sysuser.to_owned(), runtime, domains, stack }))
    }
}

impl Update {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = app_name(&params)?;
        let runtime = params.opt_checked("runtime", validate::runtime)?.map(str::to_owned);
        let domains = params.opt_str_array("domains")?.map(|d| domains(&params, d)).transpose()?;
        Ok(Box::new(Update { name, runtime, domains }))
    }
}

impl Delete {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(Delete { name: app_name(&params)? }))
    }
}

impl BlockingJob for Create {
    fn resources(&self) -> Resources {
        Resources::of([format!("app:{}", self.name), format!("sysuser:{}", self.sysuser), WEB_STACK.to_owned()])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let app = App {
            sysuser: self.sysuser,
            runtime: self.runtime,
            domains: self.domains,
            stack: self.stack,
            created_ms: 0,
            ssl: None,
        };
        converge(ctx, &self.name, app)
    }
}

/// An update converges like a create; an AutoSSL app whose domains changed then
/// gets a certificate for its new names in the same job.
impl Job for Update {
    fn resources(&self) -> Resources {
        Resources::of([format!("app:{}", self.name), WEB_STACK.to_owned()])
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        Box::pin(async move {
            let name = self.name.clone();
            let mut outcome = blocking(ctx.clone(), move |ctx| {
                let mut app = ctx
                    .inventory
                    .read(|inv| inv.apps.get(&self.name).cloned())
                    .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(&self.name))))?;
                app.runtime = self.runtime.unwrap_or(app.runtime);
                app.domains = self.domains.unwrap_or(app.domains);
                converge(ctx, &self.name, app)
            })
            .await?;
            let autossl = ctx.inventory.read(|inv| inv.apps.get(&name).and_then(|a| a.ssl.as_ref().map(|s| s.source)));
            if autossl == Some(SslSource::Auto) {
                let issued = crate::jobs::ssl::autossl(ctx, name, false, false).await.map_err(|e| match e {
                    JobError::AcmeFailed(message) | JobError::PreconditionFailed(message) => {
                        JobError::AcmeFailed(format!(
                        "the app answers its new domains, but its certificate could not be issued for them: {message}; \
                         the previous certificate stays, and berth tries again in the background"
                    ))
                    }
                    other => other,
                })?;
                outcome.steps.extend(issued.steps);
                if let (Some(Value::Object(result)), Some(ssl)) = (outcome.result.as_mut(), issued.result) {
                    result.insert("ssl".into(), ssl);
                }
            }
            Ok(outcome)
        })
    }
}

impl BlockingJob for Delete {
    fn resources(&self) -> Resources {
        Resources::of([format!("app:{}", self.name), WEB_STACK.to_owned()])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        remove(ctx, &self.name)
    }
}

/// Makes the host hold `app` as `name`: the whole desired state, for create and update.
fn converge(ctx: &JobContext, name: &str, mut app: App) -> Result<Outcome, JobError> {
    let root = ctx.root();
    let (_, inventory, host) = facts_with(ctx, name, &app);
    let php = app.runtime.trim_start_matches("php").to_owned();
    if !host.runtimes.contains(&php) {
        let installed: Vec<String> = host.runtimes.iter().map(|v| format!("php{v}")).collect();
        return Err(JobError::PreconditionFailed(format!(
            "runtime {} is not installed; installed: {}",
            shown(&app.runtime),
            if installed.is_empty() { "none".into() } else { installed.join(", ") }
        )));
    }
    if app.stack == Stack::NginxApache && !host.apache {
        return Err(JobError::PreconditionFailed("stack nginx-apache needs Apache, which is not installed".into()));
    }
    if !inventory.users.contains_key(&app.sysuser) {
        return Err(accounts::missing_or_not_ours(root, &app.sysuser)?);
    }
    match inventory.apps.get(name) {
        Some(existing) if existing.sysuser != app.sysuser => {
            return Err(JobError::Conflict(format!("app name {} is taken by another system user", shown(name))))
        }
        Some(existing) => {
            app.created_ms = existing.created_ms;
            app.ssl = existing.ssl.clone();
        }
        None => {
            within_limit(
                "sysuser",
                "apps per system user",
                inventory.apps_of(&app.sysuser).count(),
                MAX_APPS_PER_USER,
            )?;
            app.created_ms = crate::time::unix_millis(std::time::SystemTime::now());
        }
    }
    let wanted = stack::server_names(&app.domains);
    for (other, held) in inventory.apps.iter().filter(|(other, _)| other.as_str() != name) {
        if let Some(taken) = stack::server_names(&held.domains).into_iter().find(|d| wanted.contains(d)) {
            return Err(JobError::Conflict(format!("domain {} belongs to app {}", shown(&taken), shown(other))));
        }
    }

    let mut outcome = Outcome::default();
    let account = accounts::account(root, &app.sysuser)?;
    let owner = sitedirs::Owner { uid: account.uid, gid: account.gid };
    let mut changed = sitedirs::prepare(root, owner, &app.sysuser, name)?;
    changed |= accounts::ensure_dir(&under_root(root, "/run/php"), 0o755, 0, 0)?;
    outcome.step("directories", changed);
    outcome.step("web server access", grant_web_server(ctx, &app.sysuser)?);

    outcome.applied(&apply_config(ctx, name, &app, Vec::new())?);
    let result = json!({
        "web_root": stack::web_root(&app.sysuser, name),
        "log_dir": stack::log_dir(&app.sysuser, name),
        "domains": stack::server_names(&app.domains),
        "stack": app.stack.as_str(),
    });
    ctx.record(|inv| inv.apps.insert(name.to_owned(), app))?;
    outcome.result = Some(result);
    Ok(outcome)
}

/// The services, the inventory as it is, and the host's facts with `app` recorded
/// as `name` (the settings as they will be: it may become the default server).
fn facts_with(ctx: &JobContext, name: &str, app: &App) -> (Services, Inventory, stack::Facts) {
    let services = Services::detect(ctx.root());
    let inventory = ctx.inventory.read(|inv| inv.clone());
    let mut next = inventory.clone();
    next.apps.insert(name.to_owned(), app.clone());
    let host = stack::Facts::detect(ctx.root(), &services, &next);
    (services, inventory, host)
}

/// Renders the base files and `app`'s files as `name`, adds `extra` (certificate
/// files), and applies them all as one transaction.
pub(crate) fn apply_config(
    ctx: &JobContext,
    name: &str,
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
/// not there is a success.
pub(crate) fn remove(ctx: &JobContext, name: &str) -> Result<Outcome, JobError> {
    let root = ctx.root();
    let mut outcome = Outcome::default();
    let Some(app) = ctx.inventory.read(|inv| inv.apps.get(name).cloned()) else {
        outcome.step("app", false);
        return Ok(outcome);
    };
    // Its databases and their users go first.
    let databases: Vec<String> = ctx
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
    outcome.applied(&transaction::apply(ctx.host.as_ref(), &services, &changes)?);
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

/// The web server joins the user's group, so it can read the user's apps (0750).
fn grant_web_server(ctx: &JobContext, sysuser: &str) -> Result<bool, JobError> {
    if accounts::group_members(ctx.root(), sysuser)?.iter().any(|m| m == stack::WEB_USER) {
        return Ok(false);
    }
    ctx.host.run(&accounts::shadow_cmd("/usr/sbin/usermod", ctx.root()).args([
        "--append",
        "--groups",
        sysuser,
        stack::WEB_USER,
    ]))?;
    Ok(true)
}

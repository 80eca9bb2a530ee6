//! Apps: `app.create`, `app.update`, `app.delete` (PROTOCOL section 3).
//!
//! An app is a web root `/srv/users/USER/apps/APP/public`, a temp directory
//! `/srv/users/USER/tmp/APP`, logs in root-owned `/var/log/berth/USER/APP/` (see
//! [`crate::web::sitedirs`]), a PHP-FPM pool running as USER, and vhosts for its
//! domains (nginx, plus Apache behind it for stack `nginx-apache`). Create and
//! update converge on one desired state: directories, the web server's access to
//! them, then every config file at once through the transaction (checked by the
//! servers' own tools, restored on failure, reloaded once). The inventory records
//! the app only after its config holds.

use serde_json::{json, Value};

use crate::host::fs::under_root;
use crate::job::{blocking, within_limit, BlockingJob, BoxFuture, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::siteopts::SiteOptions;
use crate::jobs::web::{apply_config, remove};
use crate::jobs::{wordpress, Catalogue};
use crate::model::resource::Resource;
use crate::model::site::public_folder_or_default;
use crate::model::validate::{self, shown, FieldError, Params};
use crate::model::{AppName, Domain, Runtime, SysuserName};
use crate::state::inventory::{App, SslSource};
use crate::web::accounts;
use crate::web::render::WebConfig;
use crate::web::sitedirs;
use crate::web::stack::{self, Stack};

pub const MAX_APPS_PER_USER: usize = 1000;
pub const MAX_DOMAINS: usize = 1000;
pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.create", Create::parse);
    catalogue.register("app.update", Update::parse);
    catalogue.register("app.delete", Delete::parse);
}

/// `app.create {name, sysuser, runtime, domains, stack?, wordpress?}` and the site options.
#[derive(Debug)]
struct Create {
    name: AppName,
    sysuser: SysuserName,
    runtime: Runtime,
    domains: Vec<Domain>,
    stack: Stack,
    options: SiteOptions,
    /// WordPress installed in the same job ([`crate::jobs::wordpress`]).
    wordpress: Option<wordpress::Site>,
}

/// `app.update {name, runtime?, domains?}` and the site options.
#[derive(Debug)]
struct Update {
    name: AppName,
    runtime: Option<Runtime>,
    domains: Option<Vec<Domain>>,
    options: SiteOptions,
}

/// `app.delete {name}`.
#[derive(Debug)]
struct Delete {
    name: AppName,
}

fn app_name(params: &Params) -> Result<AppName, JobError> {
    Ok(AppName::param(params, "name")?)
}

fn domains(params: &Params, values: Vec<&str>) -> Result<Vec<Domain>, JobError> {
    let field = params.field("domains");
    if values.len() > MAX_DOMAINS {
        return Err(JobError::LimitExceeded {
            field,
            message: format!("at most {MAX_DOMAINS} domains per app are allowed"),
        });
    }
    validate::domain_list(&field, &values, MAX_DOMAINS)?;
    let domains = values.into_iter().enumerate().map(|(i, d)| Domain::parse(&format!("{field}[{i}]"), d));
    Ok(domains.collect::<Result<_, _>>()?)
}

impl Create {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = app_name(&params)?;
        let sysuser = SysuserName::param(&params, "sysuser")?;
        let runtime = Runtime::param(&params, "runtime")?;
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
        let options = SiteOptions::parse(&params)?;
        let wordpress = params.opt_object("wordpress")?.map(|site| wordpress::Site::parse(&site)).transpose()?;
        Ok(Box::new(Create { name, sysuser, runtime, domains, stack, options, wordpress }))
    }
}

impl Update {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = app_name(&params)?;
        let runtime = Runtime::opt_param(&params, "runtime")?;
        let domains = params.opt_str_array("domains")?.map(|d| domains(&params, d)).transpose()?;
        let options = SiteOptions::parse(&params)?;
        Ok(Box::new(Update { name, runtime, domains, options }))
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
        let wordpress = self.wordpress.as_ref().map(|_| wordpress::resources(&self.name));
        Resources::of(
            [Resource::App(self.name.clone()), Resource::Sysuser(self.sysuser.clone()), Resource::WebStack]
                .into_iter()
                .chain(wordpress.into_iter().flatten()),
        )
    }

    /// With `wordpress`, the install follows in the same job; when it fails, an app
    /// this job created is removed again (its database, files, config and record).
    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let mut app = App {
            sysuser: self.sysuser,
            runtime: self.runtime,
            domains: self.domains,
            stack: self.stack,
            created_ms: 0,
            ssl: None,
            page_cache: None,
            redirect_domains: Vec::new(),
            public_folder: None,
            nginx: Default::default(),
            basic_auth: None,
            wordpress: None,
            git: None,
        };
        self.options.apply_to(&mut app)?;
        let new = ctx.inventory.read(|inv| !inv.apps.contains_key(&self.name));
        let mut outcome = {
            let _web = crate::web::weblock::hold(ctx.root())?;
            converge(ctx, &self.name, app)?
        };
        let Some(site) = self.wordpress else { return Ok(outcome) };
        // The install is the user's files and the database: later web jobs need not
        // wait for it (a user's slow install never holds up another's config).
        ctx.release(Resource::WebStack);
        let installed = wordpress::install(ctx, &self.name, &site).inspect_err(|_| {
            if new {
                if let Err(e) = remove(ctx, &self.name) {
                    tracing::warn!(app = %self.name, "the app of a failed WordPress install was not removed: {e}");
                }
            }
        })?;
        outcome.steps.extend(installed.steps);
        if let (Some(Value::Object(result)), Some(wp)) = (outcome.result.as_mut(), installed.result) {
            result.insert("wordpress".into(), wp);
        }
        Ok(outcome)
    }
}

/// An update converges like a create; an AutoSSL app whose domains changed then
/// gets a certificate for its new names in the same job (which gives back the web
/// stack while it waits on the CA: see [`crate::jobs::ssl`]).
impl Job for Update {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.name.clone()), Resource::WebStack])
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        Box::pin(async move {
            let name = self.name.clone();
            let mut outcome = blocking(ctx.clone(), move |ctx| {
                let _web = crate::web::weblock::hold(ctx.root())?;
                let mut app = ctx
                    .inventory
                    .read(|inv| inv.apps.get(&self.name).cloned())
                    .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(&self.name))))?;
                app.runtime = self.runtime.unwrap_or(app.runtime);
                app.domains = self.domains.unwrap_or(app.domains);
                self.options.apply_to(&mut app)?;
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
        Resources::of([Resource::App(self.name.clone()), Resource::WebStack])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        remove(ctx, &self.name)
    }
}

/// Whether `name` is one that a wildcard among `domains` (`*.example.com`: any name
/// ending in `.example.com`) answers for, or a narrower wildcard below one
/// (`*.a.example.com`, which nginx would prefer, being longer). The same wildcard
/// is not "under" itself: that is a plain conflict of names.
fn under_wildcard(name: &str, domains: &[Domain]) -> bool {
    let name = name.strip_prefix('*').unwrap_or(name);
    domains.iter().filter_map(|d| d.as_str().strip_prefix('*')).any(|suffix| name.ends_with(suffix) && name != suffix)
}

/// Makes the host hold `app` as `name`: the whole desired state, for create and
/// update. The caller holds the web-config lock (and read the app inside it).
fn converge(ctx: &JobContext, name: &AppName, mut app: App) -> Result<Outcome, JobError> {
    let root = ctx.root();
    let web = WebConfig::gather(root)?;
    let host = web.facts();
    let inventory = ctx.inventory.read(|inv| inv.clone());
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
            app.page_cache = existing.page_cache.clone();
            app.basic_auth = existing.basic_auth.clone();
            app.wordpress = existing.wordpress.clone();
            app.git = existing.git.clone();
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
    let wanted = stack::certificate_names(&app);
    for (other, held) in inventory.apps.iter().filter(|(other, _)| *other != name) {
        if let Some(taken) = stack::certificate_names(held).into_iter().find(|d| wanted.contains(d)) {
            return Err(JobError::Conflict(format!("domain {} belongs to app {}", shown(&taken), shown(other))));
        }
        // A name under another user's wildcard is theirs too: nginx prefers an exact
        // name to a wildcard, so it would take that app's traffic (and certificate).
        if held.sysuser != app.sysuser {
            if let Some(taken) = wanted.iter().find(|w| under_wildcard(w, &held.domains)) {
                return Err(JobError::Conflict(format!(
                    "domain {} is under a wildcard domain of app {}",
                    shown(taken),
                    shown(other)
                )));
            }
        }
    }

    let mut outcome = Outcome::default();
    let account = accounts::account(root, &app.sysuser)?;
    let owner = sitedirs::Owner { uid: account.uid, gid: account.gid };
    let folder = public_folder_or_default(app.public_folder.as_ref());
    let mut changed = sitedirs::prepare(root, owner, &app.sysuser, name, folder)?;
    changed |= accounts::ensure_dir(&under_root(root, "/run/php"), 0o755, 0, 0)?;
    outcome.step("directories", changed);
    outcome.step("web server access", grant_web_server(ctx, &app.sysuser)?);

    outcome.applied(&apply_config(ctx, &web, &inventory, name, &app, Vec::new())?);
    let result = json!({
        "web_root": stack::web_root(&app.sysuser, name, folder),
        "log_dir": stack::log_dir(&app.sysuser, name),
        "domains": stack::server_names(&app.domains),
        "stack": app.stack.as_str(),
        "public_folder": folder,
        "redirect_domains": app.redirect_domains,
        "nginx": app.nginx,
    });
    ctx.record(|inv| inv.apps.insert(name.clone(), app))?;
    outcome.result = Some(result);
    Ok(outcome)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_under_a_wildcard_only_below_its_suffix() {
        let domains: Vec<Domain> =
            ["shop.test", "*.wild.test"].iter().map(|d| Domain::parse("domains[0]", d).unwrap()).collect();
        assert!(under_wildcard("a.wild.test", &domains));
        assert!(under_wildcard("a.b.wild.test", &domains));
        assert!(!under_wildcard("wild.test", &domains), "the wildcard's own base is not under it");
        assert!(!under_wildcard("evilwild.test", &domains));
        assert!(under_wildcard("*.a.wild.test", &domains), "a narrower wildcard would take its names");
        assert!(!under_wildcard("*.wild.test", &domains), "the same wildcard is a plain conflict");
        assert!(!under_wildcard("a.shop.test", &domains), "no wildcard there");
    }
}

//! Certificates: `ssl.install`, `ssl.auto`, `ssl.force`, `ssl.delete` (PROTOCOL
//! section 3), and `ssl.renew`, which only the agent's renewal loop submits.
//!
//! The rules are ServerPilot's: a custom certificate cannot be added while AutoSSL
//! is on, AutoSSL cannot be enabled while a custom certificate is there, ForceSSL
//! needs SSL and goes when SSL is deleted. Every change is the app's config and its
//! certificate files in one transaction, so nginx checks the pair before any reload
//! and a refusal puts the previous files back. A failed renewal changes no file: the
//! working certificate and ForceSSL stay, and the failure is recorded and reported.
//!
//! Locking. Every job here declares its app and the web stack to the scheduler, so
//! it takes its turn with the app's other jobs and with the other web jobs. Its
//! config is written under the web-config lock ([`crate::web::weblock`]), with the app
//! read inside it. An AutoSSL order talks to the CA for seconds or minutes (the
//! self-probe, the order, HTTP-01 validation, polling): before it does, the job
//! gives back the web stack ([`JobContext::release`]) and holds no lock, so the
//! other apps' jobs go on; it keeps its app, so nothing else changes that app
//! meanwhile, but for a `sysuser.delete` (which holds no app key). With the
//! certificate in hand it takes the lock, reads the app again and installs only if
//! the app is still the one the order was for: same app (not deleted, not created
//! again), the same names, no custom certificate. Otherwise nothing is written and
//! the job fails with `not_found` (the app is gone) or `conflict` (it changed), and
//! a new `ssl.auto` orders for the app as it is.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::host::fs::{ensure_dir, under_root};
use crate::job::{blocking, BoxFuture, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::web::apply_config;
use crate::jobs::Catalogue;
use crate::model::protocol::{JobStatus, SslRenewal, Status};
use crate::model::resource::Resource;
use crate::model::validate::{shown, FieldError, Params};
use crate::model::{AppName, ServerName};
use crate::state::inventory::{App, InventoryStore, Ssl, SslSource};
use crate::time::{rfc3339, unix_millis};
use crate::web::acme::{self, probe, AcmeError};
use crate::web::certs::{self, CertInfo, Checked};
use crate::web::render::WebConfig;
use crate::web::stack;
use crate::web::weblock;

/// The kind the renewal loop submits; never accepted from the control plane.
pub const RENEW_KIND: &str = "ssl.renew";
/// Longest PEM text accepted in a param.
const MAX_PEM: usize = 256 << 10;

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("ssl.install", Install::parse);
    catalogue.register("ssl.auto", |p| Auto::parse(p, false));
    catalogue.register("ssl.force", Force::parse);
    catalogue.register("ssl.delete", Delete::parse);
    catalogue.register_internal(RENEW_KIND, |p| Auto::parse(p, true));
}

/// `ssl.install {app, key, cert, cacerts?}`: checked at parse time, before anything is written.
struct Install {
    app: AppName,
    checked: Checked,
}

/// `ssl.auto {app}`, or (`renew`) the renewal of its certificate; `force`
/// orders even when the certificate looks good (the CA asked for a renewal).
struct Auto {
    app: AppName,
    renew: bool,
    force: bool,
}

/// `ssl.force {app, force}`.
struct Force {
    app: AppName,
    force: bool,
}

/// `ssl.delete {app}`.
struct Delete {
    app: AppName,
}

fn app_name(params: &Params) -> Result<AppName, JobError> {
    Ok(AppName::param(params, "app")?)
}

fn pem<'a>(params: &Params<'a>, key: &str, required: bool) -> Result<Option<&'a str>, FieldError> {
    let value = if required { Some(params.str(key)?) } else { params.opt_str(key)? };
    if value.is_some_and(|v| v.len() > MAX_PEM) {
        return Err(FieldError::new(params.field(key), format!("is longer than {} KiB", MAX_PEM >> 10)));
    }
    Ok(value)
}

impl Install {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = app_name(&params)?;
        let (key, cert) =
            (pem(&params, "key", true)?.unwrap_or_default(), pem(&params, "cert", true)?.unwrap_or_default());
        let checked = certs::check(key, cert, pem(&params, "cacerts", false)?, SystemTime::now())?;
        Ok(Box::new(Install { app, checked }))
    }
}

impl Auto {
    fn parse(params: &Value, renew: bool) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let force = renew && params.opt_bool("force")?.unwrap_or(false);
        Ok(Box::new(Auto { app: app_name(&params)?, renew, force }))
    }
}

impl Force {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(Force { app: app_name(&params)?, force: params.bool("force")? }))
    }
}

impl Delete {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        Ok(Box::new(Delete { app: app_name(&Params::new(params)?)? }))
    }
}

fn resources(app: &AppName) -> Resources {
    Resources::of([Resource::App(app.clone()), Resource::WebStack])
}

/// The app as the inventory has it.
fn load(ctx: &JobContext, name: &str) -> Result<App, JobError> {
    ctx.inventory
        .read(|inv| inv.apps.get(name).cloned())
        .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(name))))
}

/// What a change does to an app's certificate files.
enum Files<'a> {
    /// The certificate with its chain, and the key.
    Write(&'a str, &'a str),
    Keep,
    Remove,
}

/// Puts `app`'s config in place with its certificate `files` and records its SSL
/// state. The caller holds the web-config lock, and read `app` inside it.
fn install(ctx: &JobContext, name: &AppName, app: &App, files: Files) -> Result<Outcome, JobError> {
    let root = ctx.root();
    let extra = match files {
        Files::Write(chain, key) => {
            for dir in [stack::SSL_DIR.to_owned(), stack::ssl_dir(name)] {
                let dir = under_root(root, &dir);
                ensure_dir(&dir, 0o700).map_err(|e| JobError::Internal(format!("{}: {e}", dir.display())))?;
            }
            stack::ssl_changes(root, name, Some((chain, key)))
        }
        Files::Keep => Vec::new(),
        Files::Remove => stack::ssl_changes(root, name, None),
    };
    let before = ctx.inventory.read(|inv| inv.clone());
    let applied = apply_config(ctx, &WebConfig::gather(root)?, &before, name, app, extra)?;
    let ssl = app.ssl.clone();
    ctx.record(|inv| inv.apps.get_mut(name).map(|a| a.ssl = ssl))?;
    let mut outcome = Outcome::default();
    outcome.applied(&applied);
    Ok(outcome)
}

/// `result` of a job that installed a certificate.
fn cert_result(info: &CertInfo, names: &[String], unreachable: &[(String, String)]) -> Value {
    let (covered, uncovered): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| info.covers(n));
    let reasons: serde_json::Map<String, Value> =
        unreachable.iter().map(|(n, why)| (n.clone(), Value::from(why.as_str()))).collect();
    json!({"expires_at": rfc3339(info.not_after), "domains_covered": covered, "domains_uncovered": uncovered, "unreachable": reasons})
}

impl Job for Install {
    fn resources(&self) -> Resources {
        resources(&self.app)
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        blocking(ctx, move |ctx| {
            let Install { app: name, checked } = *self;
            let _web = weblock::hold(ctx.root())?;
            let mut app = load(ctx, &name)?;
            if app.ssl.as_ref().is_some_and(|s| s.source == SslSource::Auto) {
                return Err(JobError::PreconditionFailed(format!(
                    "AutoSSL is on for app {}: a custom certificate cannot be added while it is (ssl.delete turns it off)",
                    shown(&name)
                )));
            }
            let names = stack::certificate_names(&app);
            if !names.iter().any(|n| checked.info.covers(n)) {
                return Err(FieldError::new(
                    "cert",
                    format!(
                        "covers none of the app's domains ({}); it is for {}",
                        names.join(", "),
                        checked.info.names.join(", ")
                    ),
                )
                .into());
            }
            let force = app.ssl.as_ref().is_some_and(|s| s.force);
            app.ssl = Some(Ssl {
                source: SslSource::Custom,
                force,
                ordered_for: Vec::new(),
                failures: 0,
                next_attempt_ms: 0,
            });
            let mut outcome = install(ctx, &name, &app, Files::Write(&checked.chain_pem, &checked.key_pem))?;
            outcome.result = Some(cert_result(&checked.info, &names, &[]));
            Ok(outcome)
        })
    }
}

/// What an AutoSSL job found before talking to the CA.
enum Plan {
    /// Nothing to do: the certificate holds.
    Holds(Outcome),
    Order {
        app: App,
        names: Vec<String>,
    },
}

impl Job for Auto {
    fn resources(&self) -> Resources {
        resources(&self.app)
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        autossl(ctx, self.app, self.renew, self.force)
    }
}

/// AutoSSL for `name`: a certificate for its names unless the current one holds;
/// `renew` (the renewal loop's jobs) also records a failure for the next attempt;
/// `force` orders even when the certificate holds. The CA is asked with the web
/// stack given back and no lock held; the certificate is installed under the
/// web-config lock, if the app is still the one it was ordered for.
pub(crate) fn autossl(
    ctx: JobContext,
    name: AppName,
    renew: bool,
    force: bool,
) -> BoxFuture<Result<Outcome, JobError>> {
    Box::pin(async move {
        let app_name = name.clone();
        let (planned, names) = match blocking(ctx.clone(), move |ctx| plan(ctx, &app_name, renew, force)).await? {
            Plan::Holds(outcome) => return Ok(outcome),
            Plan::Order { app, names } => (app, names),
        };
        ctx.release(Resource::WebStack);
        let issued = order(&ctx, &names).await;
        blocking(ctx, move |ctx| {
            let (issued, unreachable) = match issued {
                Ok(ok) => ok,
                Err(e) if renew => return Err(record_failure(ctx, &name, e)),
                Err(e) => return Err(e),
            };
            let _web = weblock::hold(ctx.root())?;
            let mut app = still_wanted(ctx, &name, &planned, &names)?;
            let force = app.ssl.as_ref().is_some_and(|s| s.force);
            app.ssl = Some(Ssl {
                source: SslSource::Auto,
                force,
                ordered_for: ordered_for(&names)?,
                failures: 0,
                next_attempt_ms: 0,
            });
            let mut outcome = install(ctx, &name, &app, Files::Write(&issued.chain_pem, &issued.key_pem))?;
            outcome.step(if renew { "certificate renewed" } else { "certificate issued" }, true);
            outcome.result = Some(cert_result(&issued.info, &names, &unreachable));
            Ok(outcome)
        })
        .await
    })
}

/// `names` (the app's server names: its domains, each checked, and their `www.` twins)
/// as the inventory keeps them.
fn ordered_for(names: &[String]) -> Result<Vec<ServerName>, JobError> {
    let checked = names.iter().map(|name| ServerName::try_from(name.as_str()));
    checked.collect::<Result<_, _>>().map_err(|e| JobError::Internal(format!("a server name berth made: {e}")))
}

/// Whether the app needs an order: not when its AutoSSL certificate is for the app's
/// current names and not yet due for renewal.
fn plan(ctx: &JobContext, name: &str, renew: bool, force: bool) -> Result<Plan, JobError> {
    let app = load(ctx, name)?;
    let names = stack::certificate_names(&app);
    let holds = |info: &CertInfo| {
        let mut outcome = Outcome::default();
        outcome.step("certificate", false);
        outcome.result = Some(cert_result(info, &names, &[]));
        Ok(Plan::Holds(outcome))
    };
    match &app.ssl {
        Some(ssl) if ssl.source == SslSource::Custom => {
            return Err(JobError::PreconditionFailed(format!(
                "app {} has a custom certificate: AutoSSL cannot be enabled while it is there (ssl.delete removes it)",
                shown(name)
            )))
        }
        None if renew => {
            let mut outcome = Outcome::default();
            outcome.step("certificate", false);
            return Ok(Plan::Holds(outcome));
        }
        Some(_) if force => {}
        Some(ssl) => {
            if let Some(info) = current_cert(ctx.root(), name)
                .filter(|info| renewal_due(ssl, info, &names, SystemTime::now()).is_none())
            {
                return holds(&info);
            }
        }
        None => {}
    }
    Ok(Plan::Order { app, names })
}

/// The app as it is now (the caller holds the web-config lock), if it is still the
/// app `planned` was, with the `names` the certificate was ordered for: the order ran
/// without the lock, and the app may have been deleted (with its user), or deleted
/// and made again, meanwhile. A certificate for an app that is not there, or not
/// for its names, is not installed.
fn still_wanted(ctx: &JobContext, name: &str, planned: &App, names: &[String]) -> Result<App, JobError> {
    let Some(app) = ctx.inventory.read(|inv| inv.apps.get(name).cloned()) else {
        return Err(JobError::NotFound(format!(
            "app {} was deleted while its certificate was being issued; the certificate was not installed",
            shown(name)
        )));
    };
    if app.created_ms != planned.created_ms || app.sysuser != planned.sysuser {
        return Err(JobError::Conflict(format!(
            "app {} was deleted and created again while its certificate was being issued; the certificate was not \
             installed (ssl.auto orders one for the app as it is now)",
            shown(name)
        )));
    }
    if app.ssl.as_ref().is_some_and(|s| s.source == SslSource::Custom) {
        return Err(JobError::PreconditionFailed(format!(
            "app {} got a custom certificate while AutoSSL was ordering; the issued certificate was not installed",
            shown(name)
        )));
    }
    let now = stack::certificate_names(&app);
    if now != names {
        return Err(JobError::Conflict(format!(
            "the domains of app {} changed while its certificate was being issued (ordered for {}; now {}); the \
             certificate was not installed (ssl.auto orders one for the new names)",
            shown(name),
            names.join(", "),
            now.join(", ")
        )));
    }
    Ok(app)
}

/// Probes the names, then orders a certificate for those that reach this server.
async fn order(ctx: &JobContext, names: &[String]) -> Result<(acme::Issued, Vec<(String, String)>), JobError> {
    ctx.output("checking which domains reach this server over HTTP\n");
    let reach = probe::probe(ctx.root(), names).await.map_err(|e| JobError::Internal(format!("self-probe: {e}")))?;
    for (name, why) in &reach.unreachable {
        ctx.output(format!("{name}: left out: {why}\n"));
    }
    if reach.reachable.is_empty() {
        let why: Vec<String> = reach.unreachable.iter().map(|(n, why)| format!("{n} ({why})")).collect();
        return Err(JobError::PreconditionFailed(format!(
            "none of the app's domains reach this server over HTTP: {}",
            why.join("; ")
        )));
    }
    let progress = |line: String| ctx.output(line);
    let issued = acme::order(&ctx.acme, ctx.root(), &reach.reachable, &progress).await.map_err(|e| match e {
        AcmeError::Io { .. } => JobError::Internal(e.to_string()),
        AcmeError::Ca(_) | AcmeError::Validation(_) | AcmeError::RateLimited(_) | AcmeError::Unreachable { .. } => {
            JobError::AcmeFailed(e.to_string())
        }
    })?;
    Ok((issued, reach.unreachable))
}

/// A failed renewal: counted, the next attempt spaced out (1 h, doubling up to
/// 12 h); the certificate and ForceSSL stay as they are.
fn record_failure(ctx: &JobContext, name: &str, error: JobError) -> JobError {
    let now = SystemTime::now();
    let next = ctx.record(|inv| {
        let ssl = inv.apps.get_mut(name)?.ssl.as_mut()?;
        ssl.failures += 1;
        let wait = Duration::from_secs(3600) * 2u32.saturating_pow(ssl.failures - 1).min(12);
        ssl.next_attempt_ms = unix_millis(now + wait);
        Some(now + wait)
    });
    match (next, error) {
        (Ok(Some(next)), JobError::AcmeFailed(message)) => JobError::AcmeFailed(format!(
            "{message}; the current certificate stays; next attempt after {}",
            rfc3339(next)
        )),
        (_, error) => error,
    }
}

/// The `ssl.renewal` event of a finished renewal job; none when it changed nothing.
pub fn renewal_event(params: &Value, status: &JobStatus, inventory: &InventoryStore) -> Option<SslRenewal> {
    if status.status == Status::Success && status.changed != Some(true) {
        return None;
    }
    let app = params.get("app").and_then(Value::as_str).unwrap_or_default().to_owned();
    let next_attempt_at = match status.status {
        Status::Error => inventory
            .read(|inv| inv.apps.get(app.as_str()).and_then(|a| a.ssl.as_ref()).map(|s| s.next_attempt_ms))
            .filter(|&ms| ms > 0)
            .map(|ms| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))),
        Status::Queued | Status::Running | Status::Success => None,
    };
    Some(SslRenewal {
        app,
        status: status.status,
        at: status.at.clone(),
        result: status.result.clone(),
        error: status.error.clone(),
        next_attempt_at,
    })
}

/// Why an AutoSSL certificate needs a new order now, if it does.
pub fn renewal_due(ssl: &Ssl, info: &CertInfo, names: &[String], now: SystemTime) -> Option<&'static str> {
    if ssl.ordered_for != names {
        Some("the app's domains changed")
    } else if now >= info.renew_at() {
        Some("a third of its lifetime is left")
    } else {
        None
    }
}

/// The certificate the app serves now, if its file is there and parses.
pub fn current_cert(root: &std::path::Path, app: &str) -> Option<CertInfo> {
    let text = std::fs::read_to_string(under_root(root, &stack::ssl_cert(app))).ok()?;
    let leaf = certs::certs("cert", &text).ok()?.into_iter().next()?;
    CertInfo::from_der(&leaf).ok()
}

impl Job for Force {
    fn resources(&self) -> Resources {
        resources(&self.app)
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        blocking(ctx, move |ctx| {
            let _web = weblock::hold(ctx.root())?;
            let mut app = load(ctx, &self.app)?;
            let Some(ssl) = app.ssl.as_mut() else {
                if self.force {
                    return Err(JobError::PreconditionFailed(format!(
                        "ForceSSL needs SSL: app {} has no certificate (ssl.install or ssl.auto first)",
                        shown(&self.app)
                    )));
                }
                let mut outcome = Outcome::default();
                outcome.step("forcessl", false);
                return Ok(outcome);
            };
            ssl.force = self.force;
            let mut outcome = install(ctx, &self.app, &app, Files::Keep)?;
            outcome.result = Some(json!({"force": self.force}));
            Ok(outcome)
        })
    }
}

impl Job for Delete {
    fn resources(&self) -> Resources {
        resources(&self.app)
    }

    fn run(self: Box<Self>, ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        blocking(ctx, move |ctx| {
            let _web = weblock::hold(ctx.root())?;
            let mut app = load(ctx, &self.app)?;
            app.ssl = None;
            let mut outcome = install(ctx, &self.app, &app, Files::Remove)?;
            let dir = under_root(ctx.root(), &stack::ssl_dir(&self.app));
            let removed = dir.exists();
            if removed {
                std::fs::remove_dir_all(&dir).map_err(|e| JobError::Internal(format!("{}: {e}", dir.display())))?;
            }
            outcome.step("certificate directory", removed);
            Ok(outcome)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::ErrorCode;

    fn app(domains: &[&str], created_ms: u64) -> App {
        App::fixture(domains, created_ms)
    }

    #[test]
    fn an_issued_certificate_is_installed_only_for_the_app_it_was_ordered_for() {
        let dir = tempfile::tempdir().unwrap();
        let machine = crate::job::Machine {
            host: std::sync::Arc::new(crate::host::fake::FakeHost::new(dir.path())),
            inventory: std::sync::Arc::new(InventoryStore::open(dir.path()).unwrap()),
            mysql: crate::host::mysql::MysqlSettings::under(dir.path()),
            acme: std::sync::Arc::new(acme::AcmeSettings::new(dir.path())),
            reboot_command: Vec::new(),
            wordpress_source: crate::config::DEFAULT_WORDPRESS_SOURCE.into(),
            redis_socket: crate::config::DEFAULT_REDIS_SOCKET.into(),
            history: std::sync::Arc::new(crate::state::history::History::open(dir.path()).unwrap()),
        };
        let ctx = JobContext::new("j".into(), &machine, Default::default(), tokio::sync::mpsc::channel(1).0);
        let planned = app(&["shop.test"], 1);
        let names = stack::server_names(&planned.domains);
        let now = |a: Option<App>| {
            ctx.record(|inv| match a {
                Some(a) => drop(inv.apps.insert("shop".try_into().unwrap(), a)),
                None => drop(inv.apps.remove("shop")),
            })
            .unwrap();
            still_wanted(&ctx, "shop", &planned, &names).map_err(|e| e.code())
        };
        assert!(now(Some(planned.clone())).is_ok(), "unchanged");
        let mut forced = planned.clone();
        forced.ssl =
            Some(Ssl { source: SslSource::Auto, force: true, ordered_for: vec![], failures: 0, next_attempt_ms: 0 });
        assert!(now(Some(forced)).is_ok_and(|a| a.ssl.unwrap().force), "what it is now is what gets installed");
        assert_eq!(now(None).unwrap_err(), ErrorCode::NotFound, "deleted meanwhile");
        assert_eq!(now(Some(app(&["shop.test"], 2))).unwrap_err(), ErrorCode::Conflict, "deleted and made again");
        assert_eq!(now(Some(app(&["shop.test", "new.test"], 1))).unwrap_err(), ErrorCode::Conflict, "new names");
        let mut custom = planned.clone();
        custom.ssl =
            Some(Ssl { source: SslSource::Custom, force: false, ordered_for: vec![], failures: 0, next_attempt_ms: 0 });
        assert_eq!(now(Some(custom)).unwrap_err(), ErrorCode::PreconditionFailed, "a custom certificate came");
    }
}

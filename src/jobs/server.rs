//! The server as a whole: `server.update` (firewall, autoupdates,
//! deny_unknown_domains, and berth's `default_app`), `service.restart` and
//! `server.reboot` (PROTOCOL section 3).
//!
//! `server.update` checks every precondition before it changes anything, then
//! applies each setting through its own path: the apt file for autoupdates, one
//! config transaction over the web stack for unknown domains, nftables for the
//! firewall. Each setting is recorded in the inventory as soon as it holds, so a
//! later failure never leaves the record claiming more (or less) than the host does.
//! A reboot is the engine's to carry out after the final status is acknowledged:
//! the job only asks for it.

use std::path::Path;

use serde_json::{json, Value};

use crate::host::fs::{under_root, write_atomic};
use crate::host::services::{mysql_installed, Service, Services};
use crate::host::transaction;
use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::firewall;
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::validate::{shown, FieldError, Params};
use crate::model::AppName;
use crate::state::inventory::{Inventory, Settings};
use crate::web::render::WebConfig;
use crate::web::stack::{self, Scope};

/// Debian's switch for the apt timers' periodic update and unattended upgrade.
pub const AUTO_UPGRADES: &str = "/etc/apt/apt.conf.d/20auto-upgrades";
/// Installed by the `unattended-upgrades` package.
const UNATTENDED_UPGRADE: &str = "/usr/bin/unattended-upgrade";
/// How long a restarted server gets to write its pid file before it counts as down.
const START_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("server.update", Update::parse);
    catalogue.register("service.restart", Restart::parse);
    catalogue.register("server.reboot", Reboot::parse);
}

/// `server.update {firewall?, autoupdates?, deny_unknown_domains?, default_app?}`.
#[derive(Debug)]
struct Update {
    firewall: Option<bool>,
    autoupdates: Option<bool>,
    deny_unknown_domains: Option<bool>,
    default_app: Option<AppName>,
}

/// `service.restart {service}`.
#[derive(Debug)]
struct Restart {
    service: Target,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Nginx,
    Apache,
    PhpFpm,
    Mysql,
}

/// `server.reboot {}`.
#[derive(Debug)]
struct Reboot;

impl Update {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(Update {
            firewall: params.opt_bool("firewall")?,
            autoupdates: params.opt_bool("autoupdates")?,
            deny_unknown_domains: params.opt_bool("deny_unknown_domains")?,
            default_app: AppName::opt_param(&params, "default_app")?,
        }))
    }
}

impl Restart {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let service = match params.str("service")? {
            "nginx" => Target::Nginx,
            "apache" => Target::Apache,
            "php-fpm" => Target::PhpFpm,
            "mysql" => Target::Mysql,
            other => {
                return Err(FieldError::new(
                    "service",
                    format!("must be nginx, apache, php-fpm or mysql, not {}", shown(other)),
                )
                .into())
            }
        };
        Ok(Box::new(Restart { service }))
    }
}

impl Reboot {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        Params::new(params)?;
        Ok(Box::new(Reboot))
    }
}

impl BlockingJob for Update {
    fn resources(&self) -> Resources {
        Resources::of([Resource::Firewall, Resource::WebStack, Resource::Autoupdates])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        // A re-render of the web config reads the inventory under the web-config lock.
        let web = self.deny_unknown_domains.is_some() || self.default_app.is_some();
        let _web = web.then(|| crate::web::weblock::hold(root)).transpose()?;
        let inventory = ctx.inventory.read(|inv| inv.clone());
        let current = inventory.settings.clone();
        let mut wanted = current.clone();
        wanted.firewall = self.firewall.unwrap_or(current.firewall);
        wanted.autoupdates = self.autoupdates.unwrap_or(current.autoupdates);
        wanted.deny_unknown_domains = self.deny_unknown_domains.unwrap_or(current.deny_unknown_domains);
        if let Some(app) = &self.default_app {
            if !inventory.apps.contains_key(app) {
                return Err(JobError::NotFound(format!("default_app: app {} does not exist", shown(app))));
            }
            wanted.default_app = Some(app.clone());
        }
        // Every precondition before anything changes.
        if self.autoupdates == Some(true) && !under_root(root, UNATTENDED_UPGRADE).exists() {
            return Err(JobError::PreconditionFailed(
                "autoupdates need the unattended-upgrades package, which is not installed".into(),
            ));
        }
        if self.firewall.is_some() {
            firewall::precondition(root, &wanted)?;
        }

        let mut outcome = Outcome::default();
        if self.autoupdates.is_some() {
            outcome.step("autoupdates", write_auto_upgrades(root, wanted.autoupdates)?);
            ctx.record(|inv| inv.settings.autoupdates = wanted.autoupdates)?;
        }
        if self.deny_unknown_domains.is_some() || self.default_app.is_some() {
            let next = Inventory { settings: wanted.clone(), ..inventory.clone() };
            if !next.apps.is_empty() {
                outcome.applied(&rerender_web(ctx, &next)?);
            }
            ctx.record(|inv| {
                inv.settings.deny_unknown_domains = wanted.deny_unknown_domains;
                inv.settings.default_app = wanted.default_app.clone();
            })?;
        }
        if self.firewall.is_some() {
            outcome.step("firewall", firewall::converge(ctx.host.as_ref(), &wanted)?);
            ctx.record(|inv| inv.settings.firewall = wanted.firewall)?;
        }
        outcome.result =
            Some(settings_json(&wanted, stack::default_app(&Inventory { settings: wanted.clone(), ..inventory })));
        Ok(outcome)
    }
}

fn settings_json(settings: &Settings, default_app: Option<AppName>) -> Value {
    json!({
        "firewall": settings.firewall,
        "autoupdates": settings.autoupdates,
        "deny_unknown_domains": settings.deny_unknown_domains,
        "default_app": default_app,
    })
}

/// Writes Debian's auto-upgrades switch; true when it changed.
fn write_auto_upgrades(root: &Path, on: bool) -> Result<bool, JobError> {
    let flag = if on { "1" } else { "0" };
    let content = format!(
        "// Managed by berth (server.update autoupdates).\n\
         APT::Periodic::Update-Package-Lists \"{flag}\";\n\
         APT::Periodic::Unattended-Upgrade \"{flag}\";\n"
    );
    let path = under_root(root, AUTO_UPGRADES);
    if std::fs::read_to_string(&path).is_ok_and(|held| held == content) {
        return Ok(false);
    }
    let io = |e: std::io::Error| JobError::Internal(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        crate::host::fs::ensure_dir(dir, 0o755).map_err(io)?;
    }
    write_atomic(&path, content.as_bytes(), 0o644).map_err(io)?;
    Ok(true)
}

/// The base files and every app's vhost, for `next`'s settings, as one transaction
/// (the old default app loses `default_server` as the new one gains it).
fn rerender_web(ctx: &JobContext, next: &Inventory) -> Result<transaction::Applied, JobError> {
    let web = WebConfig::gather(ctx.root())?;
    let (changes, _) = web.render(next, Scope::Every)?;
    web.apply(ctx.host.as_ref(), next, &changes)
}

impl BlockingJob for Restart {
    fn resources(&self) -> Resources {
        match self.service {
            Target::Mysql => Resources::of([Resource::Mysql]),
            Target::Nginx | Target::Apache | Target::PhpFpm => Resources::of([Resource::WebStack]),
        }
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        // A web server never restarts in the middle of another job's config change.
        let _web = (self.service != Target::Mysql).then(|| crate::web::weblock::hold(root)).transpose()?;
        let services = Services::detect(root);
        let targets = installed(root, self.service)?;
        let mut outcome = Outcome::default();
        let mut report = Vec::new();
        for service in targets {
            let before = ctx.host.generation(&services, &service);
            for cmd in services.full_restart(&service) {
                outcome.output.push_str(&ctx.host.run(&cmd)?);
            }
            // `success` means live here too: the new processes serve (host::generation).
            let deadline = std::time::Instant::now() + crate::host::LIVE_PATIENCE;
            ctx.host.until_live(&services, &service, &before, deadline).map_err(JobError::from)?;
            let running = eventually_running(ctx, &services, &service);
            outcome.step(format!("restart {service}"), true);
            report.push(json!({"name": service.unit(), "running": running}));
        }
        outcome.result = Some(json!({ "services": report }));
        Ok(outcome)
    }
}

/// The installed services `target` names; none is `precondition_failed`.
fn installed(root: &Path, target: Target) -> Result<Vec<Service>, JobError> {
    let found = match target {
        Target::Nginx => under_root(root, "/usr/sbin/nginx").exists().then_some(Service::Nginx).into_iter().collect(),
        Target::Apache => stack::apache_installed(root).then_some(Service::Apache).into_iter().collect(),
        Target::PhpFpm => crate::host::probe::runtimes(root)
            .iter()
            .map(|r| Service::PhpFpm(r.trim_start_matches("php").to_owned()))
            .collect(),
        Target::Mysql => mysql_installed(root).into_iter().collect::<Vec<_>>(),
    };
    if found.is_empty() {
        let name = match target {
            Target::Nginx => "nginx",
            Target::Apache => "Apache",
            Target::PhpFpm => "PHP-FPM",
            Target::Mysql => "MySQL/MariaDB",
        };
        return Err(JobError::PreconditionFailed(format!("{name} is not installed")));
    }
    Ok(found)
}

/// Whether the service runs again, given a few seconds to write its pid file.
fn eventually_running(ctx: &JobContext, services: &Services, service: &Service) -> bool {
    let started = std::time::Instant::now();
    loop {
        if services.running(ctx.host.as_ref(), service) {
            return true;
        }
        if started.elapsed() >= START_PATIENCE {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

impl BlockingJob for Reboot {
    fn resources(&self) -> Resources {
        Resources::exclusive()
    }

    fn apply(self, _ctx: &JobContext) -> Result<Outcome, JobError> {
        let mut outcome = Outcome { reboot: true, ..Outcome::default() };
        outcome.step("reboot after the acknowledgement", true);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::ErrorCode;

    fn field_of(kind: &str, params: Value) -> String {
        let catalogue = Catalogue::new(false);
        let err = catalogue.parse(kind, &params).err().unwrap_or_else(|| panic!("accepted: {params}"));
        assert_eq!(err.code(), ErrorCode::InvalidParams, "{err}");
        err.field().unwrap().to_owned()
    }

    #[test]
    fn hostile_settings_are_refused_naming_the_field() {
        for value in [json!("true"), json!(1), json!("yes"), json!([]), json!({})] {
            assert_eq!(field_of("server.update", json!({"firewall": value})), "firewall");
            assert_eq!(field_of("server.update", json!({"autoupdates": value})), "autoupdates");
            assert_eq!(field_of("server.update", json!({"deny_unknown_domains": value})), "deny_unknown_domains");
        }
        for app in ["../etc", "a", "Blog", "blog;", ""] {
            assert_eq!(field_of("server.update", json!({"default_app": app})), "default_app", "{app:?}");
        }
        assert_eq!(field_of("server.update", json!([true])), "params");
        for service in ["sshd", "NGINX", "php8.2-fpm", "", "nginx; reboot"] {
            assert_eq!(field_of("service.restart", json!({"service": service})), "service", "{service:?}");
        }
        assert_eq!(field_of("service.restart", json!({})), "service");
        assert_eq!(field_of("service.restart", json!({"service": 1})), "service");
        assert_eq!(field_of("server.reboot", json!("now")), "params");
        assert!(Catalogue::new(false).parse("server.update", &json!({})).is_ok());
    }

    #[test]
    fn a_reboot_is_exclusive_and_asks_the_engine_to_reboot() {
        let job = Catalogue::new(false).parse("server.reboot", &json!({})).unwrap();
        assert!(job.resources().exclusive);
        let dir = tempfile::tempdir().unwrap();
        let machine = crate::job::Machine {
            host: std::sync::Arc::new(crate::host::fake::FakeHost::new(dir.path())),
            inventory: std::sync::Arc::new(crate::state::inventory::InventoryStore::open(dir.path()).unwrap()),
            mysql: crate::host::mysql::MysqlSettings::under(dir.path()),
            acme: std::sync::Arc::new(crate::web::acme::AcmeSettings::new(dir.path())),
            reboot_command: vec!["/bin/false".into()],
            wordpress_source: crate::config::DEFAULT_WORDPRESS_SOURCE.into(),
            redis_socket: crate::config::DEFAULT_REDIS_SOCKET.into(),
            history: std::sync::Arc::new(crate::state::history::History::open(dir.path()).unwrap()),
        };
        let ctx = JobContext::new("j".into(), &machine, Default::default(), tokio::sync::mpsc::channel(1).0);
        let outcome = Reboot.apply(&ctx).unwrap();
        assert!(outcome.reboot && outcome.changed());
    }

    #[test]
    fn autoupdates_are_debians_switch_and_rewritten_only_when_they_change() {
        let root = tempfile::tempdir().unwrap();
        assert!(write_auto_upgrades(root.path(), true).unwrap());
        let text = std::fs::read_to_string(under_root(root.path(), AUTO_UPGRADES)).unwrap();
        assert!(
            text.contains("APT::Periodic::Unattended-Upgrade \"1\";") && text.contains("Update-Package-Lists \"1\""),
            "{text}"
        );
        assert!(!write_auto_upgrades(root.path(), true).unwrap());
        assert!(write_auto_upgrades(root.path(), false).unwrap());
        let text = std::fs::read_to_string(under_root(root.path(), AUTO_UPGRADES)).unwrap();
        assert!(text.contains("APT::Periodic::Unattended-Upgrade \"0\";"), "{text}");
    }

    #[test]
    fn a_service_that_is_not_installed_is_a_precondition() {
        let root = tempfile::tempdir().unwrap();
        for target in [Target::Nginx, Target::Apache, Target::PhpFpm, Target::Mysql] {
            assert_eq!(installed(root.path(), target).unwrap_err().code(), ErrorCode::PreconditionFailed);
        }
        std::fs::create_dir_all(root.path().join("usr/sbin")).unwrap();
        std::fs::write(root.path().join("usr/sbin/mariadbd"), "").unwrap();
        assert_eq!(installed(root.path(), Target::Mysql).unwrap(), [Service::Mysql("mariadb")]);
    }
}

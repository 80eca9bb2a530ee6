//! An app's Redis object cache: `app.object_cache {app, enabled}` turns it on or
//! off, `app.object_cache_purge {app}` deletes its keys.
//!
//! On, the app has an ACL user of its own in Redis, held to the keys `APP:*`, and
//! a credentials file in its directory (for WordPress, `wp-config.php` loads it);
//! off, the user, its keys and the file are gone ([`crate::web::objcache`] says
//! how, and why that is safe in a tree the user controls). Redis keeps its users
//! itself (`aclfile`, `ACL SAVE`), so the inventory records nothing and a rerun
//! finds what is there: the same user and password, `changed: false`. Neither
//! job touches the web stack's config: they hold only the app. No password is
//! ever in a result, an event or a log line.

use serde_json::{json, Value};

use crate::host::fs::under_root;
use crate::job::{BlockingJob, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::site::public_folder_or_default;
use crate::model::validate::{shown, Params};
use crate::model::AppName;
use crate::state::inventory::App;
use crate::web::objcache::{self, Site};
use crate::web::sitedirs::Owner;
use crate::web::{accounts, stack, wordpress};

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.object_cache", Switch::parse);
    catalogue.register("app.object_cache_purge", Purge::parse);
}

/// `app.object_cache {app, enabled}`.
#[derive(Debug)]
struct Switch {
    app: AppName,
    enabled: bool,
}

/// `app.object_cache_purge {app}`.
#[derive(Debug)]
struct Purge {
    app: AppName,
}

impl Switch {
    fn parse(params: &Value) -> Result<Box<dyn crate::job::Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let enabled = params.bool("enabled")?;
        Ok(Box::new(Switch { app, enabled }))
    }
}

impl Purge {
    fn parse(params: &Value) -> Result<Box<dyn crate::job::Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(Purge { app: AppName::param(&params, "app")? }))
    }
}

/// The app as the inventory has it.
fn load(ctx: &JobContext, name: &str) -> Result<App, JobError> {
    ctx.inventory
        .read(|inv| inv.apps.get(name).cloned())
        .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(name))))
}

impl BlockingJob for Switch {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let app = load(ctx, &self.app)?;
        let account = accounts::account(root, &app.sysuser)?;
        let public_folder = public_folder_or_default(app.public_folder.as_ref());
        let is_wordpress = app.wordpress.is_some()
            || wordpress::wordpress_version(root, &app.sysuser, &self.app, public_folder)?.is_some();
        let wp = if is_wordpress {
            let php = under_root(root, &format!("/usr/bin/{}", app.runtime)).display().to_string();
            if !std::path::Path::new(&php).is_file() {
                return Err(JobError::PreconditionFailed(format!(
                    "app {} is WordPress, whose wp-config.php berth changes with php-cli of the app's runtime, and \
                     {php} is missing (package {}-cli)",
                    self.app, app.runtime
                )));
            }
            let web_root = stack::web_root(&app.sysuser, &self.app, public_folder);
            Some((php, format!("{}/wp-config.php", under_root(root, &web_root).display())))
        } else {
            None
        };
        let socket = ctx.redis_socket.display().to_string();
        let site = Site {
            app: &self.app,
            socket: &socket,
            sysuser: &app.sysuser,
            owner: Owner { uid: account.uid, gid: account.gid },
            wordpress: wp,
        };
        let changes = if self.enabled {
            objcache::enable(root, ctx.host.as_ref(), &site)?
        } else {
            objcache::disable(root, ctx.host.as_ref(), &site)?
        };
        let mut outcome = Outcome::default();
        outcome.step("redis user", changes.acl_user);
        outcome.step("credentials file", changes.credentials);
        if is_wordpress {
            outcome.step("wp-config.php", changes.wp_config);
        }
        if !self.enabled {
            outcome.step("keys", changes.removed > 0);
        }
        let credentials = format!("{}/{}", stack::app_dir(&app.sysuser, &self.app), crate::web::objcreds::CREDENTIALS);
        outcome.result = Some(json!({
            "enabled": self.enabled,
            "redis_user": self.enabled.then(|| objcache::acl_user(&self.app)),
            "key_prefix": self.enabled.then(|| objcache::prefix(&self.app)),
            "socket": self.enabled.then_some(&socket),
            "credentials_file": self.enabled.then_some(credentials),
            "wordpress": is_wordpress,
            "removed": (!self.enabled).then_some(changes.removed),
        }));
        Ok(outcome)
    }
}

impl BlockingJob for Purge {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        load(ctx, &self.app)?;
        let removed = objcache::purge(ctx.root(), &ctx.redis_socket.display().to_string(), &self.app)?;
        let mut outcome = Outcome::default();
        outcome.step("keys", removed > 0);
        outcome.result = Some(json!({"removed": removed}));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::refused;

    /// Hostile and broken values are refused at parse time, naming the field.
    #[test]
    fn hostile_params_are_refused_naming_the_field() {
        let apps = [
            json!(null),
            json!(5),
            json!(["blog"]),
            json!(""),
            json!("bl"),
            json!("Blog"),
            json!("blog:"),
            json!("blog*"),
            json!("b?og"),
            json!("[blog]"),
            json!("blog\\"),
            json!("blog x"),
            json!("blog\n"),
            json!("blog\r\nFLUSHALL"),
            json!("blog\u{0}"),
            json!("../etc"),
            json!("blog/.."),
            json!("blög"),
            json!("app_blog"),
            json!("a".repeat(31)),
        ];
        for app in &apps {
            assert_eq!(refused("app.object_cache", json!({"app": app, "enabled": true})), "app", "{app}");
            assert_eq!(refused("app.object_cache_purge", json!({"app": app})), "app", "{app}");
        }
        assert_eq!(refused("app.object_cache", json!({"enabled": true})), "app");
        assert_eq!(refused("app.object_cache_purge", json!({})), "app");
        for enabled in [json!(null), json!("true"), json!(1), json!(0), json!("on"), json!([true]), json!({})] {
            assert_eq!(refused("app.object_cache", json!({"app": "blog", "enabled": enabled})), "enabled", "{enabled}");
        }
        assert_eq!(refused("app.object_cache", json!({"app": "blog"})), "enabled");
        let catalogue = Catalogue::new(false);
        assert!(catalogue.parse("app.object_cache", &json!({"app": "blog2", "enabled": false})).is_ok());
        assert!(catalogue.parse("app.object_cache_purge", &json!({"app": "blog"})).is_ok());
    }
}

//! An app's page cache: `app.page_cache` turns it on or off (and sets how long a
//! page is kept), `app.cache_purge` empties it, all of it or given paths.
//!
//! Turning it on or off is a config change like any other (the app's nginx vhost,
//! rendered from the inventory, checked and reloaded; [`crate::web::cache`] says
//! where the cache sits and why). A purge changes no config: it deletes the
//! entries' files in berth's own cache directory, which nginx takes as misses, so
//! it reloads nothing and holds only the app, not the web stack.

use serde_json::{json, Value};

use crate::job::{BlockingJob, JobContext, JobError, Outcome, Resources};
use crate::jobs::web::apply_config;
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::validate::{shown, Params};
use crate::model::{AppName, CacheTtl, PageCache, UrlPath};
use crate::state::inventory::App;
use crate::web::render::WebConfig;
use crate::web::{cache, stack, weblock};

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.page_cache", Switch::parse);
    catalogue.register("app.cache_purge", Purge::parse);
}

/// `app.page_cache {app, enabled, ttl_secs?}`.
#[derive(Debug)]
struct Switch {
    app: AppName,
    /// `None`: off.
    cache: Option<PageCache>,
}

/// `app.cache_purge {app, paths?}`; no paths: every page.
#[derive(Debug)]
struct Purge {
    app: AppName,
    paths: Option<Vec<UrlPath>>,
}

impl Switch {
    fn parse(params: &Value) -> Result<Box<dyn crate::job::Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let enabled = params.bool("enabled")?;
        // Checked even when the cache goes off: a bad value is never taken quietly.
        let ttl_secs = CacheTtl::opt_param(&params, "ttl_secs")?;
        Ok(Box::new(Switch { app, cache: enabled.then_some(PageCache { ttl_secs }) }))
    }
}

impl Purge {
    fn parse(params: &Value) -> Result<Box<dyn crate::job::Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        Ok(Box::new(Purge { app, paths: UrlPath::opt_params(&params, "paths")? }))
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
        Resources::of([Resource::App(self.app.clone()), Resource::WebStack])
    }

    /// On: the zone's directory, then the vhost. Off: the vhost, then the directory
    /// and every entry in it goes, so a cache turned on again starts empty rather
    /// than serve pages from before.
    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let _web = weblock::hold(root)?;
        let mut app = load(ctx, &self.app)?;
        let mut outcome = Outcome::default();
        if self.cache.is_some() {
            outcome.step("cache directory", cache::ensure(root, &self.app, stack::WEB_USER)?);
        }
        app.page_cache = self.cache.clone();
        let before = ctx.inventory.read(|inv| inv.clone());
        outcome.applied(&apply_config(ctx, &WebConfig::gather(root)?, &before, &self.app, &app, Vec::new())?);
        let page_cache = self.cache.clone();
        ctx.record(|inv| inv.apps.get_mut(&self.app).map(|a| a.page_cache = page_cache))?;
        if self.cache.is_none() {
            outcome.step("cache directory", cache::remove(root, &self.app)?);
        }
        outcome.result = Some(json!({
            "enabled": self.cache.is_some(),
            "ttl_secs": self.cache.map(|c| c.ttl_secs.secs()),
            "cache_dir": cache::zone_dir(&self.app),
        }));
        Ok(outcome)
    }
}

impl BlockingJob for Purge {
    /// The app alone: no config changes, so other apps' jobs need not wait.
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let app = load(ctx, &self.app)?;
        let removed = match &self.paths {
            None => cache::purge_all(root, &self.app)?,
            Some(paths) => cache::purge_paths(root, &self.app, &stack::server_names(&app.domains), paths)?,
        };
        let mut outcome = Outcome::default();
        outcome.step("cache entries", removed > 0);
        outcome.result = Some(json!({"removed": removed, "enabled": app.page_cache.is_some()}));
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
        let switch = [
            (json!({"enabled": true}), "app"),
            (json!({"app": "../etc", "enabled": true}), "app"),
            (json!({"app": "blog\n", "enabled": true}), "app"),
            (json!({"app": "blog"}), "enabled"),
            (json!({"app": "blog", "enabled": "yes"}), "enabled"),
            (json!({"app": "blog", "enabled": 1}), "enabled"),
            (json!({"app": "blog", "enabled": true, "ttl_secs": 0}), "ttl_secs"),
            (json!({"app": "blog", "enabled": true, "ttl_secs": -5}), "ttl_secs"),
            (json!({"app": "blog", "enabled": true, "ttl_secs": 1.5}), "ttl_secs"),
            (json!({"app": "blog", "enabled": true, "ttl_secs": "3600"}), "ttl_secs"),
            (json!({"app": "blog", "enabled": true, "ttl_secs": 31_536_001}), "ttl_secs"),
            (json!({"app": "blog", "enabled": true, "ttl_secs": u64::MAX}), "ttl_secs"),
            (json!({"app": "blog", "enabled": false, "ttl_secs": 0}), "ttl_secs"),
        ];
        for (params, field) in switch {
            assert_eq!(refused("app.page_cache", params.clone()), field, "{params}");
        }
        let purge = [
            (json!({"app": "blog", "paths": "/"}), "paths"),
            (json!({"app": "blog", "paths": []}), "paths"),
            (json!({"app": "blog", "paths": ["/", 5]}), "paths[1]"),
            (json!({"app": "blog", "paths": ["/", "/ok", "relative"]}), "paths[2]"),
            (json!({"app": "blog", "paths": ["/a b"]}), "paths[0]"),
            (json!({"app": "blog", "paths": ["/a\r\nX-Evil: 1"]}), "paths[0]"),
            (json!({"app": "blog", "paths": ["/a\u{0}"]}), "paths[0]"),
            (json!({"app": "blog", "paths": ["/../../etc/passwd"]}), "paths[0]"),
            (json!({"app": "blog", "paths": ["/?p=1"]}), "paths[0]"),
            (json!({"app": "blog", "paths": ["/#x"]}), "paths[0]"),
            (json!({"app": "blog", "paths": ["/é"]}), "paths[0]"),
            (json!({"app": "blog", "paths": ["//x", "http://evil.test/"]}), "paths[1]"),
            (json!({"app": "blog", "paths": [format!("/{}", "a".repeat(2048))]}), "paths[0]"),
            (json!({"app": "blog", "paths": vec!["/"; 101]}), "paths"),
            (json!({"app": "Blog"}), "app"),
        ];
        for (params, field) in purge {
            assert_eq!(refused("app.cache_purge", params.clone()), field, "{params}");
        }
    }
}

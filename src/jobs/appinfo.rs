//! `app.info {app}`: what SpinupWP's site object shows that berth can know, from
//! the inventory and the app's own files (docs/protocol.md). It changes nothing.
//!
//! The control plane asks for it after a change, or to show a site; `berth dev`'s
//! `GET /apps/:id` carries it as `site`. What comes from the user's tree (the
//! WordPress version) is read without following links, and is only what the
//! user's files say.

use serde_json::{json, Value};

use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::site::public_folder_or_default;
use crate::model::validate::{shown, Params};
use crate::model::AppName;
use crate::state::inventory::{App, SslSource};
use crate::web::stack;
use crate::web::wordpress::wordpress_version;

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.info", Info::parse);
}

/// `app.info {app}`.
#[derive(Debug)]
struct Info {
    app: AppName,
}

impl Info {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(Info { app: AppName::param(&params, "app")? }))
    }
}

impl BlockingJob for Info {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let app = ctx
            .inventory
            .read(|inv| inv.apps.get(&self.app).cloned())
            .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(&self.app))))?;
        let folder = public_folder_or_default(app.public_folder.as_ref());
        // A deployed app serves its current release: read there, found by the id the
        // inventory holds, never through the user's `current` link.
        let serving = match app.git.as_ref().and_then(|git| git.current.as_ref()) {
            Some(release) => format!("releases/{}/{folder}", release.id),
            None => folder.to_owned(),
        };
        let version = wordpress_version(ctx.root(), &app.sysuser, &self.app, &serving)?;
        let mut outcome = Outcome::default();
        outcome.step("site", false);
        outcome.result = Some(site(&self.app, &app, version.as_deref()));
        Ok(outcome)
    }
}

/// The site object of app `name`, whose web root holds WordPress `version` (read by
/// the caller from the user's files: only what they say).
pub fn site(name: &str, app: &App, version: Option<&str>) -> Value {
    let folder = public_folder_or_default(app.public_folder.as_ref());
    json!({
        "name": name,
        "sysuser": app.sysuser,
        "runtime": app.runtime,
        "stack": app.stack.as_str(),
        "domains": stack::server_names(&app.domains),
        "redirect_domains": app.redirect_domains,
        "public_folder": folder,
        "web_root": match app.git.as_ref().and_then(|git| git.current.as_ref()) {
            Some(_) => stack::web_root(&app.sysuser, name, &format!("current/{folder}")),
            None => stack::web_root(&app.sysuser, name, folder),
        },
        "https": {
            "enabled": app.ssl.is_some(),
            "force": app.ssl.as_ref().is_some_and(|s| s.force),
            "auto": app.ssl.as_ref().is_some_and(|s| s.source == SslSource::Auto),
        },
        "nginx": app.nginx,
        "basic_auth": {
            "enabled": app.basic_auth.is_some(),
            "username": app.basic_auth.as_ref().map(|a| a.username.as_str()),
        },
        "page_cache": {
            "enabled": app.page_cache.is_some(),
            "ttl_secs": app.page_cache.as_ref().map(|c| c.ttl_secs.secs()),
        },
        "git": app.git.as_ref().map(|git| json!({
            "repo": git.repo.as_str(),
            "branch": git.branch.as_str(),
            "keep": git.keep,
            "current_release": git.current.as_ref().map(|c| &c.id),
            "commit": git.current.as_ref().map(|c| &c.commit),
        })),
        "is_wordpress": app.wordpress.is_some() || version.is_some(),
        "wordpress": {
            "version": version,
            "installed_by_berth": app.wordpress.is_some(),
            "database": app.wordpress.as_ref().map(|w| w.database.as_str()),
            "table_prefix": app.wordpress.as_ref().map(|w| w.table_prefix.as_str()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::site::{BasicAuth, Protections};

    #[test]
    fn the_site_object_shows_each_option_and_never_the_hash() {
        let mut app = App::fixture(&["shop.test"], 1);
        app.public_folder = Some("public/web".try_into().unwrap());
        app.redirect_domains = vec!["old-shop.test".try_into().unwrap()];
        app.nginx = Protections { uploads_directory_protected: true, xmlrpc_protected: false };
        app.basic_auth =
            Some(BasicAuth { username: "ann".try_into().unwrap(), password_hash: "$6$salt$hash".try_into().unwrap() });
        let site = site("shop", &app, Some("6.1.9"));
        assert_eq!(site["is_wordpress"], true, "WordPress the user put there counts");
        assert_eq!(site["wordpress"]["version"], "6.1.9");
        assert_eq!(site["wordpress"]["installed_by_berth"], false);
        assert_eq!(site["web_root"], "/srv/users/derek/apps/shop/public/web");
        assert_eq!(site["domains"], json!(["shop.test", "www.shop.test"]));
        assert_eq!(site["redirect_domains"], json!(["old-shop.test"]));
        assert_eq!(site["nginx"], json!({"uploads_directory_protected": true, "xmlrpc_protected": false}));
        assert_eq!(site["basic_auth"], json!({"enabled": true, "username": "ann"}));
        assert_eq!(site["https"]["enabled"], false);
        assert_eq!(site["page_cache"], json!({"enabled": false, "ttl_secs": null}));
        assert!(!site.to_string().contains("$6$"), "{site}");
        assert_eq!(site["git"], Value::Null);
        app.git = Some(Box::new(serde_json::from_value(json!({"repo": "git@h:r.git", "branch": "main", "keep": 5,
            "shared": [], "current": {"id": "20261202100512345", "commit": "0123456789abcdef0123456789abcdef01234567"}}))
        .unwrap()));
        let deployed = super::site("shop", &app, None);
        assert_eq!(deployed["web_root"], "/srv/users/derek/apps/shop/current/public/web");
        assert_eq!(deployed["git"]["current_release"], "20261202100512345");
    }
}

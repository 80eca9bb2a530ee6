//! WordPress: `app.wordpress {app, site_title, admin_user, admin_password,
//! admin_email, table_prefix?}`, and the same object as `app.create`'s `wordpress`
//! (ServerPilot's shape), which makes app, database and install one job.
//!
//! An install is a database and its user, made as `db.create` makes them and
//! recorded as the app's (so `app.delete` drops them), then the installer
//! ([`crate::web::wordpress`]) run as the app's user: the copy of the WordPress
//! tree, berth's `wp-config.php`, `wp_install()`. Names are derived from the app's
//! ([`names`]); the database password is random, written only into the app's
//! `wp-config.php`, and never returned. A failure undoes what the job made: the
//! database and its user, and the files it added to the web root.
//!
//! Idempotent: an app whose record says WordPress is installed is left as it is
//! (`changed: false`), whatever its files now hold. The web root must hold nothing
//! but what an interrupted install of berth's left: a site of the user's own is a
//! `conflict`, never written over.

use std::path::Path;

use serde_json::{json, Value};

use crate::host::fs::under_root;
use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::{db, Catalogue};
use crate::model::resource::Resource;
use crate::model::validate::{self, shown, Params};
use crate::model::{AppName, DbName, DbUserName, Email, Secret, SiteTitle, TablePrefix, WpUser};
use crate::state::inventory::WordPress;
use crate::web::wordpress as wp;
pub use crate::web::wordpress::wordpress_version;
use crate::web::{accounts, sitedirs, stack};

/// The table prefix when none is given (WordPress's own default).
pub const DEFAULT_TABLE_PREFIX: &str = "wp_";

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.wordpress", AppWordPress::parse);
}

/// `{site_title, admin_user, admin_password, admin_email, table_prefix?}`.
#[derive(Debug)]
pub(crate) struct Site {
    title: SiteTitle,
    admin_user: WpUser,
    admin_password: Secret,
    admin_email: Email,
    table_prefix: TablePrefix,
}

impl Site {
    /// The site's fields of `params` (errors name them under its prefix, as
    /// `wordpress.admin_email`).
    pub(crate) fn parse(params: &Params) -> Result<Site, JobError> {
        let title = SiteTitle::param(params, "site_title")?;
        let admin_user = WpUser::param(params, "admin_user")?;
        let admin_password = Secret::new(params.checked("admin_password", validate::password)?);
        let admin_email = Email::param(params, "admin_email")?;
        let table_prefix = TablePrefix::opt_param(params, "table_prefix")?
            .unwrap_or_else(|| TablePrefix::try_from(DEFAULT_TABLE_PREFIX).expect("a valid default"));
        Ok(Site { title, admin_user, admin_password, admin_email, table_prefix })
    }
}

/// `app.wordpress {app, …Site}`.
#[derive(Debug)]
struct AppWordPress {
    app: AppName,
    site: Site,
}

impl AppWordPress {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let site = Site::parse(&params)?;
        Ok(Box::new(AppWordPress { app, site }))
    }
}

impl BlockingJob for AppWordPress {
    fn resources(&self) -> Resources {
        Resources::of(resources(&self.app))
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        install(ctx, &self.app, &self.site)
    }
}

/// What an install holds besides the app: its database and database user.
pub(crate) fn resources(app: &AppName) -> [Resource; 3] {
    let (database, user) = names(app);
    [Resource::App(app.clone()), Resource::Database(database), Resource::DatabaseUser(user)]
}

/// The database and its user for app `app`: `APP-wp`, and `wp_APP` (for an app
/// name of up to 13 characters) or `wp_` + its first 8 characters + `_` + 4 of a
/// hash of the whole name (a database user name has at most 16).
pub fn names(app: &AppName) -> (DbName, DbUserName) {
    let database = DbName::try_from(format!("{app}-wp")).expect("an app name and -wp is a database name");
    let user = if app.len() <= 13 {
        format!("wp_{app}")
    } else {
        // FNV-1a, in base 36: stable across versions and machines.
        let mut hash: u32 = 0x811c_9dc5;
        for b in app.bytes() {
            hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let digits: String =
            (0..4).map(|i| char::from_digit((hash / 36u32.pow(i)) % 36, 36).expect("a base-36 digit")).collect();
        format!("wp_{}_{digits}", &app[..8])
    };
    (database, DbUserName::try_from(user).expect("wp_ and an app name is a database user name"))
}

/// Installs WordPress into app `name` (which exists), or finds it installed.
pub(crate) fn install(ctx: &JobContext, name: &AppName, site: &Site) -> Result<Outcome, JobError> {
    let root = ctx.root();
    let (inventory_app, databases) = ctx.inventory.read(|inv| (inv.apps.get(name).cloned(), inv.databases.clone()));
    let app = inventory_app.ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(name))))?;
    let mut outcome = Outcome::default();
    let public_folder = crate::model::site::public_folder_or_default(app.public_folder.as_ref());
    let web_root = stack::web_root(&app.sysuser, name, public_folder);
    if let Some(installed) = &app.wordpress {
        outcome.step("wordpress", false);
        let version = wordpress_version(root, &app.sysuser, name, public_folder)?;
        outcome.result = Some(report(installed, version.as_deref(), name, &web_root));
        return Ok(outcome);
    }
    let php = under_root(root, &format!("/usr/bin/{}", app.runtime)).display().to_string();
    if !Path::new(&php).is_file() {
        return Err(JobError::PreconditionFailed(format!(
            "WordPress is installed with php-cli of the app's runtime, and {php} is missing (package {}-cli)",
            app.runtime
        )));
    }
    let source = wp::source_names(root, &ctx.wordpress_source)?;
    let site_dirs = (app.sysuser.as_str(), name.as_str(), public_folder);
    let before = wp::check_web_root(root, site_dirs, &source)?;
    let (database, user) = names(name);
    let database_was_there = databases.contains_key(&database);
    let db_password = Secret::new(wp::random(32)?);
    let done = (|| {
        outcome.steps.extend(db::create(ctx, name, &database, &user, &db_password)?.steps);
        let socket = ctx.mysql.socket.strip_prefix(root).map(|s| format!("/{}", s.display()));
        let config = wp::render_config(&wp::Config {
            app: name,
            db_name: &database,
            db_user: &user,
            db_password: &db_password,
            db_host: &format!("localhost:{}", socket.unwrap_or_else(|_| ctx.mysql.socket.display().to_string())),
            table_prefix: &site.table_prefix,
        })?;
        let account = accounts::account(root, &app.sysuser)?;
        let host = app.domains.first().map_or("localhost", |d| d.trim_start_matches("*."));
        let scheme = if app.ssl.is_some() { "https" } else { "http" };
        let installed = wp::run_installer(
            ctx.host.as_ref(),
            &php,
            sitedirs::Owner { uid: account.uid, gid: account.gid },
            &wp::Install {
                source: &under_root(root, &ctx.wordpress_source.display().to_string()),
                web_root: &under_root(root, &web_root),
                config: &config,
                host,
                url: &format!("{scheme}://{host}"),
                title: &site.title,
                admin_user: &site.admin_user,
                admin_password: &site.admin_password,
                admin_email: &site.admin_email,
            },
            &db_password,
        )?;
        outcome.step("files", true);
        outcome.step("wordpress", installed.installed);
        let record = WordPress { database: database.clone(), table_prefix: site.table_prefix.clone() };
        ctx.record(|inv| inv.apps.get_mut(name).map(|a| a.wordpress = Some(Box::new(record.clone()))))?;
        outcome.result = Some(report(&record, Some(&installed.version), name, &web_root));
        Ok(outcome)
    })();
    done.inspect_err(|_| {
        // Undone in reverse: the files this job added, then the database it made.
        let added: Vec<String> = source.into_iter().filter(|n| !before.contains(n)).collect();
        if let Err(e) = wp::remove_files(root, site_dirs, &added) {
            tracing::warn!(app = %name, "a failed WordPress install left files: {e}");
        }
        if !database_was_there {
            if let Err(e) = db::drop_database(ctx, &database) {
                tracing::warn!(app = %name, "a failed WordPress install left its database: {e}");
            }
        }
    })
}

/// The result of an install: what it made, never a password.
fn report(installed: &WordPress, version: Option<&str>, app: &AppName, web_root: &str) -> Value {
    let (_, user) = names(app);
    json!({
        "version": version,
        "database": installed.database,
        "database_user": user,
        "table_prefix": installed.table_prefix,
        "web_root": web_root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::ErrorCode;

    #[test]
    fn database_names_follow_the_app_and_fit_their_rules() {
        let names = |app: &str| {
            let (db, user) = names(&AppName::try_from(app).unwrap());
            (db.to_string(), user.to_string())
        };
        assert_eq!(names("blog"), ("blog-wp".into(), "wp_blog".into()));
        assert_eq!(names("3po"), ("3po-wp".into(), "wp_3po".into()));
        assert_eq!(names("abcdefghijklm").1, "wp_abcdefghijklm");
        let (long_db, long_user) = names(&"a".repeat(30));
        assert_eq!((long_db.len(), long_user.len()), (33, 16));
        assert!(long_user.starts_with("wp_aaaaaaaa_"));
        assert_ne!(names("abcdefghijklmn").1, names("abcdefghijklmo").1, "a shared start is told apart");
        assert_eq!(names("abcdefghijklmn").1, names("abcdefghijklmn").1, "stable");
    }

    #[test]
    fn the_site_is_parsed_with_a_default_prefix_and_errors_name_the_field() {
        let catalogue = Catalogue::new(false);
        let good = json!({"app": "blog", "site_title": "Blog", "admin_user": "boss",
            "admin_password": "long-enough", "admin_email": "boss@Example.com"});
        assert!(catalogue.parse("app.wordpress", &good).is_ok());
        let mut bad = good.clone();
        bad["table_prefix"] = json!("wp;");
        let err = catalogue.parse("app.wordpress", &bad).err().unwrap();
        assert_eq!((err.code(), err.field()), (ErrorCode::InvalidParams, Some("table_prefix")));
        let create = json!({"name": "blog", "sysuser": "derek", "runtime": "php8.2", "domains": ["blog.test"],
            "wordpress": {"site_title": "Blog", "admin_user": "boss", "admin_password": "short",
                          "admin_email": "boss@example.com"}});
        let err = catalogue.parse("app.create", &create).err().unwrap();
        assert_eq!(err.field(), Some("wordpress.admin_password"));
        assert!(!err.to_string().contains("short"), "{err}");
    }
}

//! Databases: `db.create`, `db.update`, `db.delete` (PROTOCOL section 3).
//!
//! A database belongs to an app and has one user, `user@localhost`, with every
//! privilege on that database and nothing else. Databases and users berth did not
//! create are a `conflict`, never taken over or dropped. `app.delete` (and so
//! `sysuser.delete`) drops the app's databases and their users.

use serde_json::{json, Value};

use crate::config::Secret;
use crate::host::mysql::Server;
use crate::job::{within_limit, BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::validate::{self, shown, FieldError, Params};
use crate::model::{AppName, DbName, DbUserName};
use crate::state::inventory::Database;

/// At most this many databases per app (PROTOCOL section 3).
pub const MAX_DATABASES_PER_APP: usize = 1000;

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("db.create", Create::parse);
    catalogue.register("db.update", Update::parse);
    catalogue.register("db.delete", Delete::parse);
}

/// `db.create {app, name, user {name, password}}`.
#[derive(Debug)]
struct Create {
    app: AppName,
    name: DbName,
    user: DbUserName,
    password: Secret,
}

/// `db.update {name, user {name, password}}`.
#[derive(Debug)]
struct Update {
    name: DbName,
    user: DbUserName,
    password: Secret,
}

/// `db.delete {name}`.
#[derive(Debug)]
struct Delete {
    name: DbName,
}

fn db_name(params: &Params) -> Result<DbName, JobError> {
    Ok(DbName::param(params, "name")?)
}

/// `user {name, password}`.
fn db_user(params: &Params) -> Result<(DbUserName, Secret), JobError> {
    let user = params.object("user")?;
    let name = DbUserName::param(&user, "name")?;
    let password = user.checked("password", validate::password)?;
    Ok((name, Secret::new(password)))
}

impl Create {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let name = db_name(&params)?;
        let (user, password) = db_user(&params)?;
        not_reserved(&params, &name, &user)?;
        Ok(Box::new(Create { app, name, user, password }))
    }
}

/// The names a WordPress install takes (`APP-wp`, `wp_…`: [`crate::jobs::wordpress::names`])
/// are reserved: otherwise one user's `db.create` could take another app's names
/// before its install, and fail it.
fn not_reserved(params: &Params, name: &DbName, user: &DbUserName) -> Result<(), JobError> {
    if name.ends_with("-wp") {
        let message = "database names ending in '-wp' are reserved for WordPress installs (app.wordpress)";
        return Err(FieldError::new(params.field("name"), message).into());
    }
    if user.starts_with("wp_") {
        let message = "database user names starting with 'wp_' are reserved for WordPress installs (app.wordpress)";
        return Err(FieldError::new(format!("{}.name", params.field("user")), message).into());
    }
    Ok(())
}

impl BlockingJob for Create {
    fn resources(&self) -> Resources {
        Resources::of([
            Resource::Database(self.name.clone()),
            Resource::App(self.app.clone()),
            Resource::DatabaseUser(self.user.clone()),
        ])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let mut outcome = create(ctx, &self.app, &self.name, &self.user, &self.password)?;
        outcome.result = Some(json!({"name": self.name, "user": self.user, "host": "localhost"}));
        Ok(outcome)
    }
}

/// Makes database `name` of `app` exist with its one user `user` and `password`
/// (`db.create`, and WordPress's database): what berth did not create is a
/// `conflict`, and the database is recorded before it is made.
pub(crate) fn create(
    ctx: &JobContext,
    app: &AppName,
    name: &DbName,
    user: &DbUserName,
    password: &Secret,
) -> Result<Outcome, JobError> {
    let inventory = ctx.inventory.read(|inv| inv.clone());
    if !inventory.apps.contains_key(app) {
        return Err(JobError::NotFound(format!("app {} does not exist", shown(app))));
    }
    let mut server = Server::connect(&ctx.mysql)?;
    match inventory.databases.get(name) {
        Some(db) if db.app != *app => {
            return Err(JobError::Conflict(format!("database {} belongs to another app", shown(name))))
        }
        Some(db) if db.user != *user => {
            return Err(JobError::Conflict(format!("database {} has the user {}", shown(name), shown(&db.user))))
        }
        Some(_) => {}
        None => {
            let of_app = inventory.databases.values().filter(|db| db.app == *app).count();
            within_limit("name", "databases per app", of_app, MAX_DATABASES_PER_APP)?;
            if server.database_exists(name)? {
                return Err(JobError::Conflict(format!(
                    "database {} exists and was not created by berth",
                    shown(name)
                )));
            }
            if inventory.databases.values().any(|db| db.user == *user) || server.user_exists(user)? {
                return Err(JobError::Conflict(format!(
                    "database user {} exists and is not this database's",
                    shown(user)
                )));
            }
        }
    }
    // Recorded first: a failure halfway must not leave a database berth disowns.
    let record = Database { app: app.clone(), user: user.clone() };
    ctx.record(|inv| inv.databases.insert(name.clone(), record))?;
    let mut outcome = Outcome::default();
    outcome.step("database", server.create_database(name)?);
    let created = server.create_user(user, password)?;
    outcome.step("user", created);
    outcome.step("password", !created && server.set_password(user, password)?);
    outcome.step("privileges", server.grant_all(name, user)?);
    Ok(outcome)
}

impl Update {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = db_name(&params)?;
        let (user, password) = db_user(&params)?;
        Ok(Box::new(Update { name, user, password }))
    }
}

impl BlockingJob for Update {
    fn resources(&self) -> Resources {
        Resources::of([Resource::Database(self.name.clone()), Resource::DatabaseUser(self.user.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let db = ctx
            .inventory
            .read(|inv| inv.databases.get(&self.name).cloned())
            .ok_or_else(|| JobError::NotFound(format!("database {} does not exist", shown(&self.name))))?;
        if db.user != self.user {
            return Err(JobError::NotFound(format!(
                "database {} has no user {}",
                shown(&self.name),
                shown(&self.user)
            )));
        }
        let mut server = Server::connect(&ctx.mysql)?;
        let mut outcome = Outcome::default();
        outcome.step("password", server.set_password(&self.user, &self.password)?);
        Ok(outcome)
    }
}

impl Delete {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(Delete { name: db_name(&params)? }))
    }
}

impl BlockingJob for Delete {
    fn resources(&self) -> Resources {
        Resources::of([Resource::Database(self.name.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        if ctx.inventory.read(|inv| !inv.databases.contains_key(&self.name)) {
            let mut server = Server::connect(&ctx.mysql)?;
            if server.database_exists(&self.name)? {
                return Err(JobError::Conflict(format!(
                    "database {} was not created by berth; berth does not drop it",
                    shown(&self.name)
                )));
            }
            let mut outcome = Outcome::default();
            outcome.step("database", false);
            return Ok(outcome);
        }
        drop_database(ctx, &self.name)
    }
}

/// Drops a database of the inventory and its user, then forgets it.
pub(crate) fn drop_database(ctx: &JobContext, name: &str) -> Result<Outcome, JobError> {
    let mut outcome = Outcome::default();
    let Some(db) = ctx.inventory.read(|inv| inv.databases.get(name).cloned()) else {
        outcome.step("database", false);
        return Ok(outcome);
    };
    let mut server = Server::connect(&ctx.mysql)?;
    outcome.step("database", server.drop_database(name)?);
    outcome.step("user", server.drop_user(&db.user)?);
    ctx.record(|inv| inv.databases.remove(name))?;
    Ok(outcome)
}

//! `app.basic_auth {app, enabled, username?, password?}`: basic auth in front of a
//! whole app (docs/protocol.md), for a staging site or a site not yet launched.
//!
//! nginx asks for it before anything of the app runs, on both stacks; ACME
//! challenges (and so AutoSSL's self-probe and renewals) pass without it. The
//! inventory keeps the user name and the password's SHA-512 crypt hash, rendered
//! into the app's password file ([`crate::web::basicauth`]) with its vhost in one
//! transaction. The password itself is never stored, logged or returned: sending
//! the same one again finds the hash matching and changes nothing.

use serde_json::{json, Value};

use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::web::apply_config;
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::site::BasicAuth;
use crate::model::validate::{self, shown, FieldError, Params};
use crate::model::{AppName, AuthUser, Secret};
use crate::web::basicauth;
use crate::web::render::WebConfig;

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.basic_auth", Set::parse);
}

/// What the job asks for: on with these credentials, or off.
enum Wanted {
    On { username: AuthUser, password: Secret },
    Off,
}

/// `app.basic_auth`. Not `Debug`: it holds a password.
struct Set {
    app: AppName,
    wanted: Wanted,
}

impl std::fmt::Debug for Set {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Set").field("app", &self.app).finish_non_exhaustive()
    }
}

impl Set {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let wanted = if params.bool("enabled")? {
            let username = AuthUser::opt_param(&params, "username")?
                .ok_or_else(|| FieldError::new(params.field("username"), "is required when enabled is true"))?;
            let password = params
                .opt_checked("password", validate::password)?
                .ok_or_else(|| FieldError::new(params.field("password"), "is required when enabled is true"))?;
            Wanted::On { username, password: Secret::new(password) }
        } else {
            Wanted::Off
        };
        Ok(Box::new(Set { app, wanted }))
    }
}

impl BlockingJob for Set {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone()), Resource::WebStack])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let _web = crate::web::weblock::hold(root)?;
        let before = ctx.inventory.read(|inv| inv.clone());
        let mut app = before
            .apps
            .get(&self.app)
            .cloned()
            .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(&self.app))))?;
        app.basic_auth = match self.wanted {
            Wanted::Off => None,
            Wanted::On { username, password } => match app.basic_auth.take() {
                // The same credentials: the stored hash stays (a new salt would be a change).
                Some(held) if held.username == username && basicauth::matches(&password, &held.password_hash) => {
                    Some(held)
                }
                _ => Some(BasicAuth { username, password_hash: basicauth::hash(&password)? }),
            },
        };
        let mut outcome = Outcome::default();
        outcome.applied(&apply_config(ctx, &WebConfig::gather(root)?, &before, &self.app, &app, Vec::new())?);
        let result = json!({
            "enabled": app.basic_auth.is_some(),
            "username": app.basic_auth.as_ref().map(|a| a.username.as_str()),
        });
        let auth = app.basic_auth.clone();
        ctx.record(|inv| inv.apps.get_mut(&self.app).map(|a| a.basic_auth = auth))?;
        outcome.result = Some(result);
        Ok(outcome)
    }
}

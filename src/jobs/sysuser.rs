//! System users: `sysuser.create`, `sysuser.update`, `sysuser.delete` (PROTOCOL section 3).
//!
//! This version checks `sysuser.create`'s params; the account work arrives with the
//! apps family, so valid params end in `unsupported` until then.

use serde_json::Value;

use crate::job::{BoxFuture, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::validate::{self, Params};

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register_validation_only("sysuser.create", Create::parse);
}

/// `sysuser.create {name, password?}`.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub password: Option<String>,
}

impl Create {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = params.str("name")?;
        validate::sysuser_name(&params.field("name"), name)?;
        let password = params.opt_str("password")?;
        if let Some(password) = password {
            validate::password(&params.field("password"), password)?;
        }
        Ok(Box::new(Create { name: name.to_owned(), password: password.map(str::to_owned) }))
    }
}

impl Job for Create {
    fn resources(&self) -> Resources {
        Resources::of([format!("sysuser:{}", self.name)])
    }

    fn run(self: Box<Self>, _ctx: JobContext) -> BoxFuture<Result<Outcome, JobError>> {
        Box::pin(async { Err(JobError::Unsupported("sysuser.create is not carried out by this agent version".into())) })
    }
}

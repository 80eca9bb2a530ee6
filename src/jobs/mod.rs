//! The job catalogue: which `kind`s this agent knows and how each one's params are
//! parsed into a runnable [`Job`].
//!
//! Each job family is a module of this directory with a `register` function; adding
//! a family is one line in [`Catalogue::new`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::job::{Job, JobError};

pub mod app;
pub mod appinfo;
pub mod backup;
pub mod basicauth;
pub mod cache;
pub mod db;
pub mod deploy;
pub mod firewall;
pub mod history;
pub mod monitor;
pub mod objcache;
pub mod permissions;
pub mod server;
pub mod siteopts;
pub mod ssl;
pub mod sysuser;
#[cfg(feature = "test-jobs")]
pub mod testing;
pub mod web;
pub mod wordpress;

/// Parses a kind's params, checking every field rule, into a job.
pub type Parse = fn(&Value) -> Result<Box<dyn Job>, JobError>;

pub struct Catalogue {
    kinds: BTreeMap<&'static str, Parse>,
    /// Kinds the agent submits to itself (renewals): never accepted from the control plane.
    internal: BTreeMap<&'static str, Parse>,
}

impl Catalogue {
    /// The kinds of this agent; `test_jobs` adds the `test.*` family, in a build with
    /// the `test-jobs` feature (without it, the config refuses `test_jobs = true`).
    pub fn new(test_jobs: bool) -> Self {
        let mut catalogue = Catalogue { kinds: BTreeMap::new(), internal: BTreeMap::new() };
        sysuser::register(&mut catalogue);
        app::register(&mut catalogue);
        cache::register(&mut catalogue);
        appinfo::register(&mut catalogue);
        basicauth::register(&mut catalogue);
        db::register(&mut catalogue);
        ssl::register(&mut catalogue);
        firewall::register(&mut catalogue);
        permissions::register(&mut catalogue);
        server::register(&mut catalogue);
        wordpress::register(&mut catalogue);
        deploy::register(&mut catalogue);
        objcache::register(&mut catalogue);
        backup::register(&mut catalogue);
        history::register(&mut catalogue);
        monitor::register(&mut catalogue);
        #[cfg(feature = "test-jobs")]
        if test_jobs {
            testing::register(&mut catalogue);
        }
        #[cfg(not(feature = "test-jobs"))]
        debug_assert!(!test_jobs, "test_jobs in a build without the test-jobs feature");
        catalogue
    }

    /// Adds a kind the agent carries out.
    pub fn register(&mut self, kind: &'static str, parse: Parse) {
        self.kinds.insert(kind, parse);
    }

    /// Adds a kind only the agent itself submits.
    pub fn register_internal(&mut self, kind: &'static str, parse: Parse) {
        self.internal.insert(kind, parse);
    }

    /// Parses a job of the agent's own (an internal kind).
    pub fn parse_internal(&self, kind: &str, params: &Value) -> Result<Box<dyn Job>, JobError> {
        let parse = self.internal.get(kind).ok_or_else(|| {
            JobError::Unsupported(format!("unknown internal kind {}", crate::model::validate::shown(kind)))
        })?;
        parse(params)
    }

    pub fn parse(&self, kind: &str, params: &Value) -> Result<Box<dyn Job>, JobError> {
        let parse = self.kinds.get(kind).ok_or_else(|| {
            JobError::Unsupported(format!("unknown job kind {}", crate::model::validate::shown(kind)))
        })?;
        parse(params)
    }

    /// `job_kinds` of `hello`, sorted.
    pub fn advertised(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }
}

/// The field a job's params are refused for at parse time (tests' hostile-input
/// lists); panics when they are taken, or refused for another reason.
#[cfg(test)]
pub(crate) fn refused(kind: &str, params: Value) -> String {
    match Catalogue::new(false).parse(kind, &params) {
        Err(JobError::InvalidParams(e)) => e.field,
        Err(other) => panic!("{params}: {other:?}"),
        Ok(_) => panic!("{params} was taken"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::ErrorCode;
    use serde_json::json;

    #[test]
    fn unknown_kind_is_unsupported() {
        let err = Catalogue::new(false).parse("app.teleport", &json!({})).err().unwrap();
        assert_eq!(err.code(), ErrorCode::Unsupported);
    }

    #[test]
    fn sysuser_create_is_validated_before_anything_else() {
        let catalogue = Catalogue::new(false);
        let err = catalogue.parse("sysuser.create", &json!({"name": "3po"})).err().unwrap();
        assert_eq!(err.code(), ErrorCode::InvalidParams);
        assert_eq!(err.field(), Some("name"));
        assert!(catalogue.parse("sysuser.create", &json!({"name": "derek"})).is_ok());
        assert!(catalogue.advertised().contains(&"sysuser.create"));
    }

    #[test]
    #[cfg(feature = "test-jobs")]
    fn test_kinds_only_when_enabled() {
        assert!(!Catalogue::new(false).advertised().contains(&"test.sleep"));
        assert!(Catalogue::new(true).advertised().contains(&"test.sleep"));
    }

    #[test]
    fn no_test_kinds_by_default() {
        assert!(!Catalogue::new(false).advertised().iter().any(|kind| kind.starts_with("test.")));
    }
}

//! What a job holds while it runs, as the scheduler sees it: typed [`Resource`]s,
//! not strings a typo could split in two.
//!
//! Jobs that share a resource run in arrival order; an `exclusive` job (a reboot)
//! waits for every earlier job and holds up every later one ([`crate::engine::scheduler`]).
//! Each job family says what it touches in its `fn resources`, with the variants
//! below; a running job may give one back early ([`crate::job::JobContext::release`]).
//! Plain data: this module imports only the checked names of `model`.

use std::fmt;

use crate::model::{AppName, DbName, DbUserName, SysuserName};

/// One thing a job touches. Named resources (an app, a user) keep the jobs of one
/// name in order and let those of other names run beside them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// An app (by name): its record, directories and pool.
    App(AppName),
    /// A system user (by name): its account and home.
    Sysuser(SysuserName),
    /// A database (by name).
    Database(DbName),
    /// A database user (by name).
    DatabaseUser(DbUserName),
    /// The web servers' config as a whole: every job that writes it holds this, so
    /// they run in arrival order. A job that then waits on a CA gives it back first.
    /// Their writes themselves are kept apart by the web-config lock ([`crate::web::weblock`]).
    WebStack,
    /// The firewall's ruleset.
    Firewall,
    /// The apt timers' automatic updates.
    Autoupdates,
    /// The MySQL/MariaDB server (a restart).
    Mysql,
    /// The monitoring policy (`monitor.policy`): replaced in arrival order.
    Monitor,
    /// A `test.*` job's own resource (by the name its params give).
    Test(String),
}

/// Shown as the string keys the scheduler used before it had types (`app:NAME`,
/// `webstack`, ...), for logs and debugging.
impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::App(name) => write!(f, "app:{name}"),
            Resource::Sysuser(name) => write!(f, "sysuser:{name}"),
            Resource::Database(name) => write!(f, "db:{name}"),
            Resource::DatabaseUser(name) => write!(f, "dbuser:{name}"),
            Resource::WebStack => f.write_str("webstack"),
            Resource::Firewall => f.write_str("firewall"),
            Resource::Autoupdates => f.write_str("autoupdates"),
            Resource::Mysql => f.write_str("mysql"),
            Resource::Monitor => f.write_str("monitor"),
            Resource::Test(name) => write!(f, "test:{name}"),
        }
    }
}

/// The resources of a job. `exclusive` jobs (a reboot) wait for every earlier job
/// and hold up every later one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub keys: Vec<Resource>,
    pub exclusive: bool,
}

impl Resources {
    pub fn of<I: IntoIterator<Item = Resource>>(keys: I) -> Self {
        Resources { keys: keys.into_iter().collect(), exclusive: false }
    }

    pub fn exclusive() -> Self {
        Resources { keys: Vec::new(), exclusive: true }
    }

    pub fn conflicts_with(&self, other: &Resources) -> bool {
        self.exclusive || other.exclusive || self.keys.iter().any(|k| other.keys.contains(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_conflict_on_shared_keys_or_exclusivity() {
        let app =
            Resources::of([Resource::App("appa".try_into().unwrap()), Resource::Sysuser("usera".try_into().unwrap())]);
        let user = Resources::of([Resource::Sysuser("usera".try_into().unwrap())]);
        let other = Resources::of([Resource::App("appb".try_into().unwrap())]);
        assert!(app.conflicts_with(&user));
        assert!(!app.conflicts_with(&other));
        assert!(Resources::exclusive().conflicts_with(&other));
        assert!(other.conflicts_with(&Resources::exclusive()));
    }

    #[test]
    fn same_name_in_different_kinds_is_no_conflict() {
        let app = Resources::of([Resource::App("shop".try_into().unwrap())]);
        let user = Resources::of([Resource::Sysuser("shop".try_into().unwrap())]);
        let test = Resources::of([Resource::Test("app:shop".into())]);
        assert!(!app.conflicts_with(&user));
        assert!(!app.conflicts_with(&test), "a test job's resource is its own, whatever its name");
    }

    #[test]
    fn shown_as_the_old_keys() {
        assert_eq!(Resource::App("appa".try_into().unwrap()).to_string(), "app:appa");
        assert_eq!(Resource::DatabaseUser("u".try_into().unwrap()).to_string(), "dbuser:u");
        assert_eq!(Resource::WebStack.to_string(), "webstack");
        assert_eq!(Resource::Test("r".into()).to_string(), "test:r");
    }
}

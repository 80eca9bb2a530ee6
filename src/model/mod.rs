//! The model: the types berth keeps and exchanges, with their own rules and
//! serde formats, and nothing else: no I/O, and no other module of berth. Every
//! other layer depends on it.
//!
//! `validate` holds the field rules of PROTOCOL section 3 and `names` a checked
//! newtype per field; `inventory` is the schema of `inventory.json`; `firewall` the
//! custom allow rules kept there; `cache` the page cache's lifetime and purge
//! paths; `stack` how an app is served; `secret` a value that never prints; `site`
//! an app's site options; `reading` one reading of the host's resources; `monitor` a monitoring policy and `alerting` its checks' levels; `resource` what a job holds while it runs; `protocol` the
//! wire's messages (the protocol core, which does no I/O).

pub mod alerting;
pub mod backup;
pub mod cache;
pub mod deploy;
pub mod firewall;
pub mod inventory;
pub mod monitor;
pub mod names;
pub mod protocol;
pub mod reading;
pub mod resource;
pub mod secret;
pub mod site;
pub mod siterules;
pub mod stack;
pub mod validate;

pub use cache::{CacheTtl, PageCache, UrlPath};
pub use firewall::{Protocol, Rule};
pub use inventory::{App, Database, Inventory, Settings, Ssl, SslSource, User, WordPress};
pub use names::{
    AppName, AuthUser, DbName, DbUserName, Domain, Email, JobId, PasswordHash, PublicFolder, Runtime, ServerName,
    SiteTitle, SysuserName, TablePrefix, WpUser,
};
pub use secret::Secret;
pub use stack::Stack;

//! The model: the types berth keeps and exchanges, with their own rules and
//! serde formats, and nothing else. It depends on no other module of berth but
//! [`crate::validate`] (the field rules, itself a leaf); everything else depends on it.
//!
//! `inventory` is the schema of `inventory.json`; `firewall` the custom allow rules
//! kept there; `stack` how an app is served; `secret` a value that never prints;
//! `names` the checked newtypes of the field rules.

pub mod firewall;
pub mod inventory;
pub mod names;
pub mod secret;
pub mod stack;

pub use firewall::{Protocol, Rule};
pub use inventory::{App, Database, Inventory, Settings, Ssl, SslSource, User};
pub use names::{AppName, DbName, DbUserName, Domain, JobId, Runtime, ServerName, SysuserName};
pub use secret::Secret;
pub use stack::Stack;

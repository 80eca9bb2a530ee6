//! The web stack: where each config file goes and what is in it ([`stack`],
//! [`templates`]), rendered from state ([`render`]) under one lock ([`weblock`]);
//! the apps' directories ([`sitedirs`]), accounts ([`accounts`]) and basic auth
//! password files ([`basicauth`]); certificates ([`certs`]) and ACME ([`acme`]);
//! each app's page cache ([`cache`], with the [`md5`] that names its files). Above
//! `job` (it answers in `JobError`s), below
//! the job families.

pub mod accounts;
pub mod acme;
pub mod backup;
pub mod basicauth;
pub mod cache;
pub mod certs;
pub mod deploy;
pub mod md5;
pub mod objcache;
pub mod objcreds;
pub mod render;
pub mod sitedirs;
pub mod stack;
pub mod templates;
pub mod weblock;
pub mod wordpress;

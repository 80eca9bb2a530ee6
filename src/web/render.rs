//! Render from state (Bottlerocket's `thar-be-settings` way): every change of web
//! config, by a job or by `berth reconcile`, goes the same path.
//!
//! 1. [`WebConfig::gather`] reads the host once: its services, its facts (Apache,
//!    systemd, IPv6, PHP runtimes, the web proxy key, Apache's open doors) and the
//!    templates (compiled once per process, [`Templates::shared`]).
//! 2. The caller edits a copy of the inventory into the state it wants.
//! 3. [`WebConfig::render`] renders, from that state alone, the files of what it
//!    affects: the base files and the apps in scope ([`stack::changes`], the walk
//!    reconcile uses for every app). No I/O.
//! 4. [`WebConfig::apply`] makes sure every app's log directory and page cache
//!    directory exists (the servers' checks open every log path and cache zone), then applies all files as one transaction:
//!    written, checked by the servers' own tools, restored on failure, reloaded once.
//! 5. Only then does the caller store the state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::host::services::Services;
use crate::host::transaction::{self, Applied, FileChange};
use crate::host::Host;
use crate::job::JobError;
use crate::model::AppName;
use crate::state::inventory::Inventory;
use crate::web::stack::{self, Facts, Scope};
use crate::web::templates::Templates;

/// What web config is rendered from, besides the inventory: gathered once per job.
pub struct WebConfig {
    root: PathBuf,
    services: Services,
    facts: Facts,
    templates: Arc<Templates>,
}

impl WebConfig {
    /// Reads the host under `root` (the web proxy key is made the first time).
    pub fn gather(root: &Path) -> Result<WebConfig, JobError> {
        let services = Services::detect(root);
        let facts = Facts::detect(root, &services)?;
        let templates = Templates::shared(root).map_err(stack::template_error)?;
        Ok(WebConfig { root: root.to_owned(), services, facts, templates })
    }

    /// The host's facts (the settings' part is that of no inventory).
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The files `inventory` means for `scope`, and the apps of it left out because
    /// their runtime is not installed.
    pub fn render(&self, inventory: &Inventory, scope: Scope) -> Result<(Vec<FileChange>, Vec<AppName>), JobError> {
        stack::changes(&self.templates, &self.root, inventory, &self.facts.settled(inventory), scope)
    }

    /// Applies `changes` for `inventory` (the state they were rendered from) as one
    /// transaction; every app's log directory is made sure of first.
    pub fn apply(&self, host: &dyn Host, inventory: &Inventory, changes: &[FileChange]) -> Result<Applied, JobError> {
        crate::web::sitedirs::ensure_all_logs(&self.root, inventory)?;
        crate::web::cache::ensure_all(&self.root, inventory, stack::WEB_USER)?;
        if inventory.apps.values().any(|app| app.basic_auth.is_some()) {
            crate::web::basicauth::ensure_dir(&self.root, stack::WEB_USER)?;
        }
        transaction::apply(host, &self.services, changes).map_err(JobError::from)
    }
}

/// The apps whose files change when the inventory goes from `before` to `next` by a
/// change of `apps`: those apps, and the default server's old and new app (one loses
/// `default_server` as the other gains it).
pub fn affected(before: &Inventory, next: &Inventory, apps: &[&AppName]) -> Vec<AppName> {
    let mut affected: Vec<AppName> = apps.iter().map(|name| (*name).clone()).collect();
    let (was, will) = (stack::default_app(before), stack::default_app(next));
    if was != will {
        affected.extend(was.into_iter().chain(will).filter(|name| !apps.contains(&name)));
    }
    affected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::inventory::App;

    fn app(created_ms: u64) -> App {
        App::fixture(&[], created_ms)
    }

    fn name(name: &str) -> AppName {
        name.try_into().unwrap()
    }

    #[test]
    fn a_new_first_app_takes_the_default_server_from_the_old_one() {
        let mut before = Inventory::default();
        before.settings.deny_unknown_domains = false;
        before.apps.insert(name("older"), app(5));
        before.apps.insert(name("other"), app(9));
        let mut next = before.clone();
        next.apps.insert(name("first"), app(1));
        assert_eq!(affected(&before, &next, &[&name("first")]), [name("first"), name("older")]);

        let mut same = before.clone();
        same.apps.insert(name("later"), app(20));
        assert_eq!(affected(&before, &same, &[&name("later")]), [name("later")], "the default server stays");

        let mut removed = before.clone();
        removed.apps.remove("older");
        let heir = affected(&before, &removed, &[&name("older")]);
        assert_eq!(heir, [name("older"), name("other")], "the heir gains the default server");
    }
}

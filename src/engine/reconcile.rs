//! `berth reconcile`: every managed file rendered again from the inventory and
//! applied as one transaction.
//!
//! After an upgrade of berth or an edit of a template override, every app's
//! config follows (panels whose template edits never reach existing pools are a
//! known pain). When everything already holds, nothing is written and nothing
//! reloads. One transaction for all apps means one check and one reload per
//! service, however many apps there are.
//!
//! [`unapplied`] is its dry run (`berth reconcile --check`, and the agent's
//! `upgrade_required` flag): the same render, compared with the files, nothing written.
//! It does not look at the users' directories that `run` repairs.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::job::{JobError, Machine, Outcome};
use crate::state::inventory::InventoryStore;
use crate::web::render::WebConfig;
use crate::web::sitedirs;
use crate::web::stack::Scope;

/// Re-renders and applies every managed file; apps whose runtime is no longer
/// installed are left as they are and named in the output.
pub fn run(machine: &Machine) -> Result<Outcome, JobError> {
    let root = machine.host.root();
    // The daemon's jobs (and other commands) wait while every file is rendered and applied.
    let _web = crate::web::weblock::hold(root)?;
    let inventory = machine.inventory.read(|inv| inv.clone());
    let mut outcome = Outcome::default();
    if inventory.apps.is_empty() {
        outcome.result = Some(json!({"apps": 0, "changed_files": []}));
        return Ok(outcome);
    }
    let web = WebConfig::gather(root)?;
    let (changes, skipped) = web.render(&inventory, Scope::Every)?;
    for name in &skipped {
        outcome.output.push_str(&format!(
            "app {name}: runtime {} is not installed; left as it is\n",
            inventory.apps[name.as_str()].runtime
        ));
    }
    // What a user removed or broke in their own tree is put back, app by app: one
    // user's planted link is reported and never stops the others' repair.
    let (mut repaired, mut refused) = (Vec::new(), Vec::new());
    for (name, app) in &inventory.apps {
        let prepared = crate::web::accounts::account(root, &app.sysuser).and_then(|account| {
            let folder = crate::model::site::public_folder_or_default(app.public_folder.as_ref());
            sitedirs::prepare(root, sitedirs::Owner { uid: account.uid, gid: account.gid }, &app.sysuser, name, folder)
        });
        match prepared {
            Ok(true) => repaired.push(name.clone()),
            Ok(false) => {}
            Err(e) => {
                outcome.output.push_str(&format!("app {name}: directories not repaired: {e}\n"));
                refused.push(name.clone());
            }
        }
    }
    outcome.step("directories", !repaired.is_empty());
    let applied = web.apply(machine.host.as_ref(), &inventory, &changes)?;
    outcome.applied(&applied);
    let changed: Vec<String> = applied.changed.iter().map(|p| p.display().to_string()).collect();
    outcome.result = Some(json!({
        "apps": inventory.apps.len(),
        "changed_files": changed,
        "skipped": skipped,
        "repaired_directories": repaired,
        "refused_directories": refused,
    }));
    Ok(outcome)
}

/// The managed files [`run`] would write or remove now (none when every app's files
/// hold), under the web-config lock so no job's half-done transaction is seen.
pub fn unapplied(root: &Path, inventory: &InventoryStore) -> Result<Vec<PathBuf>, JobError> {
    let _web = crate::web::weblock::hold(root)?;
    let inventory = inventory.read(|inv| inv.clone());
    if inventory.apps.is_empty() {
        return Ok(Vec::new());
    }
    let web = WebConfig::gather(root)?;
    let (changes, _skipped) = web.render(&inventory, Scope::Every)?;
    crate::host::transaction::unapplied(&changes).map_err(JobError::from)
}

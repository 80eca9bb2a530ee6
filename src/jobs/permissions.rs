//! `app.fix_permissions {app}`: the app's files get back the owner and modes they
//! should have (SpinupWP's "fix file permissions"), after an upload over FTP as
//! another user, a `chmod -R 777` from a tutorial, or a root's `cp` left files
//! owned by root.
//!
//! The user owns every file of the app; directories are 0750 and files 0640 (the
//! web server reads them through the user's group, `www-data` being in it), files
//! that were executable by their owner 0740, and `wp-config.php` 0600 (only the
//! user's PHP pool reads it). The walk is [`crate::host::perms`]: through
//! descriptors, on one mount, never through a link; what the user planted (links,
//! hard links to others' files, fifos) is left as it is and counted in the result.

use std::time::Instant;

use serde_json::{json, Value};

use crate::host::perms::{fix_tree, kernel_protects_hard_links, Policy};
use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::validate::{shown, Params};
use crate::model::AppName;
use crate::web::{accounts, deploy, objcreds, sitedirs};

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.fix_permissions", FixPermissions::parse);
}

/// Directories, files, executables, and the files only the user's PHP reads.
pub const DIR_MODE: u32 = 0o750;
pub const FILE_MODE: u32 = 0o640;
pub const EXEC_MODE: u32 = 0o740;
pub const PRIVATE_MODE: u32 = 0o600;
/// Files no one but their user reads: WordPress's config, the app's `.env` (a
/// deploy's shared secrets), its object cache credentials and its deploy key (which
/// ssh refuses to use when others may read it).
pub const PRIVATE_NAMES: &[&str] = &["wp-config.php", ".env", objcreds::CREDENTIALS, deploy::KEY];
/// The most entries one job walks (about 3 minutes of changes here): a bigger
/// tree, or one its user keeps growing during the walk, ends in `limit_exceeded`.
pub const MAX_ENTRIES: u64 = 10_000_000;
/// Others' files are given to the user only when this says 1 (see
/// [`Policy::others_files`]): the kernel's, not under the job's root.
const PROTECTED_HARDLINKS: &str = "/proc/sys/fs/protected_hardlinks";

/// `app.fix_permissions {app}`.
#[derive(Debug)]
struct FixPermissions {
    app: AppName,
}

impl FixPermissions {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(FixPermissions { app: AppName::param(&params, "app")? }))
    }
}

impl BlockingJob for FixPermissions {
    /// The app alone: no config changes.
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let sysuser = ctx
            .inventory
            .read(|inv| inv.apps.get(&self.app).map(|a| a.sysuser.clone()))
            .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(&self.app))))?;
        let account = accounts::account(root, &sysuser)?;
        let policy = Policy {
            uid: account.uid,
            gid: account.gid,
            dir_mode: DIR_MODE,
            file_mode: FILE_MODE,
            exec_mode: EXEC_MODE,
            private_names: PRIVATE_NAMES,
            private_mode: PRIVATE_MODE,
            others_files: kernel_protects_hard_links(std::path::Path::new(PROTECTED_HARDLINKS)),
            max_entries: MAX_ENTRIES,
        };
        let started = Instant::now();
        let dir = sitedirs::open_app(root, &sysuser, &self.app)?;
        let report = fix_tree(&dir, &policy)?;
        if report.stopped {
            return Err(JobError::LimitExceeded {
                field: "app".into(),
                message: format!(
                    "app {} holds more than {MAX_ENTRIES} files and directories (or kept growing while berth walked \
                     it); berth stopped there, after changing {}",
                    shown(&self.app),
                    report.changed
                ),
            });
        }
        let mut outcome = Outcome::default();
        outcome.step("permissions", report.changed > 0);
        outcome.result = Some(json!({
            "changed": report.changed,
            "unchanged": report.unchanged,
            "skipped": report.skipped,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile and broken values are refused at parse time, naming the field.
    #[test]
    fn hostile_params_are_refused_naming_the_field() {
        let cases = [
            json!({}),
            json!({"app": ""}),
            json!({"app": "../etc"}),
            json!({"app": "blog/../../etc"}),
            json!({"app": "/etc"}),
            json!({"app": "blog\n"}),
            json!({"app": "blog\u{0}"}),
            json!({"app": "Blog"}),
            json!({"app": "-rf"}),
            json!({"app": 5}),
            json!({"app": ["blog"]}),
            json!({"app": "a".repeat(4096)}),
        ];
        for params in cases {
            match Catalogue::new(false).parse("app.fix_permissions", &params) {
                Err(JobError::InvalidParams(e)) => assert_eq!(e.field, "app", "{params}"),
                Err(other) => panic!("{params}: {other:?}"),
                Ok(_) => panic!("{params} was taken"),
            }
        }
        assert!(Catalogue::new(false).parse("app.fix_permissions", &json!({"app": "blog"})).is_ok());
    }
}

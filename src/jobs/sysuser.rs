//! System users: `sysuser.create`, `sysuser.update`, `sysuser.delete` (PROTOCOL section 3).
//!
//! A system user is a Linux account with home `/srv/users/NAME` holding `apps/` and
//! `log/`. Accounts are changed with shadow-utils (`useradd`, `usermod`, `userdel`,
//! `chpasswd`, `groupdel`), pointed at `root` with `--prefix`/`--root` when it is a
//! sandbox.
//! Passwords are hashed here (SHA-512 crypt) and reach `chpasswd -e` on stdin: the
//! password never leaves the process, and the hash never reaches argv. Only accounts
//! in the inventory are changed or deleted; any other is a `conflict`.
//!
//! The home is the user's: they can plant links in it, or swap its directories,
//! while a job runs. So it is made and removed through [`crate::host::tree`], from
//! the root-owned `/srv/users`, never following a link; a link where a directory
//! belongs is a `conflict` naming it.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::Secret;
use crate::host::fs::under_root;
use crate::host::tree::{Dir, TreeError};
use crate::host::Cmd;
use crate::job::{within_limit, BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::Catalogue;
use crate::model::resource::Resource;
use crate::model::validate::{self, shown, Params};
use crate::model::{AppName, SysuserName};
use crate::state::inventory::User;
use crate::web::accounts::{group_exists, not_ours, passwd_entry, shadow_cmd, shadow_hash, Account};

/// At most this many system users per server (PROTOCOL section 3).
pub const MAX_USERS: usize = 1000;
/// Where homes live.
pub const HOME_BASE: &str = "/srv/users";
/// Mode of a home and its `apps/` and `log/`: the owner, and its group (which the web
/// server joins for the apps it serves), nobody else.
const HOME_MODE: u32 = 0o750;

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("sysuser.create", Create::parse);
    catalogue.register("sysuser.update", Update::parse);
    catalogue.register("sysuser.delete", Delete::parse);
}

/// `sysuser.create {name, password?}`.
#[derive(Debug)]
struct Create {
    name: SysuserName,
    password: Option<Secret>,
}

/// `sysuser.update {name, password}`.
#[derive(Debug)]
struct Update {
    name: SysuserName,
    password: Secret,
}

/// `sysuser.delete {name}`.
#[derive(Debug)]
struct Delete {
    name: SysuserName,
}

fn name(params: &Params) -> Result<SysuserName, JobError> {
    Ok(SysuserName::param(params, "name")?)
}

impl Create {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = name(&params)?;
        let password = params.opt_checked("password", validate::password)?.map(Secret::new);
        Ok(Box::new(Create { name, password }))
    }
}

impl BlockingJob for Create {
    fn resources(&self) -> Resources {
        user_resources(&self.name)
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let mut outcome = Outcome::default();
        let ours = ctx.inventory.read(|inv| inv.users.contains_key(&self.name));
        let account = match (passwd_entry(root, &self.name)?, ours) {
            (Some(_), false) => return Err(not_ours(&self.name)),
            (Some(account), true) => {
                outcome.step("account", complete_account(ctx, &self.name, account)?);
                account
            }
            (None, _) => {
                if !ours {
                    within_limit("name", "system users", ctx.inventory.read(|inv| inv.users.len()), MAX_USERS)?;
                    if group_exists(root, &self.name)? {
                        return Err(JobError::Conflict(format!(
                            "a group named {} exists and was not created by berth",
                            shown(&self.name)
                        )));
                    }
                }
                let uid = next_uid(root, ctx.inventory.read(|inv| inv.uid_high_water))?;
                // Recorded before useradd (write-ahead): killed between the two, the job
                // runs again at the next start and must find an account of its own, not
                // one it disowns (that was a `conflict` for ever after).
                let created_ms = crate::time::unix_millis(std::time::SystemTime::now());
                ctx.record(|inv| {
                    inv.users.entry(self.name.clone()).or_insert(User { created_ms });
                    inv.uid_high_water = inv.uid_high_water.max(uid);
                })?;
                // A useradd killed after writing the group and before the account left
                // the group of a user of ours: the account joins it.
                let group = if ours && group_exists(root, &self.name)? {
                    vec!["--gid".to_owned(), self.name.to_string()]
                } else {
                    vec!["--user-group".to_owned()]
                };
                let added = ctx.host.run(
                    &shadow_cmd("/usr/sbin/useradd", root)
                        .args(["--uid", &uid.to_string(), "--home-dir", &home(&self.name), "--no-create-home"])
                        .args(["--shell", "/bin/bash"])
                        .args(group)
                        .args(["--comment", "berth system user", &self.name]),
                );
                if let Err(e) = added {
                    // No account came of it: the record goes again (a user that was
                    // ours before, whose account vanished, stays ours).
                    if !ours && passwd_entry(root, &self.name)?.is_none() {
                        ctx.record(|inv| inv.users.remove(&self.name))?;
                    }
                    return Err(e.into());
                }
                outcome.step("account", true);
                passwd_entry(root, &self.name)?
                    .ok_or_else(|| JobError::Internal(format!("useradd did not create {}", shown(&self.name))))?
            }
        };
        outcome.step("home directory", make_home(root, &self.name, account)?);
        outcome.step("password", set_password(ctx, &self.name, self.password.as_ref())?);
        outcome.result = Some(json!({"name": self.name, "home": home(&self.name), "uid": account.uid}));
        Ok(outcome)
    }
}

/// What a `useradd` killed half-way (it writes passwd, shadow, group and gshadow one
/// after another) left out of an account of ours: its own group, its shadow entry.
/// True when something was added.
fn complete_account(ctx: &JobContext, name: &SysuserName, account: Account) -> Result<bool, JobError> {
    let root = ctx.root();
    let mut changed = false;
    if !group_exists(root, name)? {
        let gid = account.gid.to_string();
        ctx.host.run(&shadow_cmd("/usr/sbin/groupadd", root).args(["--gid", gid.as_str(), name.as_str()]))?;
        changed = true;
    }
    if shadow_hash(root, name)?.is_none() {
        let pwconv = Cmd::new("/usr/sbin/pwconv");
        let pwconv = if root == Path::new("/") { pwconv } else { pwconv.arg("--root").arg(root.to_string_lossy()) };
        ctx.host.run(&pwconv)?;
        changed = true;
    }
    Ok(changed)
}

impl Update {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let name = name(&params)?;
        let password = Secret::new(params.checked("password", validate::password)?);
        Ok(Box::new(Update { name, password }))
    }
}

impl BlockingJob for Update {
    fn resources(&self) -> Resources {
        user_resources(&self.name)
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let ours = ctx.inventory.read(|inv| inv.users.contains_key(&self.name));
        match (passwd_entry(ctx.root(), &self.name)?, ours) {
            (Some(_), false) => Err(not_ours(&self.name)),
            (None, _) => Err(JobError::NotFound(format!("system user {} does not exist", shown(&self.name)))),
            (Some(_), true) => {
                let mut outcome = Outcome::default();
                outcome.step("password", set_password(ctx, &self.name, Some(&self.password))?);
                Ok(outcome)
            }
        }
    }
}

impl Delete {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        Ok(Box::new(Delete { name: name(&params)? }))
    }
}

impl BlockingJob for Delete {
    fn resources(&self) -> Resources {
        user_resources(&self.name)
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let root = ctx.root();
        let ours = ctx.inventory.read(|inv| inv.users.contains_key(&self.name));
        let exists = passwd_entry(root, &self.name)?.is_some();
        if exists && !ours {
            return Err(not_ours(&self.name));
        }
        let mut outcome = Outcome::default();
        // The user's apps go first: their pools run as the user.
        let apps: Vec<AppName> = ctx.inventory.read(|inv| {
            inv.apps.iter().filter(|(_, app)| app.sysuser == self.name).map(|(name, _)| name.clone()).collect()
        });
        for app in &apps {
            crate::jobs::web::remove(ctx, app)?;
        }
        outcome.step("apps", !apps.is_empty());
        if exists {
            ctx.host.run(&shadow_cmd("/usr/sbin/userdel", root).arg(&self.name))?;
        }
        outcome.step("account", exists);
        // userdel leaves the user's group when it has members (app.create adds the
        // web server's user). The group of the user's name is the one `useradd
        // --user-group` made for a user of the inventory (create refuses a name
        // whose group exists otherwise); a group of someone else's is not touched.
        let group_left = ours && group_exists(root, &self.name)?;
        if group_left {
            ctx.host.run(&shadow_cmd("/usr/sbin/groupdel", root).arg(&self.name))?;
        }
        outcome.step("group", group_left);
        outcome.step("home directory", remove_home(root, &self.name)?);
        ctx.record(|inv| inv.users.remove(&self.name))?;
        Ok(outcome)
    }
}

/// What every sysuser job holds. The web stack: deleting a user deletes its apps,
/// which changes web server config.
fn user_resources(user: &SysuserName) -> Resources {
    Resources::of([Resource::Sysuser(user.clone()), Resource::WebStack])
}

fn home(name: &str) -> String {
    format!("{HOME_BASE}/{name}")
}

/// Makes `/srv/users` (root's, 0755) and, below it, the home `name` with `apps/`
/// and the log entry, owned by the account (0750); true when anything changed.
/// Nothing in the home is followed: a link planted for any of them is a `conflict`.
fn make_home(root: &Path, name: &str, account: Account) -> Result<bool, JobError> {
    let (users, mut changed) = Dir::ensure_trusted(&under_root(root, HOME_BASE), 0o755, 0, 0)?;
    let (home, made) = users.ensure_dir(name, HOME_MODE, account.uid, account.gid)?;
    changed |= made;
    changed |= home.ensure_dir("apps", HOME_MODE, account.uid, account.gid)?.1;
    changed |= make_log(root, &home, name, account)?;
    Ok(changed)
}

/// The user's logs: root-owned `/var/log/berth/NAME` (`root:NAME`, 0750; root's
/// servers open the files in it, so no user may change what is there), and the
/// home's `log` as a link to it, where PROTOCOL and the user look for them. A `log`
/// that is something else (a home made before logs moved, or the user's own) is
/// left as it is: berth never reads or writes through it.
fn make_log(root: &Path, home: &Dir, name: &str, account: Account) -> Result<bool, JobError> {
    let mut changed = crate::web::sitedirs::ensure_user_logs(root, account.gid, name)?;
    let target = under_root(root, &crate::web::stack::user_log_dir(name));
    match home.ensure_symlink("log", &target.to_string_lossy()) {
        Ok(made) => changed |= made,
        Err(TreeError::Planted { what, .. }) if what != crate::host::tree::SYMLINK => {}
        Err(e) => return Err(e.into()),
    }
    Ok(changed)
}

/// Removes the home `name` and everything in it, from the root-owned
/// `/srv/users`, without following a link or crossing a mount point; true when
/// there was one.
fn remove_home(root: &Path, name: &str) -> Result<bool, JobError> {
    let users = match Dir::open_trusted(&under_root(root, HOME_BASE)) {
        Ok(users) => users,
        Err(e) if e.is_not_found() => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let removed = users.remove_tree(name)?;
    Ok(crate::web::sitedirs::remove_user_logs(root, name)? || removed)
}

/// Sets the password (or, with none, locks password login); true when it changed.
fn set_password(ctx: &JobContext, name: &str, password: Option<&Secret>) -> Result<bool, JobError> {
    let current = shadow_hash(ctx.root(), name)?.unwrap_or_default();
    match password {
        Some(password) => {
            if current.starts_with("$6$") && sha_crypt::sha512_check(password.expose(), &current).is_ok() {
                return Ok(false);
            }
            let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT).expect("default rounds are valid");
            let hash = sha_crypt::sha512_simple(password.expose(), &params)
                .map_err(|e| JobError::Internal(format!("cannot hash the password: {e:?}")))?;
            let line = Secret::new(format!("{name}:{hash}\n"));
            ctx.host.run(&shadow_cmd("/usr/sbin/chpasswd", ctx.root()).arg("--encrypted").stdin(line))?;
            Ok(true)
        }
        None if current.starts_with('!') || current.starts_with('*') => Ok(false),
        None => {
            ctx.host.run(&shadow_cmd("/usr/sbin/usermod", ctx.root()).args(["--lock", name]))?;
            Ok(true)
        }
    }
}

/// The uid for a new system user: above every uid berth ever gave (`high_water`) and
/// every account's in `/etc/passwd`, and at least `UID_MIN` of `/etc/login.defs`
/// (1000 when it says nothing). A uid is never given twice: files a deleted user
/// left behind keep their uid, and must not pass to the next account.
fn next_uid(root: &Path, high_water: u32) -> Result<u32, JobError> {
    let defs = std::fs::read_to_string(root.join("etc/login.defs")).unwrap_or_default();
    let setting = |key: &str, default: u32| {
        defs.lines()
            .filter_map(|line| line.split_once(char::is_whitespace))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(default)
    };
    let (min, max) = (setting("UID_MIN", 1000), setting("UID_MAX", 60000));
    let passwd = root.join("etc/passwd");
    let text =
        std::fs::read_to_string(&passwd).map_err(|e| JobError::Internal(format!("{}: {e}", passwd.display())))?;
    let highest = text
        .lines()
        .filter_map(|line| line.split(':').nth(2)?.parse::<u32>().ok())
        .filter(|uid| (min..=max).contains(uid))
        .fold(high_water, u32::max);
    let uid = highest.saturating_add(1).max(min);
    if uid > max {
        return Err(JobError::LimitExceeded {
            field: "name".into(),
            message: format!("no uid is left for a new system user (UID_MAX {max} of /etc/login.defs is reached)"),
        });
    }
    Ok(uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::protocol::ErrorCode;

    #[test]
    fn params_name_the_broken_field() {
        let err = |params: Value| Create::parse(&params).err().unwrap();
        assert_eq!(err(json!({"name": "3po"})).field(), Some("name"));
        assert_eq!(err(json!({"name": "derek", "password": " padded "})).field(), Some("password"));
        assert_eq!(err(json!({})).code(), ErrorCode::InvalidParams);
        assert_eq!(Update::parse(&json!({"name": "derek"})).err().unwrap().field(), Some("password"));
        assert_eq!(Delete::parse(&json!({"name": "../etc"})).err().unwrap().field(), Some("name"));
    }
}

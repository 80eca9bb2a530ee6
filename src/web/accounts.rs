//! The host's account databases (`<root>/etc/passwd`, `group`, `shadow`) as the
//! job families read them, the shadow-utils commands aimed at them, and the
//! directory helper those families share. Below every job family: `sysuser`
//! manages the accounts, `app` and the web config read them.

use std::io;
use std::path::{Path, PathBuf};

use crate::host::fs::ensure_dir_owned;
use crate::host::Cmd;
use crate::job::JobError;
use crate::model::validate::shown;

/// The error for a user that is not berth's: `not_found` when absent, else `conflict`.
pub(crate) fn missing_or_not_ours(root: &Path, name: &str) -> Result<JobError, JobError> {
    Ok(match passwd_entry(root, name)? {
        Some(_) => not_ours(name),
        None => JobError::NotFound(format!("system user {} does not exist", shown(name))),
    })
}

/// The account of a user berth manages.
pub(crate) fn account(root: &Path, name: &str) -> Result<Account, JobError> {
    passwd_entry(root, name)?
        .ok_or_else(|| JobError::NotFound(format!("system user {} is gone from /etc/passwd", shown(name))))
}

/// The members of group `name` (the fourth field of /etc/group).
pub(crate) fn group_members(root: &Path, name: &str) -> Result<Vec<String>, JobError> {
    let fields = find_line(&root.join("etc/group"), name)?;
    Ok(fields
        .and_then(|f| f.get(3).cloned())
        .map(|members| members.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default())
}

pub(crate) fn not_ours(name: &str) -> JobError {
    JobError::Conflict(format!(
        "system account {} exists and was not created by berth; berth leaves it alone",
        shown(name)
    ))
}

/// A shadow-utils command aimed at `root`'s account files.
pub(crate) fn shadow_cmd(program: &str, root: &Path) -> Cmd {
    let cmd = Cmd::new(program);
    if root == Path::new("/") {
        return cmd;
    }
    // chpasswd has no --prefix; its --root chroots, which is enough for -e.
    let flag = if program.ends_with("chpasswd") { "--root" } else { "--prefix" };
    cmd.arg(flag).arg(root.to_string_lossy())
}

/// An account of `<root>/etc/passwd`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Account {
    pub uid: u32,
    pub gid: u32,
}

pub(crate) fn passwd_entry(root: &Path, name: &str) -> Result<Option<Account>, JobError> {
    let fields = find_line(&root.join("etc/passwd"), name)?;
    Ok(fields.and_then(|f| Some(Account { uid: f.get(2)?.parse().ok()?, gid: f.get(3)?.parse().ok()? })))
}

pub(crate) fn shadow_hash(root: &Path, name: &str) -> Result<Option<String>, JobError> {
    Ok(find_line(&root.join("etc/shadow"), name)?.and_then(|f| f.get(1).cloned()))
}

pub(crate) fn group_exists(root: &Path, name: &str) -> Result<bool, JobError> {
    Ok(find_line(&root.join("etc/group"), name)?.is_some())
}

/// The `:`-separated fields of the line for `name` in an account database.
fn find_line(path: &Path, name: &str) -> Result<Option<Vec<String>>, JobError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    Ok(text
        .lines()
        .map(|line| line.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.first().is_some_and(|f| f == name)))
}

/// [`ensure_dir_owned`] with the error a job reports. Path-based: it follows a link
/// planted for a parent, so it is not for paths in a user's home (use
/// [`crate::host::tree`] there).
pub(crate) fn ensure_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<bool, JobError> {
    ensure_dir_owned(dir, mode, uid, gid).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => JobError::Conflict(format!("{} exists and is not a directory", dir.display())),
        _ => io_error(dir, e),
    })
}

fn io_error(path: &Path, e: io::Error) -> JobError {
    JobError::Internal(format!("{}: {e}", PathBuf::from(path).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_commands_aim_at_the_sandbox_root() {
        let sandbox = shadow_cmd("/usr/sbin/useradd", Path::new("/tmp/sb")).arg("derek");
        assert_eq!(sandbox.to_string(), "/usr/sbin/useradd --prefix /tmp/sb derek");
        let chpasswd = shadow_cmd("/usr/sbin/chpasswd", Path::new("/tmp/sb"));
        assert_eq!(chpasswd.to_string(), "/usr/sbin/chpasswd --root /tmp/sb");
        assert_eq!(shadow_cmd("/usr/sbin/userdel", Path::new("/")).to_string(), "/usr/sbin/userdel");
    }

    #[test]
    fn account_databases_are_read_by_exact_name() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "derek2:x:1002:1002::/h:/bin/sh\nderek:x:1001:1003::/h:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "www-data:x:33:\n").unwrap();
        assert_eq!(passwd_entry(root.path(), "derek").unwrap(), Some(Account { uid: 1001, gid: 1003 }));
        assert_eq!(passwd_entry(root.path(), "dere").unwrap(), None);
        assert!(group_exists(root.path(), "www-data").unwrap());
        assert!(!group_exists(root.path(), "www").unwrap());
    }
}

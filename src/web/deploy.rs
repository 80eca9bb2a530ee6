//! Git deploys on the host: the host side of `app.git` and `app.deploy`.
//!
//! An app with git deploys has, in its directory (the user's):
//!
//! ```text
//! /srv/users/USER/apps/APP/deploy/id_ed25519    the deploy key (0600), and .pub
//! /srv/users/USER/apps/APP/deploy/known_hosts   pinned on first use, or given
//! /srv/users/USER/apps/APP/releases/<id>/       one shallow clone per deploy
//! /srv/users/USER/apps/APP/shared/              what every release links to
//! /srv/users/USER/apps/APP/current -> releases/<id>
//! ```
//!
//! Everything in there is the user's, who may change it at any moment. So every
//! command that reads or writes it runs *as the user* (`setpriv`, cleared groups,
//! no new privileges, a clean environment): `ssh-keygen`, `git`, the deploy
//! script, the links, the switch and the removals. Whatever the user planted, such
//! a command reaches nothing that user could not. Root itself only makes the
//! `deploy`, `releases` and `shared` directories and lists `releases`, through
//! descriptors that never follow a link ([`crate::host::tree`]).
//!
//! `current` is a link the user owns (so nginx's `disable_symlinks if_not_owner`
//! and Apache's `SymLinksIfOwnerMatch` follow it to the user's own release, and
//! refuse it when it leads to anything not the user's). A deploy switches it with
//! rename(2) of a new link over it (`mv -T`): a request sees the old release or
//! the new one, never none.

use std::path::Path;
use std::time::Duration;

use crate::host::fs::under_root;
use crate::host::stream::{describe, run_streaming};
use crate::host::tree::Dir;
use crate::host::{Cmd, Host, HostError};
use crate::job::JobError;
use crate::model::deploy::{is_commit, is_release_id, DeployScript, GitDeploy, SharedPath};
use crate::model::{validate::shown, Secret};
use crate::web::sitedirs::Owner;
use crate::web::stack::{self, USERS_DIR};

/// The deploy key's file in `deploy/`.
pub const KEY: &str = "id_ed25519";
/// The directories berth makes in the app's directory, and their mode.
const DEPLOY_DIR: &str = "deploy";
const RELEASES: &str = "releases";
const SHARED: &str = "shared";
/// How long a deploy script may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// What of a failed script's output its error carries.
const ERROR_TAIL: usize = 4 << 10;

/// An app's deploy places, and the user that owns them.
pub struct Site<'a> {
    pub root: &'a Path,
    pub owner: Owner,
    pub sysuser: &'a str,
    pub app: &'a str,
}

impl Site<'_> {
    /// The host path of `rel` in the app's directory.
    pub fn path(&self, rel: &str) -> String {
        under_root(self.root, &format!("{}/{rel}", stack::app_dir(self.sysuser, self.app))).display().to_string()
    }

    /// `program args` as the app's user, in a clean environment with `HOME` its home.
    fn as_user<I: IntoIterator<Item = S>, S: Into<String>>(&self, program: &str, args: I) -> Cmd {
        let home = under_root(self.root, &format!("{USERS_DIR}/{}", self.sysuser)).display().to_string();
        Cmd::new("/usr/bin/setpriv")
            .args([format!("--reuid={}", self.owner.uid), format!("--regid={}", self.owner.gid)])
            .args(["--clear-groups", "--no-new-privs", "--", program])
            .args(args)
            .env("HOME", home)
    }

    /// Runs `cmd`; a failure is `tool_failed` naming `what`, with what it printed.
    fn run(&self, host: &dyn Host, what: &str, cmd: &Cmd) -> Result<String, JobError> {
        host.run(cmd).map_err(|e| JobError::ToolFailed {
            command: what.to_owned(),
            stderr: match e {
                HostError::Failed { status, stderr, .. } => format!("{status}: {}", stderr.trim()),
                other => other.to_string(),
            },
        })
    }

    /// The app's directory, opened from `/srv/users` without following a link.
    fn app_dir(&self) -> Result<Dir, JobError> {
        let missing = || {
            JobError::PreconditionFailed(format!("the directory of app {} is missing; run app.update", shown(self.app)))
        };
        let users = Dir::open_trusted(&under_root(self.root, USERS_DIR))?;
        let home = users.open_dir(self.sysuser)?.ok_or_else(missing)?;
        let apps = home.open_dir("apps")?.ok_or_else(missing)?;
        apps.open_dir(self.app)?.ok_or_else(missing)
    }

    /// Makes `deploy/` (0700), and for a deploy `releases/` and `shared/` (0750),
    /// the user's; a link or file in their place is `conflict`. True when any changed.
    pub fn ensure_dirs(&self, for_deploy: bool) -> Result<bool, JobError> {
        let app = self.app_dir()?;
        let (uid, gid) = (self.owner.uid, self.owner.gid);
        let mut changed = app.ensure_dir(DEPLOY_DIR, 0o700, uid, gid)?.1;
        if for_deploy {
            changed |= app.ensure_dir(RELEASES, 0o750, uid, gid)?.1;
            changed |= app.ensure_dir(SHARED, 0o750, uid, gid)?.1;
        }
        Ok(changed)
    }

    /// Makes the deploy key when there is none (as the user: root never writes it);
    /// true when made. Returns its public half either way.
    pub fn ensure_key(&self, host: &dyn Host) -> Result<(bool, String), JobError> {
        let key = self.path(&format!("{DEPLOY_DIR}/{KEY}"));
        let deploy = self.app_dir()?.open_dir(DEPLOY_DIR)?;
        let present = deploy.map(|d| d.entries()).transpose()?.is_some_and(|names| names.iter().any(|n| n == KEY));
        if !present {
            let comment = format!("berth-deploy-{}", self.app);
            let make =
                self.as_user("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f", &key]);
            self.run(host, "ssh-keygen", &make)?;
        }
        let public = self.run(host, "ssh-keygen -y", &self.as_user("/usr/bin/ssh-keygen", ["-y", "-f", &key]))?;
        let mut parts = public.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("ssh-ed25519"), Some(b64))
                if b64.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) =>
            {
                Ok((!present, format!("ssh-ed25519 {b64} berth-deploy-{}", self.app)))
            }
            _ => Err(JobError::ToolFailed {
                command: "ssh-keygen -y".into(),
                stderr: format!("{} is not an ed25519 key", key),
            }),
        }
    }

    /// Writes `known_hosts` (the given host keys, or empty: pinned anew on first use).
    pub fn write_known_hosts(&self, host: &dyn Host, content: &str) -> Result<(), JobError> {
        let (file, aside) =
            (self.path(&format!("{DEPLOY_DIR}/known_hosts")), self.path(&format!("{DEPLOY_DIR}/.known_hosts.new")));
        let write = self.as_user("/usr/bin/tee", ["--", &aside]).stdin(Secret::new(content.to_owned()));
        self.run(host, "writing known_hosts", &write)?;
        self.run(host, "writing known_hosts", &self.as_user("/usr/bin/mv", ["-f", "-T", "--", &aside, &file]))?;
        Ok(())
    }

    /// `git args` as the user, with the app's key and known hosts, and no transport
    /// but `file` and `ssh`.
    fn git<I: IntoIterator<Item = S>, S: Into<String>>(&self, git: &GitDeploy, args: I) -> Cmd {
        let checking = if git.host_keys.is_some() { "yes" } else { "accept-new" };
        let ssh = format!(
            "/usr/bin/ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking={checking} -o ConnectTimeout=20",
            self.path(&format!("{DEPLOY_DIR}/{KEY}")),
            self.path(&format!("{DEPLOY_DIR}/known_hosts")),
        );
        self.as_user("/usr/bin/git", ["-c", "protocol.allow=never", "-c", "protocol.file.allow=always"])
            .args(["-c", "protocol.ssh.allow=always", "-c", "core.hooksPath=/dev/null"])
            .args(args)
            .env("GIT_SSH_COMMAND", ssh)
            .env("GIT_ALLOW_PROTOCOL", "file:ssh")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
    }

    /// The commit the branch is at in the repository.
    pub fn remote_head(&self, host: &dyn Host, git: &GitDeploy) -> Result<String, JobError> {
        let refname = format!("refs/heads/{}", git.branch);
        let listed =
            self.run(host, "git ls-remote", &self.git(git, ["ls-remote", "--", git.repo.as_str(), &refname]))?;
        listed
            .lines()
            .find_map(|line| {
                line.split_once('\t')
                    .filter(|(sha, name)| *name == refname && is_commit(sha))
                    .map(|(sha, _)| sha.to_owned())
            })
            .ok_or_else(|| {
                JobError::PreconditionFailed(format!("the repository has no branch {}", shown(git.branch.as_str())))
            })
    }

    /// Clones the branch, shallow, into `releases/<id>`; returns its commit.
    pub fn clone_release(&self, host: &dyn Host, git: &GitDeploy, id: &str) -> Result<String, JobError> {
        let dir = self.path(&format!("{RELEASES}/{id}"));
        let clone =
            ["clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags", "--branch", git.branch.as_str()];
        self.run(host, "git clone", &self.git(git, clone).args(["--", git.repo.as_str(), &dir]))?;
        let head = self.run(host, "git rev-parse", &self.git(git, ["-C", &dir, "rev-parse", "HEAD"]))?;
        let head = head.trim();
        if !is_commit(head) {
            return Err(JobError::ToolFailed {
                command: "git rev-parse".into(),
                stderr: format!("not a commit: {}", shown(head)),
            });
        }
        Ok(head.to_owned())
    }

    /// Links each shared path of release `id` to `shared/` (relative links, made as
    /// the user). A path missing from `shared/` is seeded with the release's own, or
    /// made an empty directory (a path ending in `/`); a file that is nowhere is not
    /// linked. Returns the paths linked.
    pub fn link_shared(&self, host: &dyn Host, id: &str, paths: &[SharedPath]) -> Result<Vec<String>, JobError> {
        let exists = |path: &str| host.run(&self.as_user("/usr/bin/test", ["-e", path])).is_ok();
        let mut linked = Vec::new();
        for shared in paths {
            let rel = shared.path();
            let (in_shared, in_release) =
                (self.path(&format!("{SHARED}/{rel}")), self.path(&format!("{RELEASES}/{id}/{rel}")));
            if !exists(&in_shared) {
                if exists(&in_release) {
                    self.mkdir_parent(host, &in_shared)?;
                    self.run(
                        host,
                        "seeding a shared path",
                        &self.as_user("/usr/bin/mv", ["-T", "--", &in_release, &in_shared]),
                    )?;
                } else if shared.is_dir() {
                    self.run(
                        host,
                        "making a shared directory",
                        &self.as_user("/usr/bin/mkdir", ["-p", "--", &in_shared]),
                    )?;
                } else {
                    continue;
                }
            }
            self.run(host, "linking a shared path", &self.as_user("/usr/bin/rm", ["-rf", "--", &in_release]))?;
            self.mkdir_parent(host, &in_release)?;
            let target = format!("{}{SHARED}/{rel}", "../".repeat(rel.split('/').count() + 1));
            self.run(host, "linking a shared path", &self.as_user("/usr/bin/ln", ["-s", "--", &target, &in_release]))?;
            linked.push(rel.to_owned());
        }
        Ok(linked)
    }

    fn mkdir_parent(&self, host: &dyn Host, path: &str) -> Result<(), JobError> {
        let parent = Path::new(path).parent().map(|p| p.display().to_string()).unwrap_or_default();
        self.run(host, "making a directory", &self.as_user("/usr/bin/mkdir", ["-p", "--", &parent])).map(drop)
    }

    /// Runs the deploy script in release `id` as the user (`/bin/sh -c`), each line
    /// of its output to `line`; an exit other than 0, or a timeout, is `tool_failed`
    /// with the end of its output.
    ///
    /// The script is PID 1 of a PID namespace of its own (`unshare --pid --fork
    /// --kill-child`): when it ends, or berth kills it, the kernel kills everything it
    /// started, also what it detached with `setsid` or a double fork, so nothing of
    /// the user's is left running inside berth's service.
    pub fn run_script(&self, script: &DeployScript, id: &str, line: &mut dyn FnMut(&str)) -> Result<(), JobError> {
        let dir = self.path(&format!("{RELEASES}/{id}"));
        let as_user = self
            .as_user("/usr/bin/env", [format!("--chdir={dir}"), "/bin/sh".into(), "-c".into(), script.as_str().into()])
            .env("BERTH_APP", self.app)
            .env("BERTH_RELEASE", id);
        let mut cmd = Cmd::new("/usr/bin/unshare").args(["--pid", "--fork", "--kill-child", "--"]);
        cmd.args.push(as_user.program);
        cmd.args.extend(as_user.args);
        cmd.env = as_user.env;
        let mut tail = String::new();
        let status = run_streaming(&cmd, SCRIPT_TIMEOUT, &mut |text| {
            line(text);
            tail.push_str(text);
            if tail.len() > 2 * ERROR_TAIL {
                let mut cut = tail.len() - ERROR_TAIL;
                while !tail.is_char_boundary(cut) {
                    cut += 1;
                }
                tail.drain(..cut);
            }
        });
        let failed = |why: String| JobError::ToolFailed {
            command: "the deploy script".into(),
            stderr: format!("{why}; the previous release still serves. Its output ended with: {}", tail.trim_end()),
        };
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(failed(describe(status))),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// Points `current` at release `id`: a new link renamed over it (rename(2)).
    pub fn switch(&self, host: &dyn Host, id: &str) -> Result<(), JobError> {
        let (aside, current) = (self.path(&format!(".current-{id}")), self.path("current"));
        self.run(host, "switching current", &self.as_user("/usr/bin/rm", ["-f", "--", &aside]))?;
        let target = format!("{RELEASES}/{id}");
        self.run(host, "switching current", &self.as_user("/usr/bin/ln", ["-s", "--", &target, &aside]))?;
        self.run(host, "switching current", &self.as_user("/usr/bin/mv", ["-f", "-T", "--", &aside, &current]))
            .map(drop)
    }

    /// Where `current` points, when it is a link.
    pub fn current(&self, host: &dyn Host) -> Option<String> {
        host.run(&self.as_user("/usr/bin/readlink", ["--", &self.path("current")])).ok().map(|t| t.trim().to_owned())
    }

    /// Removes release `id` (as the user).
    pub fn remove_release(&self, host: &dyn Host, id: &str) -> Result<(), JobError> {
        let dir = self.path(&format!("{RELEASES}/{id}"));
        self.run(host, "removing a release", &self.as_user("/usr/bin/rm", ["-rf", "--", &dir])).map(drop)
    }

    /// The release ids in `releases/`, oldest first.
    pub fn releases(&self) -> Result<Vec<String>, JobError> {
        let Some(releases) = self.app_dir()?.open_dir(RELEASES)? else { return Ok(Vec::new()) };
        let mut ids: Vec<String> = releases.entries()?.into_iter().filter(|n| is_release_id(n)).collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes all but the newest `keep` releases, never `current`; returns those removed.
    pub fn prune(&self, host: &dyn Host, keep: usize, current: &str) -> Result<Vec<String>, JobError> {
        let ids = self.releases()?;
        let old = ids.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for id in ids.into_iter().take(old).filter(|id| id != current) {
            self.remove_release(host, &id)?;
            removed.push(id);
        }
        Ok(removed)
    }
}

/// A new release id: now, to the millisecond, later than every one of `taken`.
pub fn new_release_id(taken: &[String]) -> String {
    let now: String = crate::time::now().chars().filter(char::is_ascii_digit).collect();
    match taken.iter().max() {
        Some(last) if *last >= now => {
            let next = last.parse::<u64>().unwrap_or(0) + 1;
            format!("{next:017}")
        }
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_ids_sort_by_age_and_never_repeat() {
        let id = new_release_id(&[]);
        assert!(is_release_id(&id), "{id}");
        let future = "99991231235959999".to_owned();
        assert_eq!(new_release_id(std::slice::from_ref(&future)), "99991231235960000");
        assert!(new_release_id(&["20000101000000000".into()]).as_str() > "20000101000000000");
    }
}

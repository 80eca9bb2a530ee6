//! Git deploys: `app.git {app, repo, branch, deploy_script?, keep?, host_keys?,
//! shared?}` sets them up, `app.deploy {app, force?}` (SpinupWP's `git.deploy`)
//! deploys the branch.
//!
//! `app.git` makes the app's deploy key (ed25519, on the server, as the user; only
//! its public half leaves, in the result), writes the pinned host keys (or leaves
//! ssh to pin them on first use), and keeps the settings in the app's record. A
//! rerun with the same params changes nothing and gives the same key.
//!
//! `app.deploy` clones the branch into a new release, links the shared paths, runs
//! the deploy script there (its output as `job.output`), and only when all of that
//! succeeded switches `current` to it ([`crate::web::deploy`] says how, and why
//! everything in the user's tree runs as the user). The first deploy also points
//! the vhosts at `current/<public_folder>` with `$realpath_root` (a config change,
//! checked and reloaded); later ones change no config and hold no web stack. A
//! failure removes the new release and leaves the old one serving. A rerun when
//! the branch has not moved changes nothing (`force: true` deploys anyway).

use std::time::Instant;

use serde_json::{json, Value};

use crate::job::{BlockingJob, Job, JobContext, JobError, Outcome, Resources};
use crate::jobs::web::apply_config;
use crate::jobs::Catalogue;
use crate::model::deploy::{
    keep_param, Branch, DeployScript, GitDeploy, HostKeys, Release, RepoUrl, SharedPath, MAX_SHARED,
};
use crate::model::resource::Resource;
use crate::model::validate::{shown, FieldError, Params};
use crate::model::AppName;
use crate::state::inventory::App;
use crate::web::deploy::{new_release_id, Site};
use crate::web::render::WebConfig;
use crate::web::sitedirs::Owner;
use crate::web::{accounts, stack, weblock};

pub fn register(catalogue: &mut Catalogue) {
    catalogue.register("app.git", Setup::parse);
    catalogue.register("app.deploy", Deploy::parse);
    catalogue.register("git.deploy", Deploy::parse);
}

/// `app.git`.
#[derive(Debug)]
struct Setup {
    app: AppName,
    repo: RepoUrl,
    branch: Branch,
    deploy_script: Option<DeployScript>,
    keep: u8,
    host_keys: Option<HostKeys>,
    /// `None`: the defaults ([`SharedPath::defaults`]), which follow the app's public folder.
    shared: Option<Vec<SharedPath>>,
}

/// `app.deploy` / `git.deploy`.
#[derive(Debug)]
struct Deploy {
    app: AppName,
    force: bool,
}

impl Setup {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let repo = RepoUrl::param(&params, "repo")?;
        let branch = Branch::param(&params, "branch")?;
        let deploy_script = DeployScript::opt_param(&params, "deploy_script")?;
        let keep = keep_param(&params, "keep")?;
        let host_keys = HostKeys::opt_param(&params, "host_keys")?;
        let shared = match params.opt_str_array("shared")? {
            None => None,
            Some(paths) if paths.len() > MAX_SHARED => {
                return Err(FieldError::new(params.field("shared"), format!("at most {MAX_SHARED} paths")).into())
            }
            Some(paths) => Some(
                paths
                    .iter()
                    .enumerate()
                    .map(|(i, p)| SharedPath::parse(&format!("{}[{i}]", params.field("shared")), p))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Box::new(Setup { app, repo, branch, deploy_script, keep, host_keys, shared }))
    }
}

impl Deploy {
    fn parse(params: &Value) -> Result<Box<dyn Job>, JobError> {
        let params = Params::new(params)?;
        let app = AppName::param(&params, "app")?;
        let force = params.opt_bool("force")?.unwrap_or(false);
        Ok(Box::new(Deploy { app, force }))
    }
}

/// The app as the inventory has it, and its user's ids.
fn load(ctx: &JobContext, name: &str) -> Result<(App, Owner), JobError> {
    let app = ctx
        .inventory
        .read(|inv| inv.apps.get(name).cloned())
        .ok_or_else(|| JobError::NotFound(format!("app {} does not exist", shown(name))))?;
    let account = accounts::account(ctx.root(), &app.sysuser)?;
    Ok((app, Owner { uid: account.uid, gid: account.gid }))
}

impl BlockingJob for Setup {
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone())])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let (app, owner) = load(ctx, &self.app)?;
        let site = Site { root: ctx.root(), owner, sysuser: &app.sysuser, app: &self.app };
        let mut outcome = Outcome::default();
        outcome.step("deploy directory", site.ensure_dirs(false)?);
        let (made, public_key) = site.ensure_key(ctx.host.as_ref())?;
        outcome.step("deploy key", made);
        let before = app.git.as_deref();
        let public_folder = crate::model::site::public_folder_or_default(app.public_folder.as_ref());
        let next = GitDeploy {
            repo: self.repo,
            branch: self.branch,
            deploy_script: self.deploy_script,
            keep: self.keep,
            host_keys: self.host_keys,
            shared: self.shared.unwrap_or_else(|| SharedPath::defaults(public_folder)),
            current: before.and_then(|b| b.current.clone()),
        };
        let keys_before = before.and_then(|b| b.host_keys.as_ref());
        // Given keys are written when they change (or the key is new); going back to
        // first use empties the file, so the next connection pins anew.
        let write_keys = next.host_keys.as_ref() != keys_before || (made && next.host_keys.is_some());
        if write_keys {
            site.write_known_hosts(ctx.host.as_ref(), next.host_keys.as_ref().map_or("", |k| k.as_str()))?;
        }
        outcome.step("known hosts", write_keys);
        outcome.step("git settings", before != Some(&next));
        ctx.record(|inv| inv.apps.get_mut(&self.app).map(|a| a.git = Some(Box::new(next.clone()))))?;
        outcome.result = Some(json!({
            "public_key": public_key,
            "repo": next.repo.as_str(),
            "branch": next.branch.as_str(),
            "keep": next.keep,
            "shared": next.shared.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "host_key_checking": if next.host_keys.is_some() { "pinned" } else { "first use" },
            "current_release": next.current.as_ref().map(|c| &c.id),
        }));
        Ok(outcome)
    }
}

impl BlockingJob for Deploy {
    /// The app, and the web stack, given back at once: a clone and a deploy script
    /// may take minutes, and no other app's web job waits for them. A first deploy's
    /// config change takes the web-config lock alone, and reads the app again.
    fn resources(&self) -> Resources {
        Resources::of([Resource::App(self.app.clone()), Resource::WebStack])
    }

    fn apply(self, ctx: &JobContext) -> Result<Outcome, JobError> {
        let started = Instant::now();
        let (app, owner) = load(ctx, &self.app)?;
        let Some(git) = app.git.as_deref().cloned() else {
            return Err(JobError::PreconditionFailed(format!(
                "app {} has no git deploys; run app.git first",
                shown(&self.app)
            )));
        };
        let deployed = git.current.is_some();
        ctx.release(Resource::WebStack);
        let host = ctx.host.as_ref();
        let site = Site { root: ctx.root(), owner, sysuser: &app.sysuser, app: &self.app };
        let mut outcome = Outcome::default();
        outcome.step("deploy directories", site.ensure_dirs(true)?);
        let head = site.remote_head(host, &git)?;
        if let Some(current) = git.current.as_ref().filter(|c| !self.force && c.commit == head) {
            if site.current(host).as_deref() == Some(&format!("releases/{}", current.id)) {
                ctx.output(format!("{} is at {head}, which serves already\n", git.branch));
                outcome.step("release", false);
                outcome.result = Some(report(&app, &self.app, current, started, &[]));
                return Ok(outcome);
            }
        }
        let id = new_release_id(&site.releases()?);
        ctx.output(format!("deploying {} of {} into releases/{id}\n", git.branch, git.repo));
        let mut printed = String::new();
        let built = (|| -> Result<String, JobError> {
            let commit = site.clone_release(host, &git, &id)?;
            ctx.output(format!("cloned {commit}\n"));
            for path in site.link_shared(host, &id, &git.shared)? {
                ctx.output(format!("shared: {path}\n"));
            }
            if let Some(script) = &git.deploy_script {
                site.run_script(script, &id, &mut |line| {
                    ctx.output(line);
                    keep_tail(&mut printed, line);
                })?;
            }
            site.switch(host, &id)?;
            Ok(commit)
        })();
        let commit = built.inspect_err(|_| {
            if let Err(e) = site.remove_release(host, &id) {
                tracing::warn!(app = %self.app, release = %id, "a failed deploy left its release: {e}");
            }
        })?;
        outcome.step("release", true);
        outcome.output = printed;
        let release = Release { id: id.clone(), commit };
        let mut next = app.clone();
        next.git = Some(Box::new(GitDeploy { current: Some(release.clone()), ..git.clone() }));
        if !deployed {
            // The first deploy: the vhosts move to `current`.
            let root = ctx.root();
            let _web = weblock::hold(root)?;
            let before = ctx.inventory.read(|inv| inv.clone());
            let mut fresh =
                before.apps.get(&*self.app).cloned().ok_or_else(|| {
                    JobError::NotFound(format!("app {} was deleted during its deploy", shown(&self.app)))
                })?;
            fresh.git.clone_from(&next.git);
            outcome.applied(&apply_config(ctx, &WebConfig::gather(root)?, &before, &self.app, &fresh, Vec::new())?);
        }
        ctx.record(|inv| inv.apps.get_mut(&self.app).map(|a| a.git = next.git.clone()))?;
        let removed = site.prune(host, usize::from(git.keep), &id)?;
        outcome.step("old releases", !removed.is_empty());
        outcome.result = Some(report(&app, &self.app, &release, started, &removed));
        Ok(outcome)
    }
}

/// Appends `line` to `printed`, keeping its last 64 KiB or so (the engine keeps less).
fn keep_tail(printed: &mut String, line: &str) {
    printed.push_str(line);
    if printed.len() > 128 << 10 {
        let mut cut = printed.len() - (64 << 10);
        while !printed.is_char_boundary(cut) {
            cut += 1;
        }
        printed.drain(..cut);
    }
}

fn report(app: &App, name: &AppName, release: &Release, started: Instant, removed: &[String]) -> Value {
    let public_folder = crate::model::site::public_folder_or_default(app.public_folder.as_ref());
    json!({
        "release": release.id,
        "commit": release.commit,
        "duration_ms": started.elapsed().as_millis() as u64,
        "web_root": stack::web_root(&app.sysuser, name, &format!("current/{public_folder}")),
        "removed_releases": removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::refused;

    /// A first deploy held the web stack through its clone and deploy script (up
    /// to 15 minutes), so one user's slow script held every other app's web jobs.
    /// Now it gives it back before it runs anything.
    #[test]
    fn a_first_deploy_gives_the_web_stack_back_before_its_clone_and_script_regression() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "derek:x:1001:1001::/srv/users/derek:/bin/bash\n").unwrap();
        let machine = crate::job::Machine {
            host: std::sync::Arc::new(crate::host::fake::FakeHost::new(dir.path())),
            inventory: std::sync::Arc::new(crate::state::inventory::InventoryStore::open(dir.path()).unwrap()),
            mysql: crate::host::mysql::MysqlSettings::under(dir.path()),
            acme: std::sync::Arc::new(crate::web::acme::AcmeSettings::new(dir.path())),
            reboot_command: Vec::new(),
            wordpress_source: crate::config::DEFAULT_WORDPRESS_SOURCE.into(),
            redis_socket: crate::config::DEFAULT_REDIS_SOCKET.into(),
            history: std::sync::Arc::new(crate::state::history::History::open(dir.path()).unwrap()),
        };
        let (to, mut releases) = tokio::sync::mpsc::unbounded_channel();
        let ctx =
            JobContext::new("j".into(), &machine, Default::default(), tokio::sync::mpsc::channel(1).0).scheduled(7, to);
        let mut app = App::fixture(&["blog.test"], 1);
        let git = json!({"repo": "file:///srv/repo.git", "branch": "main", "keep": 5, "shared": []});
        app.git = Some(Box::new(serde_json::from_value(git).unwrap()));
        ctx.record(|inv| inv.apps.insert("blog".try_into().unwrap(), app)).unwrap();
        // No home in this root: the deploy fails at its first step in the tree.
        let deploy = Deploy { app: "blog".try_into().unwrap(), force: false };
        assert!(BlockingJob::apply(deploy, &ctx).is_err());
        assert_eq!(
            releases.try_recv().ok(),
            Some(crate::job::Release { arrival: 7, key: Resource::WebStack }),
            "the web stack is given back first"
        );
    }

    /// Hostile and broken values are refused at parse time, naming the field.
    #[test]
    fn hostile_params_are_refused_naming_the_field() {
        let good = json!({"app": "blog", "repo": "git@github.com:acme/blog.git", "branch": "main"});
        assert!(Catalogue::new(false).parse("app.git", &good).is_ok());
        let with = |key: &str, value: Value| {
            let mut params = good.clone();
            params[key] = value;
            params
        };
        let cases = [
            (json!({"repo": "git@h:r", "branch": "main"}), "app"),
            (with("app", json!("../etc")), "app"),
            (with("repo", json!("ext::sh -c touch% /tmp/pwned")), "repo"),
            (with("repo", json!("-oProxyCommand=touch /tmp/pwned")), "repo"),
            (with("repo", json!("--upload-pack=touch /tmp/pwned")), "repo"),
            (with("repo", json!("ssh://-oProxyCommand=id@h/r")), "repo"),
            (with("repo", json!("git@h:r\nx")), "repo"),
            (with("repo", json!("git@h:r x")), "repo"),
            (with("repo", json!("https://example.com/r.git")), "repo"),
            (with("repo", json!(5)), "repo"),
            (json!({"app": "blog", "branch": "main"}), "repo"),
            (with("branch", json!("-main")), "branch"),
            (with("branch", json!("--upload-pack=x")), "branch"),
            (with("branch", json!("a..b")), "branch"),
            (with("branch", json!("a b")), "branch"),
            (with("branch", json!("a\u{7f}")), "branch"),
            (with("deploy_script", json!("echo\u{0}")), "deploy_script"),
            (with("deploy_script", json!("x".repeat(64 * 1024 + 1))), "deploy_script"),
            (with("deploy_script", json!(["echo"])), "deploy_script"),
            (with("keep", json!(0)), "keep"),
            (with("keep", json!(21)), "keep"),
            (with("keep", json!(-1)), "keep"),
            (with("keep", json!("5")), "keep"),
            (with("host_keys", json!("@cert-authority * ssh-ed25519 AAAA")), "host_keys"),
            (with("host_keys", json!("h ssh-ed25519 AAAA\u{1b}")), "host_keys"),
            (with("shared", json!("uploads/")), "shared"),
            (with("shared", json!(["../../etc/"])), "shared[0]"),
            (with("shared", json!([".env", "/etc/passwd"])), "shared[1]"),
            (with("shared", json!(vec![".env"; 21])), "shared"),
        ];
        for (params, field) in cases {
            assert_eq!(refused("app.git", params.clone()), field, "{params}");
        }
        for kind in ["app.deploy", "git.deploy"] {
            assert!(Catalogue::new(false).parse(kind, &json!({"app": "blog"})).is_ok());
            assert_eq!(refused(kind, json!({"app": "Blog"})), "app");
            assert_eq!(refused(kind, json!({"app": "blog", "force": "yes"})), "force");
        }
    }
}

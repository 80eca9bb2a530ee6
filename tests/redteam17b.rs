//! Red team of issue 17 (git deploys, backups and restores, the object cache): a
//! hosted user, or the next customer on the server, attacking what root does next
//! to their tree. Each test judges the effect; a hole fixed keeps its test, named
//! after the bug.

mod support;

use serde_json::{json, Value};
use support::machine::Machine;

const PASSWORD: &str = "repo-password-17b";

fn repository() -> Value {
    json!({"path": "/srv/backups", "password": PASSWORD})
}

fn create_app(machine: &Machine, app: &str, sysuser: &str) {
    let created = machine.job(
        "app.create",
        json!({"name": app, "sysuser": sysuser, "runtime": "php8.2", "domains": [format!("{app}.test")],
               "stack": "nginx"}),
    );
    assert_eq!(created["status"], "success", "{created}");
}

/// App names are reused. Derek's `blog` is backed up, then deleted; Eve (another
/// customer) makes an app `blog`. Before the fix snapshots were found by the tag
/// `app:blog` alone: Eve's restore of Derek's snapshot id put Derek's files (his
/// wp-config.php with its database password) into Eve's tree, her backups listed
/// his, and her retention pruned them. Now a snapshot also names its app's owner
/// and creation time, and only that incarnation sees it.
#[test]
fn a_reused_app_name_restored_the_deleted_apps_snapshot_into_another_users_tree() {
    let machine = Machine::start();
    for user in ["derek", "eve"] {
        assert_eq!(machine.job("sysuser.create", json!({"name": user}))["status"], "success");
    }
    create_app(&machine, "blog", "derek");
    let secret = machine.path("/srv/users/derek/apps/blog/public/wp-config.php");
    std::fs::write(&secret, "<?php define('DB_PASSWORD', 'derek-secret-7731');\n").unwrap();
    let done = machine.job(
        "app.backup",
        json!({"app": "blog", "repository": repository(), "files": true, "database": false,
               "retention": {"keep_last": 1}}),
    );
    assert_eq!(done["status"], "success", "{done}");
    let snapshot = done["result"]["snapshot"].as_str().unwrap().to_owned();
    assert_eq!(machine.job("app.delete", json!({"name": "blog"}))["status"], "success");

    create_app(&machine, "blog", "eve");
    let stolen = machine.job("app.restore", json!({"app": "blog", "repository": repository(), "snapshot": snapshot}));
    assert_eq!(stolen["status"], "error", "eve restored derek's snapshot: {stolen}");
    assert_eq!(stolen["error"]["code"], "not_found", "{stolen}");
    let eves = machine.path("/srv/users/eve/apps/blog/public/wp-config.php");
    let content = std::fs::read_to_string(&eves).unwrap_or_default();
    assert!(!content.contains("derek-secret-7731"), "derek's secret in eve's tree: {content}");

    // Eve's own backup (keep_last 1) neither lists nor prunes Derek's snapshot.
    let hers = machine.job(
        "app.backup",
        json!({"app": "blog", "repository": repository(), "files": true, "database": false,
               "retention": {"keep_last": 1}}),
    );
    assert_eq!(hers["status"], "success", "{hers}");
    let listed = hers["result"]["backups"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "eve sees only her own backup: {listed:?}");
    assert!(!hers["result"]["backups"].to_string().contains(&snapshot), "{hers}");
    let script = format!("RESTIC_PASSWORD=\"$0\" restic -r /srv/backups --no-cache snapshots --json {snapshot}");
    let out = machine.run("/bin/sh", &["-c", &script, PASSWORD]);
    assert!(out.status.success(), "derek's snapshot was pruned by eve's retention: {out:?}");
}

const REPO: &str = "/srv/git/site.git";
const WORK: &str = "/srv/git/work";

/// `git args` as `user` in the machine, in the work tree (or /srv/git for `init`).
fn git(machine: &Machine, user: &str, args: &[&str]) {
    let (reuid, regid) = (format!("--reuid={user}"), format!("--regid={user}"));
    let mut all = vec![reuid.as_str(), &regid, "--clear-groups", "--", "/usr/bin/env", "HOME=/srv/git", "/usr/bin/git"];
    all.extend(["-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "init.defaultBranch=main", "-C"]);
    all.push(if args[0] == "init" { "/srv/git" } else { WORK });
    all.extend(args);
    let out = machine.run("/usr/bin/setpriv", &all);
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A deploy script leaves a process behind with `setsid` (out of the process
/// group the job kills). It used to outlive the job, as the user, inside berth's own
/// service (its cgroup, so its TasksMax and memory, and its PrivateTmp): a fork bomb
/// parked there starved berth, and so every other user's jobs. The script is now
/// PID 1 of its own PID namespace, and the kernel ends what it left when it ends.
#[test]
fn a_deploy_scripts_setsid_child_does_not_outlive_the_job_regression() {
    let machine = Machine::start();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    create_app(&machine, "blog", "derek");
    assert!(machine.run("/usr/bin/install", &["-d", "-o", "derek", "-g", "derek", "/srv/git"]).status.success());
    git(&machine, "derek", &["init", "-q", "--bare", REPO]);
    git(&machine, "derek", &["init", "-q", WORK]);
    std::fs::create_dir_all(machine.path(&format!("{WORK}/public"))).unwrap();
    std::fs::write(machine.path(&format!("{WORK}/public/index.php")), "<?php echo 1;").unwrap();
    assert!(machine.run("/usr/bin/chown", &["-R", "derek:derek", WORK]).status.success());
    git(&machine, "derek", &["add", "-A"]);
    git(&machine, "derek", &["commit", "-q", "-m", "one"]);
    git(&machine, "derek", &["push", "-q", REPO, "HEAD:main"]);
    let set = machine.job(
        "app.git",
        json!({"app": "blog", "repo": format!("file://{REPO}"), "branch": "main",
               "deploy_script": "setsid /bin/sleep 7654321 </dev/null >/dev/null 2>&1 &\necho parked"}),
    );
    assert_eq!(set["status"], "success", "{set}");
    let done = machine.job("app.deploy", json!({"app": "blog"}));
    assert_eq!(done["status"], "success", "{done}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let left = machine.run("/usr/bin/pgrep", &["-u", "derek", "-f", "sleep 7654321"]);
    let pids = String::from_utf8_lossy(&left.stdout).trim().to_owned();
    for pid in pids.split_whitespace() {
        let _ = machine.run("/bin/kill", &["-KILL", pid]);
    }
    assert!(pids.is_empty(), "the script's child {pids} outlived the deploy job");
}

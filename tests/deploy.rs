//! Git deploys (`app.git`, `app.deploy`) against the real git, nginx, PHP-FPM and
//! (stack `nginx-apache`) Apache in a test machine, from a bare repository over
//! `file://` that the site's user owns: the deploy key, releases, shared paths, the
//! deploy script, zero downtime across 20 deploys under load, failures that leave
//! the old release serving, and what a user can plant in the tree.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{json, Value};
use support::machine::Machine;

const REPO: &str = "/srv/git/site.git";
const WORK: &str = "/srv/git/work";
const APP_DIR: &str = "/srv/users/derek/apps/blog";

fn ok(done: Value) -> Value {
    assert_eq!(done["status"], "success", "{done}");
    done
}

fn failed(done: Value, code: &str) -> Value {
    assert_eq!((done["status"].as_str(), done["error"]["code"].as_str()), (Some("error"), Some(code)), "{done}");
    done
}

/// `program args` as `user` in the machine (HOME in /srv/git); must succeed.
fn as_user(machine: &Machine, user: &str, program: &str, args: &[&str]) -> String {
    let (reuid, regid) = (format!("--reuid={user}"), format!("--regid={user}"));
    let mut all = vec![reuid.as_str(), &regid, "--clear-groups", "--", "/usr/bin/env", "HOME=/srv/git", program];
    all.extend(args);
    let out = machine.run("/usr/bin/setpriv", &all);
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(machine: &Machine, user: &str, args: &[&str]) -> String {
    let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "init.defaultBranch=main", "-C"];
    all.push(if args[0] == "init" { "/srv/git" } else { WORK });
    all.extend(args);
    as_user(machine, user, "/usr/bin/git", &all)
}

/// A bare repository and a work tree, both `user`'s, in /srv/git.
fn repository(machine: &Machine, user: &str) {
    assert!(machine.run("/usr/bin/install", &["-d", "-o", user, "-g", user, "/srv/git"]).status.success());
    git(machine, user, &["init", "-q", "--bare", REPO]);
    git(machine, user, &["init", "-q", WORK]);
}

/// Commits release `marker`: an index.php that includes inc.php, each printing
/// the marker (a mixed response shows two), and pushes it.
fn commit(machine: &Machine, user: &str, marker: &str) {
    let dir = machine.path(&format!("{WORK}/public"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.php"),
        format!("<?php $m = '{marker}'; usleep(20000); include __DIR__ . '/inc.php'; echo \"$m $n\";"),
    )
    .unwrap();
    std::fs::write(dir.join("inc.php"), format!("<?php $n = '{marker}';")).unwrap();
    std::fs::write(dir.join("static.txt"), format!("static {marker}")).unwrap();
    let chown = format!("{user}:{user}");
    assert!(machine.run("/usr/bin/chown", &["-R", &chown, WORK]).status.success());
    git(machine, user, &["add", "-A"]);
    git(machine, user, &["commit", "-q", "--allow-empty", "-m", marker]);
    git(machine, user, &["push", "-q", REPO, "HEAD:main"]);
}

fn setup(stack: &str) -> Machine {
    let machine = Machine::start();
    ok(machine.job("sysuser.create", json!({"name": "derek"})));
    ok(machine.job(
        "app.create",
        json!({"name": "blog", "sysuser": "derek", "runtime": "php8.2", "domains": ["blog.test"], "stack": stack}),
    ));
    repository(&machine, "derek");
    machine
}

fn releases(machine: &Machine) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(machine.path(&format!("{APP_DIR}/releases")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn stat(machine: &Machine, path: &str) -> String {
    let out = machine.run("/usr/bin/stat", &["-c", "%F %U %a", path]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn git_deploys_switch_releases_with_no_downtime(stack: &str) {
    let machine = setup(stack);
    let params = json!({"app": "blog", "repo": format!("file://{REPO}"), "branch": "main", "keep": 3,
        "deploy_script": "echo building $BERTH_RELEASE as $(id -un)\ntest -f public/index.php"});
    let set = ok(machine.job("app.git", params.clone()));
    let key = set["result"]["public_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ssh-ed25519 AAAA") && key.ends_with(" berth-deploy-blog"), "{set}");
    assert!(!set.to_string().contains("PRIVATE"), "{set}");
    let again = ok(machine.job("app.git", params.clone()));
    assert_eq!((&again["changed"], &again["result"]["public_key"]), (&json!(false), &json!(key)), "{again}");
    assert_eq!(stat(&machine, &format!("{APP_DIR}/deploy/id_ed25519")), "regular file derek 600");

    // No release yet: the app's own public folder serves, as before.
    commit(&machine, "derek", "R0");
    let first = ok(machine.job("app.deploy", json!({"app": "blog"})));
    let result = &first["result"];
    assert_eq!(result["web_root"], format!("{APP_DIR}/current/public"), "{first}");
    assert_eq!(result["commit"].as_str().unwrap().len(), 40, "{first}");
    assert!(first["output"].as_str().unwrap().contains("as derek"), "the script ran as the user: {first}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "R0 R0", "live when the job says so");
    assert_eq!(machine.at_once_get("blog.test", "/static.txt", 200), "static R0");
    assert_eq!(stat(&machine, &format!("{APP_DIR}/current")), "symbolic link derek 777");
    let vhost = std::fs::read_to_string(machine.path("/etc/nginx/berth.d/blog.conf")).unwrap();
    assert!(vhost.contains(&format!("root {APP_DIR}/current/public;")), "{vhost}");
    assert!(vhost.contains("SCRIPT_FILENAME $realpath_root$"), "{vhost}");
    let (code, report) = machine.reconcile();
    assert_eq!((code, &report["changed"]), (Some(0), &json!(false)), "reconcile renders the deploy as it is: {report}");
    let rerun = ok(machine.job("app.deploy", json!({"app": "blog"})));
    assert_eq!(rerun["changed"], false, "the branch has not moved: {rerun}");
    assert_eq!(rerun["result"]["release"], result["release"]);
    // app.info reads the WordPress version in the serving release (by the id berth
    // recorded, not through `current`): a deployed WordPress showed none.
    let release = result["release"].as_str().unwrap();
    let includes = machine.path(&format!("{APP_DIR}/releases/{release}/public/wp-includes"));
    std::fs::create_dir_all(&includes).unwrap();
    std::fs::write(includes.join("version.php"), "<?php\n$wp_version = '6.4.2';\n").unwrap();
    let info = ok(machine.job("app.info", json!({"app": "blog"})));
    assert_eq!(info["result"]["wordpress"]["version"], "6.4.2", "{info}");
    std::fs::remove_dir_all(&includes).unwrap();

    // 20 deploys while clients ask for a page of two files, each naming its release.
    let (stop, served, bad) = (AtomicBool::new(false), AtomicUsize::new(0), std::sync::Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let (code, body) = machine.get("blog.test", "/");
                    let words: Vec<&str> = body.split_whitespace().collect();
                    if code != 200 || words.len() != 2 || words[0] != words[1] {
                        bad.lock().unwrap().push(format!("{code} {body}"));
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for n in 1..=20 {
            commit(&machine, "derek", &format!("R{n}"));
            let done = machine.job("app.deploy", json!({"app": "blog"}));
            if done["status"] != "success" {
                stop.store(true, Ordering::Relaxed);
                panic!("deploy {n}: {done}");
            }
            assert_eq!(done["steps"].as_array().unwrap().iter().filter(|s| s["name"] == "config files").count(), 0);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let bad = bad.into_inner().unwrap();
    let served = served.load(Ordering::Relaxed);
    eprintln!("{stack}: {served} requests during 20 deploys, {} bad", bad.len());
    assert!(
        bad.is_empty(),
        "{} of {served} requests failed or mixed releases: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert!(served > 40, "the load ran throughout: {served}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "R20 R20");
    assert_eq!(releases(&machine).len(), 3, "keep 3: {:?}", releases(&machine));

    // A failing script: the old release serves, the new one is gone.
    let before = releases(&machine);
    ok(machine.job(
        "app.git",
        json!({"app": "blog", "repo": format!("file://{REPO}"), "branch": "main", "keep": 3,
        "deploy_script": "echo about to fail; exit 3"}),
    ));
    commit(&machine, "derek", "R21");
    let broken = failed(machine.job("app.deploy", json!({"app": "blog"})), "tool_failed");
    let message = broken["error"]["message"].as_str().unwrap();
    assert!(message.contains("exit status 3") && message.contains("about to fail"), "{broken}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "R20 R20");
    assert_eq!(releases(&machine), before, "the failed release is removed");

    // A branch that is not there, a repository that is not there: the same.
    ok(machine.job("app.git", json!({"app": "blog", "repo": format!("file://{REPO}"), "branch": "nope"})));
    failed(machine.job("app.deploy", json!({"app": "blog"})), "precondition_failed");
    ok(machine.job("app.git", json!({"app": "blog", "repo": "file:///srv/git/missing.git", "branch": "main"})));
    failed(machine.job("app.deploy", json!({"app": "blog"})), "tool_failed");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "R20 R20");
    assert_eq!(releases(&machine), before);

    // SpinupWP's name deploys too.
    ok(machine.job("app.git", json!({"app": "blog", "repo": format!("file://{REPO}"), "branch": "main"})));
    ok(machine.job("git.deploy", json!({"app": "blog"})));
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "R21 R21");
}

#[test]
fn git_deploys_switch_releases_with_no_downtime_nginx() {
    git_deploys_switch_releases_with_no_downtime("nginx");
}

#[test]
fn git_deploys_switch_releases_with_no_downtime_nginx_apache() {
    git_deploys_switch_releases_with_no_downtime("nginx-apache");
}

/// A root-owned directory outside the user's tree, with a file the web server
/// could read; returns its content.
fn secret(machine: &Machine) -> String {
    let dir = machine.path("/srv/secret/public");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("static.txt"), "root's secret").unwrap();
    let shadow = machine.path("/srv/secret/shadow");
    std::fs::write(&shadow, "root:hash:1").unwrap();
    std::fs::set_permissions(&shadow, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    "root's secret".into()
}

fn planted_links_reach_nothing_outside_the_users_tree(stack: &str) {
    let machine = setup(stack);
    let secret_text = secret(&machine);
    ok(machine.job("app.git", json!({"app": "blog", "repo": format!("file://{REPO}"), "branch": "main"})));
    commit(&machine, "derek", "R1");
    ok(machine.job("app.deploy", json!({"app": "blog"})));
    assert_eq!(machine.at_once_get("blog.test", "/static.txt", 200), "static R1");

    // `current` to a root-owned tree: neither nginx nor Apache follows the user's link there.
    as_user(&machine, "derek", "/usr/bin/ln", &["-sfn", "/srv/secret", &format!("{APP_DIR}/current")]);
    for path in ["/static.txt", "/index.php"] {
        let (code, body) = machine.get("blog.test", path);
        assert!(code != 200 && !body.contains(&secret_text), "{stack} {path}: {code} {body}");
    }
    // A deploy puts the user's own release back.
    ok(machine.job("app.deploy", json!({"app": "blog", "force": true})));
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "R1 R1");

    // A hard link to a root file and a fifo in shared/ and in an old release; then
    // `releases` itself a link to the root-owned tree.
    let shadow = machine.path("/srv/secret/shadow");
    let shared = machine.path(&format!("{APP_DIR}/shared"));
    std::fs::hard_link(&shadow, shared.join(".env")).unwrap();
    let old = releases(&machine)[0].clone();
    let old_dir = machine.path(&format!("{APP_DIR}/releases/{old}"));
    std::fs::hard_link(&shadow, old_dir.join("hard")).unwrap();
    nix::unistd::mkfifo(&old_dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    nix::unistd::mkfifo(
        &shared.join("public/wp-content/uploads/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    ok(machine.job(
        "app.git",
        json!({"app": "blog", "repo": format!("file://{REPO}"), "branch": "main", "keep": 1,
        "deploy_script": "cat .env || true; ls -l public/wp-content/uploads/\n\
                          mkfifo public/fifo.txt; ln -s /srv/secret/public/static.txt public/linked.txt"}),
    ));
    commit(&machine, "derek", "R2");
    let done = ok(machine.job("app.deploy", json!({"app": "blog"})));
    assert!(!done.to_string().contains("root:hash"), "the script, as derek, cannot read root's file: {done}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "R2 R2");
    // What the script planted in its release: a link out is not served (on stack nginx
    // the request falls through to index.php), a fifo hangs nothing.
    for path in ["/linked.txt", "/fifo.txt"] {
        let (code, body) = machine.get("blog.test", path);
        assert!((code != 200 || body == "R2 R2") && !body.contains(&secret_text), "{stack} {path}: {code} {body}");
    }
    assert_eq!(done["result"]["removed_releases"].as_array().unwrap().len(), 2, "{done}");
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:hash:1");
    assert_eq!(stat(&machine, "/srv/secret/shadow"), "regular file root 600");
    let (code, body) = machine.get("blog.test", "/../.env");
    assert!(!body.contains("root:hash"), "{code} {body}");

    let releases_dir = format!("{APP_DIR}/releases");
    as_user(&machine, "derek", "/usr/bin/mv", &[&releases_dir, &format!("{APP_DIR}/releases.moved")]);
    as_user(&machine, "derek", "/usr/bin/ln", &["-s", "/srv/secret", &releases_dir]);
    commit(&machine, "derek", "R3");
    failed(machine.job("app.deploy", json!({"app": "blog"})), "conflict");
    let listing: Vec<_> =
        std::fs::read_dir(machine.path("/srv/secret")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listing.len(), 2, "nothing was made in the root-owned tree: {listing:?}");
    assert_eq!(stat(&machine, "/srv/secret"), "directory root 755");

    // Another user's app deploys all the while.
    ok(machine.job("sysuser.create", json!({"name": "erin"})));
    ok(machine.job(
        "app.create",
        json!({"name": "shop", "sysuser": "erin", "runtime": "php8.2", "domains": ["shop.test"], "stack": stack}),
    ));
    // Her own copy: git refuses a repository of another user's ("dubious ownership").
    assert!(machine.run("/usr/bin/cp", &["-a", REPO, "/srv/git/erin.git"]).status.success());
    assert!(machine.run("/usr/bin/chown", &["-R", "erin:erin", "/srv/git/erin.git"]).status.success());
    ok(machine.job("app.git", json!({"app": "shop", "repo": "file:///srv/git/erin.git", "branch": "main"})));
    let shop = ok(machine.job("app.deploy", json!({"app": "shop"})));
    assert!(shop["result"]["web_root"].as_str().unwrap().starts_with("/srv/users/erin/"), "{shop}");
    assert_eq!(machine.at_once_get("shop.test", "/", 200), "R3 R3");
}

#[test]
fn planted_links_reach_nothing_outside_the_users_tree_nginx() {
    planted_links_reach_nothing_outside_the_users_tree("nginx");
}

#[test]
fn planted_links_reach_nothing_outside_the_users_tree_nginx_apache() {
    planted_links_reach_nothing_outside_the_users_tree("nginx-apache");
}

/// sshd on 127.0.0.1:2222 of the machine with host key `/srv/sshd/host_key` (made
/// anew when `new_key`), keys of `/srv/sshd/authorized_keys/USER`; returns the host
/// key's known_hosts line.
fn sshd(machine: &Machine, new_key: bool) -> (std::process::Child, String) {
    std::fs::create_dir_all(machine.path("/srv/sshd/authorized_keys")).unwrap();
    if new_key {
        let _ = std::fs::remove_file(machine.path("/srv/sshd/host_key"));
        let _ = std::fs::remove_file(machine.path("/srv/sshd/host_key.pub"));
        let made = machine.run("/usr/bin/ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", "/srv/sshd/host_key"]);
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    std::fs::write(
        machine.path("/srv/sshd/config"),
        "Port 2222\nListenAddress 127.0.0.1\nHostKey /srv/sshd/host_key\nPidFile /srv/sshd/pid\n\
         AuthorizedKeysFile /srv/sshd/authorized_keys/%u\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
    )
    .unwrap();
    assert!(machine.run("/usr/bin/mkdir", &["-p", "/run/sshd"]).status.success());
    let child = machine
        .command("/usr/sbin/sshd", &["-D", "-e", "-f", "/srv/sshd/config"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !machine.run("/bin/bash", &["-c", "exec 3<>/dev/tcp/127.0.0.1/2222"]).status.success() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let public = std::fs::read_to_string(machine.path("/srv/sshd/host_key.pub")).unwrap();
    let mut parts = public.split_whitespace();
    let line = format!("[127.0.0.1]:2222 {} {}", parts.next().unwrap(), parts.next().unwrap());
    (child, line)
}

fn stop(machine: &Machine, mut sshd: std::process::Child) {
    let pid = std::fs::read_to_string(machine.path("/srv/sshd/pid")).unwrap();
    machine.run("/bin/kill", &[pid.trim()]);
    let _ = sshd.wait();
    let _ = std::fs::remove_file(machine.path("/srv/sshd/pid"));
}

/// Over ssh: the deploy key opens the repository, the host key is pinned on first
/// use, and a changed host key fails the deploy (pinned or given), with the old
/// release serving.
#[test]
fn ssh_deploys_use_the_deploy_key_and_pin_the_host_key() {
    let machine = setup("nginx");
    commit(&machine, "derek", "S1");
    // The ssh account `gitssh` owns its copy of the repository.
    assert!(machine.run("/usr/sbin/useradd", &["-m", "-d", "/srv/gitssh", "-s", "/bin/sh", "gitssh"]).status.success());
    assert!(machine.run("/usr/sbin/usermod", &["-p", "*", "gitssh"]).status.success());
    assert!(machine.run("/usr/bin/cp", &["-a", REPO, "/srv/gitssh/site.git"]).status.success());
    assert!(machine.run("/usr/bin/chown", &["-R", "gitssh:gitssh", "/srv/gitssh/site.git"]).status.success());
    let (server, first_key) = sshd(&machine, true);
    let repo = "ssh://gitssh@127.0.0.1:2222/srv/gitssh/site.git";
    let set = ok(machine.job("app.git", json!({"app": "blog", "repo": repo, "branch": "main"})));
    assert_eq!(set["result"]["host_key_checking"], "first use");

    // Without the key in authorized_keys: refused, nothing serves from a release.
    let refused = failed(machine.job("app.deploy", json!({"app": "blog"})), "tool_failed");
    assert!(refused["error"]["message"].as_str().unwrap().contains("Permission denied"), "{refused}");
    let public_key = set["result"]["public_key"].as_str().unwrap();
    std::fs::write(machine.path("/srv/sshd/authorized_keys/gitssh"), format!("{public_key}\n")).unwrap();
    ok(machine.job("app.deploy", json!({"app": "blog"})));
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "S1 S1");
    let pinned = std::fs::read_to_string(machine.path(&format!("{APP_DIR}/deploy/known_hosts"))).unwrap();
    assert!(pinned.contains(first_key.split(' ').nth(2).unwrap()), "pinned on first use: {pinned}");

    // The server's host key changes: the pinned key fails the deploy.
    stop(&machine, server);
    let (server, second_key) = sshd(&machine, true);
    let changed = failed(machine.job("app.deploy", json!({"app": "blog", "force": true})), "tool_failed");
    let message = changed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || message.contains("verification failed"),
        "{changed}"
    );
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "S1 S1");

    // Given keys: the old one fails, the new one deploys.
    ok(machine.job("app.git", json!({"app": "blog", "repo": repo, "branch": "main", "host_keys": first_key})));
    failed(machine.job("app.deploy", json!({"app": "blog", "force": true})), "tool_failed");
    let set =
        ok(machine.job("app.git", json!({"app": "blog", "repo": repo, "branch": "main", "host_keys": second_key})));
    assert_eq!(
        (set["result"]["host_key_checking"].as_str(), set["result"]["public_key"].as_str()),
        (Some("pinned"), Some(public_key))
    );
    commit(&machine, "derek", "S2");
    assert!(machine.run("/usr/bin/rm", &["-rf", "/srv/gitssh/site.git"]).status.success());
    assert!(machine.run("/usr/bin/cp", &["-a", REPO, "/srv/gitssh/site.git"]).status.success());
    assert!(machine.run("/usr/bin/chown", &["-R", "gitssh:gitssh", "/srv/gitssh/site.git"]).status.success());
    // `app.fix_permissions` keeps the deploy key the user's alone (0600): ssh refuses a
    // key others may read, so a 0640 key would fail every deploy from then on.
    let key = machine.path("/srv/users/derek/apps/blog/deploy/id_ed25519");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    ok(machine.job("app.fix_permissions", json!({"app": "blog"})));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o600, "fix_permissions_keeps_the_deploy_key_private");
    ok(machine.job("app.deploy", json!({"app": "blog"})));
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "S2 S2");
    stop(&machine, server);
}

/// `berth dev`: `POST /apps/:id/git` and `POST /apps/:id/deploy` become `app.git`
/// and `app.deploy`, their bodies checked by the agent's rules; the deploy key's
/// public half is the action's result.
#[test]
fn dev_routes_set_up_git_and_deploy() {
    let machine = Machine::start();
    let dev = support::dev::Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    let app_id = &dev.derek_with_app("blog", "blog.test");
    repository(&machine, "derek");
    commit(&machine, "derek", "D1");
    let (status, answer) = dev.api("POST", &format!("/apps/{app_id}/deploy"), json!({}));
    assert_eq!(status, 400, "no git yet: {answer}");
    let (status, answer) =
        dev.api("POST", &format!("/apps/{app_id}/git"), json!({"repo": "ext::sh -c id", "branch": "main"}));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("repo: "), "{answer}");
    let (git, action) = dev.change(
        "POST",
        &format!("/apps/{app_id}/git"),
        json!({"repo": format!("file://{REPO}"), "branch": "main", "keep": 2}),
    );
    assert_eq!(git, json!({"repo": format!("file://{REPO}"), "branch": "main", "keep": 2, "host_keys_pinned": false}));
    let done = dev.settled(&action);
    assert_eq!(done["status"], "success", "{done}");
    assert!(done["result"]["public_key"].as_str().unwrap().starts_with("ssh-ed25519 "), "{done}");
    let (_, one) = dev.api("GET", &format!("/apps/{app_id}"), Value::Null);
    assert_eq!(one["data"]["git"], git, "{one}");
    let (_, action) = dev.change("POST", &format!("/apps/{app_id}/deploy"), json!({}));
    let done = dev.settled(&action);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["result"]["commit"].as_str().unwrap().len(), 40, "{done}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "D1 D1");
}

//! System users against the real shadow-utils, in a sandbox root seeded with the
//! machine's account files (the machine's own are checked untouched).

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::{json, Value};
use support::machine::Machine;
use support::{ControlPlane, Sandbox, Session};

/// Runs one job and returns its final status.
async fn run(session: &mut Session, job_id: &str, kind: &str, params: Value) -> Value {
    session.job(job_id, kind, params).await;
    session.until_final(job_id).await.pop().unwrap()
}

fn line(agent: &Sandbox, file: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(agent.root().join("etc").join(file)).unwrap();
    text.lines().find(|l| l.split(':').next() == Some(name)).map(str::to_owned)
}

async fn sandbox() -> (ControlPlane, Sandbox, Session, String) {
    let machine_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    agent.seed_accounts();
    agent.start();
    let (session, _) = cp.welcomed(0, 20).await;
    (cp, agent, session, machine_passwd)
}

#[tokio::test]
async fn create_makes_a_real_account_with_a_private_home_and_a_rerun_changes_nothing() {
    let (_cp, agent, mut session, machine_passwd) = sandbox().await;
    let done = run(&mut session, "c1", "sysuser.create", json!({"name": "derek"})).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["changed"], true);
    assert_eq!(done["result"]["home"], "/srv/users/derek");

    let passwd = line(&agent, "passwd", "derek").expect("derek is in passwd");
    let fields: Vec<&str> = passwd.split(':').collect();
    assert_eq!((fields[5], fields[6]), ("/srv/users/derek", "/bin/bash"));
    let uid: u32 = fields[2].parse().unwrap();
    assert!(
        line(&agent, "shadow", "derek").unwrap().split(':').nth(1).unwrap().starts_with('!'),
        "password login locked"
    );
    for dir in ["srv/users/derek", "srv/users/derek/apps"] {
        let meta = std::fs::metadata(agent.root().join(dir)).unwrap();
        assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (uid, 0o750), "{dir}");
    }
    // The logs are root's (root's servers open them), the user's to read through the
    // group, and `log` in the home links there.
    let logs = std::fs::metadata(agent.root().join("var/log/berth/derek")).unwrap();
    let gid: u32 = fields[3].parse().unwrap();
    assert_eq!((logs.uid(), logs.gid(), logs.permissions().mode() & 0o777), (0, gid, 0o750));
    let link = std::fs::symlink_metadata(agent.root().join("srv/users/derek/log")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(agent.root().join("srv/users/derek/log")).unwrap(),
        agent.root().join("var/log/berth/derek")
    );

    let again = run(&mut session, "c2", "sysuser.create", json!({"name": "derek"})).await;
    assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(false)), "{again}");
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), machine_passwd, "the machine's accounts are untouched");
}

#[tokio::test]
async fn passwords_are_set_checked_and_never_leave_the_process() {
    let (_cp, agent, mut session, _) = sandbox().await;
    let first = "correct horse battery staple";
    let second = "Tr0ub4dor&3-but-longer";
    let shadow = |agent: &Sandbox| line(agent, "shadow", "derek").unwrap().split(':').nth(1).unwrap().to_owned();

    let done = run(&mut session, "p1", "sysuser.create", json!({"name": "derek", "password": first})).await;
    assert_eq!(done["status"], "success", "{done}");
    assert!(sha_crypt::sha512_check(first, &shadow(&agent)).is_ok());
    let again = run(&mut session, "p2", "sysuser.create", json!({"name": "derek", "password": first})).await;
    assert_eq!(again["changed"], false, "the same password is not set again");

    let update = run(&mut session, "p3", "sysuser.update", json!({"name": "derek", "password": second})).await;
    assert_eq!(update["changed"], true);
    assert!(sha_crypt::sha512_check(second, &shadow(&agent)).is_ok());
    assert!(sha_crypt::sha512_check(first, &shadow(&agent)).is_err(), "the old password stops working");
    let same = run(&mut session, "p4", "sysuser.update", json!({"name": "derek", "password": second})).await;
    assert_eq!(same["changed"], false);

    let lock = run(&mut session, "p5", "sysuser.create", json!({"name": "derek"})).await;
    assert_eq!(lock["changed"], true);
    assert!(shadow(&agent).starts_with('!'), "no password: login locked");

    let log = agent.log();
    for secret in [first, second] {
        assert!(!log.contains(secret), "a password reached the log");
    }
    let state = std::fs::read_dir(agent.state().join("jobs")).unwrap();
    for record in state {
        let text = std::fs::read_to_string(record.unwrap().path()).unwrap();
        assert!(!text.contains(first) && !text.contains(second), "a finished record keeps a password: {text}");
    }
}

#[tokio::test]
async fn accounts_berth_did_not_create_are_left_alone() {
    let (_cp, agent, mut session, _) = sandbox().await;
    let passwd_before = std::fs::read_to_string(agent.root().join("etc/passwd")).unwrap();
    for (job_id, kind, params) in [
        ("n1", "sysuser.create", json!({"name": "root"})),
        ("n2", "sysuser.create", json!({"name": "www-data", "password": "hijacked-password"})),
        ("n3", "sysuser.update", json!({"name": "root", "password": "hijacked-password"})),
        ("n4", "sysuser.delete", json!({"name": "www-data"})),
    ] {
        let done = run(&mut session, job_id, kind, params).await;
        assert_eq!(done["error"]["code"], "conflict", "{done}");
    }
    let missing =
        run(&mut session, "n5", "sysuser.update", json!({"name": "nobody-here", "password": "a-fine-password"})).await;
    assert_eq!(missing["error"]["code"], "not_found");
    assert_eq!(std::fs::read_to_string(agent.root().join("etc/passwd")).unwrap(), passwd_before);
}

#[tokio::test]
async fn delete_removes_the_account_and_its_home_and_a_rerun_is_a_no_op() {
    let (_cp, agent, mut session, _) = sandbox().await;
    run(&mut session, "d1", "sysuser.create", json!({"name": "derek"})).await;
    std::fs::write(agent.root().join("srv/users/derek/apps/notes.txt"), "hello").unwrap();
    let done = run(&mut session, "d2", "sysuser.delete", json!({"name": "derek"})).await;
    assert_eq!((done["status"].as_str(), done["changed"].as_bool()), (Some("success"), Some(true)), "{done}");
    assert!(line(&agent, "passwd", "derek").is_none());
    assert!(!agent.root().join("var/log/berth/derek").exists(), "the user's logs go with the user");
    assert!(line(&agent, "group", "derek").is_none());
    assert!(!agent.root().join("srv/users/derek").exists());
    let again = run(&mut session, "d3", "sysuser.delete", json!({"name": "derek"})).await;
    assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(false)), "{again}");
}

#[tokio::test]
async fn create_delete_create_of_one_name_works() {
    let (_cp, agent, mut session, _) = sandbox().await;
    let done = run(&mut session, "r1", "sysuser.create", json!({"name": "derek"})).await;
    assert_eq!(done["status"], "success", "{done}");
    // What app.create does: the web server joins the user's group, so userdel leaves it.
    let joined = std::process::Command::new("/usr/sbin/usermod")
        .arg("--prefix")
        .arg(agent.root())
        .args(["--append", "--groups", "derek", "www-data"])
        .status()
        .unwrap();
    assert!(joined.success());
    assert!(line(&agent, "group", "derek").unwrap().ends_with(":www-data"));

    let deleted = run(&mut session, "r2", "sysuser.delete", json!({"name": "derek"})).await;
    assert_eq!(deleted["status"], "success", "{deleted}");
    assert!(line(&agent, "group", "derek").is_none(), "the group goes with the user");
    assert!(line(&agent, "group", "www-data").is_some(), "the web server's own group stays");
    let again = run(&mut session, "r3", "sysuser.create", json!({"name": "derek"})).await;
    assert_eq!(again["status"], "success", "{again}");
}

#[tokio::test]
async fn symlinked_apps_dir_is_refused_with_a_conflict_naming_it() {
    let (_cp, agent, mut session, _) = sandbox().await;
    run(&mut session, "s1", "sysuser.create", json!({"name": "derek"})).await;
    // The user plants a link to a directory that is not theirs for apps/.
    let victim = agent.root().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o700)).unwrap();
    let apps = agent.root().join("srv/users/derek/apps");
    std::fs::remove_dir(&apps).unwrap();
    std::os::unix::fs::symlink(&victim, &apps).unwrap();

    let done = run(&mut session, "s2", "sysuser.create", json!({"name": "derek"})).await;
    assert_eq!(done["error"]["code"], "conflict", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("/srv/users/derek/apps is a symbolic link"), "{message}");
    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (0, 0, 0o700), "not chowned");
}

#[tokio::test]
async fn delete_does_not_follow_links_out_of_the_home() {
    let (_cp, agent, mut session, _) = sandbox().await;
    run(&mut session, "o1", "sysuser.create", json!({"name": "derek"})).await;
    let victim = agent.root().join("victim");
    std::fs::create_dir_all(victim.join("site")).unwrap();
    std::fs::write(victim.join("site/index.html"), "another user's site").unwrap();
    std::fs::write(victim.join("secret"), "not derek's").unwrap();
    let home = agent.root().join("srv/users/derek");
    std::os::unix::fs::symlink(victim.join("site"), home.join("apps/site")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join("log/everything")).unwrap();
    std::fs::hard_link(victim.join("secret"), home.join("apps/secret")).unwrap();

    let done = run(&mut session, "o2", "sysuser.delete", json!({"name": "derek"})).await;
    assert_eq!(done["status"], "success", "{done}");
    assert!(!home.exists());
    assert_eq!(std::fs::read_to_string(victim.join("site/index.html")).unwrap(), "another user's site");
    assert_eq!(std::fs::read_to_string(victim.join("secret")).unwrap(), "not derek's");
}

#[tokio::test]
async fn the_thousand_and_first_user_is_over_the_limit() {
    let mut cp = ControlPlane::start().await;
    let mut agent = Sandbox::new(&cp);
    agent.seed_accounts();
    let users: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("user{i}"), json!({"created_ms": 0}))).collect();
    std::fs::create_dir_all(agent.state()).unwrap();
    std::fs::write(agent.state().join("inventory.json"), json!({"users": users}).to_string()).unwrap();
    agent.start();
    let (mut session, _) = cp.welcomed(0, 20).await;
    let done = run(&mut session, "l1", "sysuser.create", json!({"name": "onetoomany"})).await;
    assert_eq!(done["error"]["code"], "limit_exceeded", "{done}");
    assert_eq!(done["error"]["field"], "name");
    assert!(line(&agent, "passwd", "onetoomany").is_none());
}

#[tokio::test]
async fn hostile_names_and_passwords_are_refused_and_nothing_is_written() {
    let (_cp, agent, mut session, _) = sandbox().await;
    let passwd_before = std::fs::read_to_string(agent.root().join("etc/passwd")).unwrap();
    let cases = [
        (json!({"name": "../../etc"}), "name"),
        (json!({"name": "derek;rm -rf /"}), "name"),
        (json!({"name": "derek\nroot"}), "name"),
        (json!({"name": "Derek"}), "name"),
        (json!({"name": "dеrek"}), "name"),
        (json!({"name": "d"}), "name"),
        (json!({"name": "a".repeat(33)}), "name"),
        (json!({"name": "-rf"}), "name"),
        (json!({"name": 42}), "name"),
        (json!({"name": "derek", "password": "short"}), "password"),
        (json!({"name": "derek", "password": "line\nbreak-password"}), "password"),
        (json!({"name": "derek", "password": "nul\u{0}password"}), "password"),
        (json!({"name": "derek", "password": "x".repeat(201)}), "password"),
        (json!({"name": "derek", "password": " leading-space"}), "password"),
    ];
    for (i, (params, field)) in cases.into_iter().enumerate() {
        let done = run(&mut session, &format!("h{i}"), "sysuser.create", params.clone()).await;
        assert_eq!(done["error"]["code"], "invalid_params", "{params}: {done}");
        assert_eq!(done["error"]["field"], field, "{params}: {done}");
    }
    assert_eq!(std::fs::read_to_string(agent.root().join("etc/passwd")).unwrap(), passwd_before);
    assert!(!agent.root().join("srv").exists(), "nothing was written");
}

/// The chaos campaign (tests/chaos.rs) killed the agent between `useradd` and the
/// inventory's record of the user: the job ran again at the next start and ended in
/// `conflict` ("exists and was not created by berth"), and so did every later job for
/// that name. Here useradd does its work, then kills berth before it can record it.
#[test]
fn sysuser_create_killed_between_useradd_and_its_record_is_not_a_conflict_regression() {
    let machine = Machine::start();
    let real = machine.dir.path().join("useradd.real");
    std::fs::copy("/usr/sbin/useradd", &real).unwrap();
    let script = format!("#!/bin/sh\n{} \"$@\" || exit $?\nkill -9 $PPID\n", real.display());
    machine.program("/usr/sbin", "useradd", Some(&script));
    let (_, statuses) =
        machine.apply(json!({"job_id": "create-derek", "kind": "sysuser.create", "params": {"name": "derek"}}));
    assert!(statuses.is_empty(), "berth was killed mid-job: {statuses:?}");
    let passwd = std::fs::read_to_string(machine.path("/etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("derek:")), "useradd did its part");
    assert!(machine.run("/bin/umount", &["--lazy", "/usr/sbin"]).status.success());

    let again = machine.job("sysuser.create", json!({"name": "derek"}));
    assert_eq!(again["status"], "success", "the job runs again to success: {again}");
    let passwd = std::fs::read_to_string(machine.path("/etc/passwd")).unwrap();
    assert_eq!(passwd.lines().filter(|l| l.starts_with("derek:")).count(), 1);
    assert_eq!(machine.job("sysuser.delete", json!({"name": "derek"}))["status"], "success", "and it is berth's");
}

/// The chaos campaign killed a `useradd` after it had written `/etc/passwd` and
/// before `/etc/group`: the re-run took the account as complete, and every
/// `app.create` for the user then failed (`usermod: group 'derek' does not exist`).
#[test]
fn sysuser_create_completes_an_account_whose_useradd_was_killed_before_its_group_regression() {
    let machine = Machine::start();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    let passwd = std::fs::read_to_string(machine.path("/etc/passwd")).unwrap();
    let gid = passwd.lines().find(|l| l.starts_with("derek:")).unwrap().split(':').nth(3).unwrap().to_owned();
    for file in ["/etc/group", "/etc/gshadow"] {
        let text = std::fs::read_to_string(machine.path(file)).unwrap();
        let kept: String = text.lines().filter(|l| !l.starts_with("derek:")).map(|l| format!("{l}\n")).collect();
        std::fs::write(machine.path(file), kept).unwrap();
    }

    let again = machine.job("sysuser.create", json!({"name": "derek"}));
    assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(true)), "{again}");
    let group = std::fs::read_to_string(machine.path("/etc/group")).unwrap();
    let lines: Vec<&str> = group.lines().filter(|l| l.starts_with("derek:")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].split(':').nth(2), Some(gid.as_str()), "the account's own gid");
    let app =
        json!({"name": "shop", "sysuser": "derek", "runtime": "php8.2", "domains": ["shop.test"], "stack": "nginx"});
    let created = machine.job("app.create", app);
    assert_eq!(created["status"], "success", "{created}");
}

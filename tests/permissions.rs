//! `app.fix_permissions` in a test machine, on both stacks: the user's files get
//! their owner and modes back and the site still serves them (nginx, Apache and
//! PHP-FPM read them as they should), while what the user planted (a link to
//! `/etc/shadow`, a hard link to a root file, a link in place of the web root, a
//! fifo) is left alone and nothing outside the tree changes.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::{json, Value};
use support::machine::Machine;

fn ok(done: Value) -> Value {
    assert_eq!(done["status"], "success", "{done}");
    done
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// (uid, gid, mode) of `path`, not following a link.
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

/// The machine with user `derek` and app `blog` on `stack`; derek's uid and gid.
fn setup(stack: &str) -> (Machine, u32, u32) {
    let machine = Machine::start();
    ok(machine.job("sysuser.create", json!({"name": "derek"})));
    ok(machine.job(
        "app.create",
        json!({"name": "blog", "sysuser": "derek", "runtime": "php8.2", "domains": ["blog.test"], "stack": stack}),
    ));
    let home = std::fs::metadata(machine.path("/srv/users/derek")).unwrap();
    (machine, home.uid(), home.gid())
}

#[test]
fn messed_up_files_are_put_right_and_still_served_on_both_stacks() {
    for stack in ["nginx", "nginx-apache"] {
        let (machine, uid, gid) = setup(stack);
        let public = machine.path("/srv/users/derek/apps/blog/public");
        // A root's `cp`, a `chmod 000`, a world-writable file.
        std::fs::create_dir_all(public.join("inc")).unwrap();
        std::fs::write(public.join("index.php"), "<?php require __DIR__.'/inc/lib.php'; echo lib();").unwrap();
        std::fs::write(public.join("inc/lib.php"), "<?php function lib() { return 'served by '.get_current_user(); }")
            .unwrap();
        std::fs::write(public.join("wp-config.php"), "<?php // secrets").unwrap();
        std::fs::write(public.join("cron.sh"), "#!/bin/sh\n").unwrap();
        chmod(&public.join("inc"), 0o700);
        chmod(&public.join("inc/lib.php"), 0o000);
        chmod(&public.join("index.php"), 0o666);
        chmod(&public.join("wp-config.php"), 0o666);
        chmod(&public.join("cron.sh"), 0o755);
        // Secrets of the app: a deploy's `.env`, the object cache's credentials.
        let app_dir = machine.path("/srv/users/derek/apps/blog");
        std::fs::write(app_dir.join(".env"), "DB_PASSWORD=x").unwrap();
        std::fs::write(app_dir.join("redis-credentials.php"), "<?php // secrets").unwrap();
        let (code, body) = machine.get("blog.test", "/index.php");
        assert_ne!((code, body.contains("served by")), (200, true), "{stack}: a root-owned 0000 file cannot be served");

        let done = ok(machine.job("app.fix_permissions", json!({"app": "blog"})));
        let result = &done["result"];
        assert!(result["changed"] == 7, "{stack}: {result}");
        assert_eq!(owner_and_mode(&public.join("inc")), (uid, gid, 0o750), "{stack}");
        assert_eq!(owner_and_mode(&public.join("inc/lib.php")), (uid, gid, 0o640), "{stack}");
        assert_eq!(owner_and_mode(&public.join("index.php")), (uid, gid, 0o640), "{stack}");
        assert_eq!(owner_and_mode(&public.join("wp-config.php")), (uid, gid, 0o600), "{stack}");
        assert_eq!(owner_and_mode(&public.join("cron.sh")), (uid, gid, 0o740), "{stack}");
        assert_eq!(owner_and_mode(&app_dir.join(".env")), (uid, gid, 0o600), "{stack}");
        assert_eq!(owner_and_mode(&app_dir.join("redis-credentials.php")), (uid, gid, 0o600), "{stack}");
        // Live: the next request is served, by PHP running as the user.
        assert_eq!(machine.at_once_get("blog.test", "/index.php", 200), "served by derek", "{stack}");

        let again = ok(machine.job("app.fix_permissions", json!({"app": "blog"})));
        assert_eq!(again["result"]["changed"], 0, "{stack}: a rerun changes nothing: {}", again["result"]);
        let steps = again["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["changed"] == false), "{stack}: {again}");
    }
}

#[test]
fn planted_links_and_fifos_are_left_alone_and_nothing_outside_changes() {
    let (machine, _, _) = setup("nginx");
    let public = machine.path("/srv/users/derek/apps/blog/public");
    let shadow = machine.path("/etc/shadow");
    let shadow_before = (owner_and_mode(&shadow), std::fs::read(&shadow).unwrap());
    let passwd = machine.path("/etc/passwd");
    let passwd_before = owner_and_mode(&passwd);
    std::os::unix::fs::symlink("/etc/shadow", public.join("shadow-link")).unwrap();
    std::os::unix::fs::symlink("/etc", public.join("etc-link")).unwrap();
    // A hard link to a root file, as a user could make one where
    // fs.protected_hardlinks is 0 (made by the test as root: same filesystem).
    std::fs::hard_link(&passwd, public.join("passwd-hard")).unwrap();
    let fifo = public.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());

    let done = ok(machine.job("app.fix_permissions", json!({"app": "blog"})));
    let skipped = &done["result"]["skipped"];
    assert_eq!((skipped["symlinks"].as_u64(), skipped["hard_links"].as_u64()), (Some(2), Some(1)), "{done}");
    assert_eq!(skipped["special"], 1, "{done}");
    assert_eq!((owner_and_mode(&shadow), std::fs::read(&shadow).unwrap()), shadow_before);
    assert_eq!(owner_and_mode(&passwd), passwd_before);
    assert_eq!(owner_and_mode(&fifo).0, 0, "the fifo is left to its owner");

    // The user swaps the whole web root for a link to /etc: not followed either.
    let etc_before: Vec<_> = ["/etc/shadow", "/etc/passwd", "/etc/nginx/nginx.conf"]
        .iter()
        .map(|p| owner_and_mode(&machine.path(p)))
        .collect();
    std::fs::remove_dir_all(&public).unwrap();
    std::os::unix::fs::symlink("/etc", &public).unwrap();
    let done = ok(machine.job("app.fix_permissions", json!({"app": "blog"})));
    assert_eq!(done["result"]["skipped"]["symlinks"], 1, "{done}");
    let etc_after: Vec<_> = ["/etc/shadow", "/etc/passwd", "/etc/nginx/nginx.conf"]
        .iter()
        .map(|p| owner_and_mode(&machine.path(p)))
        .collect();
    assert_eq!(etc_after, etc_before);

    // The app's own directory swapped for a link: refused, nothing touched.
    let app_dir = machine.path("/srv/users/derek/apps/blog");
    std::fs::remove_dir_all(&app_dir).unwrap();
    std::os::unix::fs::symlink("/etc", &app_dir).unwrap();
    let done = machine.job("app.fix_permissions", json!({"app": "blog"}));
    assert_eq!((done["status"].as_str(), done["error"]["code"].as_str()), (Some("error"), Some("conflict")), "{done}");
    assert_eq!(owner_and_mode(&machine.path("/etc/shadow")), shadow_before.0);

    let unknown = machine.job("app.fix_permissions", json!({"app": "nope"}));
    assert_eq!(unknown["error"]["code"], "not_found", "{unknown}");
    let bad = machine.job("app.fix_permissions", json!({"app": "../etc"}));
    assert_eq!((bad["error"]["code"].as_str(), bad["error"]["field"].as_str()), (Some("invalid_params"), Some("app")));
}

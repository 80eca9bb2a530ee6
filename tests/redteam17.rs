//! Red team of `app.fix_permissions` (issue 17): the hosted user (`derek`) plants
//! what they can in their app's tree, before and while the job runs as root, and
//! each attack is judged by its effect on files outside the tree (owner, mode,
//! content), on another user's app (`maria`), and on the job itself.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::fs::{self as rfs, Mode, OFlags};
use serde_json::{json, Value};
use support::machine::Machine;
use support::verdicts::Verdicts;

const PUBLIC: &str = "/srv/users/derek/apps/blog/public";

/// (uid, gid, mode) of `path`, not following a link.
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn sh(machine: &Machine, script: &str) {
    let out = machine.run("/bin/sh", &["-c", script]);
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

fn as_user(machine: &Machine, user: &str, script: &str) -> std::process::Output {
    let (reuid, regid) = (format!("--reuid={user}"), format!("--regid={user}"));
    machine.run("/usr/bin/setpriv", &[&reuid, &regid, "--init-groups", "--", "/bin/sh", "-c", script])
}

/// Derek with app `blog`, maria with app `shop`; (derek's uid, gid).
fn setup() -> (Machine, u32, u32) {
    let machine = Machine::start();
    for (user, app) in [("derek", "blog"), ("maria", "shop")] {
        let done = machine.job("sysuser.create", json!({"name": user}));
        assert_eq!(done["status"], "success", "{done}");
        let done = machine.job(
            "app.create",
            json!({"name": app, "sysuser": user, "runtime": "php8.2", "domains": [format!("{app}.test")], "stack": "nginx"}),
        );
        assert_eq!(done["status"], "success", "{done}");
    }
    let home = std::fs::metadata(machine.path("/srv/users/derek")).unwrap();
    (machine, home.uid(), home.gid())
}

fn fix(machine: &Machine, app: &str) -> Value {
    machine.job("app.fix_permissions", json!({"app": app}))
}

/// A root file of the machine's `/etc` made for the attack: (path inside, path seen from here).
fn root_secret(machine: &Machine, name: &str) -> (String, PathBuf) {
    let inside = format!("/etc/{name}");
    let outside = machine.path(&inside);
    std::fs::write(&outside, "root's secret").unwrap();
    chmod(&outside, 0o600);
    (inside, outside)
}

/// Mounts in the tree (an admin's bind mount of a single file, a tmpfs): the walk
/// claims to stay on the tree's mount, so nothing behind them may change.
#[test]
fn a_file_bind_mounted_into_the_tree_is_not_given_to_the_user() {
    let (machine, _, _) = setup();
    let mut verdicts = Verdicts::new();
    let public = machine.path(PUBLIC);
    let (secret_in, secret) = root_secret(&machine, "rt17-bound-file");
    std::fs::write(public.join("bound"), "").unwrap();
    sh(&machine, &format!("mount --bind {secret_in} {PUBLIC}/bound"));
    std::fs::create_dir(public.join("tmp")).unwrap();
    sh(&machine, &format!("mount -t tmpfs -o mode=0700 tmpfs {PUBLIC}/tmp && echo x > {PUBLIC}/tmp/f"));
    let before = owner_and_mode(&secret);

    let done = fix(&machine, "blog");
    verdicts.judge("job with mounts in the tree", done["status"] == "success", &done);
    let after = owner_and_mode(&secret);
    verdicts.judge("file bind mount", after == before, format!("/etc file behind the mount {before:?} -> {after:?}"));
    let tmp = machine.run("/usr/bin/stat", &["-c", "%u %a", &format!("{PUBLIC}/tmp"), &format!("{PUBLIC}/tmp/f")]);
    let tmp = String::from_utf8_lossy(&tmp.stdout).into_owned();
    verdicts.judge("tmpfs mount", tmp.lines().all(|l| l.starts_with("0 ")), format!("tmpfs entries now: {tmp:?}"));
    verdicts.assert_none_worked();
}

/// Where `fs.protected_hardlinks` is 0, derek links a root file he cannot read
/// (`/etc/shadow`), then root replaces it by a rename as `passwd` does: the old
/// inode's only name is now in derek's tree, `nlink` 1, and looks like a file a
/// root's `cp` left there. The same with maria's `wp-config.php`, which her
/// WordPress rewrites. (The links are made by the test, as root; the machine sees
/// `protected_hardlinks` 0 through a bind mount over the sysctl, in its own mount
/// namespace.) Berth used to give both to derek.
#[test]
fn an_orphaned_hard_link_of_a_replaced_file_is_not_given_to_the_user_where_the_kernel_lets_users_link() {
    let (machine, uid, _) = setup();
    let mut verdicts = Verdicts::new();
    let public = machine.path(PUBLIC);
    std::fs::write(machine.path("/etc/rt17-protected_hardlinks"), "0\n").unwrap();
    sh(&machine, "mount --bind /etc/rt17-protected_hardlinks /proc/sys/fs/protected_hardlinks");
    let (secret_in, secret) = root_secret(&machine, "rt17-shadow");
    std::fs::hard_link(&secret, public.join("old-shadow")).unwrap();
    sh(&machine, &format!("cp -p {secret_in} {secret_in}+ && mv {secret_in}+ {secret_in}"));
    // The same with maria's wp-config.php: while both names exist derek's job
    // leaves it (nlink 2) and maria's job fixes it; then maria's WordPress
    // replaces it by a rename, and derek's copy is the old one, alone.
    let maria_public = machine.path("/srv/users/maria/apps/shop/public");
    std::fs::write(maria_public.join("wp-config.php"), "<?php // maria's DB password").unwrap();
    assert_eq!(fix(&machine, "shop")["status"], "success");
    std::fs::hard_link(maria_public.join("wp-config.php"), public.join("maria-config")).unwrap();
    let linked = fix(&machine, "blog");
    let got = owner_and_mode(&public.join("maria-config"));
    verdicts.judge("linked maria's file", got.0 != uid, format!("maria's linked file is now {got:?}: {linked}"));
    assert_eq!(fix(&machine, "shop")["status"], "success", "maria's job with derek's link to her file");
    sh(
        &machine,
        "cd /srv/users/maria/apps/shop/public && cp -p wp-config.php .wp-config.new && mv .wp-config.new wp-config.php",
    );

    let done = fix(&machine, "blog");
    let got = owner_and_mode(&public.join("old-shadow"));
    verdicts.judge("orphaned hard link", got.0 != uid, format!("the old /etc inode is now {got:?}: {done}"));
    let got = owner_and_mode(&public.join("maria-config"));
    verdicts.judge("orphaned link of maria's", got.0 != uid, format!("maria's old wp-config.php is now {got:?}"));
    verdicts.assert_none_worked();
}

/// Root's own files in derek's home (anything berth or a service keeps there),
/// moved by derek into the tree where his directory lets him: none may become his.
#[test]
fn root_files_of_the_home_moved_into_the_tree_are_not_given_to_the_user() {
    let (machine, uid, _) = setup();
    let mut verdicts = Verdicts::new();
    let found = machine.run("/usr/bin/find", &["/srv/users/derek", "-xdev", "!", "-user", "derek"]);
    let foreign = String::from_utf8_lossy(&found.stdout).into_owned();
    eprintln!("entries of derek's home not derek's:\n{foreign}");
    for (i, path) in foreign.lines().enumerate() {
        let moved = as_user(&machine, "derek", &format!("mv '{path}' {PUBLIC}/moved-{i}"));
        if !moved.status.success() {
            continue;
        }
        let before = owner_and_mode(&machine.path(&format!("{PUBLIC}/moved-{i}")));
        fix(&machine, "blog");
        let after = owner_and_mode(&machine.path(&format!("{PUBLIC}/moved-{i}")));
        verdicts.judge(
            &format!("{path} moved in"),
            after.0 != uid || before.0 == uid,
            format!("{before:?} -> {after:?}"),
        );
    }
    verdicts.assert_none_worked();
}

/// While the job runs again and again, derek swaps a directory of the tree for a
/// link to `/etc`, and a wrong-mode file for a hard link of a root file (made by
/// root, as where `fs.protected_hardlinks` is 0) and for a link to maria's
/// `wp-config.php`: nothing outside the tree changes, maria's job still succeeds.
#[test]
fn swaps_mid_walk_reach_nothing_outside_the_tree() {
    let (machine, _, _) = setup();
    let mut verdicts = Verdicts::new();
    let public = machine.path(PUBLIC);
    let (_, secret) = root_secret(&machine, "rt17-swap");
    let maria_config = machine.path("/srv/users/maria/apps/shop/public/wp-config.php");
    std::fs::write(&maria_config, "<?php // maria").unwrap();
    assert_eq!(fix(&machine, "shop")["status"], "success");
    let watched = |m: &Machine| -> Vec<(u32, u32, u32)> {
        let mut v: Vec<_> = ["/etc/shadow", "/etc/passwd", "/etc/nginx/nginx.conf"]
            .iter()
            .map(|p| owner_and_mode(&m.path(p)))
            .collect();
        v.push(owner_and_mode(&secret));
        v.push(owner_and_mode(&maria_config));
        v
    };
    let before = watched(&machine);

    std::fs::create_dir_all(public.join("sub")).unwrap();
    for i in 0..200 {
        std::fs::write(public.join(format!("sub/f{i}")), "x").unwrap();
        chmod(&public.join(format!("sub/f{i}")), 0o666);
    }
    std::os::unix::fs::symlink("/etc", public.join("decoy-dir")).unwrap();
    std::fs::write(public.join("file"), "x").unwrap();
    std::fs::hard_link(&secret, public.join("decoy-hard")).unwrap();
    std::os::unix::fs::symlink("/srv/users/maria/apps/shop/public/wp-config.php", public.join("decoy-link")).unwrap();
    // Descriptors of the real directory and file: the modes are undone through
    // them (a chmod by name would follow the swapped-in link or hard link).
    let real_sub = rfs::open(public.join("sub"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    let real_file = rfs::open(public.join("file"), OFlags::RDONLY, Mode::empty()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swappers: Vec<_> = [("sub", "decoy-dir"), ("file", "decoy-hard"), ("file", "decoy-link")]
        .into_iter()
        .map(|(a, b)| {
            let (stop, a, b) = (stop.clone(), public.join(a), public.join(b));
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if rfs::renameat_with(rfs::CWD, &a, rfs::CWD, &b, rfs::RenameFlags::EXCHANGE).is_ok() {
                        swaps += 1;
                    }
                }
                swaps
            })
        })
        .collect();
    let mut failed = Vec::new();
    for _ in 0..25 {
        // Every round has something to change: the sub directory's files back to 0666.
        for i in 0..200 {
            rfs::chmodat(&real_sub, format!("f{i}").as_str(), Mode::from_raw_mode(0o666), rfs::AtFlags::empty())
                .unwrap();
        }
        rfs::fchmod(&real_sub, Mode::from_raw_mode(0o777)).unwrap();
        rfs::fchmod(&real_file, Mode::from_raw_mode(0o666)).unwrap();
        let done = fix(&machine, "blog");
        if done["status"] != "success" {
            failed.push(done);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps: u64 = swappers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(swaps > 1000, "the race did not happen: {swaps} swaps");
    verdicts.judge("job under swaps", failed.is_empty(), format!("{} of 25 runs failed: {failed:?}", failed.len()));
    let after = watched(&machine);
    verdicts.judge("swaps", after == before, format!("outside the tree {before:?} -> {after:?}"));
    let maria = fix(&machine, "shop");
    verdicts.judge("maria's job", maria["status"] == "success", &maria);
    verdicts.assert_none_worked();
}

/// A tree deeper than the walk holds descriptors for, a directory of 50,000
/// entries, names with a newline and bytes that are not UTF-8, a socket, a fifo, a
/// setuid and a setgid file of derek's, a sticky world-writable directory: the
/// job finishes, leaves no setuid/setgid/sticky bit or world access behind.
#[test]
fn odd_trees_are_walked_and_no_special_bit_is_left() {
    let (machine, uid, gid) = setup();
    let mut verdicts = Verdicts::new();
    let public = machine.path(PUBLIC);
    let top = rfs::open(&public, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    rfs::mkdirat(&top, "deep", Mode::from_raw_mode(0o777)).unwrap();
    let mut fd = rfs::openat(&top, "deep", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    for _ in 0..1100 {
        rfs::mkdirat(&fd, "d", Mode::from_raw_mode(0o777)).unwrap();
        fd = rfs::openat(&fd, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    drop(fd);
    std::fs::create_dir(public.join("wide")).unwrap();
    for i in 0..50_000 {
        std::fs::write(public.join(format!("wide/{i:0>200}")), "").unwrap();
    }
    let odd = std::ffi::OsStr::new("a\nb");
    let bad = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff\xfe-not-utf8");
    for name in [odd, bad] {
        std::fs::write(public.join(name), "x").unwrap();
        chmod(&public.join(name), 0o666);
    }
    let _socket = std::os::unix::net::UnixListener::bind(public.join("sock")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(public.join("fifo")).status().unwrap().success());
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2755)] {
        std::fs::write(public.join(name), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::chown(public.join(name), Some(uid), Some(gid)).unwrap();
        chmod(&public.join(name), mode);
    }
    std::fs::create_dir(public.join("sticky")).unwrap();
    chmod(&public.join("sticky"), 0o1777);

    let started = std::time::Instant::now();
    let done = fix(&machine, "blog");
    eprintln!("job over {} entries took {:?}: {}", 50_000 + 1100, started.elapsed(), done["result"]);
    verdicts.judge("odd tree", done["status"] == "success", &done);
    verdicts.judge("too deep counted", done["result"]["skipped"]["too_deep"] == 1, &done["result"]);
    for name in ["suid", "sgid", "sticky"] {
        let got = owner_and_mode(&public.join(name));
        verdicts.judge(name, got.2 & 0o7007 == 0, format!("{name} is {got:?}"));
    }
    for name in [odd, bad] {
        let got = owner_and_mode(&public.join(name));
        verdicts.judge("odd names", got == (uid, gid, 0o640), format!("{name:?} is {got:?}"));
    }
    let again = fix(&machine, "blog");
    verdicts.judge("rerun", again["result"]["changed"] == 0, &again["result"]);
    verdicts.assert_none_worked();
}

/// Derek shares his files with maria through ACLs (an access ACL on a file and
/// the directories above it, a default ACL on a directory), then asks berth to
/// put his permissions right: is maria still let in? And a file an admin made
/// immutable (`chattr +i`, which derek cannot do) in the tree.
#[test]
#[ignore = "finding (design): fix_permissions leaves POSIX ACLs in place; after the job an ACL entry of \
            derek's still lets maria read his 0640 files and the default ACL still hands her every new file \
            (chmod only narrows the ACL mask); the result says nothing of it"]
fn acls_granting_another_user_do_not_survive_the_fix() {
    let (machine, _, _) = setup();
    let mut verdicts = Verdicts::new();
    let public = machine.path(PUBLIC);
    std::fs::write(public.join("index.php"), "<?php // derek's code").unwrap();
    std::fs::create_dir(public.join("shared")).unwrap();
    sh(&machine, &format!("chown -R derek:derek {PUBLIC}"));
    let out = as_user(
        &machine,
        "derek",
        &format!(
            "setfacl -m u:maria:x /srv/users/derek /srv/users/derek/apps /srv/users/derek/apps/blog && \
             setfacl -m u:maria:rx {PUBLIC} && setfacl -m u:maria:rw {PUBLIC}/index.php && \
             setfacl -m u:maria:rwx -d -m u:maria:rwx {PUBLIC}/shared && chmod 0666 {PUBLIC}/index.php"
        ),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = fix(&machine, "blog");
    assert_eq!(done["status"], "success", "{done}");
    let read = as_user(&machine, "maria", &format!("cat {PUBLIC}/index.php"));
    verdicts.judge("access ACL", !read.status.success(), "maria still reads derek's index.php after the fix");
    let made = as_user(&machine, "derek", &format!("echo new > {PUBLIC}/shared/new.php"));
    assert!(made.status.success());
    let acl = machine.run("/usr/bin/getfacl", &["-p", &format!("{PUBLIC}/shared")]);
    let acl = String::from_utf8_lossy(&acl.stdout).into_owned();
    verdicts.judge("default ACL", !acl.contains("default:user:maria"), format!("left in place: {acl}"));
    verdicts.assert_none_worked();
}

/// A file an admin made immutable in the tree: the job does not hang, says which
/// file it could not change, and is not an internal error.
#[test]
fn an_immutable_file_in_the_tree_is_named_in_the_error() {
    let (machine, _, _) = setup();
    let public = machine.path(PUBLIC);
    std::fs::write(public.join("frozen.php"), "x").unwrap();
    std::fs::write(public.join("zz-after.php"), "x").unwrap();
    chmod(&public.join("frozen.php"), 0o666);
    sh(&machine, &format!("chattr +i {PUBLIC}/frozen.php"));
    let done = fix(&machine, "blog");
    sh(&machine, &format!("chattr -i {PUBLIC}/frozen.php"));
    eprintln!("{done}");
    assert_eq!(done["status"], "error", "{done}");
    assert!(done["error"]["message"].as_str().unwrap_or("").contains("frozen.php"), "{done}");
}

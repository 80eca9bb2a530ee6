//! Backups and restores (`app.backup`, `app.restore`) with the real restic, MariaDB,
//! nginx and PHP-FPM in a test machine: a byte-identical round trip of a tree and
//! a table, retention scoped to one app, a failed stream that leaves no snapshot,
//! links a hostile user planted (in the tree, and at the restore's target), and the
//! repository's password in no process's argv or environment.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::machine::Machine;

const PASSWORD: &str = "repo-'pass\"word$-9f2c";

fn repository() -> Value {
    json!({"path": "/srv/backups", "password": PASSWORD})
}

/// A machine with MariaDB, user `derek`, and the apps `apps` (each with database
/// `APPdb`).
fn machine(apps: &[&str]) -> Machine {
    let machine = Machine::start();
    machine.start_mariadb();
    assert_eq!(machine.job("sysuser.create", json!({"name": "derek"}))["status"], "success");
    for app in apps {
        let created = machine.job(
            "app.create",
            json!({"name": app, "sysuser": "derek", "runtime": "php8.2", "domains": [format!("{app}.test")],
                   "stack": "nginx"}),
        );
        assert_eq!(created["status"], "success", "{created}");
        let db = machine.job(
            "db.create",
            json!({"app": app, "name": format!("{app}db"), "user": {"name": format!("{app}u"), "password": "db-password-1"}}),
        );
        assert_eq!(db["status"], "success", "{db}");
    }
    machine
}

fn uid(machine: &Machine, user: &str) -> u32 {
    let passwd = std::fs::read_to_string(machine.path("/etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).unwrap();
    line.split(':').nth(2).unwrap().parse().unwrap()
}

fn app_dir(machine: &Machine, app: &str) -> PathBuf {
    machine.path(&format!("/srv/users/derek/apps/{app}"))
}

fn sql(machine: &Machine, db: &str, sql: &str) -> String {
    let out = machine.sql("root", None, db, sql);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn backup(machine: &Machine, app: &str, extra: Value) -> Value {
    let mut params = json!({"app": app, "repository": repository(), "files": true, "database": true,
                            "retention": {"keep_last": 10}});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    machine.job("app.backup", params)
}

fn restore(machine: &Machine, app: &str, snapshot: &str) -> Value {
    machine.job("app.restore", json!({"app": app, "repository": repository(), "snapshot": snapshot}))
}

/// Runs restic in the machine as root (the test's own call: its password in the env).
fn restic(machine: &Machine, args: &str) -> Vec<u8> {
    let script = format!("RESTIC_PASSWORD=\"$0\" restic -r /srv/backups --no-cache {args}");
    let out = machine.run("/bin/sh", &["-c", &script, PASSWORD]);
    assert!(out.status.success(), "restic {args}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Every entry below `dir`: its kind, mode, owner, and content hash, link target,
/// or the first path of its hard-link group; mtimes of files.
fn manifest(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, inodes: &mut BTreeMap<u64, String>, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let head = format!("mode {:o} uid {}", meta.mode() & 0o7777, meta.uid());
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(base, &path, inodes, out);
                format!("dir {head}")
            } else if let Some(first) = inodes.get(&meta.ino()) {
                format!("hard link of {first} {head}")
            } else {
                inodes.insert(meta.ino(), rel.clone());
                let digest = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&path).unwrap());
                let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                format!("file {head} mtime {} size {} sha256 {hex}", meta.mtime(), meta.len())
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut BTreeMap::new(), &mut out);
    out
}

/// A tree with every kind of entry a site has, owned by derek.
fn fill(machine: &Machine, app: &str) {
    let dir = app_dir(machine, app);
    let uid = uid(machine, "derek");
    let public = dir.join("public");
    let write = |rel: &str, content: &[u8], mode: u32| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("public/index.php", b"<?php echo 'restored';", 0o644);
    write("public/wp-config.php", b"<?php define('DB_PASSWORD', 'x');", 0o600);
    write("public/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write("public/empty", b"", 0o640);
    write("public/name with spaces & 'quotes' \u{e9}.txt", b"odd name", 0o644);
    let binary: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    write("public/wp-content/uploads/2026/12/photo.bin", &binary, 0o644);
    write("public/wp-content/cache/page.html", b"cached", 0o644);
    write("private/notes.txt", b"private notes", 0o600);
    std::fs::create_dir_all(public.join("emptydir")).unwrap();
    std::fs::set_permissions(dir.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("index.php", public.join("home.php")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", public.join("dangling")).unwrap();
    std::fs::hard_link(public.join("index.php"), public.join("index-copy.php")).unwrap();
    let out = machine.run("/bin/chown", &["-hR", &format!("{uid}:{uid}"), dir.to_str().unwrap()]);
    let inside = format!("/srv/users/derek/apps/{app}");
    let out = if out.status.success() { out } else { machine.run("/bin/chown", &["-hR", "derek:derek", &inside]) };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_round_trip_gives_the_same_tree_and_the_same_rows() {
    let machine = machine(&["blog"]);
    fill(&machine, "blog");
    sql(
        &machine,
        "blogdb",
        "CREATE TABLE posts (id INT PRIMARY KEY, title TEXT, body BLOB); \
        INSERT INTO posts VALUES (1, 'it''s \"quoted\"', 0x00ff10), (2, 'caf\u{e9}', NULL), (3, 'three', 'x');",
    );
    let rows = sql(&machine, "blogdb", "SELECT id, title, HEX(body) FROM posts ORDER BY id");
    let before = manifest(&app_dir(&machine, "blog"));
    assert!(before.len() > 10, "{before:?}");

    let done = backup(&machine, "blog", json!({"exclude": ["public/wp-content/cache"]}));
    assert_eq!(done["status"], "success", "{done}");
    let snapshot = done["result"]["snapshot"].as_str().unwrap().to_owned();
    assert_eq!(done["result"]["backups"].as_array().unwrap().len(), 1, "{done}");
    assert_eq!(done["result"]["backups"][0]["parts"], json!(["files.tar", "db-blogdb.sql"]), "{done}");
    assert!(!done.to_string().contains(PASSWORD), "{done}");
    let repo = std::fs::metadata(machine.path("/srv/backups")).unwrap();
    assert_eq!((repo.mode() & 0o7777, repo.uid()), (0o700, 0), "the repository is root's, 0700");

    // The user changes everything; the restore puts it back.
    let dir = app_dir(&machine, "blog");
    std::fs::write(dir.join("public/index.php"), "<?php echo 'defaced';").unwrap();
    std::fs::remove_file(dir.join("public/wp-config.php")).unwrap();
    std::fs::remove_dir_all(dir.join("public/wp-content/uploads")).unwrap();
    std::fs::write(dir.join("public/new.php"), "new").unwrap();
    sql(
        &machine,
        "blogdb",
        "DELETE FROM posts WHERE id = 1; UPDATE posts SET title = 'x'; INSERT INTO posts VALUES (9, 'n', NULL);",
    );

    // PHP's opcache now holds the defaced page's code, which it may keep for its
    // revalidate_freq (2 s) after the files change: the restore reloads PHP-FPM, so
    // the next request sees the restored page. (A restore here takes longer than
    // 2 s, so this check alone would not catch a missing reload.)
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "defaced");

    let done = restore(&machine, "blog", &snapshot);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "restored", "the next request sees the restore");
    let mut expected = before.clone();
    expected.remove("public/wp-content/cache/page.html");
    let after = manifest(&app_dir(&machine, "blog"));
    let diff: Vec<_> = expected
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v} / {:?}", after.get(k)))
        .chain(after.keys().filter(|k| !expected.contains_key(*k)).map(|k| format!("extra {k}")))
        .filter(|line| !line.starts_with("public/wp-content/cache:"))
        .collect();
    assert!(diff.is_empty(), "the restored tree differs: {diff:#?}");
    assert_eq!(sql(&machine, "blogdb", "SELECT id, title, HEX(body) FROM posts ORDER BY id"), rows);
    assert!(!dir.parent().unwrap().join(".blog.restore").exists(), "nothing left beside the app");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "restored", "nginx serves the restored site");
}

fn backups_of(done: &Value) -> usize {
    done["result"]["backups"].as_array().unwrap_or_else(|| panic!("{done}")).len()
}

#[test]
fn retention_prunes_this_apps_snapshots_and_never_another_apps() {
    let machine = machine(&["blog", "shop"]);
    let shop = backup(&machine, "shop", json!({"retention": {"keep_last": 1}}));
    assert_eq!(shop["status"], "success", "{shop}");
    let mut last = Value::Null;
    for _ in 0..3 {
        last = backup(&machine, "blog", json!({"retention": {"keep_last": 2}}));
        assert_eq!(last["status"], "success", "{last}");
    }
    assert_eq!(backups_of(&last), 2, "blog keeps its last two: {last}");
    let all: Vec<Value> = serde_json::from_slice(&restic(&machine, "snapshots --json")).unwrap();
    let tagged =
        |app: &str| all.iter().filter(|s| s["tags"].as_array().unwrap().contains(&json!(format!("app:{app}")))).count();
    assert_eq!((tagged("blog"), tagged("shop")), (4, 2), "two sets of blog (files + db), shop's one set: {all:?}");
    // Shop's own retention keeps one; its snapshot is still restorable.
    let id = shop["result"]["snapshot"].as_str().unwrap();
    assert_eq!(restore(&machine, "shop", id)["status"], "success");
    // A restore of an app does not reach another app's snapshot.
    let other = restore(&machine, "blog", id);
    assert_eq!(other["error"]["code"], "not_found", "{other}");
}

/// A dump that fails (the database is gone behind berth's back) fails the job, and
/// no snapshot of that backup stays: not the files' one made before it either.
#[test]
fn a_failed_stream_leaves_no_snapshot() {
    let machine = machine(&["blog"]);
    let first = backup(&machine, "blog", json!({}));
    assert_eq!(first["status"], "success", "{first}");
    let count = || serde_json::from_slice::<Vec<Value>>(&restic(&machine, "snapshots --json")).unwrap().len();
    assert_eq!(count(), 2);
    sql(&machine, "", "DROP DATABASE blogdb");
    let failed = backup(&machine, "blog", json!({}));
    assert_eq!(failed["status"], "error", "{failed}");
    assert_eq!(failed["error"]["code"], "tool_failed", "{failed}");
    assert_eq!(count(), 2, "the failed backup's files snapshot was forgotten");
}

/// The user plants a hard link to /etc/shadow, a symlink to it, and one to /root:
/// the backup holds none of shadow, the restore makes nothing outside the tree,
/// and /etc/shadow is as it was.
#[test]
fn links_to_root_files_give_nothing_of_them() {
    let machine = machine(&["blog"]);
    fill(&machine, "blog");
    let public = app_dir(&machine, "blog").join("public");
    let shadow_path = machine.path("/etc/shadow");
    let shadow = std::fs::read(&shadow_path).unwrap();
    let meta = std::fs::metadata(&shadow_path).unwrap();
    std::fs::hard_link(&shadow_path, public.join("shadow-hard")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", public.join("shadow-sym")).unwrap();
    std::os::unix::fs::symlink("/root", public.join("root-dir")).unwrap();

    let done = backup(&machine, "blog", json!({}));
    assert_eq!(done["status"], "success", "{done}");
    let snapshot = done["result"]["snapshot"].as_str().unwrap();
    let archive = restic(&machine, &format!("dump {snapshot} /files.tar"));
    assert!(archive.len() > 3_000_000, "the archive holds the tree");
    let first_line = shadow.split(|b| *b == b'\n').next().unwrap();
    assert!(!archive.windows(first_line.len()).any(|w| w == first_line), "shadow's content is in the backup");

    std::fs::remove_file(public.join("shadow-hard")).unwrap();
    let done = restore(&machine, "blog", snapshot);
    assert_eq!(done["status"], "success", "{done}");
    assert!(!public.join("shadow-hard").exists(), "the unreadable file was not backed up");
    assert_eq!(std::fs::read_link(public.join("shadow-sym")).unwrap(), Path::new("/etc/shadow"), "a link stays a link");
    let now = std::fs::metadata(&shadow_path).unwrap();
    assert_eq!(std::fs::read(&shadow_path).unwrap(), shadow);
    assert_eq!((now.mode(), now.uid(), now.gid(), now.nlink()), (meta.mode(), meta.uid(), meta.gid(), meta.nlink()));
}

/// Before the restore the user swaps the app's directory for a link to a root
/// directory, and plants a link where the restore extracts: nothing is written
/// through either, and the app's directory is a real one again.
#[test]
fn a_restore_writes_nothing_through_links_planted_at_its_target() {
    let machine = machine(&["blog"]);
    fill(&machine, "blog");
    let done = backup(&machine, "blog", json!({"database": false}));
    assert_eq!(done["status"], "success", "{done}");
    let snapshot = done["result"]["snapshot"].as_str().unwrap();
    assert_eq!(done["result"]["backups"][0]["parts"], json!(["files.tar"]));

    let victim = machine.path("/srv/victim");
    let victim2 = machine.path("/srv/victim2");
    for v in [&victim, &victim2] {
        std::fs::create_dir_all(v.join("public")).unwrap();
        std::fs::write(v.join("public/index.php"), "root's").unwrap();
        std::fs::set_permissions(v, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (before, before2) = (manifest(&victim), manifest(&victim2));
    let apps = app_dir(&machine, "blog").parent().unwrap().to_owned();
    let old = apps.join("blog.old");
    std::fs::rename(apps.join("blog"), &old).unwrap();
    std::os::unix::fs::symlink("/srv/victim", apps.join("blog")).unwrap();
    std::os::unix::fs::symlink("/srv/victim2", apps.join(".blog.restore")).unwrap();

    let done = restore(&machine, "blog", snapshot);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(manifest(&victim), before, "nothing written through the app's link");
    assert_eq!(manifest(&victim2), before2, "nothing written through the planted restore directory");
    let meta = std::fs::symlink_metadata(apps.join("blog")).unwrap();
    assert!(meta.is_dir() && meta.uid() == uid(&machine, "derek"), "the app's directory is a real one again");
    assert_eq!(std::fs::read(apps.join("blog/public/index.php")).unwrap(), b"<?php echo 'restored';");
    assert!(std::fs::symlink_metadata(apps.join(".blog.restore")).is_err(), "the old link went");
}

/// Every process's argv and environment in the machine during a backup and a
/// restore: the repository's password is in none of them.
#[test]
fn the_password_is_in_no_process_argv_or_environment() {
    let machine = machine(&["blog"]);
    fill(&machine, "blog");
    let script = "while [ ! -e /run/stop-watching ]; do for p in /proc/[0-9]*; do \
        tr '\\0' ' ' <$p/cmdline; echo; tr '\\0' ' ' <$p/environ; echo; done 2>/dev/null; done";
    let mut child = machine.command("/bin/sh", &["-c", script]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).collect::<std::collections::BTreeSet<_>>()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let done = backup(&machine, "blog", json!({}));
    assert_eq!(done["status"], "success", "{done}");
    let snapshot = done["result"]["snapshot"].as_str().unwrap().to_owned();
    assert_eq!(restore(&machine, "blog", &snapshot)["status"], "success");
    assert!(machine.run("/usr/bin/touch", &["/run/stop-watching"]).status.success());
    let seen = reader.join().unwrap();
    child.wait().unwrap();
    assert!(seen.iter().any(|l| l.starts_with("/usr/bin/restic ")), "restic was seen");
    for line in &seen {
        assert!(!line.contains(PASSWORD) && !line.contains("repo-'pass"), "the password in a process: {line}");
    }
}

/// A backup needs no room for a copy of the app: berth's own scratch space
/// (`/var/cache/berth`, restic's temp packs and cache) is a 16 MiB tmpfs, the
/// database's dump is about 80 MiB, and the round trip still gives the same rows.
#[test]
fn a_backup_needs_no_room_for_a_copy_of_the_app() {
    let machine = machine(&["blog"]);
    sql(
        &machine,
        "blogdb",
        "CREATE TABLE t (id INT PRIMARY KEY, body LONGTEXT); INSERT INTO t \
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 160) \
         SELECT n, REPEAT(MD5(n), 16384) FROM s;",
    );
    let sum = "SELECT COUNT(*), SUM(LENGTH(body)), MD5(GROUP_CONCAT(MD5(body) ORDER BY id)) FROM t";
    let rows = sql(&machine, "blogdb", sum);
    assert!(rows.starts_with("160\t83886080\t"), "{rows}");
    let mounted = machine.run(
        "/bin/sh",
        &["-c", "mkdir -p /var/cache/berth && mount -t tmpfs -o size=16m,mode=0755 tmpfs /var/cache/berth"],
    );
    assert!(mounted.status.success(), "{}", String::from_utf8_lossy(&mounted.stderr));
    let done = backup(&machine, "blog", json!({}));
    assert_eq!(done["status"], "success", "{done}");
    let id = done["result"]["snapshots"]["databases"]["blogdb"].as_str().unwrap();
    let dump = restic(&machine, &format!("dump {id} /db-blogdb.sql"));
    assert!(dump.len() > 80 << 20, "the dump is larger than the 16 MiB of scratch space: {}", dump.len());
    sql(&machine, "blogdb", "DELETE FROM t WHERE id > 3");
    let restored = restore(&machine, "blog", done["result"]["snapshot"].as_str().unwrap());
    assert_eq!(restored["status"], "success", "{restored}");
    assert_eq!(sql(&machine, "blogdb", sum), rows);
}

/// `berth dev`'s routes: `POST /apps/:id/backup` and `/restore` make the jobs (their
/// bodies checked by the agent's parsers, 400 naming the field), the action's result
/// carries the snapshot, and a restore through the API puts a changed page back.
#[test]
fn dev_routes_back_up_and_restore_an_app() {
    let machine = Machine::start();
    let dev = support::dev::Dev::in_machine(&machine, &machine.dir.path().join("dev"));
    let app_id = &dev.derek_with_app("blog", "blog.test");
    let index = machine.path("/srv/users/derek/apps/blog/public/index.php");
    std::fs::write(&index, "<?php echo 'kept';").unwrap();

    let (status, answer) = dev.api(
        "POST",
        &format!("/apps/{app_id}/backup"),
        json!({"repository": {"path": "relative/repo", "password": PASSWORD}, "files": true, "database": false,
               "retention": {"keep_last": 3}}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("repository.path: "), "{answer}");
    assert!(!answer.to_string().contains(PASSWORD), "{answer}");

    let (_, action) = dev.change(
        "POST",
        &format!("/apps/{app_id}/backup"),
        json!({"repository": repository(), "files": true, "database": false, "retention": {"keep_last": 3}}),
    );
    let done = dev.settled(&action);
    assert_eq!(done["status"], "success", "{done}");
    let snapshot = done["result"]["snapshot"].as_str().unwrap().to_owned();
    assert!(!done.to_string().contains(PASSWORD), "{done}");

    std::fs::write(&index, "<?php echo 'defaced';").unwrap();
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "defaced");
    let (_, action) = dev.change(
        "POST",
        &format!("/apps/{app_id}/restore"),
        json!({"repository": repository(), "snapshot": snapshot}),
    );
    let done = dev.settled(&action);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(machine.at_once_get("blog.test", "/", 200), "kept", "the next request sees the restore");
}

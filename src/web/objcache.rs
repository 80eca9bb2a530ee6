//! Each app's Redis object cache on the host: berth's admin user in Redis, one
//! ACL user per app held to its own keys, the app's credentials file, and the
//! lines of a WordPress `wp-config.php` that load it.
//!
//! berth speaks to Debian's `redis-server` over its Unix socket (config
//! `redis_socket`, the installer's `unixsocket`, mode 0777: the ACL decides) with
//! its own client ([`crate::host::resp`]), as the ACL user [`ADMIN_USER`] whose
//! password is berth's own secret ([`ADMIN_SECRET`], root's, 0600, drawn once).
//! The first time, while Redis's `default` user is still open (a fresh install),
//! berth makes that admin user and shuts `default` (`reset`: off, no password, no
//! command), so no local process gets in without a user of its own; Redis needs
//! an `aclfile` for this (the installer sets one), and every change is kept with
//! `ACL SAVE`: a Redis restart loads the users as they were.
//!
//! App `APP` gets the user `app_APP` (no app name holds `_`, so it can meet no
//! other name) with a random password, the keys and channels `APP:*` (app names
//! are letters and digits: no glob character, and the `:` keeps `blog:*` from
//! `blog2:x`), and the data commands only: no `@admin`, `@dangerous` or
//! `@scripting` (a script could run what the ACL lets it, and `EVAL` is no
//! need of an object cache), and none of the commands that reach past the
//! prefix: `SELECT`, `MOVE`, `COPY` (its `DB`), `SCAN`, `RANDOMKEY`, `DBSIZE`,
//! `PUBSUB`, `MEMORY`, `CLIENT`.
//!
//! The app's credentials are the PHP file [`CREDENTIALS`] in the app's directory
//! (outside its web root, within its `open_basedir`), the user's own, 0600,
//! written by root through the app directory's descriptor, aside and renamed
//! into place ([`Dir::write_file`]): a link planted there is replaced, never
//! followed. It defines the `WP_REDIS_*` constants and returns the same values as
//! an array. A WordPress `wp-config.php` is the user's file: its lines are changed
//! by `templates/objcache/wp-config-edit.php`, run as the user.

use std::path::Path;
use std::sync::Mutex;

use serde_json::json;

use crate::host::fs::under_root;
use crate::host::resp::{Conn, Reply};
use crate::host::tree::{Dir, TreeError};
use crate::host::{Cmd, Host};
use crate::job::JobError;
use crate::web::sitedirs::Owner;
use crate::web::stack::USERS_DIR;
use crate::web::wordpress::{php_literal, random};

/// berth's admin password for Redis, root's alone.
pub const ADMIN_SECRET: &str = "/etc/berth/redis-admin.secret";
/// berth's ACL user in Redis.
pub const ADMIN_USER: &str = "berth";
/// The credentials file, in the app's directory.
pub const CREDENTIALS: &str = "redis-credentials.php";
/// The lines around what berth puts into a `wp-config.php`.
const BEGIN: &str = "/* berth: object cache (app.object_cache) */";
const END: &str = "/* berth: end of object cache */";
/// The largest credentials file read back (berth's is under 1 KiB).
const MAX_CREDENTIALS: u64 = 64 << 10;
/// An app's password: 40 letters and digits (238 bits).
const PASSWORD_LEN: usize = 40;
/// What an app's user may not run, after `+@all`.
pub const DENIED: [&str; 13] = [
    "-@admin",
    "-@dangerous",
    "-@scripting",
    "-select",
    "-move",
    "-copy",
    "-scan",
    "-randomkey",
    "-dbsize",
    "-pubsub",
    "-memory",
    "-client",
    "-acl",
];
const EDITOR: &str = include_str!("../../templates/objcache/wp-config-edit.php");
const BOOTSTRAP: &str = "$in = json_decode(stream_get_contents(STDIN), true); eval($in['program']);";

/// One admin conversation at a time: two first jobs must not both set berth up.
static ADMIN: Mutex<()> = Mutex::new(());

/// App `app`'s ACL user.
pub fn acl_user(app: &str) -> String {
    format!("app_{app}")
}

/// App `app`'s key prefix.
pub fn prefix(app: &str) -> String {
    format!("{app}:")
}

/// The `SCAN MATCH` pattern of `app`'s keys: its prefix, glob characters escaped
/// (an app name has none; this holds whatever the name rule becomes).
pub fn pattern(app: &str) -> String {
    let mut out = String::new();
    for c in prefix(app).chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out + "*"
}

/// The `ACL SETUSER` rules of `app`'s user, after `reset on >PASSWORD`.
pub fn rules(app: &str) -> Vec<String> {
    let mut rules = vec![format!("~{}", pattern(app)), format!("&{}", pattern(app)), "+@all".to_owned()];
    rules.extend(DENIED.iter().map(|r| (*r).to_owned()));
    rules
}

fn refused(what: &str, reply: &Reply, secrets: &[&str]) -> JobError {
    let mut text = format!("{reply:?}");
    for secret in secrets {
        text = text.replace(secret, "***");
    }
    JobError::ToolFailed { command: format!("redis-server {what}"), stderr: text }
}

fn expect_ok(conn: &mut Conn, what: &str, args: &[&str], secrets: &[&str]) -> Result<(), JobError> {
    match conn.call(args)? {
        Reply::Simple(ok) if ok == "OK" => Ok(()),
        other => Err(refused(what, &other, secrets)),
    }
}

/// A connection to `socket` (under `root`) as berth's admin user, setting that
/// user up the first time.
pub fn admin(root: &Path, socket: &str) -> Result<Conn, JobError> {
    let _one = ADMIN.lock().unwrap_or_else(|e| e.into_inner());
    let mut conn = Conn::connect(&under_root(root, socket))?;
    let secret_path = under_root(root, ADMIN_SECRET);
    let secret = match std::fs::read_to_string(&secret_path) {
        Ok(text) => Some(text.trim().to_owned()).filter(|s| !s.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(JobError::Internal(format!("{}: {e}", secret_path.display()))),
    };
    if let Some(password) = &secret {
        match conn.call(&["AUTH", ADMIN_USER, password])? {
            Reply::Simple(_) => return Ok(conn),
            Reply::Error(e) if e.starts_with("WRONGPASS") => {}
            other => return Err(refused("AUTH", &other, &[password])),
        }
    }
    // berth's user is not there (yet): only a fresh Redis, whose default user is open, is set up.
    match conn.call(&["ACL", "WHOAMI"])? {
        Reply::Bulk(Some(who)) if who == b"default" => {}
        _ => {
            return Err(JobError::PreconditionFailed(format!(
                "redis-server at {socket} does not know berth's admin user {ADMIN_USER:?} with the password in \
                 {ADMIN_SECRET}, and its default user is shut: restore that file, or recreate the user"
            )))
        }
    }
    let aclfile = conn.call(&["CONFIG", "GET", "aclfile"])?.items().get(1).and_then(Reply::text).unwrap_or_default();
    if aclfile.is_empty() {
        return Err(JobError::PreconditionFailed(
            "redis-server has no aclfile, so its users would not survive a restart: add `aclfile \
             /etc/redis/users.acl` to /etc/redis/redis.conf and restart it (berth's installer does)"
                .into(),
        ));
    }
    let password = match secret {
        Some(password) => password,
        None => {
            let password = random(48)?;
            crate::host::fs::write_atomic(&secret_path, password.as_bytes(), 0o600)
                .map_err(|e| JobError::Internal(format!("{}: {e}", secret_path.display())))?;
            password
        }
    };
    let set = format!(">{password}");
    expect_ok(
        &mut conn,
        "ACL SETUSER",
        &["ACL", "SETUSER", ADMIN_USER, "reset", "on", &set, "~*", "&*", "+@all"],
        &[&password],
    )?;
    expect_ok(&mut conn, "AUTH", &["AUTH", ADMIN_USER, &password], &[&password])?;
    expect_ok(&mut conn, "ACL SETUSER default", &["ACL", "SETUSER", "default", "reset"], &[])?;
    // While `default` was open, anyone on the server could have made users of their
    // own (an admin, or one named like an app's): none outlives berth's set-up.
    let others: Vec<String> = conn.call(&["ACL", "USERS"])?.items().iter().filter_map(Reply::text).collect();
    let others: Vec<&str> = others.iter().map(String::as_str).filter(|u| *u != ADMIN_USER && *u != "default").collect();
    for user in &others {
        conn.call(&["ACL", "DELUSER", user])?;
    }
    expect_ok(&mut conn, "ACL SAVE", &["ACL", "SAVE"], &[])?;
    tracing::info!(removed_users = others.len(), "Redis: berth's admin user is set up and the default user is shut");
    Ok(conn)
}

/// `ACL GETUSER user`: a null reply when there is no such user.
fn getuser(conn: &mut Conn, user: &str) -> Result<Reply, JobError> {
    Ok(conn.call(&["ACL", "GETUSER", user])?)
}

/// The SHA-256 hashes (hex) of a user's passwords, as `ACL GETUSER` lists them.
fn password_hashes(user: &Reply) -> Vec<String> {
    let items = user.items();
    let at = items.iter().position(|r| r.text().as_deref() == Some("passwords"));
    at.and_then(|i| items.get(i + 1)).map(|p| p.items().iter().filter_map(Reply::text).collect()).unwrap_or_default()
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The credentials file of `app` with `password`, for Redis at `socket`.
pub fn render(app: &str, socket: &str, password: &str) -> String {
    let (user, prefix) = (php_literal(&acl_user(app)), php_literal(&prefix(app)));
    let (socket, password) = (php_literal(socket), php_literal(password));
    format!(
        "<?php\n/*\n * Written by berth for app {app}: the credentials of its Redis object cache\n * \
         (app.object_cache). berth writes it again when the cache is turned on, and\n * removes it when the cache \
         is turned off. Every key must start with {prefix}.\n */\n\
         defined( 'WP_REDIS_SCHEME' ) || define( 'WP_REDIS_SCHEME', 'unix' );\n\
         defined( 'WP_REDIS_PATH' ) || define( 'WP_REDIS_PATH', {socket} );\n\
         defined( 'WP_REDIS_USERNAME' ) || define( 'WP_REDIS_USERNAME', {user} );\n\
         defined( 'WP_REDIS_PASSWORD' ) || define( 'WP_REDIS_PASSWORD', array( {user}, {password} ) );\n\
         defined( 'WP_REDIS_PREFIX' ) || define( 'WP_REDIS_PREFIX', {prefix} );\n\
         defined( 'WP_CACHE_KEY_SALT' ) || define( 'WP_CACHE_KEY_SALT', {prefix} );\n\
         return array(\n\t'path' => {socket},\n\t'username' => {user},\n\t'password' => {password},\n\t\
         'prefix' => {prefix},\n);\n"
    )
}

/// The password a credentials file holds (the user may have changed it: only
/// a value of berth's shape is taken, and only if Redis knows it).
fn parse_password(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("'password' => '")?.strip_suffix("',")?;
        (value.len() == PASSWORD_LEN && value.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| value.to_owned())
    })
}

/// The app's directory, opened from `/srv/users` without following a link; `None`
/// when it is missing.
fn app_dir(root: &Path, sysuser: &str, app: &str) -> Result<Option<Dir>, TreeError> {
    let mut dir = Dir::open_trusted(&under_root(root, USERS_DIR))?;
    for name in [sysuser, "apps", app] {
        match dir.open_dir(name)? {
            Some(next) => dir = next,
            None => return Ok(None),
        }
    }
    Ok(Some(dir))
}

/// Where an app is on the host.
pub struct Site<'a> {
    pub app: &'a str,
    pub sysuser: &'a str,
    pub owner: Owner,
    /// Redis's socket, as the app sees it.
    pub socket: &'a str,
    /// `Some(/usr/bin/phpX.Y, wp-config.php as that PHP sees it)` for a WordPress app.
    pub wordpress: Option<(String, String)>,
}

/// What turning the cache on or off changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub acl_user: bool,
    pub credentials: bool,
    pub wp_config: bool,
    /// Keys removed (off).
    pub removed: u64,
}

/// Turns `site`'s object cache on: its ACL user (the password its credentials
/// file holds is kept while Redis knows it; else a fresh one), the file, and
/// the `wp-config.php` lines.
pub fn enable(root: &Path, host: &dyn Host, site: &Site) -> Result<Changes, JobError> {
    let dir = app_dir(root, site.sysuser, site.app)?.ok_or_else(|| {
        JobError::PreconditionFailed(format!("the directory of app {} is missing; run app.update", site.app))
    })?;
    let current = match dir.read_file(CREDENTIALS, MAX_CREDENTIALS) {
        Ok(content) => content.map(|c| String::from_utf8_lossy(&c).into_owned()),
        // The user's own doing: written over (the link itself), never read through.
        Err(TreeError::Planted { .. }) => None,
        Err(TreeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::Other => None,
        Err(e) => return Err(e.into()),
    };
    let mut conn = admin(root, site.socket)?;
    let user = acl_user(site.app);
    let before = getuser(&mut conn, &user)?;
    // A new user starts with no keys: none planted under its prefix before it was
    // made (while Redis was open, or by an app of that name deleted meanwhile) is
    // ever read by the app (an object cache unserializes what it reads).
    let stale = if before == Reply::Bulk(None) { purge_with(&mut conn, site.app)? } else { 0 };
    let known =
        current.as_deref().and_then(parse_password).filter(|p| password_hashes(&before).contains(&sha256_hex(p)));
    let password = match known {
        Some(password) => password,
        None => random(PASSWORD_LEN)?,
    };
    let set = format!(">{password}");
    let mut args = vec!["ACL".to_owned(), "SETUSER".into(), user.clone(), "reset".into(), "on".into(), set];
    args.extend(rules(site.app));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_ok(&mut conn, "ACL SETUSER", &args, &[&password])?;
    let mut changes = Changes { acl_user: getuser(&mut conn, &user)? != before, removed: stale, ..Changes::default() };
    if changes.acl_user {
        expect_ok(&mut conn, "ACL SAVE", &["ACL", "SAVE"], &[])?;
    }
    let content = render(site.app, site.socket, &password);
    if current.as_deref() != Some(content.as_str()) {
        dir.write_file(CREDENTIALS, content.as_bytes(), 0o600, site.owner.uid, site.owner.gid)?;
        changes.credentials = true;
    }
    if let Some((php, wp_config)) = &site.wordpress {
        let credentials = format!("{}/{CREDENTIALS}", crate::web::stack::app_dir(site.sysuser, site.app));
        let path = php_literal(&credentials);
        let block = format!("{BEGIN}\nif ( is_readable( {path} ) ) {{\n\trequire_once {path};\n}}\n{END}");
        changes.wp_config = edit_wp_config(host, php, site.owner, wp_config, Some(&block))?;
    }
    Ok(changes)
}

/// Turns `site`'s object cache off: its ACL user goes (and with it its open
/// connections), then its keys, its credentials file and the `wp-config.php` lines.
pub fn disable(root: &Path, host: &dyn Host, site: &Site) -> Result<Changes, JobError> {
    let mut conn = admin(root, site.socket)?;
    let deleted = matches!(conn.call(&["ACL", "DELUSER", &acl_user(site.app)])?, Reply::Int(n) if n > 0);
    let mut changes = Changes { acl_user: deleted, ..Changes::default() };
    if changes.acl_user {
        expect_ok(&mut conn, "ACL SAVE", &["ACL", "SAVE"], &[])?;
    }
    changes.removed = purge_with(&mut conn, site.app)?;
    if let Some(dir) = app_dir(root, site.sysuser, site.app)? {
        changes.credentials = dir.remove_tree(CREDENTIALS)?;
    }
    if let Some((php, wp_config)) = &site.wordpress {
        changes.wp_config = edit_wp_config(host, php, site.owner, wp_config, None)?;
    }
    Ok(changes)
}

/// For `app.delete`: the app's ACL user and keys go, when Redis runs and berth
/// is set up in it; nothing is asked of a server without Redis.
pub fn forget(root: &Path, socket: &str, app: &str) -> Result<bool, JobError> {
    if !under_root(root, socket).exists() || !under_root(root, ADMIN_SECRET).exists() {
        return Ok(false);
    }
    let mut conn = admin(root, socket)?;
    let deleted = matches!(conn.call(&["ACL", "DELUSER", &acl_user(app)])?, Reply::Int(n) if n > 0);
    if deleted {
        expect_ok(&mut conn, "ACL SAVE", &["ACL", "SAVE"], &[])?;
    }
    Ok(purge_with(&mut conn, app)? > 0 || deleted)
}

/// Deletes every key of `app` (`SCAN MATCH APP:*` and `UNLINK`, never a flush);
/// how many went.
pub fn purge(root: &Path, socket: &str, app: &str) -> Result<u64, JobError> {
    purge_with(&mut admin(root, socket)?, app)
}

fn purge_with(conn: &mut Conn, app: &str) -> Result<u64, JobError> {
    let pattern = pattern(app);
    let mut cursor = "0".to_owned();
    let mut removed = 0u64;
    loop {
        let page = conn.call(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?;
        let items = page.items();
        let (Some(next), Some(keys)) = (items.first().and_then(Reply::text), items.get(1)) else {
            return Err(refused("SCAN", &page, &[]));
        };
        let mut args: Vec<Vec<u8>> = vec![b"UNLINK".to_vec()];
        for key in keys.items() {
            match key {
                Reply::Bulk(Some(key)) if key.starts_with(prefix(app).as_bytes()) => args.push(key),
                _ => {}
            }
        }
        if args.len() > 1 {
            match conn.call(&args)? {
                Reply::Int(n) => removed += u64::try_from(n).unwrap_or(0),
                other => return Err(refused("UNLINK", &other, &[])),
            }
        }
        if next == "0" {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// Puts `block` between berth's marker lines of `wp_config` (or takes them out),
/// as the app's user; true when the file changed. A missing file is left so.
fn edit_wp_config(
    host: &dyn Host,
    php: &str,
    owner: Owner,
    wp_config: &str,
    block: Option<&str>,
) -> Result<bool, JobError> {
    let input = json!({"program": EDITOR, "path": wp_config, "begin": BEGIN, "end": END, "block": block});
    let cmd = Cmd::new("/usr/bin/setpriv")
        .args([format!("--reuid={}", owner.uid), format!("--regid={}", owner.gid)])
        .args(["--clear-groups", "--no-new-privs", "--", php, "-r", BOOTSTRAP])
        .stdin(crate::model::Secret::new(input.to_string()));
    let printed = host.run(&cmd)?;
    let report = printed.lines().rev().find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
    match report {
        Some(report) if report["ok"] == true => Ok(report["changed"] == true),
        _ => Err(JobError::ToolFailed { command: "the wp-config.php editor".into(), stderr: printed }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_is_held_to_its_own_prefix_and_the_data_commands() {
        assert_eq!(acl_user("blog"), "app_blog");
        assert_eq!(pattern("blog"), "blog:*");
        assert_eq!(pattern("a*b?[c]"), "a\\*b\\?\\[c\\]:*", "glob characters are taken literally");
        let rules = rules("blog");
        assert_eq!(&rules[..3], ["~blog:*", "&blog:*", "+@all"]);
        for denied in ["-@admin", "-@dangerous", "-@scripting", "-select", "-scan", "-client", "-acl"] {
            assert!(rules.contains(&denied.to_owned()), "{denied}");
        }
        assert!(!rules.iter().any(|r| r.starts_with('>') || r == "~*" || r == "allkeys"));
    }

    /// What a user planted at the credentials file's name (a link to a root file, a
    /// hard link to one, a link on the aside name) is replaced, never written through.
    #[test]
    fn the_credentials_file_replaces_what_was_planted_and_writes_through_nothing() {
        use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("srv/users/derek/apps/blog");
        std::fs::create_dir_all(&dir).unwrap();
        let target = root.path().join("shadow");
        std::fs::write(&target, "root's\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let own = std::fs::metadata(root.path()).unwrap();
        let (uid, gid) = (own.uid(), own.gid());
        let open = || app_dir(root.path(), "derek", "blog").unwrap().unwrap();
        symlink(&target, dir.join(CREDENTIALS)).unwrap();
        symlink(&target, dir.join(format!(".{CREDENTIALS}.berth-{}", std::process::id()))).unwrap();
        open().write_file(CREDENTIALS, b"one", 0o600, uid, gid).unwrap();
        std::fs::remove_file(dir.join(CREDENTIALS)).unwrap();
        std::fs::hard_link(&target, dir.join(CREDENTIALS)).unwrap();
        open().write_file(CREDENTIALS, b"two", 0o600, uid, gid).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's\n");
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!((meta.mode() & 0o777, meta.nlink()), (0o640, 1));
        let written = std::fs::symlink_metadata(dir.join(CREDENTIALS)).unwrap();
        assert!(written.file_type().is_file());
        assert_eq!(written.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(dir.join(CREDENTIALS)).unwrap(), "two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "nothing left aside");
        std::fs::remove_file(dir.join(CREDENTIALS)).unwrap();
        std::fs::create_dir(dir.join(CREDENTIALS)).unwrap();
        assert!(open().write_file(CREDENTIALS, b"three", 0o600, uid, gid).is_err(), "a directory there stays");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "nothing left aside");
        let apps = root.path().join("srv/users/derek/apps");
        std::fs::rename(&dir, root.path().join("moved")).unwrap();
        symlink(root.path().join("moved"), &dir).unwrap();
        assert!(app_dir(root.path(), "derek", "blog").is_err(), "a linked app directory is not entered");
        assert!(apps.is_dir());
    }

    #[test]
    fn the_credentials_file_holds_the_password_and_gives_it_back_only_in_its_shape() {
        let password = random(PASSWORD_LEN).unwrap();
        let text = render("blog", "/run/redis/redis-server.sock", &password);
        assert!(text.contains("define( 'WP_REDIS_PASSWORD', array( 'app_blog', '"), "{text}");
        assert!(text.contains("define( 'WP_REDIS_PREFIX', 'blog:' );"));
        assert!(text.contains("define( 'WP_REDIS_PATH', '/run/redis/redis-server.sock' );"));
        assert_eq!(parse_password(&text), Some(password));
        for hostile in ["\t'password' => 'short',", "\t'password' => 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'.'b',", ""]
        {
            assert_eq!(parse_password(hostile), None, "{hostile}");
        }
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

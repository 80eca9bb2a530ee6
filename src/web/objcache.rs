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
//! The app's side, its credentials file and the `wp-config.php` lines, is
//! [`crate::web::objcreds`].

use std::path::Path;
use std::sync::Mutex;

use crate::host::fs::under_root;
use crate::host::resp::{Conn, Reply};
use crate::host::tree::TreeError;
use crate::host::Host;
use crate::job::JobError;
use crate::web::objcreds::{
    app_dir, edit_wp_config, parse_password, render, wp_block, CREDENTIALS, MAX_CREDENTIALS, PASSWORD_LEN,
};
use crate::web::sitedirs::Owner;
use crate::web::wordpress::random;

/// berth's admin password for Redis, root's alone.
pub const ADMIN_SECRET: &str = "/etc/berth/redis-admin.secret";
/// berth's ACL user in Redis.
pub const ADMIN_USER: &str = "berth";
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
    let content = render(site.app, &user, &prefix(site.app), site.socket, &password);
    if current.as_deref() != Some(content.as_str()) {
        dir.write_file(CREDENTIALS, content.as_bytes(), 0o600, site.owner.uid, site.owner.gid)?;
        changes.credentials = true;
    }
    if let Some((php, wp_config)) = &site.wordpress {
        let block = wp_block(site.sysuser, site.app);
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
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}

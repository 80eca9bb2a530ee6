//! An app's side of its Redis object cache: the credentials file berth writes into
//! the app's directory, and the lines of a WordPress `wp-config.php` that load it.
//!
//! The file, [`CREDENTIALS`], sits in the app's directory (outside its web root,
//! within its pool's `open_basedir`), the user's own, 0600. Root writes it through
//! the app directory's descriptor, opened from `/srv/users` without following a
//! link, aside under a fresh name and renamed over the old one
//! ([`crate::host::tree::Dir::write_file`]): a link or hard link planted there is
//! replaced, never followed or written through. It defines the `WP_REDIS_*`
//! constants (each unless already defined) and returns the same values as an array
//! for any other PHP code. What it holds is read back (bounded, not through a link)
//! only to keep a password Redis still knows.
//!
//! A WordPress `wp-config.php` is the user's file, which root never opens: its
//! marked lines are put in or taken out by `templates/objcache/wp-config-edit.php`,
//! run with php-cli as the app's user (`setpriv`). Its input (the file, the lines)
//! holds no secret.

use std::path::Path;

use serde_json::json;

use crate::host::fs::under_root;
use crate::host::tree::{Dir, TreeError};
use crate::host::{Cmd, Host};
use crate::job::JobError;
use crate::web::sitedirs::Owner;
use crate::web::stack::USERS_DIR;
use crate::web::wordpress::php_literal;

/// The credentials file, in the app's directory.
pub const CREDENTIALS: &str = "redis-credentials.php";
/// The lines around what berth puts into a `wp-config.php`.
const BEGIN: &str = "/* berth: object cache (app.object_cache) */";
const END: &str = "/* berth: end of object cache */";
/// The largest credentials file read back (berth's is under 1 KiB).
pub(crate) const MAX_CREDENTIALS: u64 = 64 << 10;
/// An app's password: 40 letters and digits (238 bits).
pub(crate) const PASSWORD_LEN: usize = 40;
const EDITOR: &str = include_str!("../../templates/objcache/wp-config-edit.php");
const BOOTSTRAP: &str = "$in = json_decode(stream_get_contents(STDIN), true); eval($in['program']);";

/// The credentials file of `app`: its Redis `user` and `password`, its key
/// `prefix`, Redis at `socket`.
pub fn render(app: &str, user: &str, prefix: &str, socket: &str, password: &str) -> String {
    let (user, prefix) = (php_literal(user), php_literal(prefix));
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
pub(crate) fn parse_password(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("'password' => '")?.strip_suffix("',")?;
        (value.len() == PASSWORD_LEN && value.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| value.to_owned())
    })
}

/// The app's directory, opened from `/srv/users` without following a link; `None`
/// when it is missing.
pub(crate) fn app_dir(root: &Path, sysuser: &str, app: &str) -> Result<Option<Dir>, TreeError> {
    let mut dir = Dir::open_trusted(&under_root(root, USERS_DIR))?;
    for name in [sysuser, "apps", app] {
        match dir.open_dir(name)? {
            Some(next) => dir = next,
            None => return Ok(None),
        }
    }
    Ok(Some(dir))
}

/// The lines a WordPress `wp-config.php` of `sysuser`'s app `app` gets: they load
/// its credentials file while it is there.
pub(crate) fn wp_block(sysuser: &str, app: &str) -> String {
    let path = php_literal(&format!("{}/{CREDENTIALS}", crate::web::stack::app_dir(sysuser, app)));
    format!("{BEGIN}\nif ( is_readable( {path} ) ) {{\n\trequire_once {path};\n}}\n{END}")
}

/// Puts `block` between berth's marker lines of `wp_config` (or takes them out),
/// as the app's user; true when the file changed. A missing file is left so.
pub(crate) fn edit_wp_config(
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
    use crate::web::wordpress::random;

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
        let text = render("blog", "app_blog", "blog:", "/run/redis/redis-server.sock", &password);
        assert!(text.contains("define( 'WP_REDIS_PASSWORD', array( 'app_blog', '"), "{text}");
        assert!(text.contains("define( 'WP_REDIS_PREFIX', 'blog:' );"));
        assert!(text.contains("define( 'WP_REDIS_PATH', '/run/redis/redis-server.sock' );"));
        assert_eq!(parse_password(&text), Some(password));
        for hostile in ["\t'password' => 'short',", "\t'password' => 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'.'b',", ""]
        {
            assert_eq!(parse_password(hostile), None, "{hostile}");
        }
    }
}

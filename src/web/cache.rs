//! Each app's page cache on the host: nginx's `fastcgi_cache` zone, its directory,
//! and purges that delete its files without a reload.
//!
//! The cache sits where nginx runs PHP, on both stacks: in the app's `\.php$`
//! location (stack `nginx`) and in its `@php` location (stack `nginx-apache`, where
//! Apache answers every PHP request with `X-Accel-Redirect: @php` and nginx runs
//! the script). A `proxy_cache` in front of Apache would only keep Apache's
//! redirect, never a page. So on `nginx-apache` a hit still asks Apache first,
//! which keeps every `.htaccess` rule (rewrites, `Require`, auth) in force for
//! cached pages too; only PHP is spared.
//!
//! Each app has one zone, `berth_APP`, in berth's own directory
//! `/var/cache/berth/nginx/APP` (`www-data`, 0700: nginx's workers write it, no
//! hosted user can reach it), never in a home. nginx names each entry by the MD5 of
//! its key, `$scheme$request_method$host$request_uri`, under two levels of
//! directories ([`LEVELS`]), so a purge of given paths computes the files of every
//! scheme, method (GET, HEAD) and name of the app and unlinks those alone. A purge
//! deletes files, which nginx takes as a miss on the next request: no reload. Every
//! walk here is through descriptors that follow no link ([`crate::host::tree`]),
//! though no user can write there.

use std::path::Path;

use serde::Serialize;

use crate::host::fs::under_root;
use crate::host::tree::{Dir, TreeError};
use crate::job::JobError;
use crate::model::{PageCache, UrlPath};
use crate::state::inventory::Inventory;
use crate::web::md5;

/// Where the apps' cache zones are, one directory per app.
pub const CACHE_BASE: &str = "/var/cache/berth/nginx";
/// A zone directory's mode: the web server's alone.
const ZONE_MODE: u32 = 0o700;
/// nginx's `levels`: the last hex digit of the key's MD5, then the two before it.
pub const LEVELS: &str = "1:2";
/// The schemes and methods a path purge covers (nginx caches GET and HEAD apart).
const SCHEMES: [&str; 2] = ["http", "https"];
const METHODS: [&str; 2] = ["GET", "HEAD"];

/// The app's zone directory (host path).
pub fn zone_dir(app: &str) -> String {
    format!("{CACHE_BASE}/{app}")
}

/// What the vhost template needs of an app's page cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheContext {
    /// The zone directory, under root.
    pub dir: String,
    /// The shared memory zone's name.
    pub zone: String,
    pub levels: &'static str,
    pub ttl_secs: u32,
}

/// The template context of `app`'s page cache.
pub fn context(root: &Path, app: &str, cache: &PageCache) -> CacheContext {
    CacheContext {
        dir: under_root(root, &zone_dir(app)).display().to_string(),
        zone: format!("berth_{app}"),
        levels: LEVELS,
        ttl_secs: cache.ttl_secs.secs(),
    }
}

/// nginx's cache key of one request, as the vhost's `fastcgi_cache_key` builds it.
pub fn key(scheme: &str, method: &str, host: &str, request_uri: &str) -> String {
    format!("{scheme}{method}{host}{request_uri}")
}

/// Where nginx keeps the entry of `key`, relative to the zone directory, as the
/// three components [`LEVELS`] gives it: `c/ab/…abc`.
pub fn entry(key: &str) -> [String; 3] {
    let hash = md5::hex(key.as_bytes());
    [hash[31..].to_owned(), hash[29..31].to_owned(), hash]
}

/// Makes the app's zone directory exist: `/var/cache/berth` and its `nginx` root's
/// (0755), the zone `web_user`'s (0700). True when anything changed.
pub fn ensure(root: &Path, app: &str, web_user: &str) -> Result<bool, JobError> {
    let account = crate::web::accounts::account(root, web_user)?;
    let path = under_root(root, &zone_dir(app));
    Ok(Dir::ensure_trusted(&path, ZONE_MODE, account.uid, account.gid)?.1)
}

/// Before a web-config job's checks: the zone directory of every app with its page
/// cache on exists (nginx's check makes the zone itself, but not its parents).
pub fn ensure_all(root: &Path, inventory: &Inventory, web_user: &str) -> Result<bool, JobError> {
    let mut changed = false;
    for (name, _) in inventory.apps.iter().filter(|(_, app)| app.page_cache.is_some()) {
        // Root's directories, which no user can replace: a plain look is enough.
        if !under_root(root, &zone_dir(name)).symlink_metadata().is_ok_and(|m| m.is_dir()) {
            changed |= ensure(root, name, web_user)?;
        }
    }
    Ok(changed)
}

/// The zone directory, or `None` when there is none.
fn open_zone(root: &Path, app: &str) -> Result<Option<Dir>, JobError> {
    match Dir::open_trusted(&under_root(root, &zone_dir(app))) {
        Ok(zone) => Ok(Some(zone)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes every entry of the app's cache, keeping its directories; the number of
/// files removed.
pub fn purge_all(root: &Path, app: &str) -> Result<u64, JobError> {
    let Some(zone) = open_zone(root, app)? else { return Ok(0) };
    let mut removed = 0;
    for first in zone.entries()? {
        let level = match zone.open_dir(&first) {
            Ok(Some(level)) => level,
            Ok(None) => continue,
            // A file at the top (nginx puts none there): it goes too.
            Err(TreeError::Planted { .. }) => {
                removed += u64::from(zone.remove_tree(&first)?);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for second in level.entries()? {
            match level.open_dir(&second) {
                Ok(Some(files)) => {
                    for file in files.entries()? {
                        removed += u64::from(files.remove_tree(&file)?);
                    }
                }
                Ok(None) => {}
                Err(TreeError::Planted { .. }) => removed += u64::from(level.remove_tree(&second)?),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(removed)
}

/// Removes the entries of `paths` for every name in `hosts` (wildcards are left
/// out: their names are not known), both schemes and GET and HEAD; the number of
/// files removed.
pub fn purge_paths(root: &Path, app: &str, hosts: &[String], paths: &[UrlPath]) -> Result<u64, JobError> {
    let Some(zone) = open_zone(root, app)? else { return Ok(0) };
    let mut removed = 0;
    for path in paths {
        for host in hosts.iter().filter(|h| !h.starts_with("*.")) {
            for (scheme, method) in SCHEMES.iter().flat_map(|s| METHODS.iter().map(move |m| (*s, *m))) {
                let [first, second, file] = entry(&key(scheme, method, host, path.as_str()));
                let Some(level) = zone.open_dir(&first)? else { continue };
                let Some(files) = level.open_dir(&second)? else { continue };
                removed += u64::from(files.remove_tree(&file)?);
            }
        }
    }
    Ok(removed)
}

/// Removes the app's zone directory and everything in it (`app.delete`, and a page
/// cache turned off); true when it was there.
pub fn remove(root: &Path, app: &str) -> Result<bool, JobError> {
    match Dir::open_trusted(&under_root(root, CACHE_BASE)) {
        Ok(base) => Ok(base.remove_tree(app)?),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last hex digit, then the two before it (tests/page_cache.rs finds the
    /// file the real nginx wrote where this says).
    #[test]
    fn an_entry_is_named_as_nginx_names_it() {
        let hash = md5::hex(b"httpGETblog.test/");
        let [first, second, file] = entry("httpGETblog.test/");
        assert_eq!(file, hash);
        assert_eq!(first, &hash[31..]);
        assert_eq!(second, &hash[29..31]);
        assert_eq!(key("https", "HEAD", "www.blog.test", "/a/"), "httpsHEADwww.blog.test/a/");
    }

    #[test]
    fn purges_remove_only_the_named_entries_and_report_how_many() {
        let root = tempfile::tempdir().unwrap();
        let zone = root.path().join("var/cache/berth/nginx/blog");
        let put = |key: &str| {
            let [a, b, file] = entry(key);
            std::fs::create_dir_all(zone.join(&a).join(&b)).unwrap();
            std::fs::write(zone.join(a).join(b).join(file), key).unwrap();
        };
        for key in ["httpGETblog.test/", "httpsHEADwww.blog.test/", "httpGETblog.test/other/"] {
            put(key);
        }
        let hosts = vec!["blog.test".to_owned(), "www.blog.test".to_owned(), "*.blog.test".to_owned()];
        let home = [UrlPath::parse("paths[0]", "/").unwrap()];
        assert_eq!(purge_paths(root.path(), "blog", &hosts, &home).unwrap(), 2);
        assert_eq!(purge_paths(root.path(), "blog", &hosts, &home).unwrap(), 0, "idempotent");
        assert_eq!(purge_all(root.path(), "blog").unwrap(), 1, "/other/ was left");
        assert_eq!(purge_all(root.path(), "blog").unwrap(), 0);
        assert_eq!(purge_all(root.path(), "other").unwrap(), 0, "no zone, nothing to purge");
        assert!(remove(root.path(), "blog").unwrap());
        assert!(!zone.exists());
    }

    /// No one but the web server can write in a zone, but a link there (a level, or
    /// an entry) is unlinked itself: what it points to stays.
    #[test]
    fn a_link_in_a_zone_is_removed_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(outside.join("ab")).unwrap();
        std::fs::write(outside.join("ab/keep"), "kept").unwrap();
        let zone = root.path().join("var/cache/berth/nginx/blog");
        std::fs::create_dir_all(zone.join("c/de")).unwrap();
        std::os::unix::fs::symlink(&outside, zone.join("f")).unwrap();
        std::os::unix::fs::symlink(outside.join("ab/keep"), zone.join("c/de/entry")).unwrap();
        let [first, second, file] = entry("httpGETblog.test/");
        std::fs::create_dir_all(zone.join(&first)).unwrap();
        std::os::unix::fs::symlink(&outside, zone.join(&first).join(&second)).unwrap();
        let home = [UrlPath::parse("paths[0]", "/").unwrap()];
        assert!(purge_paths(root.path(), "blog", &["blog.test".to_owned()], &home).is_err(), "{file}: a planted level");
        assert_eq!(purge_all(root.path(), "blog").unwrap(), 3, "three links unlinked");
        assert_eq!(std::fs::read_to_string(outside.join("ab/keep")).unwrap(), "kept");
        assert!(remove(root.path(), "blog").unwrap());
        assert_eq!(std::fs::read_to_string(outside.join("ab/keep")).unwrap(), "kept");
    }
}

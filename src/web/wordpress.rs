//! WordPress in an app's web root: the host side of `app.wordpress` and of
//! `app.create`'s `wordpress`.
//!
//! The web root is the user's, who may change anything in it while a job runs, so
//! root never writes there. What root does is look, through descriptors that never
//! follow a link ([`crate::host::tree`]): at what the web root holds before an
//! install, at `wp-includes/version.php` for the version, and it removes what a
//! failed install left, the same way. The copy of the WordPress tree, the
//! `wp-config.php` and `wp_install()` are the installer's (`templates/wordpress/`),
//! a PHP program run by php-cli as the app's user (`setpriv`): whatever the user
//! planted, it can reach nothing that user could not. Its input, with the admin's
//! and the database's passwords, is JSON on its stdin; its argv holds no secret.
//!
//! The source is a WordPress tree on the host (config `wordpress_source`), Debian's
//! `wordpress` package by default (`/usr/share/wordpress`): a shared install whose files link into
//! `/usr/share/javascript`, `/usr/share/php` and `/etc/wordpress`. It is root's and
//! readable by all; the installer copies it dereferenced, without Debian's own
//! `wp-config.php` and `.htaccess` ([`SKIPPED`]).

use std::path::Path;

use serde_json::json;

use crate::host::fs::under_root;
use crate::host::tree::{Dir, TreeError};
use crate::host::{Cmd, Host};
use crate::job::JobError;
use crate::model::validate::shown;
use crate::model::Secret;
use crate::web::sitedirs::Owner;
use crate::web::stack::USERS_DIR;

/// Top-level names of the source that are not copied: Debian's config loader
/// (berth writes its own `wp-config.php`) and its `.htaccess` link.
pub const SKIPPED: [&str; 2] = ["wp-config.php", ".htaccess"];
/// The first line of the `wp-config.php` berth writes, which says it is berth's.
const CONFIG_MARK: &str = "Written by berth for app";
/// The largest `version.php` read (WordPress's is about 1 KiB).
const MAX_VERSION_FILE: u64 = 64 << 10;

const CONFIG_TEMPLATE: &str = include_str!("../../templates/wordpress/wp-config.php");
const INSTALLER: &str = include_str!("../../templates/wordpress/install.php");
/// php-cli's whole program: the installer comes on stdin with its input.
const BOOTSTRAP: &str = "$in = json_decode(stream_get_contents(STDIN), true); eval($in['program']);";

/// The app's web root (`public_folder` below its directory: `public`, or the app's
/// own, validated), opened from `/srv/users` without following a link; `None` when
/// some directory on the way is missing.
fn web_root(root: &Path, sysuser: &str, app: &str, public_folder: &str) -> Result<Option<Dir>, TreeError> {
    let mut dir = Dir::open_trusted(&under_root(root, USERS_DIR))?;
    for name in [sysuser, "apps", app].into_iter().chain(public_folder.split('/')) {
        match dir.open_dir(name)? {
            Some(next) => dir = next,
            None => return Ok(None),
        }
    }
    Ok(Some(dir))
}

/// The WordPress version of app `app` of `sysuser` whose web root is
/// `public_folder` (`public` unless the app has its own), from `wp-includes/version.php`
/// (`$wp_version = '6.1.9';`): `None` when there is none, or when anything on the
/// way is not what WordPress has there (a link, a fifo, a file over 64 KiB, no such
/// line). The user controls the file: it is opened without following a link, read
/// up to its bound, and only that one assignment is parsed, never run.
pub fn wordpress_version(
    root: &Path,
    sysuser: &str,
    app: &str,
    public_folder: &str,
) -> Result<Option<String>, JobError> {
    let read = || -> Result<Option<Vec<u8>>, TreeError> {
        let Some(public) = web_root(root, sysuser, app, public_folder)? else { return Ok(None) };
        let Some(includes) = public.open_dir("wp-includes")? else { return Ok(None) };
        includes.read_file("version.php", MAX_VERSION_FILE)
    };
    match read() {
        Ok(content) => Ok(content.and_then(|c| parse_version(&String::from_utf8_lossy(&c)))),
        Err(TreeError::Planted { .. }) => Ok(None),
        Err(TreeError::Io { path, source }) if source.kind() == std::io::ErrorKind::Other => {
            tracing::debug!(path = %path.display(), "version.php not read: {source}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The value of the line `$wp_version = 'X.Y.Z';`: 1–32 of `[0-9A-Za-z.-]`.
fn parse_version(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("$wp_version")?.trim_start().strip_prefix('=')?.trim_start();
        let value = value.strip_prefix('\'')?.strip_suffix("';")?;
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        (!value.is_empty() && value.len() <= 32 && value.chars().all(ok)).then(|| value.to_owned())
    })
}

/// The top-level names of the source tree `source` (the operator's; read by
/// root), or `precondition_failed` when it is not a WordPress tree.
pub fn source_names(root: &Path, source: &Path) -> Result<Vec<String>, JobError> {
    let shown_source = source.display().to_string();
    let source = under_root(root, &shown_source);
    let missing = || {
        JobError::PreconditionFailed(format!(
            "no WordPress at {shown_source} (install Debian's wordpress package, or set wordpress_source to a \
             WordPress tree)"
        ))
    };
    if !source.join("wp-includes/version.php").is_file() || !source.join("wp-load.php").is_file() {
        return Err(missing());
    }
    let entries = std::fs::read_dir(&source).map_err(|_| missing())?;
    Ok(entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
}

/// What the web root holds before an install, checked: it may hold only names of
/// the WordPress tree (what an interrupted install left), none of them a link, its
/// `index.php` WordPress's and its `wp-config.php` berth's. Anything else is a
/// site berth would write over: `conflict`, naming it. Returns the names present.
pub fn check_web_root(
    root: &Path,
    (sysuser, app, public_folder): (&str, &str, &str),
    source: &[String],
) -> Result<Vec<String>, JobError> {
    let public = web_root(root, sysuser, app, public_folder)?.ok_or_else(|| {
        JobError::PreconditionFailed(format!("the web root of app {} is missing; run app.update", shown(app)))
    })?;
    let entries = public.entries_with_kinds()?;
    let conflict = |name: &str, why: &str| {
        JobError::Conflict(format!(
            "{}/{name} {why}; WordPress is installed into an empty web root only",
            public.path().display()
        ))
    };
    for (name, what) in &entries {
        if *what == crate::host::tree::SYMLINK {
            return Err(conflict(name, "is a symbolic link"));
        }
        if !source.contains(name) && name != "wp-config.php" && name != ".wp-config.php.berth" {
            return Err(conflict(name, "is not WordPress's"));
        }
    }
    let holds = |name: &str, mark: &str| -> Result<bool, JobError> {
        match public.read_file(name, MAX_VERSION_FILE) {
            Ok(None) => Ok(true),
            Ok(Some(text)) => Ok(String::from_utf8_lossy(&text).contains(mark)),
            // A link, a fifo, a file over the bound: not what berth or WordPress writes.
            Err(TreeError::Planted { .. }) => Ok(false),
            Err(TreeError::Io { source, .. }) if source.kind() == std::io::ErrorKind::Other => Ok(false),
            Err(e) => Err(e.into()),
        }
    };
    if !holds("index.php", "wp-blog-header.php")? {
        return Err(conflict("index.php", "is not WordPress's"));
    }
    if !holds("wp-config.php", CONFIG_MARK)? {
        return Err(conflict("wp-config.php", "was not written by berth"));
    }
    Ok(entries.into_iter().map(|(name, _)| name).collect())
}

/// Removes `names` from the web root (what a failed install added), each through
/// descriptors: a link is unlinked, never followed. True when anything went.
pub fn remove_files(
    root: &Path,
    (sysuser, app, public_folder): (&str, &str, &str),
    names: &[String],
) -> Result<bool, JobError> {
    let Some(public) = web_root(root, sysuser, app, public_folder)? else { return Ok(false) };
    let mut removed = false;
    for name in names.iter().map(String::as_str).chain(["wp-config.php", ".wp-config.php.berth"]) {
        removed |= public.remove_tree(name)?;
    }
    Ok(removed)
}

/// What goes into `wp-config.php`. Every value has passed its field rule or is
/// berth's own; each is still written as a PHP literal.
pub struct Config<'a> {
    pub app: &'a str,
    pub db_name: &'a str,
    pub db_user: &'a str,
    pub db_password: &'a Secret,
    pub db_host: &'a str,
    pub table_prefix: &'a str,
}

/// `wp-config.php` with fresh random salts.
pub fn render_config(config: &Config) -> Result<Secret, JobError> {
    const SALTS: [&str; 8] = [
        "AUTH_KEY",
        "SECURE_AUTH_KEY",
        "LOGGED_IN_KEY",
        "NONCE_KEY",
        "AUTH_SALT",
        "SECURE_AUTH_SALT",
        "LOGGED_IN_SALT",
        "NONCE_SALT",
    ];
    let mut context = tera::Context::new();
    context.insert("app", config.app);
    context.insert("db_name", &php_literal(config.db_name));
    context.insert("db_user", &php_literal(config.db_user));
    context.insert("db_password", &php_literal(config.db_password.expose()));
    context.insert("db_host", &php_literal(config.db_host));
    context.insert("table_prefix", &php_literal(config.table_prefix));
    let salts: Vec<(&str, String)> =
        SALTS.iter().map(|name| Ok((*name, php_literal(&random(64)?)))).collect::<Result<_, JobError>>()?;
    context.insert("salts", &salts);
    let text = tera::Tera::one_off(CONFIG_TEMPLATE, &context, false)
        .map_err(|e| JobError::Internal(format!("the wp-config.php template does not render: {e}")))?;
    Ok(Secret::new(text))
}

/// A single-quoted PHP string literal: `\` and `'` escaped, nothing else special.
pub fn php_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `len` random letters and digits from the system's CSPRNG.
pub fn random(len: usize) -> Result<String, JobError> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len * 2];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| JobError::Internal("the system's random generator failed".into()))?;
    // 248 is the largest multiple of 62 below 256: no letter is likelier than another.
    let text: String =
        bytes.iter().filter(|b| **b < 248).map(|b| ALPHABET[usize::from(*b % 62)] as char).take(len).collect();
    if text.len() < len {
        return random(len);
    }
    Ok(text)
}

/// What the installer is to do (all of it goes on its stdin).
pub struct Install<'a> {
    /// The WordPress tree and the app's web root, as the installer sees them.
    pub source: &'a Path,
    pub web_root: &'a Path,
    pub config: &'a Secret,
    pub host: &'a str,
    pub url: &'a str,
    pub title: &'a str,
    pub admin_user: &'a str,
    pub admin_password: &'a Secret,
    pub admin_email: &'a str,
}

/// What the installer reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// False when WordPress's tables were there already (an interrupted install).
    pub installed: bool,
    pub version: String,
}

/// Runs the installer with `php` (`/usr/bin/phpX.Y`) as `owner`. Its output is
/// WordPress's and the user's: `db_password` is removed from any error before it
/// leaves (the admin's password is among the job's own secrets, removed anyway).
pub fn run_installer(
    host: &dyn Host,
    php: &str,
    owner: Owner,
    install: &Install,
    db_password: &Secret,
) -> Result<Installed, JobError> {
    let input = json!({
        "program": INSTALLER,
        "source": install.source,
        "skip": SKIPPED,
        "target": install.web_root,
        "config": install.config.expose(),
        "host": install.host,
        "url": install.url,
        "title": install.title,
        "user": install.admin_user,
        "password": install.admin_password.expose(),
        "email": install.admin_email,
    });
    let cmd = Cmd::new("/usr/bin/setpriv")
        .args([format!("--reuid={}", owner.uid), format!("--regid={}", owner.gid)])
        .args(["--clear-groups", "--no-new-privs", "--", php, "-d", "memory_limit=256M", "-r", BOOTSTRAP])
        .stdin(Secret::new(input.to_string()));
    let redact = |text: &str| text.replace(db_password.expose(), "***");
    let printed = host.run(&cmd).map_err(|e| JobError::ToolFailed {
        command: "the WordPress installer".into(),
        stderr: redact(&e.to_string()),
    })?;
    let report = printed.lines().rev().find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok());
    match report {
        Some(report) if report["ok"] == true => Ok(Installed {
            installed: report["installed"] == true,
            version: report["version"].as_str().and_then(parse_version_value).unwrap_or_default(),
        }),
        _ => Err(JobError::ToolFailed {
            command: "the WordPress installer".into(),
            stderr: redact(&printed.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect::<String>()),
        }),
    }
}

fn parse_version_value(value: &str) -> Option<String> {
    parse_version(&format!("$wp_version = '{value}';"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `ROOT/srv/users/derek/apps/blog/public/wp-includes`, made as plain directories.
    fn site() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let includes = root.path().join("srv/users/derek/apps/blog/public/wp-includes");
        std::fs::create_dir_all(&includes).unwrap();
        (root, includes)
    }

    #[test]
    fn the_version_is_read_from_version_php_and_nothing_else() {
        let (root, includes) = site();
        let version = || wordpress_version(root.path(), "derek", "blog", "public").unwrap();
        assert_eq!(version(), None, "no version.php");
        std::fs::write(
            includes.join("version.php"),
            "<?php\n/**\n * @global string $wp_version\n */\n$wp_version = '6.1.9';\n$wp_db_version = 53496;\n",
        )
        .unwrap();
        assert_eq!(version().as_deref(), Some("6.1.9"));
        for hostile in [
            "<?php $wp_version = '6.1'; system('id');",
            "$wp_version = \"6.1\";",
            "$wp_version = '6.1' . phpversion();",
            "$wp_version = '6.1;\nrm -rf';",
            "$wp_version = '<script>';",
            "$wp_version = '';",
        ] {
            std::fs::write(includes.join("version.php"), hostile).unwrap();
            assert_eq!(version(), None, "{hostile}");
        }
        std::fs::write(includes.join("version.php"), format!("$wp_version = '{}';", "1".repeat(33))).unwrap();
        assert_eq!(version(), None, "too long a value");
        let big = format!("{}\n$wp_version = '6.1.9';\n", "/* padding */\n".repeat(6000));
        std::fs::write(includes.join("version.php"), big).unwrap();
        assert_eq!(version(), None, "over 64 KiB: not read");
    }

    #[test]
    fn a_link_planted_on_the_way_to_version_php_gives_no_version() {
        let (root, includes) = site();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("version.php"), "$wp_version = '9.9.9';").unwrap();
        let version = || wordpress_version(root.path(), "derek", "blog", "public").unwrap();

        symlink(outside.join("version.php"), includes.join("version.php")).unwrap();
        assert_eq!(version(), None, "version.php is a link");
        std::fs::remove_dir_all(&includes).unwrap();
        symlink(&outside, &includes).unwrap();
        assert_eq!(version(), None, "wp-includes is a link");
        let public = includes.parent().unwrap();
        std::fs::remove_file(&includes).unwrap();
        std::fs::remove_dir(public).unwrap();
        symlink(&outside, public).unwrap();
        assert_eq!(version(), None, "public is a link");
        std::fs::remove_file(public).unwrap();
        std::fs::create_dir_all(&includes).unwrap();
        nix::unistd::mkfifo(&includes.join("version.php"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(version(), None, "a fifo is not opened for reading");
        assert_eq!(wordpress_version(root.path(), "nobody", "blog", "public").unwrap(), None, "no such user");
        let web = root.path().join("srv/users/derek/apps/blog/public/web/wp-includes");
        std::fs::create_dir_all(&web).unwrap();
        std::fs::write(web.join("version.php"), "$wp_version = '6.1.9';").unwrap();
        let in_folder = wordpress_version(root.path(), "derek", "blog", "public/web").unwrap();
        assert_eq!(in_folder.as_deref(), Some("6.1.9"), "a public folder of the app's own");
    }

    #[test]
    fn php_literals_keep_hostile_values_inside_their_quotes() {
        assert_eq!(php_literal("wp_"), "'wp_'");
        assert_eq!(php_literal("it's"), r"'it\'s'");
        assert_eq!(php_literal(r"a\'; system('id'); //"), r"'a\\\'; system(\'id\'); //'");
    }

    #[test]
    fn the_config_has_fresh_salts_and_each_value_as_a_literal() {
        let password = Secret::new(random(32).unwrap());
        let config = Config {
            app: "blog",
            db_name: "blog-wp",
            db_user: "wp_blog",
            db_password: &password,
            db_host: "localhost:/run/mysqld/mysqld.sock",
            table_prefix: "blog_",
        };
        let (one, two) = (render_config(&config).unwrap(), render_config(&config).unwrap());
        let one = one.expose();
        assert!(one.starts_with("<?php\n/*\n * Written by berth for app blog."), "{one}");
        assert!(one.contains("define( 'DB_NAME', 'blog-wp' );"));
        assert!(one.contains(&format!("define( 'DB_PASSWORD', '{}' );", password.expose())));
        assert!(one.contains("define( 'DB_HOST', 'localhost:/run/mysqld/mysqld.sock' );"));
        assert!(one.contains("$table_prefix = 'blog_';"));
        assert_eq!(one.matches("_KEY', '").count() + one.matches("_SALT', '").count(), 8);
        assert_ne!(one, two.expose(), "the salts are drawn anew");
        assert!(random(64).unwrap().bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}

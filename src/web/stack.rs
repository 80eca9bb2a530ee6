//! The web stack's files: where berth puts each config on a Debian or Ubuntu host,
//! which service reads it, and what goes in it.
//!
//! Plain data in, [`FileChange`]s out: the app jobs hand them to the transaction.
//! The base files move the distribution's defaults out of the way (nginx's and
//! Apache's default sites), put Apache on a loopback port behind nginx, and add
//! the nginx catch-all with berth's include directory; each app adds its nginx
//! vhost, its Apache vhost (stack `nginx-apache`) and its PHP-FPM pool.

use std::path::{Path, PathBuf};

use tera::Context;

use crate::host::fs::under_root;
use crate::host::services::Service;
use crate::host::transaction::FileChange;
use crate::job::JobError;
use crate::model::site::{BasicAuth, Protections};
use crate::model::{AppName, Domain};
use crate::state::inventory::{App, Inventory};
use crate::web::templates::{TemplateError, Templates};

use crate::model::Secret;
pub use crate::model::Stack;

/// The user the web servers run as (Debian, Ubuntu).
pub const WEB_USER: &str = "www-data";
/// Apache's loopback port behind nginx: a privileged one, so no user can take it
/// while Apache restarts (nginx would then hand that user every request, key and
/// cookies included).
pub const APACHE_PORT: u16 = 81;
const HTTP_LISTEN: &str = "80";
const HTTP_LISTEN_V6: &str = "[::]:80";
const HTTPS_LISTEN: &str = "443";
const HTTPS_LISTEN_V6: &str = "[::]:443";
/// TLS settings shared by every HTTPS app, included by their server blocks (the
/// http level is nginx.conf's, whose own `ssl_protocols` would clash).
const NGINX_TLS: &str = "/etc/nginx/snippets/berth-tls.conf";
/// Certificates and keys, one root-owned directory per app.
pub const SSL_DIR: &str = "/etc/berth/ssl";
const NGINX_BASE: &str = "/etc/nginx/conf.d/berth.conf";
/// When a request bypasses the apps' page caches, and what `X-Cache` says (http level).
const NGINX_PAGE_CACHE: &str = "/etc/nginx/conf.d/berth-page-cache.conf";
const NGINX_VHOSTS: &str = "/etc/nginx/berth.d";
const NGINX_DEFAULT_SITE: &str = "/etc/nginx/sites-enabled/default";
/// Debian's nginx.conf includes this directory at the main level: the one place
/// `worker_rlimit_nofile` can go without replacing nginx.conf.
const NGINX_LIMITS: &str = "/etc/nginx/modules-enabled/berth-limits.conf";
/// Open files for the web servers: per-app log files at thousands of apps.
pub const OPEN_FILES: u64 = 65536;
const APACHE_PORTS: &str = "/etc/apache2/ports.conf";
const APACHE_BASE: &str = "/etc/apache2/conf-enabled/berth.conf";
const APACHE_DEFAULT_SITE: &str = "/etc/apache2/sites-enabled/000-default.conf";
const APACHE_MODS_ENABLED: &str = "/etc/apache2/mods-enabled";
const APACHE_CONF_ENABLED: &str = "/etc/apache2/conf-enabled";
/// How nginx passes a request to Apache, with the key Apache checks (root's alone).
const NGINX_APACHE_PROXY: &str = "/etc/nginx/snippets/berth-apache-proxy.conf";
/// The key nginx proves itself to Apache with: made once, root's alone.
const PROXY_KEY: &str = "/etc/berth/web-proxy.key";
/// The users' homes.
pub const USERS_DIR: &str = "/srv/users";
/// The apps' logs, in root-owned directories outside the users' homes: root
/// processes (nginx's and Apache's masters) open them, so no user may change
/// what these paths name. A user reads their own through the group.
pub const LOG_BASE: &str = "/var/log/berth";

/// One app as the stack sees it (every field already validated).
#[derive(Debug, Clone, PartialEq)]
pub struct AppSite<'a> {
    pub name: &'a str,
    pub sysuser: &'a str,
    /// `X.Y` of the PHP runtime.
    pub php: &'a str,
    pub domains: &'a [Domain],
    pub stack: Stack,
    /// The app serves HTTPS with its certificate in [`SSL_DIR`].
    pub ssl: bool,
    /// ForceSSL: plain HTTP redirects to HTTPS.
    pub force_ssl: bool,
    /// The page cache, when on ([`crate::web::cache`]).
    pub page_cache: Option<&'a crate::model::PageCache>,
    /// The web root below the app's directory.
    pub public_folder: &'a str,
    /// Names that only redirect to the app's first domain.
    pub redirect_domains: &'a [Domain],
    /// The WordPress doors shut.
    pub protections: Protections,
    /// Basic auth in front of the app.
    pub basic_auth: Option<&'a BasicAuth>,
    /// Git deploys: served from the `current` release ([`crate::web::deploy`]).
    pub deployed: bool,
}

impl<'a> AppSite<'a> {
    /// The app `name` as the inventory records it; `php` is its runtime's `X.Y`.
    pub fn of(name: &'a str, app: &'a crate::state::inventory::App, php: &'a str) -> Self {
        AppSite {
            name,
            sysuser: &app.sysuser,
            php,
            domains: &app.domains,
            stack: app.stack,
            ssl: app.ssl.is_some(),
            force_ssl: app.ssl.as_ref().is_some_and(|s| s.force),
            page_cache: app.page_cache.as_ref(),
            public_folder: crate::model::site::public_folder_or_default(app.public_folder.as_ref()),
            redirect_domains: &app.redirect_domains,
            protections: app.nginx,
            basic_auth: app.basic_auth.as_ref(),
            deployed: app.git.as_ref().is_some_and(|git| git.current.is_some()),
        }
    }
}

pub fn app_dir(sysuser: &str, app: &str) -> String {
    format!("{USERS_DIR}/{sysuser}/apps/{app}")
}

/// The app's web root: its public folder (validated: relative, no `..`) below its directory.
pub fn web_root(sysuser: &str, app: &str, public_folder: &str) -> String {
    format!("{}/{public_folder}", app_dir(sysuser, app))
}

/// The names an app's certificate is for: its server names, then its redirect domains.
pub fn certificate_names(app: &App) -> Vec<String> {
    let mut names = server_names(&app.domains);
    names.extend(app.redirect_domains.iter().map(|d| d.to_string()).filter(|d| !names.contains(d)).collect::<Vec<_>>());
    names
}

/// Where a redirect domain sends its requests: the app's first domain that is not a
/// wildcard (`None` when all are).
pub fn redirect_target(domains: &[Domain]) -> Option<&str> {
    domains.iter().map(|d| d.as_str()).find(|d| !d.starts_with("*."))
}

/// The user's logs: `root:USER` 0750, holding a directory per app.
pub fn user_log_dir(sysuser: &str) -> String {
    format!("{LOG_BASE}/{sysuser}")
}

pub fn log_dir(sysuser: &str, app: &str) -> String {
    format!("{}/{app}", user_log_dir(sysuser))
}

/// The app's own temp, upload and session directory (the user's, 0700), inside
/// its `open_basedir`: nothing of an app is in the shared `/tmp`.
pub fn tmp_dir(sysuser: &str, app: &str) -> String {
    format!("{USERS_DIR}/{sysuser}/tmp/{app}")
}

/// The app's certificate directory (root's alone, 0700).
pub fn ssl_dir(app: &str) -> String {
    format!("{SSL_DIR}/{app}")
}

/// The app's certificate followed by its CA chain.
pub fn ssl_cert(app: &str) -> String {
    format!("{}/fullchain.pem", ssl_dir(app))
}

pub fn ssl_key(app: &str) -> String {
    format!("{}/key.pem", ssl_dir(app))
}

/// The pool's socket, named for its runtime too: when an app moves to another
/// runtime, the old master may still hold the old socket while the new one binds
/// its own (one path for both raced, and the new pool could fail to listen).
pub fn php_socket(app: &str, php: &str) -> String {
    format!("/run/php/berth-{app}-{php}.sock")
}

/// The names the web servers answer for `domains`: each, and its `www.` twin.
pub fn server_names(domains: &[impl AsRef<str>]) -> Vec<String> {
    let mut names = Vec::new();
    for domain in domains.iter().map(AsRef::as_ref) {
        for name in [Some(domain.to_owned()), twin(domain)].into_iter().flatten() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

fn twin(domain: &str) -> Option<String> {
    (!domain.starts_with("*.") && !domain.starts_with("www.")).then(|| format!("www.{domain}"))
}

/// What the configuration depends on: found on the host once per job
/// ([`Facts::detect`]), then settled for the inventory being rendered
/// ([`Facts::settled`]). Rendering from it does no I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub apache: bool,
    /// systemd runs the services: limits go in unit drop-ins.
    pub systemd: bool,
    /// The kernel has IPv6: nginx also listens on `[::]` (it would not start otherwise).
    pub ipv6: bool,
    /// Installed PHP-FPM versions, `X.Y`.
    pub runtimes: Vec<String>,
    /// The key nginx proves itself to Apache with ([`PROXY_KEY`]), when Apache is installed.
    pub proxy_key: Option<Secret>,
    /// Entries of Apache's enabled modules and confs that open a way out of an app
    /// (see [`apache_doors`]): each is removed.
    pub apache_doors: Vec<PathBuf>,
    /// Setting `deny_unknown_domains`: unknown Hosts are closed without a response.
    pub deny_unknown_domains: bool,
    /// The app whose vhost is nginx's default server (unknown Hosts go to it); `None`
    /// leaves that to the catch-all.
    pub default_app: Option<AppName>,
    /// The default app serves HTTPS: it, not the catch-all, answers unknown names on 443.
    pub default_app_ssl: bool,
}

impl Facts {
    /// The host's facts. The settings' part is that of an empty inventory until
    /// [`Facts::settled`]. The web proxy key is made here the first time.
    pub fn detect(root: &Path, services: &crate::host::services::Services) -> Result<Facts, JobError> {
        let apache = apache_installed(root);
        Ok(Facts {
            apache,
            systemd: services.systemd(),
            ipv6: Path::new("/proc/net/if_inet6").exists(),
            runtimes: crate::host::probe::runtimes(root)
                .into_iter()
                .map(|r| r.trim_start_matches("php").to_owned())
                .collect(),
            proxy_key: if apache { Some(proxy_key(root)?) } else { None },
            apache_doors: if apache { apache_doors(root) } else { Vec::new() },
            deny_unknown_domains: true,
            default_app: None,
            default_app_ssl: false,
        })
    }

    /// These facts with the settings of `inventory` (the inventory as it will be once
    /// the job is done, so the default app is the right one).
    pub fn settled(&self, inventory: &Inventory) -> Facts {
        let default_app = default_app(inventory);
        Facts {
            default_app_ssl: default_app
                .as_ref()
                .and_then(|name| inventory.apps.get(name))
                .is_some_and(|app| app.ssl.is_some()),
            deny_unknown_domains: inventory.settings.deny_unknown_domains,
            default_app,
            ..self.clone()
        }
    }

    fn listen_v6(&self) -> &'static str {
        if self.ipv6 {
            HTTP_LISTEN_V6
        } else {
            ""
        }
    }

    fn https_listen_v6(&self) -> &'static str {
        if self.ipv6 {
            HTTPS_LISTEN_V6
        } else {
            ""
        }
    }
}

/// The app that answers unknown Hosts: none while `deny_unknown_domains` is on;
/// otherwise the one the operator named (while it exists), else the first created.
pub fn default_app(inventory: &Inventory) -> Option<AppName> {
    if inventory.settings.deny_unknown_domains {
        return None;
    }
    let named = inventory.settings.default_app.as_ref().filter(|name| inventory.apps.contains_key(*name));
    named.cloned().or_else(|| {
        inventory.apps.iter().min_by_key(|(name, app)| (app.created_ms, *name)).map(|(name, _)| name.clone())
    })
}

/// An inventory app's files, or `None` when its runtime is no longer installed.
fn inventory_app_changes(
    templates: &Templates,
    root: &Path,
    name: &str,
    app: &App,
    host: &Facts,
) -> Result<Option<Vec<FileChange>>, JobError> {
    let php = app.runtime.trim_start_matches("php");
    if !host.runtimes.iter().any(|r| r == php) {
        return Ok(None);
    }
    app_changes(templates, root, &AppSite::of(name, app, php), host).map(Some)
}

/// Which apps a render covers; the base files are always in it.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every app of the inventory (`berth reconcile`, a settings change).
    Every,
    /// These apps, where the inventory holds them (the others are gone or untouched).
    Apps(&'a [AppName]),
}

/// The one walk from state to files: the base files, then the files of each app of
/// `scope` as `inventory` holds it, for `host` settled on that inventory. Also the
/// apps left out because their runtime is not installed.
pub fn changes(
    templates: &Templates,
    root: &Path,
    inventory: &Inventory,
    host: &Facts,
    scope: Scope,
) -> Result<(Vec<FileChange>, Vec<AppName>), JobError> {
    let mut changes = base_changes(templates, root, host)?;
    let mut skipped = Vec::new();
    let apps: Box<dyn Iterator<Item = (&AppName, &App)>> = match scope {
        Scope::Every => Box::new(inventory.apps.iter()),
        Scope::Apps(names) => Box::new(names.iter().filter_map(|name| inventory.apps.get_key_value(name))),
    };
    for (name, app) in apps {
        match inventory_app_changes(templates, root, name, app, host)? {
            Some(app_changes) => changes.extend(app_changes),
            None => skipped.push(name.clone()),
        }
    }
    Ok((changes, skipped))
}

/// The files every app needs once per host.
pub fn base_changes(templates: &Templates, root: &Path, host: &Facts) -> Result<Vec<FileChange>, JobError> {
    let apache = host.apache;
    let mut context = Context::new();
    context.insert("http_listen", HTTP_LISTEN);
    context.insert("http_listen_v6", host.listen_v6());
    context.insert("https_listen", HTTPS_LISTEN);
    context.insert("https_listen_v6", host.https_listen_v6());
    context.insert("deny_unknown_domains", &host.deny_unknown_domains);
    // The catch-all is nginx's default server unless an app is (on 443: an app with SSL).
    context.insert("default_server", &host.default_app.is_none());
    context.insert("https_default_server", &!host.default_app_ssl);
    context.insert("vhost_dir", &under_root(root, NGINX_VHOSTS));
    context.insert("apache_port", &APACHE_PORT);
    context.insert("open_files", &OPEN_FILES);
    if let Some(key) = &host.proxy_key {
        context.insert("proxy_key", key.expose());
        context.insert("users_dir", &under_root(root, USERS_DIR));
    }
    let mut changes = vec![
        write(root, NGINX_BASE, render(templates, "nginx-catchall.conf", &context)?, Service::Nginx),
        write(root, NGINX_LIMITS, render(templates, "nginx-limits.conf", &context)?, Service::Nginx),
        write(root, NGINX_TLS, render(templates, "nginx-tls.conf", &context)?, Service::Nginx),
        write(root, NGINX_PAGE_CACHE, render(templates, "nginx-page-cache.conf", &context)?, Service::Nginx),
        FileChange::remove(under_root(root, NGINX_DEFAULT_SITE), Service::Nginx),
    ];
    if apache {
        changes.push(write(root, APACHE_PORTS, render(templates, "apache-ports.conf", &context)?, Service::Apache));
        let secret = |path, template| -> Result<FileChange, JobError> {
            Ok(FileChange::write(
                under_root(root, path),
                render(templates, template, &context)?,
                0o600,
                Service::Apache,
            ))
        };
        changes.push(secret(APACHE_BASE, "apache-base.conf")?);
        changes.push(FileChange { service: Service::Nginx, ..secret(NGINX_APACHE_PROXY, "nginx-apache-proxy.conf")? });
        changes.push(FileChange::remove(under_root(root, APACHE_DEFAULT_SITE), Service::Apache));
        changes.extend(host.apache_doors.iter().map(|door| FileChange::remove(door.clone(), Service::Apache)));
    }
    if host.systemd {
        let mut services = vec![Service::Nginx];
        services.extend(apache.then_some(Service::Apache));
        services.extend(host.runtimes.iter().map(|v| Service::PhpFpm(v.clone())));
        for service in services {
            // Debian's apache2.service starts Apache through apache2ctl, which sets
            // its own `ulimit -n 8192` unless told otherwise (seen under systemd).
            context.insert("apachectl", &(service == Service::Apache));
            let limits = render(templates, "systemd-limits.conf", &context)?;
            let drop_in =
                under_root(root, &format!("/etc/systemd/system/{}.service.d/berth-limits.conf", service.unit()));
            changes.push(FileChange::unit_drop_in(drop_in, limits, service));
        }
    }
    Ok(changes)
}

/// An app's files: the pool stands in the app's runtime, and is absent from every
/// other installed one.
pub fn app_changes(
    templates: &Templates,
    root: &Path,
    site: &AppSite,
    host: &Facts,
) -> Result<Vec<FileChange>, JobError> {
    let (runtimes, apache) = (&host.runtimes, host.apache);
    let mut context = Context::new();
    context.insert("http_listen_v6", host.listen_v6());
    context.insert("app", site.name);
    context.insert("default_server", &(host.default_app.as_deref() == Some(site.name)));
    context.insert("user", site.sysuser);
    context.insert("web_user", WEB_USER);
    context.insert("stack", site.stack.as_str());
    context.insert("http_listen", HTTP_LISTEN);
    context.insert("server_names", &server_names(site.domains));
    context.insert("app_dir", &under_root(root, &app_dir(site.sysuser, site.name)));
    let served = if site.deployed { format!("current/{}", site.public_folder) } else { site.public_folder.to_owned() };
    context.insert("web_root", &under_root(root, &web_root(site.sysuser, site.name, &served)));
    context.insert("realpath_root", &site.deployed);
    let redirects: Vec<&str> = site.redirect_domains.iter().map(|d| d.as_str()).collect();
    context.insert("redirect_names", &redirects);
    context.insert("redirect_target", redirect_target(site.domains).unwrap_or_default());
    context.insert("redirect_scheme", if site.ssl { "https" } else { "$scheme" });
    context.insert("uploads_protected", &site.protections.uploads_directory_protected);
    context.insert("xmlrpc_protected", &site.protections.xmlrpc_protected);
    let htpasswd = under_root(root, &crate::web::basicauth::file(site.name));
    context.insert("htpasswd", &if site.basic_auth.is_some() { htpasswd.display().to_string() } else { String::new() });
    context.insert("log_dir", &under_root(root, &log_dir(site.sysuser, site.name)));
    context.insert("tmp_dir", &under_root(root, &tmp_dir(site.sysuser, site.name)));
    context.insert("apache_proxy_snippet", &under_root(root, NGINX_APACHE_PROXY));
    context.insert("php_socket", &under_root(root, &php_socket(site.name, site.php)));
    context.insert("apache_port", &APACHE_PORT);
    context.insert("apache_host_pattern", &host_pattern(&server_names(site.domains)));
    context.insert("challenge_dir", &under_root(root, crate::web::acme::CHALLENGE_DIR));
    context.insert("https_listen", HTTPS_LISTEN);
    context.insert("https_listen_v6", host.https_listen_v6());
    let path = |p: String| if site.ssl { under_root(root, &p).display().to_string() } else { String::new() };
    context.insert("ssl_certificate", &path(ssl_cert(site.name)));
    context.insert("ssl_certificate_key", &path(ssl_key(site.name)));
    context.insert("tls_snippet", &under_root(root, NGINX_TLS));
    context.insert("force_ssl", &(site.ssl && site.force_ssl));
    context.insert("page_cache", &site.page_cache.map(|cache| crate::web::cache::context(root, site.name, cache)));
    // The password file stands before the vhost that names it, and goes after it.
    let mut changes =
        vec![write(root, &nginx_vhost(site.name), render(templates, "nginx-vhost.conf", &context)?, Service::Nginx)];
    let htpasswd = crate::web::basicauth::change(root, site.name, site.basic_auth);
    match htpasswd.content {
        Some(_) => changes.insert(0, htpasswd),
        None => changes.push(htpasswd),
    }
    if apache {
        let vhost = under_root(root, &apache_vhost(site.name));
        changes.push(match site.stack {
            Stack::NginxApache => {
                FileChange::write(vhost, render(templates, "apache-vhost.conf", &context)?, 0o644, Service::Apache)
            }
            Stack::Nginx => FileChange::remove(vhost, Service::Apache),
        });
    }
    for version in runtimes {
        let pool = under_root(root, &php_pool(version, site.name));
        let service = Service::PhpFpm(version.clone());
        changes.push(if version == site.php {
            FileChange::write(pool, render(templates, "php-fpm-pool.conf", &context)?, 0o644, service)
        } else {
            FileChange::remove(pool, service)
        });
    }
    Ok(changes)
}

/// An app's certificate files: written (`Some((chain, key))`, the key 0600) or removed.
pub fn ssl_changes(root: &Path, app: &str, files: Option<(&str, &str)>) -> Vec<FileChange> {
    let (cert, key) = (under_root(root, &ssl_cert(app)), under_root(root, &ssl_key(app)));
    match files {
        Some((chain, secret)) => vec![
            FileChange::write(cert, chain, 0o644, Service::Nginx),
            FileChange::write(key, secret, 0o600, Service::Nginx),
        ],
        None => vec![FileChange::remove(cert, Service::Nginx), FileChange::remove(key, Service::Nginx)],
    }
}

/// Every file of an app, to be removed.
pub fn app_removal(root: &Path, app: &str, runtimes: &[String], apache: bool) -> Vec<FileChange> {
    let mut changes = vec![FileChange::remove(under_root(root, &nginx_vhost(app)), Service::Nginx)];
    changes.push(crate::web::basicauth::change(root, app, None));
    changes.extend(ssl_changes(root, app, None));
    if apache {
        changes.push(FileChange::remove(under_root(root, &apache_vhost(app)), Service::Apache));
    }
    for version in runtimes {
        changes.push(FileChange::remove(under_root(root, &php_pool(version, app)), Service::PhpFpm(version.clone())));
    }
    changes
}

/// A regex (for nginx's `~*`) that matches exactly the names of `names`, as nginx's
/// `server_name` does: `*.example.org` stands for any name below `example.org`.
/// Names are validated (letters, digits, `-`, `.`, a leading `*.`): only the dots need
/// escaping.
fn host_pattern(names: &[String]) -> String {
    let alternatives: Vec<String> = names
        .iter()
        .map(|name| match name.strip_prefix("*.") {
            Some(base) => format!(".+\\.{}", base.replace('.', "\\.")),
            None => name.replace('.', "\\."),
        })
        .collect();
    format!("^({})$", alternatives.join("|"))
}

/// What Debian enables that would give a user's `.htaccess` a way out of its app:
/// the proxy modules (with them, `RewriteRule [P]`/`[H]` or `SetHandler` reach any
/// PHP-FPM pool, and no `<Proxy>` rule stops that), PHP-FPM's global handler (it
/// sends `.phtml` and `.phar` to the distribution's pool, which runs as the web
/// server), mod_php, CGI, and `server-status`/`server-info` (every vhost's requests,
/// the whole config). All are removed from Apache's enabled set; berth's base config
/// refuses to run with the dangerous ones loaded at all.
fn apache_doors(root: &Path) -> Vec<PathBuf> {
    let listed = |dir: &str, door: fn(&str) -> bool| -> Vec<PathBuf> {
        let dir = under_root(root, dir);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| door(n)).collect())
            .unwrap_or_default();
        names.sort();
        names.into_iter().map(|name| dir.join(name)).collect()
    };
    let mut changes = listed(APACHE_MODS_ENABLED, |name| {
        let module = name.trim_end_matches(".load").trim_end_matches(".conf");
        (name.ends_with(".load") || name.ends_with(".conf"))
            && (module.starts_with("proxy")
                || module.starts_with("php")
                || ["cgi", "cgid", "status", "info", "lua"].contains(&module))
    });
    changes.extend(listed(APACHE_CONF_ENABLED, |name| name.starts_with("php") && name.ends_with("-fpm.conf")));
    changes
}

/// The key nginx sends Apache with every request (Apache refuses requests without
/// it, so a user on the server cannot talk to Apache directly): read from
/// [`PROXY_KEY`], made there (random, 0600) the first time.
fn proxy_key(root: &Path) -> Result<Secret, JobError> {
    let path = under_root(root, PROXY_KEY);
    let io = |e: std::io::Error| JobError::Internal(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(key) if key.trim().len() >= 32 && key.trim().bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return Ok(Secret::new(key.trim()))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| JobError::Internal("no randomness for the web proxy key".into()))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::host::fs::write_atomic(&path, key.as_bytes(), 0o600).map_err(io)?;
    Ok(Secret::new(key))
}

/// Whether Apache is installed under `root`.
pub fn apache_installed(root: &Path) -> bool {
    under_root(root, "/usr/sbin/apache2").exists()
}

fn nginx_vhost(app: &str) -> String {
    format!("{NGINX_VHOSTS}/{app}.conf")
}

fn apache_vhost(app: &str) -> String {
    format!("/etc/apache2/sites-enabled/berth-{app}.conf")
}

fn php_pool(version: &str, app: &str) -> String {
    format!("/etc/php/{version}/fpm/pool.d/berth-{app}.conf")
}

fn write(root: &Path, host_path: &str, content: String, service: Service) -> FileChange {
    FileChange::write(under_root(root, host_path), content, 0o644, service)
}

fn render(templates: &Templates, name: &str, context: &Context) -> Result<String, JobError> {
    templates.render(name, context).map_err(template_error)
}

/// A template that does not parse or render is a config the servers would refuse.
pub fn template_error(e: TemplateError) -> JobError {
    JobError::ConfigInvalid { tool: "berth templates".into(), path: String::new(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_systemd_every_service_gets_a_limits_drop_in() {
        let templates = Templates::load(Path::new("/nonexistent-root")).unwrap();
        let host = Facts {
            apache: true,
            systemd: true,
            ipv6: false,
            runtimes: vec!["8.2".into()],
            proxy_key: Some(Secret::new("k".repeat(48))),
            apache_doors: vec![],
            deny_unknown_domains: true,
            default_app: None,
            default_app_ssl: false,
        };
        let changes = base_changes(&templates, Path::new("/"), &host).unwrap();
        let drop_ins: Vec<_> = changes.iter().filter(|c| c.restart).map(|c| c.path.display().to_string()).collect();
        assert_eq!(
            drop_ins,
            [
                "/etc/systemd/system/nginx.service.d/berth-limits.conf",
                "/etc/systemd/system/apache2.service.d/berth-limits.conf",
                "/etc/systemd/system/php8.2-fpm.service.d/berth-limits.conf"
            ]
        );
        let without = Facts { systemd: false, ..host };
        assert!(!base_changes(&templates, Path::new("/"), &without).unwrap().iter().any(|c| c.restart));
    }

    #[test]
    fn every_domain_is_answered_with_its_www_twin_once() {
        let domains = ["example.com".to_string(), "www.example.com".into(), "*.shop.example.org".into()];
        assert_eq!(server_names(&domains), ["example.com", "www.example.com", "*.shop.example.org"]);
        assert_eq!(server_names(&["a.test"]), ["a.test", "www.a.test"]);
    }

    #[test]
    fn an_app_has_one_pool_for_its_runtime_and_none_elsewhere() {
        let templates = Templates::load(Path::new("/nonexistent-root")).unwrap();
        let domains = [Domain::try_from("a.test").unwrap()];
        let site = AppSite {
            name: "gallery",
            sysuser: "derek",
            php: "8.3",
            domains: &domains,
            stack: Stack::Nginx,
            ssl: false,
            force_ssl: false,
            page_cache: None,
            public_folder: "public",
            redirect_domains: &[],
            protections: Protections::default(),
            basic_auth: None,
            deployed: false,
        };
        let host = Facts {
            apache: true,
            systemd: false,
            ipv6: true,
            runtimes: vec!["8.2".into(), "8.3".into()],
            proxy_key: Some(Secret::new("k".repeat(48))),
            apache_doors: vec![],
            deny_unknown_domains: true,
            default_app: None,
            default_app_ssl: false,
        };
        let changes = app_changes(&templates, Path::new("/"), &site, &host).unwrap();
        let pools: Vec<_> = changes.iter().filter(|c| matches!(c.service, Service::PhpFpm(_))).collect();
        assert_eq!(pools.len(), 2);
        assert!(pools
            .iter()
            .any(|c| c.path == Path::new("/etc/php/8.3/fpm/pool.d/berth-gallery.conf") && c.content.is_some()));
        assert!(pools
            .iter()
            .any(|c| c.path == Path::new("/etc/php/8.2/fpm/pool.d/berth-gallery.conf") && c.content.is_none()));
        let apache = changes.iter().find(|c| c.service == Service::Apache).unwrap();
        assert!(apache.content.is_none(), "stack nginx has no Apache vhost");
    }

    #[test]
    fn the_default_app_is_the_named_one_or_the_first_created_and_none_while_denying() {
        let app = |created_ms| App::fixture(&[], created_ms);
        let mut inventory = Inventory::default();
        inventory.apps.insert("older".try_into().unwrap(), app(1));
        inventory.apps.insert("newer".try_into().unwrap(), app(2));
        assert_eq!(default_app(&inventory), None, "deny_unknown_domains is on by default");
        inventory.settings.deny_unknown_domains = false;
        assert_eq!(default_app(&inventory).as_deref(), Some("older"));
        inventory.settings.default_app = Some("newer".try_into().unwrap());
        assert_eq!(default_app(&inventory).as_deref(), Some("newer"));
        inventory.apps.remove("newer");
        assert_eq!(default_app(&inventory).as_deref(), Some("older"), "a named app that is gone falls back");
    }
}

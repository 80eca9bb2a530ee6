//! The tera templates berth renders host config from: nginx and Apache vhosts, the
//! PHP-FPM pool, the nginx catch-all, Apache's loopback port and modules, berth's
//! nftables table.
//!
//! The templates of `templates/` are compiled into the binary; a file of the same
//! name under `<root>/etc/berth/templates/` overrides one (and `berth reconcile`
//! carries an edit to every managed file). A template that uses a variable the
//! context lacks fails to render instead of printing nothing, and every value
//! that reaches a template has passed `validate`, so none can add a directive.
//!
//! Compiling them costs more than rendering an app's files, so a process compiles
//! them once ([`Templates::shared`]) and again only when an override file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tera::{Context, Tera};

/// Where overrides live, under root.
pub const OVERRIDE_DIR: &str = "/etc/berth/templates";

const BUILTIN: &[(&str, &str)] = &[
    ("nginx-vhost.conf", include_str!("../../templates/nginx-vhost.conf")),
    ("nginx-catchall.conf", include_str!("../../templates/nginx-catchall.conf")),
    ("nginx-page-cache.conf", include_str!("../../templates/nginx-page-cache.conf")),
    ("php-fpm-pool.conf", include_str!("../../templates/php-fpm-pool.conf")),
    ("apache-vhost.conf", include_str!("../../templates/apache-vhost.conf")),
    ("apache-ports.conf", include_str!("../../templates/apache-ports.conf")),
    ("apache-base.conf", include_str!("../../templates/apache-base.conf")),
    ("nginx-limits.conf", include_str!("../../templates/nginx-limits.conf")),
    ("nginx-tls.conf", include_str!("../../templates/nginx-tls.conf")),
    ("nginx-apache-proxy.conf", include_str!("../../templates/nginx-apache-proxy.conf")),
    ("systemd-limits.conf", include_str!("../../templates/systemd-limits.conf")),
    ("nftables.conf", include_str!("../../templates/nftables.conf")),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name} ({origin}) does not parse: {message}")]
    Parse { name: String, origin: String, message: String },
    #[error("cannot read template override {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template {name} does not render: {message}")]
    Render { name: String, message: String },
}

pub struct Templates {
    tera: Tera,
}

/// The override files' contents when the templates were compiled (`None`: absent).
/// Overrides are few and small, and usually absent: reading them is cheap, compiling
/// is not.
type Stamp = Vec<Option<Vec<u8>>>;

/// Compiled templates by root, with the overrides they were compiled from.
type Cache = HashMap<PathBuf, (Stamp, Arc<Templates>)>;

/// The overrides' stamp; `None` when one exists but cannot be read (then
/// [`Templates::load`] reports it, and nothing is cached).
fn stamp(root: &Path) -> Option<Stamp> {
    let dir = crate::host::fs::under_root(root, OVERRIDE_DIR);
    BUILTIN
        .iter()
        .map(|(name, _)| match std::fs::read(dir.join(name)) {
            Ok(text) => Some(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(None),
            Err(_) => None,
        })
        .collect()
}

impl Templates {
    /// The templates for `root`, compiled once per process and again only when an
    /// override under `root` changed (a read of each override, not a compile, per call).
    pub fn shared(root: &Path) -> Result<Arc<Templates>, TemplateError> {
        static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
        let Some(now) = stamp(root) else {
            return Templates::load(root).map(Arc::new);
        };
        let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cache = cache.get_or_insert_with(HashMap::new);
        if let Some((_, templates)) = cache.get(root).filter(|(held, _)| *held == now) {
            return Ok(templates.clone());
        }
        let templates = Arc::new(Templates::load(root)?);
        cache.insert(root.to_owned(), (now, templates.clone()));
        Ok(templates)
    }

    /// The built-in templates, each replaced by its override under `root` if there is one.
    pub fn load(root: &Path) -> Result<Templates, TemplateError> {
        let mut tera = Tera::default();
        tera.autoescape_on(Vec::new());
        let override_dir = crate::host::fs::under_root(root, OVERRIDE_DIR);
        for (name, builtin) in BUILTIN {
            let path = override_dir.join(name);
            let (text, origin) = match std::fs::read_to_string(&path) {
                Ok(text) => (text, path.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (builtin.to_string(), "built in".to_string()),
                Err(source) => return Err(TemplateError::Read { path, source }),
            };
            tera.add_raw_template(name, &text).map_err(|e| TemplateError::Parse {
                name: name.to_string(),
                origin,
                message: chain(&e),
            })?;
        }
        Ok(Templates { tera })
    }

    pub fn render(&self, name: &str, context: &Context) -> Result<String, TemplateError> {
        self.tera.render(name, context).map_err(|e| TemplateError::Render { name: name.to_owned(), message: chain(&e) })
    }
}

/// tera's error with its causes ("Failed to render": "Variable `x` not found").
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden_dir(kind: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/tests").join(kind)
    }

    fn cases(kind: &str) -> Vec<(PathBuf, String, Context)> {
        let mut cases: Vec<_> = std::fs::read_dir(golden_dir(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|path| {
                let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let template = case["template"].as_str().unwrap().to_owned();
                (path, template, Context::from_value(case["context"].clone()).unwrap())
            })
            .collect();
        cases.sort_by(|a, b| a.0.cmp(&b.0));
        cases
    }

    /// Each `succeeds/NAME.json` renders to `succeeds/NAME.expected`
    /// (`BERTH_BLESS=1 cargo test templates` writes the expected files, to review).
    #[test]
    fn golden_files_render_exactly() {
        let templates = Templates::load(Path::new("/nonexistent-root")).unwrap();
        let cases = cases("succeeds");
        assert!(cases.len() >= 6);
        for (path, template, context) in cases {
            let rendered = templates.render(&template, &context).unwrap();
            let expected_path = path.with_extension("expected");
            if std::env::var_os("BERTH_BLESS").is_some() {
                std::fs::write(&expected_path, &rendered).unwrap();
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap();
            assert_eq!(rendered, expected, "{}", path.display());
        }
    }

    /// Each `fails/NAME.json` fails to render, with an error naming `error_names`.
    #[test]
    fn golden_failures_fail_loudly() {
        let templates = Templates::load(Path::new("/nonexistent-root")).unwrap();
        for (path, template, context) in cases("fails") {
            let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let err = templates.render(&template, &context).unwrap_err().to_string();
            assert!(err.contains(case["error_names"].as_str().unwrap()), "{}: {err}", path.display());
        }
    }

    #[test]
    fn an_override_replaces_the_builtin_and_a_broken_one_is_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/berth/templates");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nginx-catchall.conf"), "custom {{ http_listen }}").unwrap();
        let templates = Templates::load(root.path()).unwrap();
        let mut context = Context::new();
        context.insert("http_listen", "80");
        assert_eq!(templates.render("nginx-catchall.conf", &context).unwrap(), "custom 80");

        std::fs::write(dir.join("php-fpm-pool.conf"), "{% if %}").unwrap();
        let err = Templates::load(root.path()).err().unwrap().to_string();
        assert!(err.contains("php-fpm-pool.conf") && err.contains(&dir.display().to_string()), "{err}");
    }

    #[test]
    fn shared_templates_are_compiled_once_and_again_after_an_override_changes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/berth/templates");
        let first = Templates::shared(root.path()).unwrap();
        assert!(Arc::ptr_eq(&first, &Templates::shared(root.path()).unwrap()), "compiled again with nothing changed");

        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nginx-catchall.conf"), "custom {{ http_listen }}").unwrap();
        let edited = Templates::shared(root.path()).unwrap();
        let mut context = Context::new();
        context.insert("http_listen", "80");
        assert_eq!(edited.render("nginx-catchall.conf", &context).unwrap(), "custom 80");

        std::fs::write(dir.join("nginx-catchall.conf"), "again {{ http_listen }}").unwrap();
        assert_eq!(
            Templates::shared(root.path()).unwrap().render("nginx-catchall.conf", &context).unwrap(),
            "again 80"
        );
        std::fs::remove_file(dir.join("nginx-catchall.conf")).unwrap();
        let builtin = Templates::shared(root.path()).unwrap().render("nginx-catchall.conf", &context);
        assert!(builtin.is_err(), "the built-in catch-all needs more than http_listen: the override is gone");
    }

    #[test]
    fn regression_an_override_that_cannot_be_read_is_reported_not_hidden_by_the_cache() {
        let root = tempfile::tempdir().unwrap();
        Templates::shared(root.path()).unwrap();
        // An override that is there but cannot be read (here a directory).
        std::fs::create_dir_all(root.path().join("etc/berth/templates/nginx-catchall.conf")).unwrap();
        let err = Templates::shared(root.path()).err().expect("the cached built-ins were served").to_string();
        assert!(err.contains("nginx-catchall.conf"), "{err}");
    }
}

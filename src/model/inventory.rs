//! The inventory's schema: what berth manages on this host, as `inventory.json`
//! holds it (the store, its lock and its file are `crate::state::inventory`'s).
//!
//! Every name in it is a checked type of [`super::names`], so reading the file runs
//! the same field rules as a job's params. A value today's rules refuse (`"Blog"` as
//! an app, `"a_b"` as a database) cannot come from berth, which wrote each one after
//! checking it: only a hand edit puts it there. Such a file fails to load, loudly:
//! the error names the file, the field, the rule and the line
//! (`.../inventory.json: name: app name may only contain lowercase letters and
//! digits; found 'B' in 'Blog' at line 7 column 10`), so the daemon and `berth
//! apply` refuse to start on it rather than guess what the operator meant. Nothing
//! is dropped or rewritten: the operator fixes the line, and berth reads it again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::site::{BasicAuth, Protections};
use super::{
    AppName, DbName, DbUserName, Domain, PageCache, PublicFolder, Rule, Runtime, ServerName, Stack, SysuserName,
    TablePrefix,
};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// System users berth created, by name.
    #[serde(default)]
    pub users: BTreeMap<SysuserName, User>,
    /// Apps, by name (unique on the server).
    #[serde(default)]
    pub apps: BTreeMap<AppName, App>,
    /// Databases, by name.
    #[serde(default)]
    pub databases: BTreeMap<DbName, Database>,
    /// Server settings (`server.update`, `firewall.rules`).
    #[serde(default)]
    pub settings: Settings,
    /// The highest uid berth ever gave a system user: a uid is never given twice, so
    /// what a deleted user left outside their home (a setuid file in `/tmp`, a
    /// directory a failed delete kept) never passes to the next account.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid_high_water: u32,
    /// The monitoring policy of `monitor.policy`; `None` when none was ever set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<super::monitor::Policy>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The server's settings as berth last applied them. Every field has a default, so
/// inventories written before settings existed still load (and mean today's behaviour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub firewall: bool,
    #[serde(default)]
    pub autoupdates: bool,
    #[serde(default = "yes")]
    pub deny_unknown_domains: bool,
    /// The app that answers unknown Hosts when `deny_unknown_domains` is off; `None`
    /// means the first app created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_app: Option<AppName>,
    /// The custom allow rules of `firewall.rules`.
    #[serde(default)]
    pub firewall_rules: Vec<Rule>,
}

fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            firewall: false,
            autoupdates: false,
            deny_unknown_domains: true,
            default_app: None,
            firewall_rules: Vec::new(),
        }
    }
}

impl Inventory {
    /// The apps of `sysuser`, by name.
    pub fn apps_of<'a>(&'a self, sysuser: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.apps.iter().filter(move |(_, app)| app.sysuser == sysuser).map(|(name, _)| name.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    pub app: AppName,
    /// Its one user, `user@localhost`.
    pub user: DbUserName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub sysuser: SysuserName,
    /// `phpX.Y`.
    pub runtime: Runtime,
    pub domains: Vec<Domain>,
    pub stack: Stack,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// The app's certificate, when it serves HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<Ssl>,
    /// The page cache (`app.page_cache`), while it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cache: Option<PageCache>,
    /// Names that answer a redirect to the first domain (and are in its certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_domains: Vec<Domain>,
    /// The web root below the app's directory; `None` is `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_folder: Option<PublicFolder>,
    /// SpinupWP's `nginx` object: the WordPress doors shut.
    #[serde(default, skip_serializing_if = "Protections::is_off")]
    pub nginx: Protections,
    /// Basic auth in front of the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// WordPress, when berth installed it (`app.wordpress`, `app.create`'s `wordpress`);
    /// boxed, as most apps have none (an `App` is moved around whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wordpress: Option<Box<WordPress>>,
    /// Git deploys (`app.git`, `app.deploy`); boxed, as most apps have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<Box<super::deploy::GitDeploy>>,
}

/// A WordPress berth installed in an app: its database (one of the app's, so
/// `app.delete` drops it) and table prefix. Its passwords are kept nowhere but in
/// the app's own `wp-config.php` and WordPress's database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordPress {
    pub database: DbName,
    pub table_prefix: TablePrefix,
}

#[cfg(test)]
impl App {
    /// Unit tests' app: derek's, PHP 8.2 on the nginx stack, serving `domains`,
    /// created at `created_ms`, no certificate.
    pub fn fixture(domains: &[&str], created_ms: u64) -> App {
        App {
            sysuser: "derek".try_into().unwrap(),
            runtime: "php8.2".try_into().unwrap(),
            domains: domains.iter().map(|d| Domain::try_from(*d).unwrap()).collect(),
            stack: Stack::Nginx,
            created_ms,
            ssl: None,
            page_cache: None,
            redirect_domains: Vec::new(),
            public_folder: None,
            nginx: Protections::default(),
            basic_auth: None,
            wordpress: None,
            git: None,
        }
    }
}

/// An app's certificate: where it came from, ForceSSL, and (AutoSSL) its renewal.
/// The certificate's own dates are read from its file, not kept here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ssl {
    pub source: SslSource,
    /// HTTP answers 301 to HTTPS (but for ACME challenges).
    #[serde(default)]
    pub force: bool,
    /// AutoSSL: the names the app served when the certificate was ordered (its
    /// `www.` twins included); a change of domains means a new order.
    #[serde(default)]
    pub ordered_for: Vec<ServerName>,
    /// AutoSSL: failed renewals since the last success, and when to try again.
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub next_attempt_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SslSource {
    /// `ssl.install`: the operator's certificate.
    Custom,
    /// `ssl.auto`: ACME, renewed by berth.
    Auto,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Unix milliseconds.
    pub created_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    /// An `inventory.json` as berth wrote it before the model layer existed (every
    /// field and variant set somewhere): it must still load, and save byte for byte.
    const SAMPLE: &str = include_str!("testdata/inventory.json");

    #[test]
    fn an_inventory_written_by_earlier_berth_loads_and_round_trips_byte_identical() {
        let inventory: Inventory = serde_json::from_str(SAMPLE).unwrap();
        assert_eq!(inventory.users["derek"], User { created_ms: 1_700_000_000_000 });
        let blog = &inventory.apps["blog"];
        assert_eq!((blog.sysuser.as_str(), blog.runtime.as_str(), blog.stack), ("derek", "php8.3", Stack::NginxApache));
        assert_eq!(blog.domains, ["example.com", "blog.example.org"]);
        let ssl = blog.ssl.as_ref().unwrap();
        assert_eq!(
            (ssl.source, ssl.force, ssl.failures, ssl.next_attempt_ms),
            (SslSource::Auto, true, 2, 1_700_000_900_000)
        );
        assert_eq!(inventory.apps["shop"].ssl.as_ref().unwrap().source, SslSource::Custom);
        assert_eq!((inventory.apps["plain"].stack, inventory.apps["plain"].ssl.as_ref()), (Stack::Nginx, None));
        assert_eq!(
            inventory.databases["blog-db"],
            Database { app: "blog".try_into().unwrap(), user: "blog_db".try_into().unwrap() }
        );
        let settings = &inventory.settings;
        assert!(settings.firewall && settings.autoupdates && !settings.deny_unknown_domains);
        assert_eq!(settings.default_app.as_deref(), Some("blog"));
        assert_eq!(
            settings.firewall_rules[0],
            Rule {
                protocol: Protocol::Tcp,
                ports: Some((22, 22)),
                source: Some(("192.0.2.0".parse().unwrap(), 24)),
                description: Some("office ssh".into()),
            }
        );
        assert_eq!(settings.firewall_rules[1].protocol, Protocol::TcpUdp);
        assert_eq!(
            settings.firewall_rules[2],
            Rule { protocol: Protocol::Icmp, ports: None, source: None, description: None }
        );
        assert_eq!(settings.firewall_rules[3].protocol, Protocol::Udp);

        let saved = serde_json::to_string_pretty(&inventory).unwrap();
        assert_eq!(saved, SAMPLE.trim_end());
    }

    #[test]
    fn a_value_the_rules_refuse_fails_the_load_naming_field_rule_and_line() {
        // (what the sample says, a hand edit of it, the start of the error)
        let cases = [
            ("\"blog\": {", "\"Blog\": {", "name: app name may only contain lowercase letters and digits; found 'B'"),
            ("\"derek\": {", "\"3po\": {", "sysuser: system user name must start with a lowercase letter: '3po'"),
            ("\"sysuser\": \"derek\"", "\"sysuser\": \"de rek\"", "sysuser: system user name may only contain"),
            ("\"php8.2\"", "\"php8\"", "runtime: runtime must look like 'php8.3': 'php8'"),
            ("\"shop.example.net\"", "\"shop..example.net\"", "domain: domain must not contain an empty label"),
            ("\"www.example.com\"", "\"www.*.example.com\"", "ordered_for: a wildcard is only allowed"),
            (
                "\"blog-db\": {",
                "\"blog_db\": {",
                "name: database name may only contain lowercase letters, digits and '-'",
            ),
            ("\"user\": \"blog_db\"", "\"user\": \"Blog_db\"", "user: database user name may only contain"),
            ("\"app\": \"blog\"", "\"app\": \"my-blog\"", "name: app name may only contain"),
            ("\"default_app\": \"blog\"", "\"default_app\": \"\"", "name: app name must not be empty"),
        ];
        for (good, bad, expected) in cases {
            assert!(SAMPLE.contains(good), "{good}");
            let err = serde_json::from_str::<Inventory>(&SAMPLE.replacen(good, bad, 1)).unwrap_err().to_string();
            assert!(err.starts_with(expected) && err.contains(" at line "), "{bad}: {err}");
        }
    }

    #[test]
    fn an_autossl_order_keeps_the_www_twin_of_the_longest_domain() {
        let label63 = "a".repeat(63);
        let longest = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        let ssl = format!(r#"{{"source": "auto", "ordered_for": ["{longest}", "www.{longest}"]}}"#);
        let ssl: Ssl = serde_json::from_str(&ssl).unwrap();
        assert_eq!(ssl.ordered_for[1].len(), 257);
        assert!(serde_json::from_str::<Ssl>(r#"{"source": "auto", "ordered_for": ["www.*.a.test"]}"#).is_err());
    }

    #[test]
    fn site_options_round_trip_and_a_hand_edit_they_refuse_fails_the_load() {
        let mut app = App::fixture(&["shop.test"], 7);
        app.redirect_domains = vec!["old-shop.test".try_into().unwrap()];
        app.public_folder = Some("public/web".try_into().unwrap());
        app.nginx = Protections { uploads_directory_protected: true, xmlrpc_protected: false };
        app.basic_auth =
            Some(BasicAuth { username: "ann".try_into().unwrap(), password_hash: "$6$salt$hash".try_into().unwrap() });
        let text = serde_json::to_string(&app).unwrap();
        assert_eq!(serde_json::from_str::<App>(&text).unwrap(), app);
        let plain = serde_json::to_string(&App::fixture(&["shop.test"], 7)).unwrap();
        assert!(!plain.contains("\"nginx\":") && !plain.contains("basic_auth"), "defaults are left out: {plain}");
        for (good, bad, field) in [
            ("public/web", "../etc", "public_folder"),
            ("old-shop.test", "old shop.test", "domain"),
            ("\"ann\"", "\"a:b\"", "username"),
            ("$6$salt$hash", "$1$salt$hash", "password_hash"),
        ] {
            let err = serde_json::from_str::<App>(&text.replacen(good, bad, 1)).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{field}: ")), "{bad}: {err}");
        }
    }
}

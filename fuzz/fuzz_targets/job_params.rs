//! Every job kind's params parser: `jobs::Catalogue::parse(kind, params)` for each
//! kind the agent registers (the `test.*` kinds and the internal `ssl.renew`
//! included) and for any other kind. The input is `KIND\nPARAMS`: the first line
//! is the kind, the rest the params, as JSON text when it parses, otherwise built
//! by `arbitrary` from the keys and values the parsers read (so nested shapes, wrong
//! types and nulls are reached without JSON syntax). Proves, for any kind and params:
//! - the parser never panics (the engine catches a parser's panic, so this calls
//!   the parser directly to see it);
//! - it decides the same way twice, and refuses only with `invalid_params` naming a
//!   field, in a one-line message; a kind that is not registered, or internal
//!   (`ssl.renew`) off the wire, is `unsupported` whatever the params;
//! - no refusal quotes a secret (a `password` or `key` value): with each secret
//!   made a marker, no refusal holds the marker;
//! - null counts as absent, and an unknown key is ignored (PROTOCOL §2.3);
//! - an accepted job holds resources (or is exclusive), each named by a value of
//!   its params (or, for WordPress's database and its user, derived from the app's
//!   name) and passing its name's rule.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Result as ArbResult, Unstructured};
use berth::job::{Job, JobError};
use berth::jobs::Catalogue;
use berth::model::protocol::ErrorCode;
use berth::model::resource::Resource;
use berth::model::{AppName, DbName, DbUserName, SysuserName};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Params keys whose string values are secrets (as `job::Secrets` has them).
const SECRET_KEYS: &[&str] = &["password", "key", "api_key", "admin_password", "private_key"];

/// The keys the parsers read, for the structured params.
const KEYS: &[&str] = &[
    "name",
    "password",
    "app",
    "sysuser",
    "runtime",
    "domains",
    "stack",
    "user",
    "key",
    "cert",
    "cacerts",
    "force",
    "rules",
    "protocol",
    "port",
    "source",
    "description",
    "firewall",
    "autoupdates",
    "deny_unknown_domains",
    "default_app",
    "service",
    "ms",
    "resource",
    "fail",
    "panic",
    "id",
    "wordpress",
    "site_title",
    "admin_user",
    "admin_password",
    "admin_email",
    "table_prefix",
];

/// Values worth trying for a string.
const STRINGS: &[&str] = &[
    "derek",
    "blog",
    "blog-db",
    "blog_db",
    "php8.2",
    "php8.3",
    "nginx",
    "nginx-apache",
    "apache",
    "php-fpm",
    "mysql",
    "example.com",
    "www.example.com",
    "*.example.com",
    "TCP",
    "UDP",
    "TCP/UDP",
    "ICMP",
    "22",
    "1000-2000",
    "192.0.2.0/24",
    "2001:db8::/32",
    "hlZkUk7xQ2mB",
    "",
    " ",
    "\n",
    "..",
    "../etc",
    "a\u{0430}b",
    "0",
    "-1",
    "wp_",
    "boss@example.com",
];

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| Catalogue::new(true))
}

fn parse(catalogue: &Catalogue, kind: &str, params: &Value) -> Result<Box<dyn Job>, JobError> {
    if kind == berth::jobs::ssl::RENEW_KIND {
        catalogue.parse_internal(kind, params)
    } else {
        catalogue.parse(kind, params)
    }
}

fn string(u: &mut Unstructured) -> ArbResult<String> {
    Ok(if u.ratio(3, 4)? { u.choose(STRINGS)?.to_string() } else { u.arbitrary()? })
}

fn value(u: &mut Unstructured, depth: u32) -> ArbResult<Value> {
    Ok(match u.int_in_range(0..=if depth > 2 { 4 } else { 6 })? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<f64>()?),
        4 => Value::String(string(u)?),
        5 => Value::Array((0..u.int_in_range(0..=4)?).map(|_| value(u, depth + 1)).collect::<ArbResult<_>>()?),
        _ => object(u, depth + 1)?,
    })
}

fn object(u: &mut Unstructured, depth: u32) -> ArbResult<Value> {
    let mut map = Map::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let key = if u.ratio(7, 8)? { u.choose(KEYS)?.to_string() } else { u.arbitrary()? };
        map.insert(key, value(u, depth)?);
    }
    Ok(Value::Object(map))
}

/// Every string of `value` (object keys included), with whether it sits under a secret key.
fn strings<'a>(value: &'a Value, secret: bool, out: &mut Vec<(&'a str, bool)>) {
    match value {
        Value::String(s) => out.push((s, secret)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, secret, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push((k, false));
            strings(v, SECRET_KEYS.contains(&k.as_str()), out)
        }),
        _ => {}
    }
}

/// `value` with every non-empty secret string replaced by `QzQz…` of its length.
fn with_markers(value: &Value, secret: bool) -> Value {
    match value {
        Value::String(s) if secret && !s.is_empty() => {
            Value::String("Qz".chars().cycle().take(s.chars().count()).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| with_markers(v, secret)).collect()),
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| (k.clone(), with_markers(v, SECRET_KEYS.contains(&k.as_str())))).collect(),
        ),
        other => other.clone(),
    }
}

/// What a parse decided, comparable.
fn outcome(
    result: &Result<Box<dyn Job>, JobError>,
) -> Result<(Vec<Resource>, bool), (ErrorCode, Option<String>, String)> {
    match result {
        Ok(job) => {
            let resources = job.resources();
            Ok((resources.keys, resources.exclusive))
        }
        Err(e) => Err((e.code(), e.field().map(str::to_owned), e.to_string())),
    }
}

/// `params` without its null top-level values (null counts as absent).
fn without_nulls(params: &Value) -> Value {
    match params {
        Value::Object(map) => {
            Value::Object(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == b'\n') else { return };
    let (Ok(kind), rest) = (std::str::from_utf8(&data[..split]), &data[split + 1..]) else { return };
    let catalogue = catalogue();
    let registered = catalogue.advertised().contains(&kind);
    let params = match serde_json::from_slice::<Value>(rest) {
        Ok(params) => params,
        Err(_) => match object(&mut Unstructured::new(rest), 0) {
            Ok(params) => params,
            Err(_) => return,
        },
    };

    if !registered {
        // Off the wire, only a registered kind is parsed: an internal one too is unsupported.
        let code = catalogue.parse(kind, &params).err().map(|e| e.code());
        assert_eq!(code, Some(ErrorCode::Unsupported), "{kind:?} is not registered");
    }
    let first = parse(catalogue, kind, &params);
    let decided = outcome(&first);
    assert_eq!(outcome(&parse(catalogue, kind, &params)), decided, "{kind}: two parses differ");

    // Every string of the job (the kind too: an unknown one is quoted), and whether it is a secret.
    let mut all = vec![(kind, false)];
    strings(&params, false, &mut all);
    match &first {
        Err(_) => {
            let (code, field, message) = decided.clone().unwrap_err();
            if !registered && kind != berth::jobs::ssl::RENEW_KIND {
                assert_eq!(code, ErrorCode::Unsupported, "{kind:?} is no kind");
            } else {
                assert_eq!(code, ErrorCode::InvalidParams, "{kind}: refused with {code:?}: {message}");
                assert!(field.is_some_and(|f| !f.is_empty()), "{kind}: a refusal names no field: {message}");
            }
            assert!(!message.contains(['\n', '\r']), "{kind}: a refusal of more than one line: {message:?}");
            // The same params with each secret a marker of the same length: a refusal
            // that quotes a secret quotes the marker.
            let marked = with_markers(&params, false);
            if let Err(e) = parse(catalogue, kind, &marked) {
                let message = e.to_string();
                let mut strings_marked = vec![(kind, false)];
                strings(&marked, false, &mut strings_marked);
                for (marker, _) in strings_marked.iter().filter(|(s, secret)| *secret && s.len() >= 4) {
                    let elsewhere = strings_marked.iter().any(|(s, secret)| !secret && s.contains(marker));
                    assert!(elsewhere || !message.contains(marker), "{kind}: a refusal quotes a secret: {message}");
                }
            }
        }
        Ok(_) => {
            let (keys, exclusive) = decided.clone().unwrap();
            if !kind.starts_with("test.") {
                assert!(exclusive || !keys.is_empty(), "{kind}: an accepted job holds no resource");
            }
            for key in &keys {
                let name: &str = match key {
                    Resource::App(n) => {
                        AppName::try_from(n.as_str()).expect("app name rule");
                        n
                    }
                    Resource::Sysuser(n) => {
                        SysuserName::try_from(n.as_str()).expect("sysuser name rule");
                        n
                    }
                    Resource::Database(n) => {
                        DbName::try_from(n.as_str()).expect("db name rule");
                        n
                    }
                    Resource::DatabaseUser(n) => {
                        DbUserName::try_from(n.as_str()).expect("db user name rule");
                        n
                    }
                    Resource::Test(n) => n,
                    _ => continue,
                };
                // WordPress's database and user are named after the app (`wordpress::names`).
                let derived = keys.iter().any(|k| match k {
                    Resource::App(app) => {
                        let (database, user) = berth::jobs::wordpress::names(app);
                        name == database.as_str() || name == user.as_str()
                    }
                    _ => false,
                });
                assert!(
                    derived || all.iter().any(|(s, _)| *s == name),
                    "{kind}: resource {key} is named by no param"
                );
            }
        }
    }

    // Null counts as absent; an unknown key changes nothing.
    let trimmed = without_nulls(&params);
    if trimmed != params {
        assert_eq!(outcome(&parse(catalogue, kind, &trimmed)), decided, "{kind}: a null param is not absent");
    }
    let mut extra = match &params {
        Value::Null => Value::Object(Map::new()),
        other => other.clone(),
    };
    if let Value::Object(map) = &mut extra {
        if !map.contains_key("x_fuzz_unknown") {
            map.insert("x_fuzz_unknown".into(), Value::from(1));
            assert_eq!(outcome(&parse(catalogue, kind, &extra)), decided, "{kind}: an unknown key changed the result");
        }
    }
});

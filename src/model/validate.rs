//! Field rules of the wire protocol (PROTOCOL.md section 3), in one place.
//! Every job family checks its params here before anything on the host changes, because
//! these values end up in paths, config files, shell-free argv and stdin protocols: one
//! bad name ("test..com", "../etc", a newline) can break every site on the server.
//! A failure is a `FieldError`, which becomes a job error `invalid_params` naming the field.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// A param that breaks a field rule. `message` is the rule alone, written for the
/// person at the terminal; values in it are passed through `shown`, passwords never.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

pub type Result<T, E = FieldError> = std::result::Result<T, E>;

/// Longest part of a value echoed in a message, in characters.
const SHOWN_MAX: usize = 64;

/// A value as echoed in a message: single-quoted, control characters, quotes and
/// backslashes escaped, cut to `SHOWN_MAX` characters, so no input can put a newline or
/// a megabyte into a log line. Public: other modules echo untrusted strings through it too.
pub fn shown(v: &str) -> String {
    let mut out = String::from("'");
    for (i, c) in v.chars().enumerate() {
        if i == SHOWN_MAX {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('\'');
    out
}

/// Names the first non-ASCII character, since a look-alike ('а', U+0430) prints like 'a'.
fn non_ascii(v: &str) -> String {
    let c = v.chars().find(|c| !c.is_ascii()).unwrap_or_default();
    format!("found U+{:04X} in {}", c as u32, shown(v))
}

/// A name-like rule: length bounds, an ASCII alphabet, optionally a letter first.
struct NameRule {
    what: &'static str,
    min: usize,
    max: usize,
    allowed: fn(u8) -> bool,
    alphabet: &'static str,
    letter_first: bool,
}

fn lower_digit_hyphen(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn lower_digit(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn lower_digit_underscore_hyphen(b: u8) -> bool {
    lower_digit_hyphen(b) || b == b'_'
}

fn alnum_underscore_hyphen(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

const JOB_ID: NameRule = NameRule {
    what: "job id",
    min: 1,
    max: 64,
    allowed: alnum_underscore_hyphen,
    alphabet: "letters, digits, '_' and '-'",
    letter_first: false,
};

const SYSUSER: NameRule = NameRule {
    what: "system user name",
    min: 3,
    max: 32,
    allowed: lower_digit_hyphen,
    alphabet: "lowercase letters, digits and '-'",
    letter_first: true,
};

const APP: NameRule = NameRule {
    what: "app name",
    min: 3,
    max: 30,
    allowed: lower_digit,
    alphabet: "lowercase letters and digits",
    letter_first: false,
};

const DB: NameRule = NameRule {
    what: "database name",
    min: 3,
    max: 64,
    allowed: lower_digit_hyphen,
    alphabet: "lowercase letters, digits and '-'",
    letter_first: false,
};

const DB_USER: NameRule = NameRule {
    what: "database user name",
    min: 1,
    max: 16,
    allowed: lower_digit_underscore_hyphen,
    alphabet: "lowercase letters, digits, '_' and '-'",
    letter_first: true,
};

fn check_name(field: &str, v: &str, rule: &NameRule) -> Result<()> {
    let what = rule.what;
    let fail = |message: String| Err(FieldError::new(field, message));
    if v.is_empty() {
        return fail(format!("{what} must not be empty"));
    }
    if !v.is_ascii() {
        return fail(format!("{what} must be ASCII; {}", non_ascii(v)));
    }
    if v.len() < rule.min || v.len() > rule.max {
        return fail(format!(
            "{what} must be {} to {} characters long (got {}): {}",
            rule.min,
            rule.max,
            v.len(),
            shown(v)
        ));
    }
    if let Some(&bad) = v.as_bytes().iter().find(|&&b| !(rule.allowed)(b)) {
        let bad = (bad as char).to_string();
        return fail(format!("{what} may only contain {}; found {} in {}", rule.alphabet, shown(&bad), shown(v)));
    }
    if rule.letter_first && !v.as_bytes()[0].is_ascii_lowercase() {
        return fail(format!("{what} must start with a lowercase letter: {}", shown(v)));
    }
    Ok(())
}

/// 1–64 of `[A-Za-z0-9_-]`; the idempotency key, also used in file names.
pub fn job_id(field: &str, v: &str) -> Result<()> {
    check_name(field, v, &JOB_ID)
}

/// 3–32 of `[a-z0-9-]`, first a lowercase letter (a Linux user and `/srv/users/<name>`).
pub fn sysuser_name(field: &str, v: &str) -> Result<()> {
    check_name(field, v, &SYSUSER)
}

/// 3–30 of `[a-z0-9]`.
pub fn app_name(field: &str, v: &str) -> Result<()> {
    check_name(field, v, &APP)
}

/// 3–64 of `[a-z0-9-]`.
pub fn db_name(field: &str, v: &str) -> Result<()> {
    check_name(field, v, &DB)
}

/// 1–16 of `[a-z0-9_-]`, first a lowercase letter.
pub fn db_user_name(field: &str, v: &str) -> Result<()> {
    check_name(field, v, &DB_USER)
}

/// 8–200 characters, no leading or trailing whitespace, no control characters (a newline
/// or NUL would cut or extend a `user:password` line on a tool's stdin). Any other
/// Unicode is allowed. Messages never contain the value.
pub fn password(field: &str, v: &str) -> Result<()> {
    let fail = |message: &str| Err(FieldError::new(field, message));
    let len = v.chars().count();
    if len < 8 {
        return fail("password must be at least 8 characters long");
    }
    if len > 200 {
        return fail("password must be at most 200 characters long");
    }
    if v.chars().any(char::is_control) {
        return fail("password must not contain control characters (newline, tab, NUL, ...)");
    }
    if v.starts_with(char::is_whitespace) || v.ends_with(char::is_whitespace) {
        return fail("password must not start or end with whitespace");
    }
    Ok(())
}

/// A WordPress table prefix, as wp-cli takes it: 1–20 of `[A-Za-z0-9_]`, ending in
/// `_` (it is written into `wp-config.php` and put before every table name).
pub fn table_prefix(field: &str, v: &str) -> Result<()> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if v.is_empty() || v.len() > 20 || !v.bytes().all(ok_char) || !v.ends_with('_') {
        return Err(FieldError::new(
            field,
            format!("table prefix must be 1 to 20 of letters, digits and '_', ending in '_': {}", shown(v)),
        ));
    }
    Ok(())
}

/// A WordPress site title: 1–200 characters, not only whitespace, no control
/// characters. Quotes are allowed: the title reaches WordPress as data, never as code.
pub fn site_title(field: &str, v: &str) -> Result<()> {
    let fail = |message: &str| Err(FieldError::new(field, message));
    if v.trim().is_empty() {
        return fail("site title must not be empty");
    }
    if v.chars().count() > 200 {
        return fail("site title must be at most 200 characters long");
    }
    if v.chars().any(char::is_control) {
        return fail("site title must not contain control characters (newline, tab, NUL, ...)");
    }
    Ok(())
}

/// A WordPress admin's login: 1–60 of `[A-Za-z0-9_.@-]` (what WordPress's strict
/// `sanitize_user` keeps, without the space).
pub fn wp_user(field: &str, v: &str) -> Result<()> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-');
    if v.is_empty() || v.len() > 60 || !v.bytes().all(ok_char) {
        return Err(FieldError::new(
            field,
            format!("user name must be 1 to 60 of letters, digits, '_', '.', '@' and '-': {}", shown(v)),
        ));
    }
    Ok(())
}

/// An email address: at most 100 characters (WordPress's column), one `@`, a local
/// part of 1–64 of `[A-Za-z0-9._%+-]` not starting or ending with '.', and a domain
/// that passes [`domain`] (compared in lowercase, no wildcard).
pub fn email(field: &str, v: &str) -> Result<()> {
    let fail = |message: String| Err(FieldError::new(field, message));
    if v.len() > 100 {
        return fail(format!("email must be at most 100 characters long (got {})", v.len()));
    }
    let Some((local, host)) = v.split_once('@') else {
        return fail(format!("email must look like 'name@example.com': {}", shown(v)));
    };
    let local_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    if local.is_empty()
        || local.len() > 64
        || !local.bytes().all(local_ok)
        || local.starts_with('.')
        || local.ends_with('.')
    {
        return fail(format!("email must look like 'name@example.com': {}", shown(v)));
    }
    if host.starts_with("*.") || domain(field, &host.to_ascii_lowercase()).is_err() {
        return fail(format!("email must end in a domain, as in 'name@example.com': {}", shown(v)));
    }
    Ok(())
}

/// The format `phpX.Y`, X and Y one or two digits; whether it is installed is checked
/// by the job against the host.
pub fn runtime(field: &str, v: &str) -> Result<()> {
    let version = |s: &str| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let ok = v
        .strip_prefix("php")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| version(major) && version(minor));
    if !ok {
        return Err(FieldError::new(field, format!("runtime must look like 'php8.3': {}", shown(v))));
    }
    Ok(())
}

/// A site domain: lowercase RFC 1123 name of at least two labels, at most 253 characters,
/// labels 1–63 of `[a-z0-9-]` not starting or ending with '-', optionally a leading `*.`
/// over at least two labels, last label not all digits (no IPv4 addresses).
pub fn domain(field: &str, v: &str) -> Result<()> {
    let fail = |message: String| Err(FieldError::new(field, message));
    if v.is_empty() {
        return fail("domain must not be empty".into());
    }
    if !v.is_ascii() {
        return fail(format!(
            "domain must be ASCII; internationalised domains arrive as xn-- punycode; {}",
            non_ascii(v)
        ));
    }
    if v.len() > 253 {
        return fail(format!("domain must be at most 253 characters long (got {}): {}", v.len(), shown(v)));
    }
    if v.bytes().any(|b| b.is_ascii_uppercase()) {
        return fail(format!("domain must be lowercase: {}", shown(v)));
    }
    if v.ends_with('.') {
        return fail(format!("domain must not end with a dot: {}", shown(v)));
    }
    let (wildcard, host) = match v.strip_prefix("*.") {
        Some(host) => (true, host),
        None => (false, v),
    };
    if host.contains('*') {
        return fail(format!("a wildcard is only allowed as a whole first label, as in '*.example.com': {}", shown(v)));
    }
    let labels: Vec<&str> = host.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return fail(format!("domain must not contain an empty label ('..' or a leading dot): {}", shown(v)));
        }
        if label.len() > 63 {
            return fail(format!(
                "domain labels must be at most 63 characters long (got {}): {}",
                label.len(),
                shown(v)
            ));
        }
        if let Some(bad) = label.chars().find(|&c| !lower_digit_hyphen(c as u8)) {
            return fail(format!(
                "domain labels may only contain a-z, 0-9 and '-'; found {} in {}",
                shown(&bad.to_string()),
                shown(v)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return fail(format!("domain labels must not start or end with '-': {}", shown(v)));
        }
    }
    if labels.len() < 2 {
        return fail(if wildcard {
            format!("a wildcard must cover at least two labels, as in '*.example.com': {}", shown(v))
        } else {
            format!("domain must have at least two labels, as in 'example.com': {}", shown(v))
        });
    }
    if labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        return fail(format!("domain must not end in an all-digit label (IP addresses are not domains): {}", shown(v)));
    }
    Ok(())
}

/// A name the web servers answer for an app: a `domain`, or `www.` and a domain that
/// is no wildcard (the twin of a domain up to 253 characters may be 4 longer).
pub fn server_name(field: &str, v: &str) -> Result<()> {
    match v.strip_prefix("www.") {
        Some(bare) if !bare.starts_with("*.") && domain(field, bare).is_ok() => Ok(()),
        _ => domain(field, v),
    }
}

/// The domains of an app: non-empty, at most `max` (an error with `field` itself, which
/// the caller maps to `limit_exceeded`), each a `domain` (errors name `field[i]`), and no
/// two the same. A domain and its `www.` twin may both be listed: the web servers answer
/// the twin anyway, so listing it means the same as leaving it out (PROTOCOL section 3).
pub fn domain_list(field: &str, domains: &[&str], max: usize) -> Result<()> {
    if domains.is_empty() {
        return Err(FieldError::new(field, "at least one domain is required"));
    }
    if domains.len() > max {
        return Err(FieldError::new(
            field,
            format!("at most {max} domains are allowed per app (got {})", domains.len()),
        ));
    }
    for (i, d) in domains.iter().enumerate() {
        domain(&format!("{field}[{i}]"), d)?;
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(domains.len());
    for (i, &d) in domains.iter().enumerate() {
        if let Some(&j) = seen.get(d) {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("duplicate domain {} (same as {field}[{j}])", shown(d)),
            ));
        }
        seen.insert(d, i);
    }
    Ok(())
}

/// Typed, field-naming access to a job's `params` JSON object. Null counts as absent
/// everywhere; unknown keys are ignored, as the protocol asks of receivers.
/// Deliberately not `Debug`: params hold passwords and keys.
pub struct Params<'a> {
    map: Option<&'a Map<String, Value>>,
    prefix: String,
}

impl<'a> Params<'a> {
    /// `params` must be a JSON object (null/missing params are treated as an empty object);
    /// otherwise FieldError with field "params".
    pub fn new(params: &'a Value) -> Result<Params<'a>> {
        match params {
            Value::Null => Ok(Params { map: None, prefix: String::new() }),
            Value::Object(map) => Ok(Params { map: Some(map), prefix: String::new() }),
            _ => Err(FieldError::new("params", "must be a JSON object")),
        }
    }

    /// The full field name for `key` under this prefix ("user.name").
    pub fn field(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn error(&self, key: &str, message: &str) -> FieldError {
        FieldError::new(self.field(key), message)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| self.error(key, "is required"))
    }

    /// Required string; missing → "<field>: is required"; wrong type → "must be a string".
    pub fn str(&self, key: &str) -> Result<&'a str> {
        self.required(key)?.as_str().ok_or_else(|| self.error(key, "must be a string"))
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        self.get(key).map(|_| self.str(key)).transpose()
    }

    /// Required string that passes `rule` (one of this module's field rules),
    /// reported under this key's field name.
    pub fn checked(&self, key: &str, rule: fn(&str, &str) -> Result<()>) -> Result<&'a str> {
        let value = self.str(key)?;
        rule(&self.field(key), value)?;
        Ok(value)
    }

    /// [`Params::checked`] for an optional string (null counts as absent).
    pub fn opt_checked(&self, key: &str, rule: fn(&str, &str) -> Result<()>) -> Result<Option<&'a str>> {
        self.get(key).map(|_| self.checked(key, rule)).transpose()
    }

    pub fn bool(&self, key: &str) -> Result<bool> {
        self.required(key)?.as_bool().ok_or_else(|| self.error(key, "must be true or false"))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|_| self.bool(key)).transpose()
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key).map(|v| v.as_u64().ok_or_else(|| self.error(key, "must be a non-negative integer"))).transpose()
    }

    /// Required array of strings; element errors name "key[i]".
    pub fn str_array(&self, key: &str) -> Result<Vec<&'a str>> {
        let items = self.required(key)?.as_array().ok_or_else(|| self.error(key, "must be an array of strings"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| FieldError::new(format!("{}[{i}]", self.field(key)), "must be a string"))
            })
            .collect()
    }

    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        self.get(key).map(|_| self.str_array(key)).transpose()
    }

    /// Optional array of objects; fields inside are reported as "key[i].inner".
    pub fn object_array(&self, key: &str) -> Result<Option<Vec<Params<'a>>>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let items = value.as_array().ok_or_else(|| self.error(key, "must be an array of objects"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let field = format!("{}[{i}]", self.field(key));
                match item.as_object() {
                    Some(map) => Ok(Params { map: Some(map), prefix: field }),
                    None => Err(FieldError::new(field, "must be an object")),
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Required nested object; fields inside are reported as "key.inner".
    pub fn object(&self, key: &str) -> Result<Params<'a>> {
        let map = self.required(key)?.as_object().ok_or_else(|| self.error(key, "must be an object"))?;
        Ok(Params { map: Some(map), prefix: self.field(key) })
    }

    /// [`Self::object`] for an optional param (null counts as absent).
    pub fn opt_object(&self, key: &str) -> Result<Option<Params<'a>>> {
        self.get(key).map(|_| self.object(key)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Rule = fn(&str, &str) -> Result<()>;

    fn rejected(rule: Rule, field: &str, v: &str) -> FieldError {
        let err = rule(field, v).expect_err(&format!("{field}: {v:?} must be rejected"));
        assert_eq!(err.field, field, "field for {v:?}");
        err
    }

    #[test]
    fn accepts_valid_values_at_the_bounds() {
        for v in ["a", "tW2fu4hjHnsix6Rn", "A_b-9", &"x".repeat(64)] {
            job_id("job_id", v).unwrap();
        }
        for v in ["abc", "derek", "a-9", "web-user-2", &format!("a{}", "b".repeat(31))] {
            sysuser_name("name", v).unwrap();
        }
        for v in ["abc", "gallery", "3po", "123", &"a".repeat(30)] {
            app_name("name", v).unwrap();
        }
        for v in ["abc", "wp-db", "1db", "-ab", &"d".repeat(64)] {
            db_name("name", v).unwrap();
        }
        for v in ["a", "wp_user", "u-1", &"u".repeat(16)] {
            db_user_name("user.name", v).unwrap();
        }
        for v in ["12345678", "pass word", "pässwörd€", "a:b;c'd\"e$(f)", &"p".repeat(200)] {
            password("password", v).unwrap();
        }
        for v in ["php8.3", "php7.4", "php5.6", "php10.12", "php8.10"] {
            runtime("runtime", v).unwrap();
        }
    }

    #[test]
    fn accepts_valid_domains() {
        let label63 = "a".repeat(63);
        // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters.
        let longest = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        assert_eq!(longest.len(), 253);
        for v in [
            "example.com",
            "a.co",
            "www.example.com",
            "sub-1.my-site.example.org",
            "xn--bcher-kva.example",
            "example.xn--p1ai",
            "*.example.com",
            "*.a.b",
            "1.example.com",
            "123.example.c0m",
            &format!("{label63}.com"),
            &longest,
        ] {
            domain("domains[0]", v).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
    }

    #[test]
    fn rejects_hostile_inputs_naming_the_field() {
        let u: Rule = sysuser_name;
        let a: Rule = app_name;
        let d: Rule = domain;
        let r: Rule = runtime;
        let j: Rule = job_id;
        let db: Rule = db_name;
        let du: Rule = db_user_name;
        let long_user = "a".repeat(33);
        let long_app = "a".repeat(31);
        let long_job = "a".repeat(65);
        let long_db = "a".repeat(65);
        let long_db_user = "a".repeat(17);
        let long_domain = format!("{}.com", "a.".repeat(125)); // 250 + 4 = 254
        let long_label = format!("{}.com", "a".repeat(64));
        let million = "a".repeat(1 << 20);
        let cases: Vec<(Rule, &str, &str)> = vec![
            // path traversal and separators
            (u, "name", "../etc"),
            (u, "name", "a/b"),
            (u, "name", ".."),
            (a, "name", "../etc"),
            (a, "name", "app/x"),
            (d, "domains[2]", "../etc"),
            (d, "domains[2]", "a/b.com"),
            (d, "domains[2]", ".."),
            (db, "name", "db/../x"),
            (j, "job_id", "../../etc/passwd"),
            (r, "runtime", "php../8.3"),
            // line breaks, tabs, NUL
            (u, "name", "abc\ndef"),
            (u, "name", "abc\r"),
            (a, "name", "abc\tdef"),
            (d, "domains[2]", "example.com\n"),
            (d, "domains[2]", "exa\rmple.com"),
            (j, "job_id", "abc\0"),
            (du, "user.name", "u\0"),
            (db, "name", "db\nname"),
            (r, "runtime", "php8.3\n"),
            // shell and config syntax
            (u, "name", "abc;rm"),
            (d, "domains[2]", "example.com;"),
            (d, "domains[2]", "example.com}"),
            (a, "name", "app{1}"),
            (u, "name", "o'brien"),
            (d, "domains[2]", "example.com\""),
            (a, "name", "app`id`"),
            (u, "name", "a$(id)"),
            (d, "domains[2]", "$(id).example.com"),
            (db, "name", "db name"),
            (d, "domains[2]", "example.com #"),
            (j, "job_id", "job id"),
            (du, "user.name", "u\\x"),
            (r, "runtime", "php8.3; rm"),
            // unicode look-alikes and invisible characters
            (d, "domains[2]", "ex\u{0430}mple.com"),
            (d, "domains[2]", "\u{ff45}xample.com"),
            (d, "domains[2]", "exam\u{200b}ple.com"),
            (d, "domains[2]", "\u{202e}moc.elpmaxe"),
            (u, "name", "d\u{0435}rek"),
            (a, "name", "\u{ff41}pp"),
            (j, "job_id", "job\u{200b}"),
            // uppercase
            (d, "domains[2]", "Example.com"),
            (u, "name", "Derek"),
            (a, "name", "MyApp"),
            (r, "runtime", "PHP8.3"),
            (du, "user.name", "Root"),
            // empty
            (u, "name", ""),
            (a, "name", ""),
            (d, "domains[2]", ""),
            (j, "job_id", ""),
            (r, "runtime", ""),
            (db, "name", ""),
            (du, "user.name", ""),
            // oversize and too short
            (u, "name", &long_user),
            (a, "name", &long_app),
            (d, "domains[2]", &long_domain),
            (d, "domains[2]", &long_label),
            (j, "job_id", &long_job),
            (db, "name", &long_db),
            (du, "user.name", &long_db_user),
            (d, "domains[2]", &million),
            (u, "name", "ab"),
            (a, "name", "ab"),
            (db, "name", "ab"),
            // leading digit or hyphen, other forbidden characters
            (u, "name", "3po"),
            (u, "name", "-abc"),
            (du, "user.name", "1user"),
            (du, "user.name", "_user"),
            (a, "name", "my-app"),
            (a, "name", "my_app"),
            (u, "name", "a_b"),
            // domain specials
            (d, "domains[2]", "test..com"),
            (d, "domains[2]", ".example.com"),
            (d, "domains[2]", "-a.com"),
            (d, "domains[2]", "a-.com"),
            (d, "domains[2]", "example.com."),
            (d, "domains[2]", "*.com"),
            (d, "domains[2]", "a.*.com"),
            (d, "domains[2]", "**.example.com"),
            (d, "domains[2]", "*"),
            (d, "domains[2]", "*.*.example.com"),
            (d, "domains[2]", "1.2.3.4"),
            (d, "domains[2]", "localhost"),
            (d, "domains[2]", "com"),
            (d, "domains[2]", "exa_mple.com"),
            (d, "domains[2]", "example.com:80"),
            (d, "domains[2]", "user@example.com"),
            (d, "domains[2]", "[::1]"),
            // runtime shapes
            (r, "runtime", "php"),
            (r, "runtime", "php8"),
            (r, "runtime", "php8."),
            (r, "runtime", "8.3"),
            (r, "runtime", "php.3"),
            (r, "runtime", "php123.4"),
            (r, "runtime", "php8.3.1"),
            (r, "runtime", " php8.3"),
        ];
        assert!(cases.len() >= 60, "{} cases", cases.len());
        for (rule, field, v) in cases {
            let err = rejected(rule, field, v);
            // Whatever the input, the message is one short printable line.
            assert!(!err.message.chars().any(char::is_control), "{:?}", err.message);
            assert!(err.message.len() < 400, "{} bytes for {:.20?}", err.message.len(), v);
        }
    }

    #[test]
    fn messages_name_the_broken_rule() {
        let msg = |e: FieldError| e.message;
        assert_eq!(
            msg(sysuser_name("name", "3po").unwrap_err()),
            "system user name must start with a lowercase letter: '3po'"
        );
        assert_eq!(
            sysuser_name("name", "3po").unwrap_err().to_string(),
            "name: system user name must start with a lowercase letter: '3po'"
        );
        assert!(msg(sysuser_name("name", &"a".repeat(33)).unwrap_err()).contains("3 to 32 characters"));
        assert_eq!(
            msg(app_name("name", "my-app").unwrap_err()),
            "app name may only contain lowercase letters and digits; found '-' in 'my-app'"
        );
        assert_eq!(msg(domain("d", "Example.com").unwrap_err()), "domain must be lowercase: 'Example.com'");
        assert_eq!(
            msg(domain("d", "ex\u{430}mple.com").unwrap_err()),
            "domain must be ASCII; internationalised domains arrive as xn-- punycode; found U+0430 in 'ex\u{430}mple.com'"
        );
        assert_eq!(
            msg(app_name("name", "\u{ff41}pp").unwrap_err()),
            "app name must be ASCII; found U+FF41 in '\u{ff41}pp'"
        );
        assert!(msg(domain("d", "test..com").unwrap_err()).contains("empty label"));
        assert!(msg(domain("d", "example.com.").unwrap_err()).contains("end with a dot"));
        assert!(msg(domain("d", "*.com").unwrap_err()).contains("wildcard must cover at least two labels"));
        assert!(msg(domain("d", "a.*.com").unwrap_err()).contains("whole first label"));
        assert!(msg(domain("d", "localhost").unwrap_err()).contains("at least two labels"));
        assert!(msg(domain("d", "10.0.0.1").unwrap_err()).contains("IP addresses"));
        assert!(msg(domain("d", "a-.com").unwrap_err()).contains("start or end with '-'"));
        assert!(msg(domain("d", "exa\nmple.com").unwrap_err()).contains(r"found '\n' in 'exa\nmple.com'"));
        assert_eq!(msg(runtime("runtime", "php8").unwrap_err()), "runtime must look like 'php8.3': 'php8'");
    }

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(shown("a\nb"), r"'a\nb'");
        assert_eq!(shown("\r\t\0"), r"'\r\t\0'");
        assert_eq!(shown(r#"'"\"#), r#"'\'\"\\'"#);
        assert_eq!(shown("\u{202e}x\u{200b}"), r"'\u{202e}x\u{200b}'");
        assert_eq!(shown("héllo"), "'héllo'");
        let exact = "x".repeat(SHOWN_MAX);
        assert_eq!(shown(&exact), format!("'{exact}'"));
        let huge = "y".repeat(1 << 20);
        let s = shown(&huge);
        assert_eq!(s, format!("'{}…'", "y".repeat(SHOWN_MAX)));
        let err = domain("domains[0]", &format!("{huge}\n")).unwrap_err();
        assert!(err.message.len() < 200, "{}", err.message.len());
    }

    #[test]
    fn password_rules_and_secrecy() {
        let bad = [
            "short7c",
            " leading-space",
            "trailing-space ",
            "\tleading-tab",
            "line\nbreak-pw",
            "carriage\rreturn",
            "nul\0inside-pw",
            "escape\u{1b}[31m",
            "del\u{7f}character",
            "c1\u{85}control",
            "\u{3000}ideographic-space",
        ];
        let long = "s3cret-".repeat(29); // 203 characters
        for v in bad.iter().copied().chain([long.as_str()]) {
            let err = password("user.password", v).expect_err(v);
            assert_eq!(err.field, "user.password");
            let core = v.trim();
            assert!(!err.message.contains(core), "{:?} leaks the password", err.message);
            assert!(!err.to_string().contains(core));
            assert!(!format!("{err:?}").contains(core));
        }
        assert!(password("p", &"p".repeat(201)).unwrap_err().message.contains("at most 200"));
        assert!(password("p", "1234567").unwrap_err().message.contains("at least 8"));
        // Length is counted in characters, not bytes.
        password("p", &"é".repeat(200)).unwrap();
        assert!(password("p", "éééé").is_err());
    }

    #[test]
    fn domain_list_rules() {
        domain_list("domains", &["example.com", "example.org", "*.example.com"], 3).unwrap();
        domain_list("domains", &["www.example.com"], 1).unwrap();

        let err = domain_list("domains", &[], 10).unwrap_err();
        assert_eq!(err.field, "domains");

        let err = domain_list("domains", &["a.com", "b.com", "c.com"], 2).unwrap_err();
        assert_eq!(err, FieldError::new("domains", "at most 2 domains are allowed per app (got 3)"));

        let err = domain_list("domains", &["a.com", "b.com", "test..com"], 10).unwrap_err();
        assert_eq!(err.field, "domains[2]");

        let err = domain_list("domains", &["a.com", "b.com", "a.com"], 10).unwrap_err();
        assert_eq!(err.field, "domains[2]");
        assert!(err.message.contains("duplicate") && err.message.contains("domains[0]"), "{}", err.message);

        // PROTOCOL: listing the www. twin as well is allowed and means the same.
        assert_eq!(domain_list("domains", &["example.com", "x.org", "www.example.com"], 10), Ok(()));
        assert_eq!(domain_list("domains", &["www.myblog.com", "myblog.com"], 10), Ok(()));
    }

    #[test]
    fn params_typed_access() {
        let v = json!({"name": "derek", "force": true, "port": 80, "note": null,
                       "domains": ["a.com", "b.com"], "user": {"name": "wp", "password": "x"}});
        let p = Params::new(&v).unwrap();
        assert_eq!(p.str("name").unwrap(), "derek");
        assert_eq!(p.opt_str("name").unwrap(), Some("derek"));
        assert_eq!(p.opt_str("note").unwrap(), None);
        assert_eq!(p.opt_str("absent").unwrap(), None);
        assert!(p.bool("force").unwrap());
        assert_eq!(p.opt_bool("absent").unwrap(), None);
        assert_eq!(p.opt_u64("port").unwrap(), Some(80));
        assert_eq!(p.str_array("domains").unwrap(), vec!["a.com", "b.com"]);
        assert_eq!(p.opt_str_array("absent").unwrap(), None);
        let user = p.object("user").unwrap();
        assert_eq!(user.str("name").unwrap(), "wp");
        assert_eq!(user.field("password"), "user.password");
    }

    #[test]
    fn params_missing_null_and_wrong_type() {
        let v = json!({"name": 3, "force": "yes", "port": -1, "note": null, "size": 1.5,
                       "domains": "a.com", "user": "wp"});
        let p = Params::new(&v).unwrap();
        assert_eq!(p.str("absent").unwrap_err().to_string(), "absent: is required");
        assert_eq!(p.str("note").unwrap_err(), FieldError::new("note", "is required"));
        assert_eq!(p.str("name").unwrap_err(), FieldError::new("name", "must be a string"));
        assert_eq!(p.opt_str("name").unwrap_err().field, "name");
        assert_eq!(p.bool("force").unwrap_err().field, "force");
        assert_eq!(p.opt_bool("force").unwrap_err().field, "force");
        assert_eq!(p.opt_u64("port").unwrap_err().field, "port");
        assert_eq!(p.opt_u64("size").unwrap_err().field, "size");
        assert_eq!(p.str_array("domains").unwrap_err().field, "domains");
        assert_eq!(p.opt_str_array("domains").unwrap_err().field, "domains");
        assert_eq!(p.object("user").err(), Some(FieldError::new("user", "must be an object")));
        assert_eq!(p.object("absent").err(), Some(FieldError::new("absent", "is required")));
    }

    #[test]
    fn params_name_nested_and_indexed_fields() {
        let v = json!({"user": {"name": 7}, "domains": ["a.com", "b.com", 3], "db": {"user": {}}});
        let p = Params::new(&v).unwrap();
        let user = p.object("user").unwrap();
        assert_eq!(user.str("name").unwrap_err(), FieldError::new("user.name", "must be a string"));
        assert_eq!(user.str("password").unwrap_err().to_string(), "user.password: is required");
        let err = p.str_array("domains").unwrap_err();
        assert_eq!(err, FieldError::new("domains[2]", "must be a string"));
        let deep = p.object("db").unwrap().object("user").unwrap();
        assert_eq!(deep.str("name").unwrap_err().field, "db.user.name");
        // A rule checked through the helper names the same field.
        let v = json!({"user": {"name": "3po"}});
        let user = Params::new(&v).unwrap().object("user").unwrap();
        let name = user.str("name").unwrap();
        assert_eq!(db_user_name(&user.field("name"), name).unwrap_err().field, "user.name");
    }

    #[test]
    fn checked_params_name_the_field_of_the_broken_rule() {
        let value = serde_json::json!({"name": "3po", "user": {"name": "ok"}, "runtime": null});
        let params = Params::new(&value).unwrap();
        assert_eq!(params.checked("name", sysuser_name).unwrap_err().field, "name");
        assert_eq!(params.object("user").unwrap().checked("name", sysuser_name).unwrap_err().field, "user.name");
        assert_eq!(params.opt_checked("runtime", runtime).unwrap(), None);
        assert_eq!(params.checked("missing", app_name).unwrap_err().field, "missing");
    }

    #[test]
    fn params_must_be_an_object() {
        for bad in [json!([]), json!("x"), json!(1), json!(true)] {
            let err = Params::new(&bad).err().expect("non-object params must be refused");
            assert_eq!(err.field, "params");
        }
        let null = Value::Null;
        let p = Params::new(&null).unwrap();
        assert_eq!(p.str("name").unwrap_err(), FieldError::new("name", "is required"));
        assert_eq!(p.opt_bool("firewall").unwrap(), None);
        let empty = json!({});
        assert_eq!(Params::new(&empty).unwrap().opt_u64("n").unwrap(), None);
    }

    #[test]
    fn wordpress_fields_take_what_wordpress_takes_and_nothing_that_breaks_out() {
        let max_email = format!("{}@{}.com", "a".repeat(64), "b".repeat(31));
        assert_eq!(max_email.len(), 100);
        let good: [(Rule, &str); 13] = [
            (table_prefix, "wp_"),
            (table_prefix, "_"),
            (table_prefix, "My_Site2_"),
            (table_prefix, "abcdefghijklmnopqrs_"),
            (site_title, "Derek's \"blog\" <3 — ünïcode"),
            (site_title, &"t".repeat(200)),
            (wp_user, "admin"),
            (wp_user, "derek.o-k_1@home"),
            (wp_user, &"u".repeat(60)),
            (email, "derek@example.com"),
            (email, "d.e+tag%x_y-z@Sub.Example.COM"),
            (email, &max_email),
            (email, "a@xn--bcher-kva.example"),
        ];
        for (rule, v) in good {
            rule("f", v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        }
        let bad: [(Rule, &str); 20] = [
            (table_prefix, "wp"),
            (table_prefix, "wp;_"),
            (table_prefix, "wp'_"),
            (table_prefix, "wp-_"),
            (table_prefix, "abcdefghijklmnopqrst_"),
            (site_title, ""),
            (site_title, "\t \n"),
            (site_title, "a\u{0}b"),
            (site_title, &"t".repeat(201)),
            (wp_user, "a b"),
            (wp_user, "a'b"),
            (wp_user, "ädmin"),
            (email, "derek"),
            (email, "derek@localhost"),
            (email, ".derek@example.com"),
            (email, "de\"rek@example.com"),
            (email, "derek@*.example.com"),
            (email, "derek@example.com\n"),
            (email, "derek@192.0.2.1"),
            (email, &format!("{}@example.com", "a".repeat(65))),
        ];
        for (rule, v) in bad {
            rejected(rule, "wordpress.f", v);
        }
    }
}

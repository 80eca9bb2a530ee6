//! The page cache's values (`app.page_cache`, `app.cache_purge`), each a checked
//! type: the lifetime the inventory keeps, and the URL paths a purge names.
//!
//! A lifetime reaches nginx's config and a path reaches the cache key that names a
//! file berth deletes as root, so both are checked here once, by the job's parser
//! and by serde alike: a hand-edited `inventory.json` with a lifetime of 0 fails to
//! load, naming the field, as every other value of the inventory does.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::validate::{shown, FieldError, Params};

/// Shortest cache lifetime, in seconds.
pub const MIN_TTL_SECS: u64 = 1;
/// Longest cache lifetime: a year.
pub const MAX_TTL_SECS: u64 = 31_536_000;
/// The lifetime when `app.page_cache` names none: an hour.
pub const DEFAULT_TTL_SECS: u32 = 3600;
/// At most this many paths in one purge.
pub const MAX_PURGE_PATHS: usize = 100;
/// Longest URL path a purge takes, in bytes.
pub const MAX_PATH_LEN: usize = 2048;

/// An app's page cache, as the inventory keeps it while it is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageCache {
    pub ttl_secs: CacheTtl,
}

/// How long a cached page is served, in seconds: [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CacheTtl(u32);

impl CacheTtl {
    /// `value`, checked; an error names `field`.
    pub fn parse(field: &str, value: u64) -> Result<CacheTtl, FieldError> {
        if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&value) {
            return Err(FieldError::new(
                field,
                format!("must be between {MIN_TTL_SECS} and {MAX_TTL_SECS} seconds (a year), not {value}"),
            ));
        }
        Ok(CacheTtl(u32::try_from(value).expect("bounded by MAX_TTL_SECS")))
    }

    /// The optional param `key`, [`DEFAULT_TTL_SECS`] when absent.
    pub fn opt_param(params: &Params, key: &str) -> Result<CacheTtl, FieldError> {
        match params.opt_u64(key)? {
            Some(value) => CacheTtl::parse(&params.field(key), value),
            None => Ok(CacheTtl(DEFAULT_TTL_SECS)),
        }
    }

    pub fn secs(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for CacheTtl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CacheTtl::parse("ttl_secs", u64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The path of a URL as a browser sends it (what nginx's `$request_uri` holds for
/// a cacheable request): `/` first, then printable ASCII without spaces, no query
/// string or fragment (a request with a query string is never cached), no `.` or
/// `..` segment (a browser resolves those before it asks), at most
/// [`MAX_PATH_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPath(String);

impl UrlPath {
    /// `value`, checked; an error names `field`.
    pub fn parse(field: &str, value: &str) -> Result<UrlPath, FieldError> {
        let fail = |message: String| Err(FieldError::new(field, message));
        if !value.starts_with('/') {
            return fail(format!("must be a URL path starting with '/': {}", shown(value)));
        }
        if value.len() > MAX_PATH_LEN {
            return fail(format!("must be at most {MAX_PATH_LEN} bytes long"));
        }
        if let Some(bad) = value.chars().find(|c| !c.is_ascii_graphic()) {
            return fail(format!(
                "may only contain printable ASCII without spaces (percent-encode the rest); found {} in {}",
                shown(&bad.to_string()),
                shown(value)
            ));
        }
        if value.contains(['?', '#']) {
            return fail(format!(
                "must not hold a query string or fragment (such requests are never cached): {}",
                shown(value)
            ));
        }
        if value.split('/').any(|segment| segment == "." || segment == "..") {
            return fail(format!("must not hold a '.' or '..' segment: {}", shown(value)));
        }
        Ok(UrlPath(value.to_owned()))
    }

    /// The optional array param `key`: `None` when absent; element errors name
    /// `key[i]`. An empty array is refused (leave it out to purge everything).
    pub fn opt_params(params: &Params, key: &str) -> Result<Option<Vec<UrlPath>>, FieldError> {
        let Some(values) = params.opt_str_array(key)? else { return Ok(None) };
        let field = params.field(key);
        if values.is_empty() {
            return Err(FieldError::new(field, "must not be empty (leave it out to purge every page)"));
        }
        if values.len() > MAX_PURGE_PATHS {
            return Err(FieldError::new(field, format!("must hold at most {MAX_PURGE_PATHS} paths")));
        }
        let paths = values.iter().enumerate().map(|(i, value)| UrlPath::parse(&format!("{field}[{i}]"), value));
        paths.collect::<Result<Vec<_>, _>>().map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UrlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lifetime_is_within_a_second_and_a_year_and_defaults_to_an_hour() {
        for ok in [1, 60, 3600, MAX_TTL_SECS] {
            assert_eq!(u64::from(CacheTtl::parse("ttl_secs", ok).unwrap().secs()), ok);
        }
        for bad in [0, MAX_TTL_SECS + 1, u64::MAX] {
            assert_eq!(CacheTtl::parse("ttl_secs", bad).unwrap_err().field, "ttl_secs");
        }
        let absent = json!({});
        assert_eq!(CacheTtl::opt_param(&Params::new(&absent).unwrap(), "ttl_secs").unwrap().secs(), 3600);
        assert!(serde_json::from_str::<PageCache>(r#"{"ttl_secs": 0}"#).unwrap_err().to_string().contains("ttl_secs"));
        let kept: PageCache = serde_json::from_str(r#"{"ttl_secs": 600}"#).unwrap();
        assert_eq!(serde_json::to_string(&kept).unwrap(), r#"{"ttl_secs":600}"#);
    }

    /// The inventory keeps the cache while it is on, and no key at all while it is
    /// off (so an inventory from before the page cache saves byte for byte).
    #[test]
    fn an_app_keeps_its_page_cache_and_one_without_has_no_key() {
        let on = r#"{"sysuser":"derek","runtime":"php8.2","domains":["a.test"],"stack":"nginx","created_ms":1,"page_cache":{"ttl_secs":600}}"#;
        let app: crate::model::App = serde_json::from_str(on).unwrap();
        assert_eq!(app.page_cache.as_ref().map(|c| c.ttl_secs.secs()), Some(600));
        assert_eq!(serde_json::to_string(&app).unwrap(), on);
        let off = crate::model::App { page_cache: None, ..app };
        assert!(!serde_json::to_string(&off).unwrap().contains("page_cache"));
    }

    #[test]
    fn a_purge_path_is_a_plain_absolute_url_path() {
        for ok in
            ["/", "/about/", "/2026/12/hello-world/", "/caf%C3%A9", "/a.b/c..d/...", &format!("/{}", "a".repeat(2047))]
        {
            assert_eq!(UrlPath::parse("paths[0]", ok).unwrap().as_str(), ok);
        }
        for bad in
            ["", "about", "/a b", "/a\nb", "/café", "/?p=1", "/a#top", "/a/../b", "/./", "/..", &"/".repeat(2049)]
        {
            assert_eq!(UrlPath::parse("paths[3]", bad).unwrap_err().field, "paths[3]", "{bad:?}");
        }
    }
}

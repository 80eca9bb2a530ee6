//! The page cache's REST routes of `berth dev`: `POST /apps/:id/page_cache` turns an
//! app's cache on or off (`app.page_cache`), `POST /apps/:id/cache_purge` empties it
//! (`app.cache_purge`). Their bodies are the jobs' params without `app`, checked by
//! the agent's own parsers (400 naming the field), as every other route is.

use serde_json::{json, Value};

use super::error::ApiError;
use super::resources::{action, change, check, found, pick, sid};
use super::Shared;

/// `POST /apps/:id/page_cache {"enabled", "ttl_secs"?}`: the app keeps
/// `page_cache {enabled, ttl_secs}` (`ttl_secs` null while off), and answers it.
pub fn set_page_cache(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let mut app = found(w, "app", id)?;
        let mut params = pick(body, &["enabled", "ttl_secs"]);
        params["app"] = app["name"].clone();
        check(shared, "app.page_cache", &params)?;
        let enabled = params["enabled"] == true;
        let ttl = if enabled {
            params.get("ttl_secs").cloned().unwrap_or(json!(crate::model::cache::DEFAULT_TTL_SECS))
        } else {
            Value::Null
        };
        let view = json!({"enabled": enabled, "ttl_secs": ttl});
        app["page_cache"] = view.clone();
        w.put("app", &app);
        Ok((action(w, sid(&app), "app.page_cache", params, None), view))
    })
}

/// `POST /apps/:id/cache_purge {"paths"?}`: every cached page of the app, or those
/// of `paths`; answers `{}`.
pub fn purge_cache(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let app = found(w, "app", id)?;
        let mut params = pick(body, &["paths"]);
        params["app"] = app["name"].clone();
        check(shared, "app.cache_purge", &params)?;
        Ok((action(w, sid(&app), "app.cache_purge", params, None), json!({})))
    })
}

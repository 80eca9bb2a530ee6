//! The object cache's REST routes of `berth dev`: `POST /apps/:id/object_cache`
//! turns an app's Redis object cache on or off (`app.object_cache`), `POST
//! /apps/:id/object_cache_purge` deletes its keys (`app.object_cache_purge`). Their
//! bodies are the jobs' params without `app`, checked by the agent's own parsers
//! (400 naming the field), as every other route is.

use serde_json::{json, Value};

use super::error::ApiError;
use super::resources::{action, change, check, found, pick, sid};
use super::Shared;

/// `POST /apps/:id/object_cache {"enabled"}`: the app keeps `object_cache
/// {enabled}`, and answers it.
pub fn set_object_cache(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let mut app = found(w, "app", id)?;
        let mut params = pick(body, &["enabled"]);
        params["app"] = app["name"].clone();
        check(shared, "app.object_cache", &params)?;
        let view = json!({"enabled": params["enabled"] == true});
        app["object_cache"] = view.clone();
        w.put("app", &app);
        Ok((action(w, sid(&app), "app.object_cache", params, None), view))
    })
}

/// `POST /apps/:id/object_cache_purge {}`: every key of the app; answers `{}`.
pub fn purge_object_cache(shared: &Shared, id: &str, _body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let app = found(w, "app", id)?;
        let params = json!({"app": app["name"].clone()});
        check(shared, "app.object_cache_purge", &params)?;
        Ok((action(w, sid(&app), "app.object_cache_purge", params, None), json!({})))
    })
}

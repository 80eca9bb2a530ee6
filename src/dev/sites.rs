//! `berth dev`'s `POST /apps/:id/basic_auth` (issue 16) and `POST
//! /apps/:id/fix_permissions` (issue 17); the other site options ride
//! on `POST /apps` and `POST /apps/:id` ([`super::siteview`]).
//!
//! As everywhere in `berth dev`, the agent's own parser checks each field first (a
//! 400 naming it), the record takes its new shape at once, and the password goes
//! into the pending job only: the record shows the user name, never the password.

use serde_json::{json, Value};

use super::error::ApiError;
use super::resources::{action, change, check, found, pick, sid};
use super::Shared;

/// `POST /apps/:id/basic_auth {enabled, username?, password?}`: answers the app's
/// `basic_auth` object (`{enabled, username}`).
pub fn set_basic_auth(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let mut app = found(w, "app", id)?;
        let mut params = pick(body, &["enabled", "username", "password"]);
        params["app"] = app["name"].clone();
        check(shared, "app.basic_auth", &params)?;
        let enabled = params["enabled"] == true;
        let view =
            json!({"enabled": enabled, "username": if enabled { params["username"].clone() } else { Value::Null }});
        app["basic_auth"] = view.clone();
        w.put("app", &app);
        Ok((action(w, sid(&app), "app.basic_auth", params, None), view))
    })
}

/// `POST /apps/:id/fix_permissions {}`: `app.fix_permissions`; answers `{}` (the
/// action's result counts what changed and what was left alone).
pub fn fix_permissions(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    change(shared, |w| {
        let app = found(w, "app", id)?;
        let params = json!({"app": app["name"].clone()});
        check(shared, "app.fix_permissions", &params)?;
        Ok((action(w, sid(&app), "app.fix_permissions", params, None), json!({})))
    })
}

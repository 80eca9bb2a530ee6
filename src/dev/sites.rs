//! `berth dev`'s routes for the site options of issue 16 (SpinupWP's site object on
//! ServerPilot's app resource): the fields `POST /apps` and `POST /apps/:id` pass
//! through to the agent, how the app record shows them, and `POST
//! /apps/:id/basic_auth`.
//!
//! As everywhere in `berth dev`, the agent's own parser checks each field first (a
//! 400 naming it), the record takes its new shape at once, and the password goes
//! into the pending job only: the record shows the user name, never the password.

use serde_json::{json, Value};

use super::error::ApiError;
use super::resources::{action, change, check, found, pick, sid};
use super::Shared;

/// The site options `app.create` and `app.update` take (docs/protocol.md).
pub const SITE_OPTIONS: &[&str] =
    &["redirect_domains", "public_folder", "uploads_directory_protected", "xmlrpc_protected", "nginx"];

/// The app record with the options `params` names (the others as they were): the
/// record shows SpinupWP's shapes, `nginx {uploads_directory_protected,
/// xmlrpc_protected}`, `redirect_domains` and `public_folder`.
pub fn show_options(app: &mut Value, params: &Value) {
    if app["nginx"].is_null() {
        app["nginx"] = json!({"uploads_directory_protected": false, "xmlrpc_protected": false});
    }
    for key in ["uploads_directory_protected", "xmlrpc_protected"] {
        let given = if params[key].is_boolean() { &params[key] } else { &params["nginx"][key] };
        if given.is_boolean() {
            app["nginx"][key] = given.clone();
        }
    }
    if !params["redirect_domains"].is_null() {
        app["redirect_domains"] = params["redirect_domains"].clone();
    } else if app["redirect_domains"].is_null() {
        app["redirect_domains"] = json!([]);
    }
    if !params["public_folder"].is_null() {
        app["public_folder"] = params["public_folder"].clone();
    } else if app["public_folder"].is_null() {
        app["public_folder"] = json!("public");
    }
    if app["basic_auth"].is_null() {
        app["basic_auth"] = json!({"enabled": false, "username": null});
    }
}

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

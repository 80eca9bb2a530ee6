//! How `berth dev`'s app record shows the site options of issue 16 (SpinupWP's site
//! object on ServerPilot's app resource), and which body fields `POST /apps` and
//! `POST /apps/:id` pass to the agent. Plain data: the routes are
//! [`super::resources`] and [`super::sites`].

use serde_json::{json, Value};

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

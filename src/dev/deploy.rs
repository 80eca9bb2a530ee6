//! Git deploys' REST routes of `berth dev`: `POST /apps/:id/git` sets them up
//! (`app.git`), `POST /apps/:id/deploy` deploys (`app.deploy`). Their bodies are
//! the jobs' params without `app`, checked by the agent's own parsers (400 naming
//! the field), as every other route is. The deploy key is made on the server: its
//! public half is the `app.git` action's `result` (`GET /actions/:id`).

use serde_json::{json, Value};

use super::error::ApiError;
use super::resources::{action, change, check, found, pick, sid};
use super::Shared;

/// `POST /apps/:id/git {repo, branch, deploy_script?, keep?, host_keys?, shared?}`:
/// the app keeps `git {repo, branch, keep}`, and answers it.
pub fn set_git(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let mut app = found(w, "app", id)?;
        let mut params = pick(body, &["repo", "branch", "deploy_script", "keep", "host_keys", "shared"]);
        params["app"] = app["name"].clone();
        check(shared, "app.git", &params)?;
        let keep = params.get("keep").cloned().unwrap_or(json!(crate::model::deploy::DEFAULT_KEEP));
        let view = json!({"repo": params["repo"], "branch": params["branch"], "keep": keep,
            "host_keys_pinned": params.get("host_keys").is_some_and(|k| !k.is_null())});
        app["git"] = view.clone();
        w.put("app", &app);
        Ok((action(w, sid(&app), "app.git", params, None), view))
    })
}

/// `POST /apps/:id/deploy {force?}`: a deploy of an app that has `git`; answers `{}`.
pub fn deploy(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let app = found(w, "app", id)?;
        if app["git"].is_null() {
            return Err(ApiError::bad_request("this app has no git deploys: POST /apps/:id/git first".to_owned()));
        }
        let mut params = pick(body, &["force"]);
        params["app"] = app["name"].clone();
        check(shared, "app.deploy", &params)?;
        Ok((action(w, sid(&app), "app.deploy", params, None), json!({})))
    })
}

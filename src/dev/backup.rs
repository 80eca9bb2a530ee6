//! The backup routes of `berth dev`: `POST /apps/:id/backup` runs `app.backup`,
//! `POST /apps/:id/restore` runs `app.restore`. Their bodies are the jobs' params
//! without `app`, checked by the agent's own parsers (400 naming the field). The
//! answer is the action's id; the action's result (`GET /actions/:id`) holds the
//! snapshot ids and the app's backups.
//!
//! The dev store keeps an action's params as it keeps `db.create`'s: the repository
//! password is in `berth dev`'s own store, never on the agent's disk.

use serde_json::{json, Value};

use super::error::ApiError;
use super::resources::{action, change, check, found, pick, sid};
use super::Shared;

fn run(shared: &Shared, id: &str, body: &Value, kind: &str, keys: &[&str]) -> Result<Value, ApiError> {
    change(shared, |w| {
        let app = found(w, "app", id)?;
        let mut params = pick(body, keys);
        params["app"] = app["name"].clone();
        check(shared, kind, &params)?;
        Ok((action(w, sid(&app), kind, params, None), json!({})))
    })
}

/// `POST /apps/:id/backup {"repository", "files", "database", "exclude"?, "retention"}`.
pub fn backup(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    run(shared, id, body, "app.backup", &["repository", "files", "database", "exclude", "retention"])
}

/// `POST /apps/:id/restore {"repository", "snapshot", "files"?, "database"?}`.
pub fn restore(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    run(shared, id, body, "app.restore", &["repository", "snapshot", "files", "database"])
}

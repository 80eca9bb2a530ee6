//! What each REST route of `berth dev` does: the checks against the store (404, 403,
//! 409), the agent's own field rules (400, through the job catalogue's parsers, so
//! the API can never accept what the agent would refuse), the records it keeps, and
//! the one job (`job_id` = action id) a change becomes.
//!
//! Resources take their new shape at once, as in ServerPilot. A create whose job
//! ends in `error` stays, with `failed_action` (the action's id and error), until
//! the user deletes it or retries: the same create again reuses the record (its id)
//! and sends the job anew. Passwords and keys go into the pending job's params only,
//! never into a resource.

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::store::Writer;
use super::Shared;
use crate::job::JobError;

pub(super) fn object(body: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    body.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// The body's fields among `keys`, nulls left out: the params of a job.
pub(super) fn pick(body: &Value, keys: &[&str]) -> Value {
    Value::Object(
        object(body)
            .iter()
            .filter(|(k, v)| keys.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The agent's own parse of `params`: a broken rule is a 400 naming the field.
pub(super) fn check(shared: &Shared, kind: &str, params: &Value) -> Result<(), ApiError> {
    match shared.catalogue.parse(kind, params) {
        Ok(_) => Ok(()),
        Err(JobError::InvalidParams(e)) => Err(ApiError::bad_request(format!("{}: {}", e.field, e.message))),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

pub(super) fn found(w: &Writer, kind: &str, id: &str) -> Result<Value, ApiError> {
    w.get(kind, id)
        .ok_or_else(|| ApiError::not_found(format!("no {kind} with id {}", crate::model::validate::shown(id))))
}

/// A string id field of the body (`sysuserid`, `appid`) naming a `kind` record.
fn reference(w: &Writer, body: &Value, field: &str, kind: &str) -> Result<Value, ApiError> {
    match &body[field] {
        Value::Null => Err(ApiError::bad_request(format!("{field}: is required"))),
        Value::String(id) => {
            let record = found(w, kind, id)?;
            if record.get("failed_action").is_some() {
                return Err(ApiError::conflict(format!(
                    "{field}: the {kind}'s create failed: retry it or delete it first"
                )));
            }
            Ok(record)
        }
        _ => Err(ApiError::bad_request(format!("{field}: must be a string"))),
    }
}

/// 403 when the body sets `field` to something else than the record has.
fn immutable(record: &Value, body: &Value, fields: &[&str]) -> Result<(), ApiError> {
    for field in fields {
        if !body[*field].is_null() && body[*field] != record[*field] {
            return Err(ApiError::forbidden(format!("{field}: cannot be changed")));
        }
    }
    Ok(())
}

/// The record of `kind` on `server` whose `field` is `value`: `Ok(None)` when there is none,
/// `Ok(Some(id))` when its create failed (a retry takes its id), 409 otherwise.
fn taken(
    w: &Writer,
    server: &Value,
    kind: &str,
    field: &str,
    value: &Value,
    what: &str,
) -> Result<Option<String>, ApiError> {
    let Some(record) = w.list(kind).into_iter().find(|r| &r[field] == value && &r["serverid"] == server) else {
        return Ok(None);
    };
    if record.get("failed_action").is_some() {
        return Ok(record["id"].as_str().map(str::to_owned));
    }
    Err(ApiError::conflict(format!("{field}: {what} named {value} exists")))
}

/// A record's server id.
pub(super) fn sid(record: &Value) -> &str {
    record["serverid"].as_str().unwrap_or_default()
}

pub(super) fn new_id() -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(16).collect()
}

/// Records an open action for one job of `server_id`; returns its id (the job's
/// `job_id`).
pub(super) fn action(w: &mut Writer, server_id: &str, kind: &str, params: Value, creates: Option<String>) -> String {
    let id = new_id();
    let seq: u64 = w.meta("action_seq").and_then(|s| s.parse().ok()).unwrap_or(0) + 1;
    w.set_meta("action_seq", &seq.to_string());
    let mut record = json!({"id": id, "serverid": server_id, "status": "open", "datecreated": super::now_secs(),
        "kind": kind, "params": params, "queued": false, "seq": seq});
    if let Some(creates) = creates {
        record["creates"] = json!(creates);
    }
    w.put("action", &record);
    id
}

/// Runs `change` in one write transaction; when it made an action, wakes the
/// control plane and answers `{"actionid", "data"}`.
pub(super) fn change(
    shared: &Shared,
    change: impl FnOnce(&mut Writer) -> Result<(String, Value), ApiError>,
) -> Result<Value, ApiError> {
    let (actionid, data) = shared.store.write(change)??;
    shared.wake();
    Ok(json!({"actionid": actionid, "data": data}))
}

/// A list; apps without their `autossl` details, which ServerPilot gives on the
/// single-app route only.
pub fn list(shared: &Shared, kind: &str) -> Result<Value, ApiError> {
    let mut records = shared.store.read(|w| w.list(kind))?;
    if kind == "app" {
        for app in &mut records {
            if let Some(app) = app.as_object_mut() {
                app.remove("autossl");
            }
        }
    }
    Ok(json!({"data": records}))
}

pub fn get(shared: &Shared, kind: &str, id: &str) -> Result<Value, ApiError> {
    Ok(json!({"data": shared.store.read(|w| found(w, kind, id))??}))
}

pub fn get_action(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    let action = shared.store.read(|w| found(w, "action", id))??;
    let mut data = json!({"id": action["id"], "serverid": action["serverid"], "status": action["status"], "datecreated": action["datecreated"]});
    if action["status"] == "error" {
        data["error"] = action["error"].clone();
    }
    if !action["result"].is_null() {
        data["result"] = action["result"].clone();
    }
    Ok(json!({"data": data}))
}

// ---- system users ----

pub fn create_sysuser(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    let params = pick(body, &["name", "password"]);
    check(shared, "sysuser.create", &params)?;
    change(shared, |w| {
        // ServerPilot's `serverid`; without one, the local server.
        let server = match &body["serverid"] {
            Value::Null => json!(shared.server_id),
            Value::String(id) if w.get("server", id).is_some() => json!(id),
            _ => return Err(ApiError::not_found("serverid: no such server")),
        };
        let name = &params["name"];
        let id = taken(w, &server, "sysuser", "name", name, "a system user")?.unwrap_or_else(new_id);
        let user = json!({"id": id, "serverid": server, "name": name, "datecreated": super::now_secs()});
        w.put("sysuser", &user);
        Ok((action(w, sid(&user), "sysuser.create", params.clone(), Some(format!("sysuser/{id}"))), user))
    })
}

pub fn update_sysuser(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let user = found(w, "sysuser", id)?;
        immutable(&user, body, &["name", "serverid"])?;
        let params = json!({"name": user["name"], "password": body["password"]});
        check(shared, "sysuser.update", &params)?;
        Ok((action(w, sid(&user), "sysuser.update", params, None), user))
    })
}

pub fn delete_sysuser(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    change(shared, |w| {
        let user = found(w, "sysuser", id)?;
        for app in w.list("app").into_iter().filter(|a| a["sysuserid"] == id) {
            forget_app(w, &app);
        }
        w.delete("sysuser", id);
        Ok((action(w, sid(&user), "sysuser.delete", json!({"name": user["name"]}), None), json!({})))
    })
}

// ---- apps ----

/// 409 when one of `domains` (or its www. twin) belongs to an app of `server` other
/// than `app_id`.
fn domains_free(w: &Writer, server: &Value, domains: &Value, app_id: &str) -> Result<(), ApiError> {
    let bare = |d: &str| d.strip_prefix("www.").unwrap_or(d).to_owned();
    for app in w.list("app").into_iter().filter(|a| a["id"] != app_id && &a["serverid"] == server) {
        for held in app["domains"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if let Some(d) =
                domains.as_array().into_iter().flatten().filter_map(Value::as_str).find(|d| bare(d) == bare(held))
            {
                return Err(ApiError::conflict(format!(
                    "domains: {} belongs to the app {}",
                    crate::model::validate::shown(d),
                    app["name"]
                )));
            }
        }
    }
    Ok(())
}

/// 400 unless `runtime` is one of the server's `available_runtimes` (once the agent
/// has said which: before its first hello the agent's own check decides).
fn runtime_available(w: &Writer, server: &str, runtime: &Value) -> Result<(), ApiError> {
    let server = w.get("server", server).unwrap_or(Value::Null);
    let Some(available) = server["available_runtimes"].as_array().filter(|a| !a.is_empty()) else { return Ok(()) };
    if runtime.is_null() || available.contains(runtime) {
        return Ok(());
    }
    let names: Vec<&str> = available.iter().filter_map(Value::as_str).collect();
    Err(ApiError::bad_request(format!(
        "runtime: {runtime} is not available on this server (available: {})",
        names.join(", ")
    )))
}

/// `wordpress` of `POST /apps` as `app.create` takes it: berth's flat shape
/// (`site_title`, `admin_user`, ...) as it is, or ServerPilot's nested one
/// (`{"site": {"title"}, "admin": {"user", "password", "email"}}`) flattened.
fn wordpress(body: &Value) -> Value {
    let given = &body["wordpress"];
    if given["site"].is_null() && given["admin"].is_null() {
        return given.clone();
    }
    let mut flat = json!({"site_title": given["site"]["title"], "admin_user": given["admin"]["user"],
        "admin_password": given["admin"]["password"], "admin_email": given["admin"]["email"]});
    if !given["table_prefix"].is_null() {
        flat["table_prefix"] = given["table_prefix"].clone();
    }
    flat
}

/// `POST /apps`; with `wordpress`, the one job installs WordPress too (its
/// passwords go into the pending job only, and its database is the agent's: it is
/// not a `/dbs` resource).
pub fn create_app(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let user = reference(w, body, "sysuserid", "sysuser")?;
        let mut params =
            pick(body, &[&["name", "runtime", "domains", "stack"], super::siteview::SITE_OPTIONS].concat());
        params["sysuser"] = user["name"].clone();
        if !body["wordpress"].is_null() {
            params["wordpress"] = wordpress(body);
        }
        if params["domains"].is_null() {
            params["domains"] = json!([]);
        }
        check(shared, "app.create", &params)?;
        let server = &user["serverid"];
        runtime_available(w, sid(&user), &params["runtime"])?;
        let id = taken(w, server, "app", "name", &params["name"], "an app")?.unwrap_or_else(new_id);
        domains_free(w, server, &params["domains"], &id)?;
        let app = json!({"id": id, "name": params["name"], "sysuserid": user["id"], "serverid": server,
            "runtime": params["runtime"], "domains": params["domains"], "stack": params["stack"].as_str().unwrap_or("nginx-apache"),
            "ssl": null, "autossl": {"available": true}, "datecreated": super::now_secs()});
        let mut app = app;
        super::siteview::show_options(&mut app, &params);
        w.put("app", &app);
        Ok((action(w, sid(&app), "app.create", params, Some(format!("app/{id}"))), app))
    })
}

pub fn update_app(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let mut app = found(w, "app", id)?;
        immutable(&app, body, &["name", "sysuserid", "serverid", "stack"])?;
        let mut params = pick(body, &[&["runtime", "domains"], super::siteview::SITE_OPTIONS].concat());
        params["name"] = app["name"].clone();
        check(shared, "app.update", &params)?;
        runtime_available(w, sid(&app), &params["runtime"])?;
        domains_free(w, &app["serverid"], &params["domains"], id)?;
        for key in ["runtime", "domains"] {
            if !params[key].is_null() {
                app[key] = params[key].clone();
            }
        }
        super::siteview::show_options(&mut app, &params);
        w.put("app", &app);
        Ok((action(w, sid(&app), "app.update", params, None), app))
    })
}

/// Removes an app and its databases from the store (the agent removes them on the host).
fn forget_app(w: &mut Writer, app: &Value) {
    for db in w.list("db").into_iter().filter(|d| d["appid"] == app["id"]) {
        w.delete("db", db["id"].as_str().unwrap_or_default());
    }
    w.delete("app", app["id"].as_str().unwrap_or_default());
}

pub fn delete_app(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    change(shared, |w| {
        let app = found(w, "app", id)?;
        forget_app(w, &app);
        Ok((action(w, sid(&app), "app.delete", json!({"name": app["name"]}), None), json!({})))
    })
}

/// `POST /apps/:id/ssl`: `key`+`cert` (+`cacerts`) a custom certificate,
/// `{"auto": true}` AutoSSL, `{"force": bool}` ForceSSL.
pub fn set_ssl(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let mut app = found(w, "app", id)?;
        let ssl = app["ssl"].clone();
        let custom = !ssl.is_null() && ssl["auto"] != true;
        let (kind, params, new_ssl) = if !body["key"].is_null() || !body["cert"].is_null() {
            if ssl["auto"] == true {
                return Err(ApiError::conflict("AutoSSL is on for this app: turn it off (DELETE /apps/:id/ssl) before installing a custom certificate"));
            }
            let mut params = pick(body, &["key", "cert", "cacerts"]);
            params["app"] = app["name"].clone();
            let view = json!({"key": null, "cert": body["cert"], "cacerts": body["cacerts"], "auto": false, "force": ssl["force"] == true});
            ("ssl.install", params, view)
        } else if !body["auto"].is_null() {
            if body["auto"] != true {
                return Err(ApiError::bad_request("auto: must be true (DELETE /apps/:id/ssl turns AutoSSL off)"));
            }
            if custom {
                return Err(ApiError::conflict("auto: a custom certificate is installed: remove it (DELETE /apps/:id/ssl) before turning AutoSSL on"));
            }
            let view = json!({"key": null, "cert": null, "cacerts": null, "auto": true, "force": ssl["force"] == true});
            ("ssl.auto", json!({"app": app["name"]}), view)
        } else if !body["force"].is_null() {
            if ssl.is_null() && body["force"] == true {
                return Err(ApiError::conflict(
                    "force: the app has no certificate: install one or turn AutoSSL on first",
                ));
            }
            let mut view = if ssl.is_null() {
                json!({"key": null, "cert": null, "cacerts": null, "auto": false})
            } else {
                ssl.clone()
            };
            view["force"] = body["force"].clone();
            ("ssl.force", json!({"app": app["name"], "force": body["force"]}), view)
        } else {
            return Err(ApiError::bad_request(
                "give key and cert (a custom certificate), auto (AutoSSL) or force (ForceSSL)",
            ));
        };
        check(shared, kind, &params)?;
        app["ssl"] = new_ssl.clone();
        w.put("app", &app);
        // ServerPilot answers with the SSL object (the key never shown), not the app.
        Ok((action(w, sid(&app), kind, params, None), new_ssl))
    })
}

/// `DELETE /apps/:id/ssl`: the certificate (custom or AutoSSL) and ForceSSL go;
/// ServerPilot answers `{}`.
pub fn delete_ssl(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    change(shared, |w| {
        let mut app = found(w, "app", id)?;
        app["ssl"] = Value::Null;
        w.put("app", &app);
        Ok((action(w, sid(&app), "ssl.delete", json!({"app": app["name"]}), None), json!({})))
    })
}

// ---- databases ----

pub fn create_db(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let app = reference(w, body, "appid", "app")?;
        let mut params = pick(body, &["name", "user"]);
        params["app"] = app["name"].clone();
        check(shared, "db.create", &params)?;
        let server = &app["serverid"];
        let retry = taken(w, server, "db", "name", &params["name"], "a database")?;
        let dbs: Vec<Value> = w.list("db").into_iter().filter(|d| &d["serverid"] == server).collect();
        if dbs.iter().any(|d| d["user"]["name"] == params["user"]["name"] && d["id"].as_str() != retry.as_deref()) {
            return Err(ApiError::conflict(format!(
                "user.name: a database user named {} exists",
                params["user"]["name"]
            )));
        }
        let id = retry.unwrap_or_else(new_id);
        let db = json!({"id": id, "name": params["name"], "appid": app["id"], "serverid": server,
            "user": {"id": new_id(), "name": params["user"]["name"]}, "datecreated": super::now_secs()});
        w.put("db", &db);
        Ok((action(w, sid(&db), "db.create", params, Some(format!("db/{id}"))), db))
    })
}

/// `POST /dbs/:id {"user": {"id", "password"}}`: a new password for the database user.
pub fn update_db(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    change(shared, |w| {
        let db = found(w, "db", id)?;
        immutable(&db, body, &["name", "appid", "serverid"])?;
        if !body["user"]["id"].is_null() && body["user"]["id"] != db["user"]["id"] {
            return Err(ApiError::forbidden("user.id: the database user cannot be changed"));
        }
        let params =
            json!({"name": db["name"], "user": {"name": db["user"]["name"], "password": body["user"]["password"]}});
        check(shared, "db.update", &params)?;
        Ok((action(w, sid(&db), "db.update", params, None), db))
    })
}

pub fn delete_db(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    change(shared, |w| {
        let db = found(w, "db", id)?;
        w.delete("db", id);
        Ok((action(w, sid(&db), "db.delete", json!({"name": db["name"]}), None), json!({})))
    })
}

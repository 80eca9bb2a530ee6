//! The server routes of `berth dev`, as in ServerPilot: the local server (whose
//! agent `berth dev` runs) and any that `POST /servers` adds, each with its own API
//! key, resources and actions.
//!
//! `POST /servers {"name"}` answers the new server with its `apikey` (shown this
//! once, as ServerPilot does) and `install`, the installer line to run on the new
//! machine. `DELETE /servers/:id` forgets the server, its resources and its key: its
//! agent's session ends and every later connection gets 401. The local server
//! cannot be deleted.

use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::resources::{action, change, check, found, new_id, object, pick};
use super::store::Writer;
use super::Shared;

/// A new server in ServerPilot's shape (its name stays until the agent's hello
/// says its hostname; its runtimes come with that hello) and, as on every
/// ServerPilot server, the system user `serverpilot` (password login locked),
/// whose create is the first job its agent gets. Returns that action's id.
fn add(w: &mut Writer, id: &str, name: &str) -> String {
    w.put(
        "server",
        &json!({"id": id, "name": name, "plan": "economy", "datecreated": super::now_secs(),
            "available_runtimes": []}),
    );
    let user = new_id();
    w.put("sysuser", &json!({"id": user, "serverid": id, "name": "serverpilot", "datecreated": super::now_secs()}));
    action(w, id, "sysuser.create", json!({"name": "serverpilot"}), Some(format!("sysuser/{user}")))
}

/// The local server, the first time a store is opened.
pub fn first_start(w: &mut Writer, server_id: &str) {
    if w.get("server", server_id).is_none() {
        add(w, server_id, "berth-dev");
    }
}

/// A server record with what the agent last said: disk space, reboot, connection.
fn view(shared: &Shared, mut server: Value) -> Value {
    let id = server["id"].as_str().unwrap_or_default().to_owned();
    let all = shared.live.lock().expect("live state");
    let (metrics, sessions) = match all.get(&id) {
        Some(live) => (live.metrics.clone().unwrap_or(Value::Null), live.sessions),
        None => (Value::Null, 0),
    };
    let disks = metrics["disks"].as_array().cloned().unwrap_or_default();
    let disk = disks.iter().find(|d| d["mount"] == "/").or(disks.first()).cloned().unwrap_or(Value::Null);
    server["disk_space"] = json!({"total": disk["total"], "available": disk["available"], "used": disk["used"], "updated_at": metrics["at"]});
    server["reboot_required"] = metrics["reboot_required"].clone();
    server["connection_status"] = json!(if sessions > 0 { "connected" } else { "disconnected" });
    for key in ["firewall", "autoupdates", "deny_unknown_domains"] {
        if server[key].is_null() {
            server[key] = json!(key == "deny_unknown_domains");
        }
    }
    server
}

pub fn list(shared: &Shared) -> Result<Value, ApiError> {
    let mut servers = shared.store.read(|w| w.list("server"))?;
    if !servers.iter().any(|s| s["id"] == shared.server_id.as_str()) {
        servers.insert(0, json!({"id": shared.server_id}));
    }
    Ok(json!({"data": servers.into_iter().map(|s| view(shared, s)).collect::<Vec<_>>()}))
}

pub fn get(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    let server = shared.store.read(|w| found(w, "server", id))??;
    Ok(json!({"data": view(shared, server)}))
}

/// `POST /servers {"name"}`: a new server, its key and the installer line.
pub fn create(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    let name = match &body["name"] {
        Value::String(name) if valid_name(name) => name.clone(),
        Value::Null => return Err(ApiError::bad_request("name: is required")),
        _ => {
            return Err(ApiError::bad_request(
                "name: 1 to 64 letters, digits, '.', '-' and '_', starting with a letter or digit",
            ))
        }
    };
    let id = new_id();
    let apikey: String = std::iter::repeat_with(fastrand::alphanumeric).take(40).collect();
    let answer = change(shared, |w| {
        if w.list("server").iter().any(|s| s["name"] == name.as_str()) {
            return Err(ApiError::conflict(format!("name: a server named {name:?} exists")));
        }
        w.set_meta(&format!("apikey/{id}"), &apikey);
        let actionid = add(w, &id, &name);
        Ok((actionid, w.get("server", &id).unwrap_or(Value::Null)))
    })?;
    let mut data = view(shared, answer["data"].clone());
    data["apikey"] = json!(apikey);
    data["install"] = json!(format!(
        "installer --server-id={id} --server-apikey={apikey} --control-plane={} --ca-file={}",
        shared.control_plane_url,
        shared.ca_file.display()
    ));
    Ok(json!({"actionid": answer["actionid"], "data": data}))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

pub fn update(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    shared.store.read(|w| found(w, "server", id))??;
    let params = pick(body, &["firewall", "autoupdates", "deny_unknown_domains"]);
    if params.as_object().is_some_and(Map::is_empty) {
        return Err(ApiError::bad_request("nothing to change: give firewall, autoupdates or deny_unknown_domains"));
    }
    check(shared, "server.update", &params)?;
    let answer = change(shared, |w| {
        let mut server = found(w, "server", id)?;
        for (key, value) in object(&params) {
            server[key] = value.clone();
        }
        w.put("server", &server);
        Ok((action(w, id, "server.update", params.clone(), None), server))
    })?;
    Ok(json!({"actionid": answer["actionid"], "data": view(shared, answer["data"].clone())}))
}

/// `DELETE /servers/:id`: the server, its resources, open actions and key are
/// forgotten (nothing is sent to its agent, which from now on gets 401).
pub fn delete(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    if id == shared.server_id {
        shared.store.read(|w| found(w, "server", id))??;
        return Err(ApiError::forbidden("the local server of berth dev cannot be deleted"));
    }
    shared.store.write(|w| {
        found(w, "server", id)?;
        for kind in ["sysuser", "app", "db", "action"] {
            for record in w.list(kind).into_iter().filter(|r| r["serverid"] == id) {
                w.delete(kind, record["id"].as_str().unwrap_or_default());
            }
        }
        w.delete("server", id);
        w.delete_meta(&format!("apikey/{id}"));
        w.delete_meta(&format!("last_seq/{id}"));
        Ok::<_, ApiError>(())
    })??;
    shared.live.lock().expect("live state").remove(id);
    shared.wake();
    Ok(json!({"data": {}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_has_the_server_in_serverpilots_shape_before_any_hello() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::store::Store::open(&dir.path().join("dev.redb")).unwrap();
        store.write(|w| first_start(w, "S1")).unwrap();
        store.write(|w| first_start(w, "S1")).unwrap();
        let (server, users, actions) =
            store.read(|w| (w.get("server", "S1").unwrap(), w.list("sysuser"), w.list("action"))).unwrap();
        assert_eq!((server["name"].as_str(), server["plan"].as_str()), (Some("berth-dev"), Some("economy")));
        assert!(server["datecreated"].as_u64().unwrap() > 0 && server["available_runtimes"] == json!([]));
        assert_eq!(users.len(), 1, "once, though opened twice: {users:?}");
        assert_eq!((users[0]["name"].as_str(), users[0]["serverid"].as_str()), (Some("serverpilot"), Some("S1")));
        assert_eq!(actions.len(), 1);
        assert_eq!(
            (actions[0]["kind"].as_str(), actions[0]["serverid"].as_str()),
            (Some("sysuser.create"), Some("S1"))
        );
    }

    #[test]
    fn server_names_are_short_plain_words() {
        for good in ["web2", "db.example", "a", "x-1_y"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-web", "web 2", "web/2", &"a".repeat(65), "wéb"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

//! The monitoring policies of `berth dev`, in the IONOS Cloud Panel seed's shape:
//! `GET/POST /monitoring_policies`, `GET/PUT/DELETE /monitoring_policies/:id`,
//! `POST /monitoring_policies/:id/servers {"servers": [id]}` and
//! `DELETE /monitoring_policies/:id/servers/:server_id`; and the `monitor.alert`
//! events the control plane keeps for the monitoring center ([`record_alert`]).
//!
//! A policy's `thresholds`, `ports` and `processes` are checked by the agent's own
//! [`Policy::from_value`] (a 400 naming the field, `thresholds.cpu.warning.value`,
//! `ports[3].port`), the seed's `name`, `description`, `email` and `agent` here. A
//! server has at most one policy: assigning it moves it. Assigning sends
//! `monitor.policy` to the server's agent; so does a `PUT` of an assigned policy;
//! unassigning (and deleting an assigned policy) sends an all-off policy, since
//! there is no removal job. Answers are `{"data": policy}`, with `actionids` (one
//! action per server) when jobs were sent.

use serde_json::{json, Value};

use super::error::ApiError;
use super::resources::{action, found, new_id, object};
use super::store::Writer;
use super::Shared;
use crate::model::monitor::Policy;

/// The store's kind of a policy record.
pub const KIND: &str = "monitoring_policy";
/// The store's kind of a received `monitor.alert`.
pub const ALERT: &str = "monitor_alert";

/// The most alerts kept per server (they come on transitions only: months of them).
pub const ALERTS_KEPT: usize = 10_000;

const NAME_MAX: usize = 128;
const DESCRIPTION_MAX: usize = 256;
const EMAIL_MAX: usize = 254;

pub fn list(shared: &Shared) -> Result<Value, ApiError> {
    Ok(json!({"data": shared.store.read(|w| w.list(KIND))?}))
}

pub fn get(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    Ok(json!({"data": shared.store.read(|w| found(w, KIND, id))??}))
}

/// `POST /monitoring_policies`: a new policy, assigned to no server.
pub fn create(shared: &Shared, body: &Value) -> Result<Value, ApiError> {
    let mut policy = checked(body)?;
    policy["id"] = json!(new_id());
    policy["creation_date"] = json!(crate::time::now());
    policy["state"] = json!("ACTIVE");
    policy["servers"] = json!([]);
    shared.store.write(|w| w.put(KIND, &policy))?;
    Ok(json!({"data": policy}))
}

/// `PUT /monitoring_policies/:id`: the fields given replace the stored ones, the
/// whole is checked again, and the servers it is assigned to get it.
pub fn update(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    answer(shared, |w| {
        let mut stored = found(w, KIND, id)?;
        let mut merged = stored.clone();
        for (key, value) in object(body) {
            if ["name", "description", "email", "agent", "thresholds", "ports", "processes"].contains(&key.as_str()) {
                merged[key.as_str()] = value.clone();
            }
        }
        let checked = checked(&merged)?;
        for (key, value) in object(&checked) {
            stored[key.as_str()] = value.clone();
        }
        w.put(KIND, &stored);
        let actions = servers_of(&stored).iter().map(|server| send(w, server, &stored)).collect();
        Ok((actions, stored))
    })
}

/// `DELETE /monitoring_policies/:id`: its servers get the all-off policy first.
pub fn delete(shared: &Shared, id: &str) -> Result<Value, ApiError> {
    answer(shared, |w| {
        let policy = found(w, KIND, id)?;
        let actions = servers_of(&policy).iter().map(|server| send(w, server, &off(&policy))).collect();
        w.delete(KIND, id);
        Ok((actions, policy))
    })
}

/// `POST /monitoring_policies/:id/servers {"servers": [id, …]}`: assigns the policy to
/// each (taking them from any other policy) and sends it to each.
pub fn assign(shared: &Shared, id: &str, body: &Value) -> Result<Value, ApiError> {
    let mut ids: Vec<String> = match &body["servers"] {
        Value::Array(ids) if !ids.is_empty() && ids.len() <= 100 => ids
            .iter()
            .map(|id| id.as_str().map(str::to_owned).ok_or_else(|| ApiError::bad_request("servers: must hold strings")))
            .collect::<Result<_, _>>()?,
        Value::Null => return Err(ApiError::bad_request("servers: is required")),
        _ => return Err(ApiError::bad_request("servers: must be an array of 1 to 100 server ids")),
    };
    ids.sort();
    ids.dedup();
    answer(shared, |w| {
        let mut policy = found(w, KIND, id)?;
        for server in &ids {
            found(w, "server", server)?;
        }
        for mut other in w.list(KIND).into_iter().filter(|p| p["id"] != id) {
            let kept: Vec<String> = servers_of(&other).into_iter().filter(|s| !ids.contains(s)).collect();
            if kept.len() != servers_of(&other).len() {
                other["servers"] = json!(kept);
                w.put(KIND, &other);
            }
        }
        let mut servers = servers_of(&policy);
        servers.extend(ids.iter().filter(|s| !servers.contains(s)).cloned().collect::<Vec<_>>());
        policy["servers"] = json!(servers);
        w.put(KIND, &policy);
        let actions = ids.iter().map(|server| send(w, server, &policy)).collect();
        Ok((actions, policy))
    })
}

/// `DELETE /monitoring_policies/:id/servers/:server_id`: the server gets the all-off policy.
pub fn unassign(shared: &Shared, id: &str, server: &str) -> Result<Value, ApiError> {
    answer(shared, |w| {
        let mut policy = found(w, KIND, id)?;
        let mut servers = servers_of(&policy);
        let Some(at) = servers.iter().position(|s| s == server) else {
            return Err(ApiError::not_found(format!(
                "the policy is not assigned to server {}",
                crate::model::validate::shown(server)
            )));
        };
        servers.remove(at);
        policy["servers"] = json!(servers);
        w.put(KIND, &policy);
        let action = send(w, server, &off(&policy));
        Ok((vec![action], policy))
    })
}

/// The policy assigned to `server`, if any.
pub fn of_server(w: &Writer, server: &str) -> Option<Value> {
    w.list(KIND).into_iter().find(|p| servers_of(p).iter().any(|s| s == server))
}

/// Keeps a `monitor.alert` of `server` (its `seq` orders them), for the monitoring
/// center; past [`ALERTS_KEPT`] of a server, its oldest go.
pub fn record_alert(w: &mut Writer, server: &str, seq: u64, event: &Value) {
    let mut alert = event.clone();
    alert["id"] = json!(format!("{server}.{seq:020}"));
    alert["serverid"] = json!(server);
    w.put(ALERT, &alert);
    let kept = alerts_of(w, server);
    for old in kept.iter().take(kept.len().saturating_sub(ALERTS_KEPT)) {
        if let Some(id) = old["id"].as_str() {
            w.delete(ALERT, id);
        }
    }
}

/// The alerts kept for `server`, in seq order.
pub fn alerts_of(w: &Writer, server: &str) -> Vec<Value> {
    w.list(ALERT).into_iter().filter(|a| a["serverid"] == server).collect()
}

/// Runs `change` in one write transaction, wakes the control plane when it made
/// actions, answers `{"data", "actionids"?}`.
fn answer(
    shared: &Shared,
    change: impl FnOnce(&mut Writer) -> Result<(Vec<String>, Value), ApiError>,
) -> Result<Value, ApiError> {
    let (actions, data) = shared.store.write(change)??;
    if actions.is_empty() {
        return Ok(json!({"data": data}));
    }
    shared.wake();
    Ok(json!({"data": data, "actionids": actions}))
}

fn servers_of(policy: &Value) -> Vec<String> {
    policy["servers"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

/// The `monitor.policy` job that gives `server` the checks of `policy`.
fn send(w: &mut Writer, server: &str, policy: &Value) -> String {
    let params =
        json!({"thresholds": policy["thresholds"], "ports": policy["ports"], "processes": policy["processes"]});
    action(w, server, "monitor.policy", params, None)
}

/// `policy` with nothing judged: every `alert` false, no ports, no processes.
fn off(policy: &Value) -> Value {
    let mut off = policy.clone();
    if let Some(thresholds) = off["thresholds"].as_object_mut() {
        for threshold in thresholds.values_mut() {
            for level in ["warning", "critical"] {
                threshold[level]["alert"] = json!(false);
            }
        }
    }
    off["ports"] = json!([]);
    off["processes"] = json!([]);
    off
}

/// The seed's fields of `body`, checked: `name` (1–128 characters), `description`?
/// (at most 256), `email`? (at most 254, one `@`), `agent` (a bool, true when there
/// are ports or processes), and the policy as the agent normalises it.
fn checked(body: &Value) -> Result<Value, ApiError> {
    let bad = |field: &str, message: &str| Err(ApiError::bad_request(format!("{field}: {message}")));
    let name = match &body["name"] {
        Value::String(name)
            if !name.trim().is_empty() && name.chars().count() <= NAME_MAX && !name.chars().any(char::is_control) =>
        {
            name.clone()
        }
        Value::Null => return bad("name", "is required"),
        _ => return bad("name", "must be a string of 1 to 128 characters"),
    };
    let text = |field: &str, max: usize| -> Result<Value, ApiError> {
        match &body[field] {
            Value::Null => Ok(Value::Null),
            Value::String(s) if s.chars().count() <= max && !s.chars().any(char::is_control) => Ok(json!(s)),
            _ => Err(ApiError::bad_request(format!("{field}: must be a string of at most {max} characters"))),
        }
    };
    let description = text("description", DESCRIPTION_MAX)?;
    let email = text("email", EMAIL_MAX)?;
    if email.as_str().is_some_and(|e| e.matches('@').count() != 1 || e.contains(char::is_whitespace)) {
        return bad("email", "must be one email address");
    }
    let Some(agent) = body["agent"].as_bool() else {
        return bad("agent", "is required: true or false");
    };
    let policy = Policy::from_value(body).map_err(|e| ApiError::bad_request(format!("{}: {}", e.field, e.message)))?;
    if !agent && (!policy.ports.is_empty() || !policy.processes.is_empty()) {
        return bad("agent", "must be true for port and process checks (they run in the agent)");
    }
    let policy = serde_json::to_value(&policy).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(json!({"name": name, "description": description, "email": email, "agent": agent,
        "thresholds": policy["thresholds"], "ports": policy["ports"], "processes": policy["processes"]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model's seed policy, named as the dev API wants it.
    fn seed() -> Value {
        let mut seed = crate::model::monitor::tests::seed();
        seed["name"] = json!("web");
        seed
    }

    fn refused(body: Value) -> String {
        checked(&body).unwrap_err().message
    }

    #[test]
    fn the_seeds_body_is_checked_naming_the_field() {
        let ok = checked(&seed()).unwrap();
        assert_eq!(ok["name"], "web");
        assert_eq!(ok["ports"][0]["port"], 80);
        let with = |key: &str, value: Value| {
            let mut body = seed();
            body[key] = value;
            body
        };
        for (body, field) in [
            (with("name", Value::Null), "name:"),
            (with("name", json!("x".repeat(129))), "name:"),
            (with("name", json!(7)), "name:"),
            (with("name", json!("web\u{1b}[31m")), "name:"),
            (with("description", json!("x".repeat(257))), "description:"),
            (with("email", json!("a@b@c")), "email:"),
            (with("email", json!("not an address")), "email:"),
            (with("agent", Value::Null), "agent:"),
            (with("agent", json!(false)), "agent:"),
            (with("ports", json!([{"protocol": "TCP", "port": 0, "alert_if": "RESPONDING"}])), "ports[0].port:"),
            (with("ports", json!([{"protocol": "ICMP", "port": 1, "alert_if": "RESPONDING"}])), "ports[0].protocol:"),
            (with("processes", json!([{"process": "a/b", "alert_if": "RUNNING"}])), "processes[0].process:"),
            (with("processes", json!([{"process": "x".repeat(4096), "alert_if": "RUNNING"}])), "processes[0].process:"),
        ] {
            let message = refused(body);
            assert!(message.starts_with(field), "{field}: {message}");
        }
        let mut body = seed();
        body["thresholds"]["cpu"]["warning"]["value"] = json!(96);
        assert!(refused(body).starts_with("thresholds.cpu.warning.value:"));
    }

    #[test]
    fn alerts_are_kept_per_server_in_seq_order_and_the_oldest_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::store::Store::open(&dir.path().join("dev.redb")).unwrap();
        store
            .write(|w| {
                for seq in [9, 10, 100] {
                    record_alert(w, "S1", seq, &json!({"type": "monitor.alert", "seq": seq, "level": "ok"}));
                }
                record_alert(w, "S2", 5, &json!({"type": "monitor.alert", "seq": 5}));
                let seqs: Vec<_> = alerts_of(w, "S1").iter().map(|a| a["seq"].as_u64().unwrap()).collect();
                assert_eq!(seqs, [9, 10, 100], "numeric order, not text order");
                assert_eq!(alerts_of(w, "S2").len(), 1);
                for seq in 1000..1000 + ALERTS_KEPT as u64 {
                    let alert = json!({"type": "monitor.alert", "seq": seq});
                    w.put(ALERT, &json!({"id": format!("S1.{seq:020}"), "serverid": "S1", "alert": alert}));
                }
                record_alert(w, "S1", 99_999, &json!({"type": "monitor.alert", "seq": 99_999}));
                let kept = alerts_of(w, "S1");
                assert_eq!(kept.len(), ALERTS_KEPT);
                assert_eq!(kept.last().unwrap()["seq"], 99_999);
                assert_eq!(kept[0]["id"], format!("S1.{:020}", 1001), "the four oldest went");
                assert_eq!(alerts_of(w, "S2").len(), 1, "another server's stay");
            })
            .unwrap();
    }

    #[test]
    fn off_judges_nothing() {
        let policy = checked(&seed()).unwrap();
        let off = off(&policy);
        let parsed = Policy::from_value(&off).unwrap();
        assert!(parsed.is_off(), "{off}");
        assert!(!Policy::from_value(&policy).unwrap().is_off());
    }
}

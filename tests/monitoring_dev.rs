//! `berth dev`'s IONOS-shaped monitoring routes (issue 18, item 5): policies checked
//! with the seed's bounds (400 naming the field), kept across restarts, assigned to
//! a server (its agent gets `monitor.policy`) and unassigned (an all-off policy);
//! the monitoring center's alert counts, agent state and usage series.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::dev::Dev;

fn seed(name: &str) -> Value {
    json!({"name": name, "description": "web servers", "email": "ops@example.test", "agent": true,
        "thresholds": {
            "cpu": {"warning": {"value": 90, "alert": false}, "critical": {"value": 95, "alert": true}},
            "ram": {"warning": {"value": 90, "alert": false}, "critical": {"value": 95, "alert": true}},
            "disk": {"warning": {"value": 80, "alert": true}, "critical": {"value": 90, "alert": true}},
            "transfer": {"warning": {"value": 1000, "alert": false}, "critical": {"value": 2000, "alert": false}},
            "internal_ping": {"warning": {"value": 50, "alert": false}, "critical": {"value": 100, "alert": true}}},
        "ports": [{"protocol": "TCP", "port": 80, "alert_if": "NOT_RESPONDING"}],
        "processes": [{"process": "nginx", "alert_if": "NOT_RUNNING"}]})
}

/// A request with a JSON body whatever the method (PUT included).
fn send(dev: &Dev, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let auth = format!("dev:{}", dev.password);
    dev.curl(method, path, Some(&body.to_string()), Some(&auth))
}

/// Polls `GET path` until `done` holds for its answer; fails after `patience`.
fn until(dev: &Dev, path: &str, patience: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, answer) = dev.api("GET", path, Value::Null);
        assert_eq!(status, 200, "{answer}");
        if done(&answer) {
            return answer;
        }
        assert!(started.elapsed() < patience, "GET {path} never got there: {answer}\n{}", dev.log());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn policies_are_refused_naming_the_field_kept_across_a_restart_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::on_host(&dir.path().join("dev"));
    let with = |pointer: &str, value: Value| {
        let mut body = seed("hostile");
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let mut duplicate = seed("dup");
    duplicate["ports"] = json!([{"protocol": "TCP", "port": 80, "alert_if": "RESPONDING"},
                                {"protocol": "TCP", "port": 80, "alert_if": "NOT_RESPONDING"}]);
    let mut too_many = seed("many");
    too_many["processes"] =
        json!((0..101).map(|i| json!({"process": format!("p{i}"), "alert_if": "RUNNING"})).collect::<Vec<_>>());
    for (body, field) in [
        (with("/thresholds/cpu/warning/value", json!(96)), "thresholds.cpu.warning.value"),
        (with("/thresholds/cpu/critical/value", json!(101)), "thresholds.cpu.critical.value"),
        (with("/thresholds/ram/warning/value", json!(0)), "thresholds.ram.warning.value"),
        (with("/thresholds/disk/warning/value", json!(85.5)), "thresholds.disk.warning.value"),
        (with("/thresholds/transfer/critical/value", json!(2001)), "thresholds.transfer.critical.value"),
        (with("/thresholds/internal_ping/warning/alert", json!("yes")), "thresholds.internal_ping.warning.alert"),
        (with("/ports/0/protocol", json!("ICMP")), "ports[0].protocol"),
        (with("/ports/0/port", json!(0)), "ports[0].port"),
        (with("/ports/0/port", json!(65536)), "ports[0].port"),
        (with("/ports/0/alert_if", json!("SOMETIMES")), "ports[0].alert_if"),
        (with("/processes/0/process", json!("/usr/sbin/nginx")), "processes[0].process"),
        (with("/processes/0/process", json!("x".repeat(4096))), "processes[0].process"),
        (with("/processes/0/process", json!("..")), "processes[0].process"),
        (with("/name", json!("")), "name"),
        (with("/agent", json!(false)), "agent"),
        (duplicate, "ports"),
        (too_many, "processes"),
    ] {
        let (status, answer) = dev.api("POST", "/monitoring_policies", body);
        assert_eq!(status, 400, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}: ")), "{field}: {message}");
    }
    let (status, listed) = dev.api("GET", "/monitoring_policies", Value::Null);
    assert_eq!((status, listed), (200, json!({"data": []})), "nothing refused was kept");

    let (status, created) = dev.api("POST", "/monitoring_policies", seed("web"));
    assert_eq!(status, 200, "{created}");
    let policy = created["data"].clone();
    let id = policy["id"].as_str().unwrap().to_owned();
    assert_eq!(policy["servers"], json!([]));
    assert_eq!(policy["state"], "ACTIVE");
    assert_eq!(policy["ports"], seed("web")["ports"]);
    assert!(created.get("actionids").is_none(), "no server, no job: {created}");

    let (status, answer) = send(&dev, "PUT", &format!("/monitoring_policies/{id}"), &json!({"name": "web and mail"}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["name"], "web and mail");
    assert_eq!(answer["data"]["thresholds"], policy["thresholds"], "what the PUT left out stays");
    let bad = json!({"ports": [{"protocol": "TCP", "port": 70000, "alert_if": "RESPONDING"}]});
    let (status, answer) = send(&dev, "PUT", &format!("/monitoring_policies/{id}"), &bad);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("ports[0].port: "), "{answer}");

    let (status, answer) = dev.api("GET", "/monitoring_center/nosuchserver?period=LAST_HOUR", Value::Null);
    assert_eq!(status, 404, "{answer}");
    let (status, answer) =
        dev.api("GET", &format!("/monitoring_center/{}?period=LAST_DECADE", dev.server_id), Value::Null);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("period: "), "{answer}");
    assert_eq!(dev.stop(), Some(0));

    let dev = Dev::on_host(&dir.path().join("dev"));
    let (status, answer) = dev.api("GET", &format!("/monitoring_policies/{id}"), Value::Null);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["name"], "web and mail", "kept across a restart: {answer}");
    assert_eq!(answer["data"]["ports"], policy["ports"], "the refused PUT changed nothing");
    let (status, _) = dev.api("DELETE", &format!("/monitoring_policies/{id}"), Value::Null);
    assert_eq!(status, 200);
    let (status, _) = dev.api("GET", &format!("/monitoring_policies/{id}"), Value::Null);
    assert_eq!(status, 404);
}

#[test]
fn an_assigned_policy_reaches_the_agent_and_an_unassigned_one_is_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::on_host(&dir.path().join("dev"));
    dev.server_when_connected();
    let (_, created) = dev.api("POST", "/monitoring_policies", seed("web"));
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let servers = format!("/monitoring_policies/{id}/servers");
    let (status, answer) = dev.api("POST", &servers, json!({"servers": ["nosuchserver"]}));
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = dev.api("POST", &servers, json!({"servers": "all"}));
    assert_eq!(status, 400, "{answer}");

    let (status, answer) = dev.api("POST", &servers, json!({"servers": [dev.server_id]}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["servers"], json!([dev.server_id]));
    let action = answer["actionids"][0].as_str().unwrap().to_owned();
    let done = dev.settled(&action);
    assert_eq!(done["status"], "success", "{done}\n{}", dev.log());
    assert_eq!(done["result"]["policy"]["processes"], seed("web")["processes"], "{done}");
    let inventory = std::fs::read_to_string(dir.path().join("dev/agent-state/inventory.json")).unwrap();
    let inventory: Value = serde_json::from_str(&inventory).unwrap();
    assert_eq!(inventory["monitor"]["ports"], seed("web")["ports"], "the agent keeps it: {inventory}");

    // A PUT of an assigned policy is sent again.
    let change = json!({"processes": [{"process": "php-fpm8.2", "alert_if": "NOT_RUNNING"}]});
    let (status, answer) = send(&dev, "PUT", &format!("/monitoring_policies/{id}"), &change);
    assert_eq!(status, 200, "{answer}");
    let done = dev.settled(answer["actionids"][0].as_str().unwrap());
    assert_eq!(done["result"]["policy"]["processes"], change["processes"], "{done}");

    let (status, answer) = dev.api("DELETE", &format!("{servers}/{}", dev.server_id), Value::Null);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["servers"], json!([]));
    let done = dev.settled(answer["actionids"][0].as_str().unwrap());
    assert_eq!(done["status"], "success", "{done}");
    let off = &done["result"]["policy"];
    assert_eq!((off["ports"].clone(), off["processes"].clone()), (json!([]), json!([])), "{done}");
    assert!(
        off["thresholds"]
            .as_object()
            .unwrap()
            .values()
            .all(|t| t["warning"]["alert"] == false && t["critical"]["alert"] == false),
        "{done}"
    );
    let (status, _) = dev.api("DELETE", &format!("{servers}/{}", dev.server_id), Value::Null);
    assert_eq!(status, 404, "not assigned any more");
}

/// A copy of `sleep` named `name` (its `comm`), running until killed.
fn named_process(dir: &std::path::Path, name: &str) -> Child {
    let copy = dir.join(name);
    std::fs::copy("/bin/sleep", &copy).unwrap();
    Command::new(&copy).arg("600").stdin(Stdio::null()).spawn().unwrap()
}

/// The README's walk-through: a policy that watches a process, the process killed,
/// the `critical` alert, and the monitoring center counting it.
#[test]
fn a_killed_process_raises_an_alert_that_the_monitoring_center_counts() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::on_host(&dir.path().join("dev"));
    dev.server_when_connected();
    let mut watched = named_process(dir.path(), "berthwatched");
    let mut policy = seed("watch");
    policy["ports"] = json!([]);
    policy["processes"] = json!([{"process": "berthwatched", "alert_if": "NOT_RUNNING"}]);
    // Only the process is judged: this host's own disk or memory may be past any threshold.
    for threshold in policy["thresholds"].as_object_mut().unwrap().values_mut() {
        threshold["warning"]["alert"] = json!(false);
        threshold["critical"]["alert"] = json!(false);
    }
    let (_, created) = dev.api("POST", "/monitoring_policies", policy);
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let (_, assigned) =
        dev.api("POST", &format!("/monitoring_policies/{id}/servers"), json!({"servers": [dev.server_id]}));
    dev.succeeds(assigned["actionids"][0].as_str().unwrap());

    let center = format!("/monitoring_center/{}?period=LAST_HOUR", dev.server_id);
    let (status, answer) = dev.api("GET", &center, Value::Null);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["data"]["agent"],
        json!({"agent_installed": true, "monitoring_needs_agent": true,
        "missing_agent_alert": false}),
        "{answer}"
    );
    assert_eq!(answer["data"]["alerts"]["process"], json!({"critical": 0, "warning": 0, "ok": 0}), "{answer}");
    // Let the agent see it running first (a new check at ok sends nothing).
    std::thread::sleep(Duration::from_secs(12));
    watched.kill().unwrap();
    watched.wait().unwrap();
    let killed = Instant::now();
    let answer = until(&dev, &center, Duration::from_secs(90), |a| a["data"]["alerts"]["process"]["critical"] == 1);
    eprintln!("critical seen {:?} after the kill", killed.elapsed());
    assert_eq!(answer["data"]["alerts"]["resources"]["critical"], 0, "{answer}");
    let mut back = named_process(dir.path(), "berthwatched");
    until(&dev, &center, Duration::from_secs(90), |a| a["data"]["alerts"]["process"]["ok"] == 1);
    back.kill().unwrap();
    back.wait().unwrap();
}

/// Needs the `history` branch (`metrics.history`, the agent's readings recorded in its
/// history): the usage series come from the agent. A minute is in the history once it
/// is over, so this waits for the first whole minute.
#[test]
fn the_monitoring_center_shows_the_agents_usage_history() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::on_host(&dir.path().join("dev"));
    dev.server_when_connected();
    let center = format!("/monitoring_center/{}?period=LAST_HOUR", dev.server_id);
    let answer = until(&dev, &center, Duration::from_secs(150), |a| {
        a["data"]["cpu"]["data"].as_array().is_some_and(|d| d.iter().any(|p| p["used_percent"].is_f64()))
    });
    let data = &answer["data"];
    assert_eq!(data["history"], json!({"available": true}), "{answer}");
    assert_eq!(data["period"]["step"], 60, "a minute a point for the last hour");
    let cpu = data["cpu"]["data"].as_array().unwrap();
    assert!((60..=61).contains(&cpu.len()), "{}", cpu.len());
    assert!(cpu.windows(2).all(|w| w[0]["date"].as_str() < w[1]["date"].as_str()), "in time order");
    assert!(data["ram"]["data"].as_array().unwrap().iter().any(|p| p["used_percent"].is_f64()), "{answer}");
    assert!(data["disk"]["data"].as_array().unwrap().iter().any(|p| p["used_percent"].is_f64()), "{answer}");
    assert!(data["transfer"]["data"][0].get("received").is_some(), "{answer}");
    assert_eq!(data["cpu"]["unit"], "%");

    let (status, answer) = dev.api("GET", &format!("{}&x=1", center.replace("LAST_HOUR", "LAST_365D")), Value::Null);
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"]["cpu"]["data"].as_array().unwrap().len() <= 1440, "{answer}");
}

//! Monitoring (`monitor.policy`, `monitor.alert`) against real things, in a test
//! machine: listeners stopped and started, processes killed (and a zombie that
//! does not count), nginx killed, a tmpfs filled past warning and critical, alerts
//! stored while the control plane is away, the policy across a restart, hostile
//! policies refused with nothing stored.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::machine::{Daemon, Machine};
use support::{ControlPlane, Session, API_KEY, SERVER_ID};

struct Rig {
    machine: Machine,
    cp: ControlPlane,
    daemon: Daemon,
}

/// A machine with berth running inside at `monitor_secs`, heartbeat 1 s, and a
/// control plane in its network namespace; `extra` is more config.
async fn rig(monitor_secs: u64, extra: &str) -> Rig {
    let machine = Machine::start();
    let cp = ControlPlane::start_in_netns(&machine.net_ns()).await;
    let ca_file = machine.dir.path().join("control-plane-ca.pem");
    std::fs::write(&ca_file, &cp.pki.ca_pem).unwrap();
    let state = machine.dir.path().join("state");
    let config = machine.dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "server_id = {SERVER_ID:?}\napi_key = {API_KEY:?}\ncontrol_plane_url = {:?}\nca_file = {ca_file:?}\n\
             state_dir = {state:?}\nroot = \"/\"\nmonitor_secs = {monitor_secs}\n{extra}\n",
            cp.url()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::new(config);
    daemon.echo = std::env::var("BERTH_MONITOR_LOG").is_ok();
    daemon.start(&machine);
    Rig { machine, cp, daemon }
}

/// A policy whose thresholds never alert but the disk's (80/90), with these checks.
fn policy(ports: Value, processes: Value) -> Value {
    let quiet =
        |w: u32, c: u32| json!({"warning": {"value": w, "alert": false}, "critical": {"value": c, "alert": false}});
    json!({"thresholds": {
        "cpu": quiet(90, 95), "ram": quiet(90, 95),
        "disk": {"warning": {"value": 80, "alert": true}, "critical": {"value": 90, "alert": true}},
        "transfer": quiet(1000, 2000), "internal_ping": quiet(50, 100)},
      "ports": ports, "processes": processes})
}

/// Runs `monitor.policy` on the session; its final status.
async fn set_policy(session: &mut Session, job_id: &str, params: Value) -> Value {
    session.job(job_id, "monitor.policy", params).await;
    loop {
        let message = session.recv().await;
        if message["type"] == "job.status"
            && message["job_id"] == job_id
            && matches!(message["status"].as_str(), Some("success" | "error"))
        {
            return message;
        }
    }
}

/// Every `monitor.alert` of `check` within `wait`.
async fn alerts_of(session: &mut Session, check: &str, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut found = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match session.try_recv(left).await {
            Some(m) if m["type"] == "monitor.alert" && m["check"] == check => found.push(m),
            Some(_) => {}
            None => break,
        }
    }
    found
}

/// The next `monitor.alert` of `check`, which must be at `level`, within `wait`.
async fn alert(session: &mut Session, check: &str, level: &str, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
        let Some(m) = session.try_recv(left).await else { panic!("no {level} alert of {check} within {wait:?}") };
        if m["type"] == "monitor.alert" && m["check"] == check {
            assert_eq!(m["level"], level, "{m}");
            return m;
        }
    }
}

/// Starts `sh -c script` in the machine (it must `exec` its program); the
/// namespace pid of what it runs.
fn spawn(machine: &Machine, script: &str) -> String {
    let mut child = machine
        .command("/bin/bash", &["-c", &format!("echo $$; {script}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    // The machine's init reaps it when it ends; the nsenter handle is let go.
    std::mem::forget(child);
    line.trim().to_owned()
}

fn kill(machine: &Machine, pid: &str) {
    assert!(machine.run("/bin/kill", &["-9", pid]).status.success(), "kill {pid}");
}

fn tcp_listener(machine: &Machine, port: u16) -> String {
    spawn(
        machine,
        &format!(
            "exec perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => {port}, Listen => 5, ReuseAddr => 1) or die $!; sleep 1000'"
        ),
    )
}

fn udp_socket(machine: &Machine, port: u16) -> String {
    spawn(
        machine,
        &format!("exec perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => {port}, Proto => \"udp\") or die $!; sleep 1000'"),
    )
}

/// `sleep` under argv[0] `name` (its comm stays `sleep`).
fn named_sleep(machine: &Machine, name: &str) -> String {
    spawn(machine, &format!("exec -a {name} sleep 1000"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_and_a_process_stopped_and_started_go_critical_and_back() {
    let Rig { machine, mut cp, daemon: _daemon } = rig(1, "").await;
    let (mut session, hello) = cp.welcomed(0, 1).await;
    assert!(hello.get("monitor").is_none(), "no policy yet: {hello}");
    let tcp = tcp_listener(&machine, 8088);
    let udp = udp_socket(&machine, 5353);
    let watched = named_sleep(&machine, "berthwatch");
    let ports = json!([{"protocol": "TCP", "port": 8088, "alert_if": "NOT_RESPONDING"},
                       {"protocol": "UDP", "port": 5353, "alert_if": "NOT_RESPONDING"},
                       {"protocol": "TCP", "port": 8099, "alert_if": "RESPONDING"}]);
    let processes = json!([{"process": "berthwatch", "alert_if": "NOT_RUNNING"}]);
    let done = set_policy(&mut session, "p1", policy(ports, processes)).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["changed"], true, "{done}");
    // All is well: nothing is said.
    let quiet = alerts_of(&mut session, "port:TCP:8088", Duration::from_secs(4)).await;
    assert!(quiet.is_empty(), "{quiet:?}");

    kill(&machine, &tcp);
    let down = alert(&mut session, "port:TCP:8088", "critical", Duration::from_secs(10)).await;
    assert_eq!((down["kind"].as_str(), down["value"].as_f64()), (Some("ports"), Some(0.0)), "{down}");
    kill(&machine, &udp);
    alert(&mut session, "port:UDP:5353", "critical", Duration::from_secs(10)).await;
    kill(&machine, &watched);
    let gone = alert(&mut session, "process:berthwatch", "critical", Duration::from_secs(10)).await;
    assert_eq!((gone["kind"].as_str(), gone["value"].as_f64()), (Some("process"), Some(0.0)), "{gone}");

    // An alert_if RESPONDING port: something starts listening on it.
    let intruder = tcp_listener(&machine, 8099);
    alert(&mut session, "port:TCP:8099", "critical", Duration::from_secs(10)).await;
    kill(&machine, &intruder);
    alert(&mut session, "port:TCP:8099", "ok", Duration::from_secs(10)).await;

    // A zombie named berthwatch (comm, from a copy of sleep under that name, whose
    // parent never reaps it) does not count as running.
    std::fs::copy("/usr/bin/sleep", machine.through_init("/run/berthwatch")).unwrap();
    let parent = spawn(&machine, "exec perl -e 'if (fork() == 0) { exec \"/run/berthwatch\", \"1000\" } sleep 1000'");
    let mut child = String::new();
    for _ in 0..50 {
        let out = machine.run("/usr/bin/pgrep", &["-P", &parent]);
        child = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !child.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!child.is_empty(), "the child of {parent} runs");
    // Running (by comm): ok, then killed: a zombie, critical again.
    alert(&mut session, "process:berthwatch", "ok", Duration::from_secs(10)).await;
    kill(&machine, &child);
    // (The kill is delivered, not yet done: the child is a zombie a moment later.)
    let mut stat = String::new();
    for _ in 0..100 {
        stat = std::fs::read_to_string(machine.through_init(&format!("/proc/{child}/stat"))).unwrap_or_default();
        if stat.contains("(berthwatch) Z") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stat.contains("(berthwatch) Z"), "a zombie: {stat}");
    alert(&mut session, "process:berthwatch", "critical", Duration::from_secs(10)).await;
    assert!(
        alerts_of(&mut session, "process:berthwatch", Duration::from_secs(4)).await.is_empty(),
        "the zombie stays dead"
    );

    // Started again: ok, for the listeners too.
    let _tcp = tcp_listener(&machine, 8088);
    let _udp = udp_socket(&machine, 5353);
    let _watched = named_sleep(&machine, "berthwatch");
    let mut ok = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ok.len() < 3 && Instant::now() < deadline {
        if let Some(m) = session.try_recv(Duration::from_secs(1)).await {
            if m["type"] == "monitor.alert" && m["level"] == "ok" {
                ok.push(m["check"].as_str().unwrap().to_owned());
            }
        }
    }
    ok.sort();
    assert_eq!(ok, ["port:TCP:8088", "port:UDP:5353", "process:berthwatch"]);
    kill(&machine, &parent);
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_killed_is_critical_within_30_seconds() {
    // The production interval: the goal is "within 30 s" at monitor_secs 10.
    let Rig { machine, mut cp, daemon: _daemon } = rig(10, "").await;
    let started = machine.run("/usr/sbin/nginx", &[]);
    assert!(started.status.success(), "nginx: {}", String::from_utf8_lossy(&started.stderr));
    let (mut session, _) = cp.welcomed(0, 1).await;
    let params = policy(
        json!([{"protocol": "TCP", "port": 80, "alert_if": "NOT_RESPONDING"}]),
        json!([{"process": "nginx", "alert_if": "NOT_RUNNING"}]),
    );
    assert_eq!(set_policy(&mut session, "p1", params).await["status"], "success");
    // A reading or two with nginx up.
    assert!(alerts_of(&mut session, "process:nginx", Duration::from_secs(12)).await.is_empty());

    let pids = machine.run("/usr/bin/pgrep", &["-x", "nginx"]);
    let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout).split_whitespace().map(str::to_owned).collect();
    assert!(!pids.is_empty());
    let killed = Instant::now();
    for pid in &pids {
        let _ = machine.run("/bin/kill", &["-9", pid]);
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let left = Duration::from_secs(30).checked_sub(killed.elapsed()).expect("both critical within 30 s");
        let Some(m) = session.try_recv(left).await else { panic!("only {seen:?} within 30 s") };
        if m["type"] == "monitor.alert" && ["process:nginx", "port:TCP:80"].contains(&m["check"].as_str().unwrap()) {
            assert_eq!(m["level"], "critical", "{m}");
            seen.push(m["check"].as_str().unwrap().to_owned());
        }
    }
    eprintln!("nginx killed: both critical after {:?}", killed.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tmpfs_filled_past_warning_then_critical_warns_then_goes_critical_once_each() {
    let Rig { machine, mut cp, daemon: _daemon } = rig(1, "monitor_mounts = [\"/run/disk\"]").await;
    let mounted = machine.run("/bin/sh", &["-c", "mkdir -p /run/disk && mount -t tmpfs -o size=1m tmpfs /run/disk"]);
    assert!(mounted.status.success(), "{}", String::from_utf8_lossy(&mounted.stderr));
    let (mut session, _) = cp.welcomed(0, 1).await;
    assert_eq!(set_policy(&mut session, "p1", policy(json!([]), json!([]))).await["status"], "success");
    assert!(alerts_of(&mut session, "disk:/run/disk", Duration::from_secs(4)).await.is_empty());

    let fill = |kib: u32| {
        let out = machine.run("/usr/bin/dd", &["if=/dev/zero", "of=/run/disk/fill", "bs=1k", &format!("count={kib}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    fill(860); // 84 %
    let warning = alert(&mut session, "disk:/run/disk", "warning", Duration::from_secs(10)).await;
    assert!(warning["value"].as_f64().unwrap() > 80.0, "{warning}");
    fill(960); // 94 %
    let critical = alert(&mut session, "disk:/run/disk", "critical", Duration::from_secs(10)).await;
    assert!(critical["value"].as_f64().unwrap() > 90.0, "{critical}");
    assert!(warning["seq"].as_u64() < critical["seq"].as_u64());
    // Each once: full and staying full says nothing more.
    assert!(alerts_of(&mut session, "disk:/run/disk", Duration::from_secs(5)).await.is_empty());
    std::fs::remove_file(machine.through_init("/run/disk/fill")).unwrap();
    alert(&mut session, "disk:/run/disk", "ok", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_raised_while_the_control_plane_is_away_arrive_after_it_returns_in_order() {
    let Rig { machine, mut cp, daemon: _daemon } = rig(1, "").await;
    let names = ["berthone", "berthtwo", "berththree"];
    let pids: Vec<String> = names.iter().map(|n| named_sleep(&machine, n)).collect();
    let (mut session, _) = cp.welcomed(0, 1).await;
    let processes: Vec<Value> = names.iter().map(|n| json!({"process": n, "alert_if": "NOT_RUNNING"})).collect();
    let done = set_policy(&mut session, "p1", policy(json!([]), Value::Array(processes))).await;
    assert_eq!(done["status"], "success");
    session.ack(done["seq"].as_u64().unwrap()).await;
    assert!(alerts_of(&mut session, "process:berthone", Duration::from_secs(3)).await.is_empty());

    // The control plane goes away; the agent dials again and is not welcomed.
    drop(session);
    let mut away = cp.session().await;
    assert_eq!(away.recv().await["type"], "hello");
    for pid in &pids {
        kill(&machine, pid);
        std::thread::sleep(Duration::from_secs(3));
    }
    assert!(away.try_recv(Duration::from_millis(500)).await.is_none(), "nothing is sent before welcome");
    drop(away);

    let (mut back, _) = cp.welcomed(done["seq"].as_u64().unwrap(), 1).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = back.recv().await;
        if m["type"] == "monitor.alert" {
            got.push(m);
        }
    }
    let checks: Vec<&str> = got.iter().map(|m| m["check"].as_str().unwrap()).collect();
    assert_eq!(checks, ["process:berthone", "process:berthtwo", "process:berththree"], "in the order raised");
    assert!(got.iter().all(|m| m["level"] == "critical"));
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_survives_a_restart_and_hostile_policies_store_nothing() {
    let Rig { machine, mut cp, mut daemon } = rig(1, "").await;
    let (mut session, _) = cp.welcomed(0, 1).await;
    let params = policy(
        json!([{"protocol": "TCP", "port": 80, "alert_if": "NOT_RESPONDING"}]),
        json!([{"process": "nginx", "alert_if": "NOT_RUNNING"}]),
    );
    let done = set_policy(&mut session, "p1", params.clone()).await;
    assert_eq!(done["result"]["policy"], params, "{done}");
    let again = set_policy(&mut session, "p2", params.clone()).await;
    assert_eq!((again["status"].as_str(), again["changed"].as_bool()), (Some("success"), Some(false)), "{again}");

    let hostile = [
        (
            json!({"thresholds": params["thresholds"], "ports": [{"protocol": "TCP", "port": 0, "alert_if": "RESPONDING"}]}),
            "ports[0].port",
        ),
        (
            json!({"thresholds": params["thresholds"], "ports": [{"protocol": "ICMP", "port": 1, "alert_if": "RESPONDING"}]}),
            "ports[0].protocol",
        ),
        (
            json!({"thresholds": params["thresholds"], "processes": [{"process": "/usr/sbin/nginx", "alert_if": "RUNNING"}]}),
            "processes[0].process",
        ),
        (
            json!({"thresholds": params["thresholds"], "processes": [{"process": "x".repeat(4096), "alert_if": "RUNNING"}]}),
            "processes[0].process",
        ),
        (json!({"thresholds": {"cpu": params["thresholds"]["cpu"]}}), "thresholds.ram"),
    ];
    for (i, (bad, field)) in hostile.into_iter().enumerate() {
        let refused = set_policy(&mut session, &format!("bad{i}"), bad).await;
        assert_eq!(refused["status"], "error", "{refused}");
        assert_eq!(
            (refused["error"]["code"].as_str(), refused["error"]["field"].as_str()),
            (Some("invalid_params"), Some(field)),
            "{refused}"
        );
    }
    daemon.kill9();
    drop(session);
    daemon.start(&machine);
    let (_session, hello) = cp.welcomed(0, 1).await;
    assert_eq!(hello["monitor"], params, "the policy as stored, in hello after a restart");
}

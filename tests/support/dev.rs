//! `berth dev` run by a test: on the host in its default sandbox root, or inside a
//! test machine with `--root /`; reached with curl where it runs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::machine::Machine;

/// How long an action may stay `open` (an app on real servers, a database).
pub const ACTION_PATIENCE: Duration = Duration::from_secs(90);

/// A running `berth dev`, reached with curl where it runs (the host or a machine).
pub struct Dev<'m> {
    pub child: Child,
    pub machine: Option<&'m Machine>,
    pub url: String,
    pub password: String,
    pub server_id: String,
    pub log: Arc<Mutex<String>>,
    /// What berth dev printed on stdout before it served.
    pub banner: String,
}

impl<'m> Dev<'m> {
    /// `berth dev --sandbox --listen 127.0.0.1:0 --dir DIR` on the host, its agent in
    /// the sandbox root.
    pub fn on_host(dir: &Path) -> Dev<'static> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.args(["dev", "--sandbox", "--listen", "127.0.0.1:0", "--dir"]).arg(dir).env("RUST_LOG", "info");
        Dev::spawn(command, None)
    }

    /// `berth dev --listen 127.0.0.1:0 --dir DIR` on the host as a new user runs it:
    /// as root with the web stack, its agent in a machine of its own.
    pub fn trial(dir: &Path) -> Dev<'static> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.args(["dev", "--listen", "127.0.0.1:0", "--dir"]).arg(dir).env("RUST_LOG", "info");
        Dev::spawn(command, None)
    }

    /// `berth dev --root / --listen 127.0.0.1:0 --dir DIR` inside the machine.
    pub fn in_machine(machine: &'m Machine, dir: &Path) -> Dev<'m> {
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &machine.init_pid().to_string(), "--mount", "--net", "--pid", "--"])
            .args(["/bin/sh", "-c", "test -e /etc/.berth-test-machine || exit 97; exec \"$0\" \"$@\""])
            .args([
                "/usr/bin/env",
                "RUST_LOG=info",
                env!("CARGO_BIN_EXE_berth"),
                "dev",
                "--root",
                "/",
                "--listen",
                "127.0.0.1:0",
                "--dir",
            ])
            .arg(dir);
        Dev::spawn(command, Some(machine))
    }

    pub fn spawn(mut command: Command, machine: Option<&'m Machine>) -> Dev<'m> {
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[berth dev] {line}");
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        // Up to the `try:` line (a machine's ports come before it).
        while !banner.lines().any(|l| l.starts_with("try: ")) {
            let read = stdout.read_line(&mut banner).unwrap();
            assert!(read > 0, "berth dev exited before its banner:\n{banner}\n{}", log.lock().unwrap());
        }
        let word_after = |key: &str| -> String {
            let mut words = banner.split_whitespace().skip_while(|w| *w != key);
            words.nth(1).unwrap_or_else(|| panic!("no {key} in the banner: {banner}")).to_owned()
        };
        assert_eq!(word_after("user"), "dev");
        assert!(banner.contains("curl -u dev:"), "the banner shows a curl example: {banner}");
        let (url, password, server_id) = (word_after("API"), word_after("password"), word_after("server"));
        assert!(
            url.starts_with("http://127.0.0.1:") && !url.starts_with("http://127.0.0.1:0/"),
            "the real port: {url}"
        );
        Dev { child, machine, url, password, server_id, log, banner }
    }

    /// curl where berth dev runs: (HTTP status, JSON body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>, auth: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut args =
            vec!["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-H", "content-type: application/json"];
        if let Some(auth) = auth {
            args.extend(["-u", auth]);
        }
        if let Some(body) = body {
            args.extend(["--data-binary", body]);
        }
        args.push(&url);
        let out: Output = match self.machine {
            Some(machine) => machine.run("/usr/bin/curl", &args),
            None => Command::new("curl").args(&args).output().unwrap(),
        };
        assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.trim_end().rsplit_once('\n').unwrap_or_else(|| panic!("no status from curl: {text}"));
        let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("{method} {path} answered no JSON: {body}"));
        (status.parse().unwrap(), json)
    }

    /// An authenticated request with a JSON body (GET and DELETE send none).
    pub fn api(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let auth = format!("dev:{}", self.password);
        let body = body.to_string();
        self.curl(method, path, (method == "POST").then_some(body.as_str()), Some(&auth))
    }

    /// A change that must be accepted: returns its `data` and `actionid`.
    pub fn change(&self, method: &str, path: &str, body: Value) -> (Value, String) {
        let (status, answer) = self.api(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {answer}");
        (answer["data"].clone(), answer["actionid"].as_str().expect("an actionid").to_owned())
    }

    /// Polls `GET /actions/:id` until it is no longer `open`.
    pub fn settled(&self, action: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, answer) = self.api("GET", &format!("/actions/{action}"), Value::Null);
            assert_eq!(status, 200, "{answer}");
            if answer["data"]["status"] != "open" {
                return answer["data"].clone();
            }
            assert!(started.elapsed() < ACTION_PATIENCE, "action {action} still open; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn succeeds(&self, action: &str) {
        let done = self.settled(action);
        assert_eq!(done["status"], "success", "{done}\n{}", self.log());
    }

    /// System user `derek` and his app `name` on stack `nginx`, each created through
    /// the API and carried out; the app's id.
    #[allow(dead_code)]
    pub fn derek_with_app(&self, name: &str, domain: &str) -> String {
        let (user, action) = self.change("POST", "/sysusers", serde_json::json!({"name": "derek"}));
        self.succeeds(&action);
        let (app, action) = self.change(
            "POST",
            "/apps",
            serde_json::json!({"name": name, "sysuserid": user["id"], "runtime": "php8.2", "domains": [domain],
                               "stack": "nginx"}),
        );
        self.succeeds(&action);
        app["id"].as_str().unwrap().to_owned()
    }

    /// Polls the server until the agent has said hello and sent metrics.
    pub fn server_when_connected(&self) -> Value {
        let started = Instant::now();
        loop {
            let (status, answer) = self.api("GET", &format!("/servers/{}", self.server_id), Value::Null);
            assert_eq!(status, 200, "{answer}");
            let server = answer["data"].clone();
            if server["connection_status"] == "connected" && server["disk_space"]["total"].as_u64().is_some() {
                return server;
            }
            assert!(started.elapsed() < super::PATIENCE, "the agent did not connect: {server}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let status = self.child.wait().unwrap();
        status.code()
    }
}

impl Drop for Dev<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A test machine: mount, network and pid namespaces in which a copy of the host's
//! `/etc`, and fresh `/srv`, `/run`, `/var/log` and `/var/cache` (the page cache),
//! stand in for the real ones.
//!
//! berth runs inside with `root = "/"`, its production paths, and starts the real
//! nginx, Apache and PHP-FPM there (port 80 is the namespace's own). Nothing reaches
//! the host: every command enters the namespaces with `nsenter` and first checks
//! for a marker file that only the copied `/etc` has. Dropping the machine kills
//! its pid namespace, and with it every daemon started inside.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const MARKER: &str = "/etc/.berth-test-machine";

pub struct Machine {
    pub dir: tempfile::TempDir,
    /// The host pid of the namespace's init.
    init: i32,
    unshare: Child,
}

impl Machine {
    pub fn start() -> Machine {
        assert!(!Path::new(MARKER).exists(), "the host must not carry the test machine's marker");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let copied = Command::new("cp").arg("-a").arg("/etc").arg(d.join("etc")).status().unwrap();
        assert!(copied.success(), "cannot copy /etc");
        std::fs::write(d.join("etc/.berth-test-machine"), "").unwrap();
        for sub in ["srv", "log/nginx", "log/apache2", "log/mysql", "state", "mysql", "cache"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let d = d.display();
        // The namespace's init reaps what is left to it, as a real init does: a
        // process killed mid-command (a `useradd` under `kill -9`) must not stay a
        // zombie whose pid still looks alive (shadow-utils would think its lock held).
        let script = format!(
            "set -e; mount --bind {d}/etc /etc; mount --bind {d}/srv /srv; mount -t tmpfs -o mode=0755 tmpfs /run; \
             mkdir -p /run/lock; mount --bind {d}/log /var/log; mount --bind {d}/cache /var/cache; \
             if [ -d /var/lib/mysql ]; then mount --bind {d}/mysql /var/lib/mysql; fi; \
             ip link set lo up; test -e {MARKER}; \
             echo ready; exec perl -e 'while (1) {{ sleep 1 if waitpid(-1, 0) < 0 }}'"
        );
        let mut unshare = Command::new("unshare")
            .args(["--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private", "--"])
            .args(["/bin/sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        // Forward what unshare says, but its complaint about being killed at the end.
        let stderr = unshare.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !line.contains("sigprocmask") {
                    eprintln!("[test machine] {line}");
                }
            }
        });
        let mut ready = String::new();
        BufReader::new(unshare.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the test machine did not come up (this needs root)");
        // The namespace's init is unshare's only child (unshare itself stays outside the pid namespace).
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
        let init: i32 = children.split_whitespace().next().expect("unshare has its child").parse().unwrap();
        let machine = Machine { dir, init, unshare };
        assert!(machine.run("/bin/true", &[]).status.success(), "commands run inside the machine");
        machine
    }

    /// Runs `program args` inside the machine (never outside: exit 97 if the marker is missing).
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args).stdin(Stdio::null()).output().unwrap()
    }

    /// `program args` inside the machine, to spawn (a daemon that runs while the test
    /// goes on): exit 97 if the marker is missing. It dies with the machine.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &self.init.to_string(), "--mount", "--net", "--pid", "--"])
            .args(["/bin/sh", "-c", &format!("test -e {MARKER} || exit 97; exec \"$0\" \"$@\""), program])
            .args(args);
        command
    }

    /// Installs a second PHP-FPM runtime, `php{version}`, inside the machine: a copy of
    /// the installed php-fpm binary on an overlay of `/usr/sbin` (the host's stays as
    /// it is) and its own config under `/etc/php/{version}`. It is the same PHP, run
    /// as a master of its own, which is what berth moves pools between.
    pub fn add_php_runtime(&self, version: &str) {
        let existing = berth::host::probe::runtimes(Path::new("/")).pop().expect("a PHP-FPM is installed");
        let existing = existing.trim_start_matches("php").to_owned();
        let d = self.dir.path();
        for sub in ["sbin-upper", "sbin-work"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mount = format!(
            "mount -t overlay overlay -o lowerdir=/usr/sbin,upperdir={0}/sbin-upper,workdir={0}/sbin-work /usr/sbin && \
             cp /usr/sbin/php-fpm{existing} /usr/sbin/php-fpm{version}",
            d.display()
        );
        let out = self.run("/bin/sh", &["-c", &mount]);
        assert!(out.status.success(), "overlay: {}", String::from_utf8_lossy(&out.stderr));
        let copied = Command::new("cp")
            .arg("-a")
            .arg(d.join(format!("etc/php/{existing}")))
            .arg(d.join(format!("etc/php/{version}")))
            .status();
        assert!(copied.unwrap().success());
        let conf = d.join(format!("etc/php/{version}/fpm/php-fpm.conf"));
        let text =
            std::fs::read_to_string(&conf).unwrap().replace(&format!("php/{existing}/"), &format!("php/{version}/"));
        let text = text.replace(&format!("php{existing}-fpm"), &format!("php{version}-fpm"));
        std::fs::write(&conf, text).unwrap();
        std::fs::remove_file(d.join(format!("etc/php/{version}/fpm/pool.d/www.conf"))).unwrap();
        std::fs::write(
            d.join(format!("etc/php/{version}/fpm/pool.d/placeholder.conf")),
            format!("[placeholder]\nuser = www-data\nlisten = /run/php/placeholder{version}.sock\npm = ondemand\npm.max_children = 1\n"),
        )
        .unwrap();
    }

    /// Starts MariaDB inside the machine on Debian's socket, with a fresh data
    /// directory and root authenticated by the unix socket, as a new server has it.
    pub fn start_mariadb(&self) {
        // The machines share the host's /tmp, and MariaDB names temp tables after its
        // pid, which repeats across pid namespaces: each gets a tmpdir of its own.
        let script = "mkdir -p /run/mysqld/tmp && chown -R mysql:mysql /run/mysqld || exit 1; \
            mariadb-install-db --user=mysql --datadir=/var/lib/mysql --auth-root-authentication-method=socket \
                --tmpdir=/run/mysqld/tmp >/var/log/mysql/install.log 2>&1 || { cat /var/log/mysql/install.log >&2; exit 1; }; \
            mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --skip-networking \
                     --tmpdir=/run/mysqld/tmp \
                     --pid-file=/run/mysqld/mysqld.pid --log-error=/var/log/mysql/error.log >/dev/null 2>&1 &
            for i in $(seq 600); do test -S /run/mysqld/mysqld.sock && exit 0; sleep 0.1; done; \
            cat /var/log/mysql/error.log >&2; exit 1";
        let out = self.run("/bin/sh", &["-c", script]);
        assert!(out.status.success(), "MariaDB did not start: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs SQL inside the machine as `user` (root through the socket when `password` is None).
    pub fn sql(&self, user: &str, password: Option<&str>, database: &str, sql: &str) -> Output {
        let mut args = vec![
            "--protocol=socket".to_string(),
            format!("--user={user}"),
            "--batch".into(),
            "--skip-column-names".into(),
        ];
        if let Some(password) = password {
            args.push(format!("--password={password}"));
        }
        if !database.is_empty() {
            args.push(format!("--database={database}"));
        }
        args.push(format!("--execute={sql}"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("/usr/bin/mariadb", &args)
    }

    /// The agent config of `berth apply` inside: root "/", state in the sandbox,
    /// plus what [`Machine::extend_config`] added.
    pub fn config(&self) -> PathBuf {
        let path = self.dir.path().join("agent.toml");
        let state = self.dir.path().join("state");
        let extra = std::fs::read_to_string(self.dir.path().join("agent-extra.toml")).unwrap_or_default();
        std::fs::write(
            &path,
            format!(
                "server_id = \"machine\"\napi_key = \"unused-key\"\ncontrol_plane_url = \"wss://localhost/agent\"\n\
                 state_dir = {state:?}\nroot = \"/\"\n{extra}"
            ),
        )
        .unwrap();
        path
    }

    /// Adds TOML lines to the agent config of every later command.
    pub fn extend_config(&self, lines: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent-extra.toml"))
            .unwrap();
        writeln!(file, "{lines}").unwrap();
    }

    /// `berth renew` inside the machine: exit code and the events it printed.
    pub fn renew(&self) -> (Option<i32>, Vec<Value>, String) {
        let config = self.config();
        let berth = env!("CARGO_BIN_EXE_berth");
        let out = self
            .run("/usr/bin/env", &["RUST_LOG=info,berth=debug", berth, "renew", "--config", config.to_str().unwrap()]);
        assert_ne!(out.status.code(), Some(97), "not inside the test machine");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let events = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (out.status.code(), events, stderr)
    }

    /// `berth apply` of `jobs` inside the machine: exit code and the final statuses.
    pub fn apply(&self, jobs: Value) -> (Option<i32>, Vec<Value>) {
        let (code, statuses, _) = self.apply_logged(jobs);
        (code, statuses)
    }

    /// [`Machine::apply`], also returning berth's log (at debug level).
    pub fn apply_logged(&self, jobs: Value) -> (Option<i32>, Vec<Value>, String) {
        let file = self.dir.path().join("jobs.json");
        std::fs::write(&file, jobs.to_string()).unwrap();
        let config = self.config();
        let berth = env!("CARGO_BIN_EXE_berth");
        let args =
            ["RUST_LOG=info,berth=debug", berth, "apply", "--config", config.to_str().unwrap(), file.to_str().unwrap()];
        let out = self.run("/usr/bin/env", &args);
        assert_ne!(out.status.code(), Some(97), "not inside the test machine");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines().filter(|l| !l.contains("DEBUG")) {
            eprintln!("[berth apply] {line}");
        }
        let statuses = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (out.status.code(), statuses, stderr.into_owned())
    }

    /// `berth reconcile` inside the machine: exit code and its JSON report.
    pub fn reconcile(&self) -> (Option<i32>, Value) {
        let (code, report, _) = self.reconcile_logged();
        (code, report)
    }

    /// [`Machine::reconcile`], also returning berth's log (at debug level).
    pub fn reconcile_logged(&self) -> (Option<i32>, Value, String) {
        let config = self.config();
        let berth = env!("CARGO_BIN_EXE_berth");
        let out = self.run(
            "/usr/bin/env",
            &["RUST_LOG=info,berth=debug", berth, "reconcile", "--config", config.to_str().unwrap()],
        );
        assert_ne!(out.status.code(), Some(97), "not inside the test machine");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{stderr}"));
        (out.status.code(), report, stderr)
    }

    /// Runs one job; returns its final status.
    pub fn job(&self, kind: &str, params: Value) -> Value {
        self.apply(serde_json::json!({"kind": kind, "params": params})).1.pop().expect("a final status")
    }

    /// An HTTP GET from inside: (status code, body); code 0 when the server closed
    /// without a response.
    pub fn get(&self, host: &str, path: &str) -> (u16, String) {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/80 || exit 3; printf 'GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' >&3; cat <&3"
        );
        let out = self.run("/bin/bash", &["-c", &script]);
        let response = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (code, body)
    }

    /// GET once: the answer must be `code` now (after a job: `success` means live).
    pub fn at_once_get(&self, host: &str, path: &str, code: u16) -> String {
        let (got, body) = self.get(host, path);
        assert_eq!(got, code, "{host}{path}, at once: {body}");
        body
    }

    /// Waits until `host` answers `path` with `code` (for what no job waited on).
    pub fn eventually_get(&self, host: &str, path: &str, code: u16) -> String {
        let started = std::time::Instant::now();
        loop {
            let (got, body) = self.get(host, path);
            if got == code {
                return body;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "{host}{path} answered {got}: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Puts an executable `dir/name` holding `script` into the machine, or hides the
    /// one there (`None`), on an overlay of `dir` of its own (the host's stays as it is).
    pub fn program(&self, dir: &str, name: &str, script: Option<&str>) {
        let d = self.dir.path().join(format!("overlay-{}-{name}-{}", dir.replace('/', "_"), script.is_some()));
        for sub in ["upper", "work"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let upper = d.join("upper").join(name);
        match script {
            Some(script) => super::write_executable(&upper, script),
            // An overlay whiteout: a 0/0 character device.
            None => {
                nix::sys::stat::mknod(&upper, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).unwrap()
            }
        }
        let mount = format!(
            "mount -t overlay overlay -o lowerdir={dir},upperdir={0}/upper,workdir={0}/work {dir}",
            d.display()
        );
        let out = self.run("/bin/sh", &["-c", &mount]);
        assert!(out.status.success(), "overlay: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The machine's network namespace, to join from a test thread.
    pub fn net_ns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.init))
    }

    /// The host pid of the machine's init (to move a network link into the machine).
    pub fn init_pid(&self) -> i32 {
        self.init
    }

    /// `/bin/sh -c script` in the machine's mount namespace only: its `/etc`, `/srv`
    /// and `/run`, but the host's network (to reach a test control plane on loopback).
    /// The shell checks the marker first (exit 97 outside) and should `exec` the program.
    pub fn shell_in_mounts(&self, script: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["--target", &self.init.to_string(), "--mount", "--"]).args([
            "/bin/sh",
            "-c",
            &format!("test -e {MARKER} || exit 97; {script}"),
        ]);
        command
    }

    /// Any path of the machine's mount namespace (its private `/run` too), seen from
    /// the host through its init's root.
    pub fn through_init(&self, inside: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.init)).join(inside.trim_start_matches('/'))
    }

    /// A path of the machine's filesystem, seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        let inside = Path::new(inside).strip_prefix("/").unwrap();
        for (mount, source) in [("etc", "etc"), ("srv", "srv"), ("var/log", "log"), ("var/cache", "cache")] {
            if let Ok(rest) = inside.strip_prefix(mount) {
                return self.dir.path().join(source).join(rest);
            }
        }
        panic!("{} is not a sandboxed path", inside.display());
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGKILL to the namespace's init ends every process in it.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init), nix::sys::signal::Signal::SIGKILL);
        let _ = self.unshare.wait();
    }
}

/// `berth run` inside a [`Machine`], as systemd runs it there: started, killed with
/// SIGKILL together with the commands it had running (its control group: the unit's
/// `KillMode=mixed` kills what is left once the main process is gone), started again.
/// The servers it started (nginx, Apache, PHP-FPM, MariaDB) live on, as under systemd
/// where they have units of their own.
pub struct Daemon {
    config: PathBuf,
    /// nsenter, whose one child is berth.
    child: Option<Child>,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    /// Echo berth's log lines to the test's stderr.
    pub echo: bool,
}

impl Daemon {
    pub fn new(config: PathBuf) -> Daemon {
        Daemon { config, child: None, log: Default::default(), echo: false }
    }

    pub fn start(&mut self, machine: &Machine) {
        assert!(self.child.is_none(), "the daemon is running");
        let berth = env!("CARGO_BIN_EXE_berth");
        let mut child = machine
            .command("/usr/bin/env", &["RUST_LOG=info", berth, "run", "--config", self.config.to_str().unwrap()])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (log, echo) = (self.log.clone(), self.echo);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[berth run] {line}");
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        self.child = Some(child);
    }

    /// SIGKILL to berth and every process it had started and not let go (the
    /// servers' own daemons aside); returns how many of those commands there were.
    pub fn kill9(&mut self) -> usize {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let Some(mut child) = self.child.take() else { return 0 };
        let mut killed = 0;
        if let Some(pid) = self.berth_pid_of(&child) {
            let tree = descendants(pid);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            for (pid, comm) in tree {
                if ["nginx", "apache2", "mariadbd"].contains(&comm.as_str()) || comm.starts_with("php-fpm") {
                    continue;
                }
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        } else {
            let _ = child.kill();
        }
        let _ = child.wait();
        killed
    }

    /// The host pid of berth (nsenter's child), waiting a moment for nsenter to fork.
    fn berth_pid_of(&self, child: &Child) -> Option<i32> {
        let nsenter = child.id();
        for _ in 0..200 {
            let children = std::fs::read_to_string(format!("/proc/{nsenter}/task/{nsenter}/children")).ok()?;
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().ok();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every descendant of `pid` (host pids), with its command name.
fn descendants(pid: i32) -> Vec<(i32, String)> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 2..].split_whitespace().nth(1).and_then(|s| s.parse::<i32>().ok()).unwrap_or(0);
        parent_of.push((p, ppid, comm));
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (p, _, comm) in parent_of.iter().filter(|(_, pp, _)| *pp == parent) {
            found.push((*p, comm.clone()));
            frontier.push(*p);
        }
    }
    found
}

//! A booted Debian 12 with systemd as PID 1: `systemd-nspawn --boot` over the root
//! filesystem `tests/nspawn/rootfs.sh` builds (the web stack baked in).
//!
//! Each [`Booted`] gets its own overlay (the cached root is its lower layer and is
//! never written), so a reboot keeps what the test installed, as on a real server. Its
//! network namespace is one the test makes (`ip netns add`): loopback only, and the
//! test's control plane listens on that loopback ([`Booted::netns`]). A directory of
//! the test's is bound read-only at [`SHARE`] to hand in the package and the CA.
//! Commands run inside through `nsenter` on the container's PID 1. Dropping it powers
//! the system off (SIGRTMIN+4, as `machinectl poweroff` does), then removes the overlay
//! and the namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the test's files appear inside the booted system (read-only).
pub const SHARE: &str = "/mnt/berth";
/// How long a boot (or a reboot) may take to reach `running`.
pub const BOOT_PATIENCE: Duration = Duration::from_secs(90);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The cached root filesystem, built once per test run by `tests/nspawn/rootfs.sh`.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("bash").arg(repo.join("tests/nspawn/rootfs.sh")).output().expect("bash");
        assert!(
            out.status.success(),
            "tests/nspawn/rootfs.sh failed (needs mmdebstrap and the Debian mirror): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

pub struct Booted {
    /// upper, work, merged (the overlay) and share.
    pub dir: tempfile::TempDir,
    name: String,
    nspawn: Child,
    pid1: i32,
    /// The console and nspawn's own messages, for a failing test.
    console: PathBuf,
}

fn must(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl Booted {
    /// Boots a fresh system and waits until systemd has finished starting up. Fresh,
    /// it is `degraded` as a real server is after `apt-get install nginx apache2`:
    /// both want port 80, and the one that lost the race failed to start.
    pub fn boot() -> Booted {
        let lower = rootfs();
        let dir = tempfile::Builder::new().prefix("berth-nspawn").tempdir_in("/var/tmp").unwrap();
        for sub in ["upper", "work", "merged", "share"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let d = dir.path();
        let options =
            format!("lowerdir={},upperdir={}/upper,workdir={}/work", lower.display(), d.display(), d.display());
        must(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options]).arg(d.join("merged")));
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("berth-b{:x}{n}", std::process::id());
        must(Command::new("ip").args(["netns", "add", &name]));
        must(Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]));
        let console = d.join("console.log");
        let nspawn = Booted::start(d, &name, &console);
        let mut booted = Booted { dir, name, nspawn, pid1: 0, console };
        booted.pid1 = booted.await_running();
        booted
    }

    fn start(d: &Path, name: &str, console: &Path) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(console).unwrap();
        Command::new("systemd-nspawn")
            .args(["--quiet", "--boot", "--register=no", "--keep-unit", "--console=passive"])
            .arg(format!("--machine={name}"))
            .arg("-D")
            .arg(d.join("merged"))
            .arg(format!("--network-namespace-path=/run/netns/{name}"))
            .arg(format!("--bind-ro={}:{SHARE}", d.join("share").display()))
            .env_remove("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn (package systemd-container)")
    }

    /// Finds PID 1 (nspawn's child) and waits for `is-system-running` to settle.
    fn await_running(&mut self) -> i32 {
        let deadline = Instant::now() + BOOT_PATIENCE;
        let pid1 = loop {
            let id = self.nspawn.id();
            let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    break pid;
                }
            }
            assert!(self.nspawn.try_wait().unwrap().is_none(), "systemd-nspawn exited: {}", self.console());
            assert!(Instant::now() < deadline, "no PID 1 in the container: {}", self.console());
            std::thread::sleep(Duration::from_millis(50));
        };
        self.pid1 = pid1;
        while !self.run("/usr/bin/test", &["-S", "/run/systemd/private"]).status.success() {
            assert!(Instant::now() < deadline, "systemd did not come up: {}", self.console());
            std::thread::sleep(Duration::from_millis(100));
        }
        let state = self.state();
        assert!(state == "running" || state == "degraded", "the booted system is {state}: {}", self.console());
        pid1
    }

    /// `systemctl is-system-running --wait`: `running`, or `degraded` with
    /// [`Booted::failed_units`].
    pub fn state(&self) -> String {
        let state = self.run("/usr/bin/systemctl", &["is-system-running", "--wait"]);
        String::from_utf8_lossy(&state.stdout).trim().to_string()
    }

    pub fn failed_units(&self) -> Vec<String> {
        let out = self.ok("systemctl", &["list-units", "--failed", "--no-legend", "--plain", "--full"]);
        out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The host PID of the container's PID 1 (systemd).
    pub fn pid1(&self) -> i32 {
        self.pid1
    }

    /// The network namespace the container lives in (loopback only).
    pub fn netns(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `program args` inside the booted system, in all of its namespaces.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.pid1.to_string(), "-a", "--", program]).args(args);
        command.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("LC_ALL", "C");
        command
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {}: exit {:?}\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Puts a file into the shared directory; returns its path inside.
    pub fn share(&self, name: &str, contents: &[u8]) -> String {
        std::fs::write(self.dir.path().join("share").join(name), contents).unwrap();
        format!("{SHARE}/{name}")
    }

    /// A path of the booted system's files, seen from the host (through the overlay).
    pub fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join("merged").join(inside.trim_start_matches('/'))
    }

    /// The main PID of a unit, inside the container's PID namespace (0: not running).
    pub fn main_pid(&self, unit: &str) -> i32 {
        let out = self.ok("systemctl", &["show", "--value", "--property=MainPID", unit]);
        out.trim().parse().unwrap()
    }

    /// Waits for the system to go down by itself and boots it again on the same
    /// files: what the host's `systemd-nspawn@.service` does for exit status 133.
    pub fn await_reboot(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let status = loop {
            if let Some(status) = self.nspawn.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the system did not go down: {}", self.console());
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(status.code(), Some(133), "nspawn's exit status is 133 for a reboot: {}", self.console());
        self.nspawn = Booted::start(self.dir.path(), &self.name, &self.console);
        self.pid1 = self.await_running();
    }

    /// Powers off and waits (the overlay keeps the files until drop).
    pub fn poweroff(&mut self) {
        if self.nspawn.try_wait().unwrap().is_none() {
            let _ = Command::new("kill").args(["-s", "SIGRTMIN+4", &self.pid1.to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.nspawn.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = self.nspawn.kill();
                    let _ = self.nspawn.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        self.poweroff();
        let _ = Command::new("umount").arg(self.dir.path().join("merged")).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

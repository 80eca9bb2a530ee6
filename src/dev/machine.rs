//! The trial machine: `berth dev`'s agent, run for real without touching the host.
//!
//! As root with the web stack installed, `berth dev` runs its agent in private mount,
//! network and PID namespaces (`unshare`), as the test machine does: a copy of
//! `/etc` (made once, in `DIR/machine/etc`), its own `/srv`, `/run`, `/var/log` and
//! MariaDB data, and there its own nginx, Apache, PHP-FPM and MariaDB, which the
//! agent starts. The agent runs as the namespace's init with `root = "/"`, so
//! killing it ends every server in there.
//!
//! The namespace has loopback only. berth dev reaches into it from threads that
//! enter its network namespace (`setns`): the control plane's listener for the
//! agent is made in there, and each connection to the loopback ports berth dev
//! prints is carried to the machine's port 80 or 443.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sched::CloneFlags;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use super::DevError;
use crate::shutdown::Shutdown;

/// Marks the machine's copy of `/etc`: the machine stops before its agent starts
/// when `/etc` is not that copy.
const MARKER: &str = "/etc/.berth-dev-machine";

/// Why the trial cannot run in a machine here, in one line; `None` when it can.
pub fn missing() -> Option<String> {
    // /proc/self belongs to the effective uid.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if !root {
        return Some("not run as root".into());
    }
    for (path, what) in
        [("/usr/bin/unshare", "util-linux's unshare"), ("/usr/sbin/nginx", "nginx"), ("/usr/sbin/apache2", "Apache")]
    {
        if !Path::new(path).exists() {
            return Some(format!("{what} is not installed ({path})"));
        }
    }
    if crate::host::probe::runtimes(Path::new("/")).is_empty() {
        return Some("no PHP-FPM is installed".into());
    }
    None
}

/// The machine's redis-server (for `app.object_cache`), as berth's installer sets it
/// up: ACL users in an aclfile, a Unix socket for all (the ACL decides), no port.
const REDIS_CONF: &str = "port 0\\nunixsocket /run/redis/redis-server.sock\\nunixsocketperm 777\\n\
    aclfile /etc/redis/users.acl\\ndir /run/redis\\ndaemonize yes\\npidfile /run/redis/redis-server.pid\\n\
    logfile /var/log/redis/redis-server.log\\n";

/// A running machine: its namespaces, and the agent as their init.
pub struct Machine {
    unshare: Child,
    /// The host pid of the namespace's init (the agent, once started).
    init: u32,
    netns: File,
}

impl Machine {
    /// Makes the namespaces (the agent is not started yet: [`Machine::boot`]).
    pub async fn create(dir: &Path) -> Result<Machine, DevError> {
        let machine = dir.join("machine");
        let etc = machine.join("etc");
        if !etc.join(MARKER.trim_start_matches("/etc/")).exists() {
            let _ = std::fs::remove_dir_all(&etc);
            std::fs::create_dir_all(&machine).map_err(DevError::io("cannot create", &machine))?;
            let copied = Command::new("/bin/cp").arg("-a").arg("/etc").arg(&etc).status().await;
            if !copied.is_ok_and(|s| s.success()) {
                return Err(DevError::Io {
                    what: "cannot copy /etc to",
                    path: etc,
                    source: std::io::Error::other("cp failed"),
                });
            }
            std::fs::write(etc.join(MARKER.trim_start_matches("/etc/")), "")
                .map_err(DevError::io("cannot write", &etc))?;
        }
        for sub in ["srv", "log/nginx", "log/apache2", "log/mysql", "mysql"] {
            let path = machine.join(sub);
            std::fs::create_dir_all(&path).map_err(DevError::io("cannot create", &path))?;
        }
        // Waits for berth dev's word (its listener is in the namespace by then), then
        // mounts the machine's own files and starts MariaDB; `exec` makes the agent init.
        // A fixed program: the machine's directory and the agent's argv are arguments.
        let script = format!(
            "read go || exit 1; set -e; m=$1; shift; \
             mount --bind \"$m/etc\" /etc; mount --bind \"$m/srv\" /srv; \
             mount -t tmpfs -o mode=0755 tmpfs /run; mkdir -p /run/lock; mount --bind \"$m/log\" /var/log; \
             if [ -d /var/lib/mysql ]; then mount --bind \"$m/mysql\" /var/lib/mysql; fi; \
             ip link set lo up; test -e {MARKER}; \
             if [ -x /usr/sbin/mariadbd ]; then \
               mkdir -p /run/mysqld/tmp; chown -R mysql:mysql /run/mysqld /var/lib/mysql /var/log/mysql; \
               [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
                 --auth-root-authentication-method=socket >/var/log/mysql/install.log 2>&1; \
               mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --skip-networking \
                 --tmpdir=/run/mysqld/tmp --pid-file=/run/mysqld/mysqld.pid \
                 --log-error=/var/log/mysql/error.log >/dev/null 2>&1 & \
             fi; \
             if [ -x /usr/bin/redis-server ]; then \
               mkdir -p /run/redis /var/log/redis; chown redis:redis /run/redis /var/log/redis; \
               [ -e /etc/redis/users.acl ] || {{ touch /etc/redis/users.acl; chown redis:redis /etc/redis/users.acl; }}; \
               printf '{REDIS_CONF}' >/etc/redis/berth-dev.conf; \
               setpriv --reuid=redis --regid=redis --init-groups -- /usr/bin/redis-server /etc/redis/berth-dev.conf; \
             fi; \
             exec \"$@\""
        );
        let mut unshare = Command::new("/usr/bin/unshare")
            .args(["--mount", "--net", "--pid", "--fork", "--mount-proc", "--propagation", "private", "--"])
            .args(["/bin/sh", "-c", &script, "berth-machine"])
            .arg(&machine)
            .arg(std::env::current_exe().map_err(DevError::io("cannot find", Path::new("/proc/self/exe")))?)
            .args(["run", "--config"])
            .arg(dir.join("agent.toml"))
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(DevError::io("cannot run", Path::new("/usr/bin/unshare")))?;
        let unshare_pid = unshare.id().unwrap_or_default();
        let children = PathBuf::from(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"));
        let init = loop {
            let listed = std::fs::read_to_string(&children).unwrap_or_default();
            if let Some(pid) = listed.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) {
                break pid;
            }
            if unshare.try_wait().ok().flatten().is_some() {
                return Err(DevError::Io {
                    what: "the machine did not start:",
                    path: children,
                    source: std::io::Error::other("unshare exited"),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let ns = PathBuf::from(format!("/proc/{init}/ns/net"));
        let netns = File::open(&ns).map_err(DevError::io("cannot open", &ns))?;
        Ok(Machine { unshare, init, netns })
    }

    /// A listener on the machine's loopback, for its agent to reach the control plane.
    pub fn listen_inside(&self) -> Result<TcpListener, DevError> {
        let listener = inside(&self.netns, || std::net::TcpListener::bind("127.0.0.1:0"))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(DevError::io("cannot listen in the machine on", Path::new("127.0.0.1:0")))?;
        Ok(listener)
    }

    /// Mounts the machine's files and starts the agent (its config is written).
    pub async fn boot(&mut self) -> Result<(), DevError> {
        use tokio::io::AsyncWriteExt;
        let stdin = self.unshare.stdin.as_mut().expect("piped");
        stdin.write_all(b"go\n").await.map_err(DevError::io("cannot start the machine", Path::new("unshare")))
    }

    /// Carries each connection to `listener` (on the host's loopback) to the
    /// machine's `port`, until `shutdown`.
    pub fn forward(&self, listener: TcpListener, port: u16, mut shutdown: Shutdown) -> Result<(), DevError> {
        let netns = self.netns.try_clone().map_err(DevError::io("cannot open", Path::new("the machine's netns")))?;
        tokio::spawn(async move {
            loop {
                let (mut outside, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = shutdown.wait() => return,
                };
                let Ok(netns) = netns.try_clone() else { continue };
                tokio::spawn(async move {
                    let connected = tokio::task::spawn_blocking(move || {
                        inside(&netns, || std::net::TcpStream::connect(("127.0.0.1", port)))
                    })
                    .await;
                    let Ok(Ok(stream)) = connected else { return };
                    if stream.set_nonblocking(true).is_err() {
                        return;
                    }
                    let Ok(mut machine) = TcpStream::from_std(stream) else { return };
                    let _ = tokio::io::copy_bidirectional(&mut outside, &mut machine).await;
                });
            }
        });
        Ok(())
    }

    /// Stops the agent (SIGTERM to the namespace's init), which ends the machine.
    pub async fn stop(mut self) {
        let init = nix::unistd::Pid::from_raw(self.init as i32);
        let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(std::time::Duration::from_secs(30), self.unshare.wait()).await.is_err() {
            let _ = self.unshare.kill().await;
        }
    }
}

/// Runs `f` on a thread inside the network namespace `netns`: sockets it makes
/// belong to that namespace whichever thread uses them later.
fn inside<T: Send>(netns: &File, f: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}

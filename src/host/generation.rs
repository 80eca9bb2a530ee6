//! When a reload is live: the moment a new connection reaches the new config.
//!
//! `nginx -s reload`, `apache2ctl graceful`, PHP-FPM's `USR2` and `systemctl
//! reload` all return once the signal is sent, before the server acts on it. A job
//! that reported `success` then could have its next request served by the old
//! config. So after a reload (or start), berth watches the server's processes
//! through `/proc` until the new generation serves:
//!
//! - nginx and Apache: the master's listening sockets are held by children that
//!   were not there before the reload, and by none of the old ones (a worker being
//!   retired closes its listeners first, then finishes its requests);
//! - PHP-FPM: the master has re-executed (its pid file is written anew) and listens
//!   on every unix socket its pool files name.
//!
//! The master's listening sockets are read from its own network namespace
//! (`/proc/PID/net/{tcp,tcp6,unix}`), so this holds in a container too.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Which processes serve a server's connections, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// The master's pid, from its pid file, when it is alive.
    pub master: Option<u32>,
    /// The pid file's inode and modification time (PHP-FPM writes a new file when
    /// it re-executes).
    pub pid_file_stamp: Option<(u64, i64, i64)>,
    /// The master's children that hold one of its listening sockets.
    pub acceptors: BTreeSet<u32>,
    /// How many listening sockets the master holds.
    pub listeners: usize,
}

/// How a server shows that its new config serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// nginx, Apache: children accept on the master's sockets.
    Workers,
    /// PHP-FPM: the master re-executes and listens on its pools' sockets.
    Reexec,
}

/// The generation serving now, found through `pid_file`.
pub fn observe(pid_file: &Path) -> Generation {
    let master = master(pid_file);
    let pid_file_stamp = std::fs::metadata(pid_file).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec()));
    let listening = master.map(listening).unwrap_or_default();
    let acceptors = master.map(|master| acceptors(master, &listening)).unwrap_or_default();
    Generation { master, pid_file_stamp, acceptors, listeners: listening.len() }
}

/// Whether `now` is the generation that replaced `before`. `sockets` are the unix
/// socket paths the config names (PHP-FPM's pools).
pub fn replaced(
    kind: Kind,
    before: &Generation,
    now: &Generation,
    listening_now: &BTreeSet<String>,
    sockets: &[String],
) -> bool {
    if now.master.is_none() {
        return false;
    }
    match kind {
        // A master without listeners (none configured) has nothing to wait for.
        Kind::Workers => {
            now.listeners == 0 || (!now.acceptors.is_empty() && now.acceptors.is_disjoint(&before.acceptors))
        }
        Kind::Reexec => {
            let reexecuted =
                before.master.is_none() || before.master != now.master || before.pid_file_stamp != now.pid_file_stamp;
            reexecuted && sockets.iter().all(|path| listening_now.contains(path))
        }
    }
}

/// The unix socket paths `master` listens on (PHP-FPM's pools).
pub fn unix_listeners(master: u32) -> BTreeSet<String> {
    let held = socket_inodes(master);
    let table = std::fs::read_to_string(format!("/proc/{master}/net/unix")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode Path
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening =
                fields.get(3).is_some_and(|flags| u32::from_str_radix(flags, 16).is_ok_and(|f| f & 0x1_0000 != 0));
            let inode = fields.get(6)?.parse::<u64>().ok()?;
            (listening && held.contains(&inode)).then(|| fields.get(7).map(|p| (*p).to_owned())).flatten()
        })
        .collect()
}

/// The `listen = /path` sockets of the pool files in `pool_dir`.
pub fn pool_sockets(pool_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(pool_dir) else { return Vec::new() };
    let mut sockets = Vec::new();
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.trim();
            if key.trim() == "listen" && value.starts_with('/') {
                sockets.push(value.to_owned());
            }
        }
    }
    sockets
}

/// The live process a pid file names.
fn master(pid_file: &Path) -> Option<u32> {
    let pid = std::fs::read_to_string(pid_file).ok()?.trim().parse::<u32>().ok()?;
    (pid > 0 && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

/// The inodes of the sockets `pid` holds open.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return BTreeSet::new() };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The listening sockets (TCP over IPv4 and IPv6, unix) that `master` holds.
fn listening(master: u32) -> BTreeSet<u64> {
    let mut listening = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{master}/net/{table}")).unwrap_or_default();
        // sl local_address rem_address st ... inode (the 10th field); st 0A is LISTEN.
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) == Some(&"0A") {
                listening.extend(fields.get(9).and_then(|i| i.parse::<u64>().ok()));
            }
        }
    }
    let text = std::fs::read_to_string(format!("/proc/{master}/net/unix")).unwrap_or_default();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3).is_some_and(|flags| u32::from_str_radix(flags, 16).is_ok_and(|f| f & 0x1_0000 != 0)) {
            listening.extend(fields.get(6).and_then(|i| i.parse::<u64>().ok()));
        }
    }
    let held = socket_inodes(master);
    listening.retain(|inode| held.contains(inode));
    listening
}

/// The children of `master` holding one of `listening`.
fn acceptors(master: u32, listening: &BTreeSet<u64>) -> BTreeSet<u32> {
    children(master).into_iter().filter(|&pid| !socket_inodes(pid).is_disjoint(listening)).collect()
}

/// `master`'s children, from each of its threads' `children` list.
fn children(master: u32) -> BTreeSet<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{master}/task")) else { return BTreeSet::new() };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(master: u32, inode: u64, acceptors: &[u32]) -> Generation {
        Generation {
            master: Some(master),
            pid_file_stamp: Some((inode, 0, 0)),
            acceptors: acceptors.iter().copied().collect(),
            listeners: 1,
        }
    }

    #[test]
    fn workers_are_live_when_no_old_acceptor_remains() {
        let before = generation(10, 1, &[11, 12]);
        let none = BTreeSet::new();
        assert!(!replaced(Kind::Workers, &before, &before, &none, &[]), "nothing changed yet");
        assert!(
            !replaced(Kind::Workers, &before, &generation(10, 1, &[12, 13]), &none, &[]),
            "an old worker still accepts"
        );
        assert!(!replaced(Kind::Workers, &before, &generation(10, 1, &[]), &none, &[]), "no new worker yet");
        assert!(replaced(Kind::Workers, &before, &generation(10, 1, &[13, 14]), &none, &[]));
        assert!(!replaced(Kind::Workers, &before, &Generation::default(), &none, &[]), "no master");
        assert!(replaced(Kind::Workers, &Generation::default(), &generation(20, 2, &[21]), &none, &[]), "a start");
    }

    #[test]
    fn php_fpm_is_live_once_reexecuted_and_listening_on_every_pool() {
        let before = generation(10, 1, &[]);
        let sockets = vec!["/run/php/a.sock".to_owned(), "/run/php/b.sock".to_owned()];
        let a: BTreeSet<String> = ["/run/php/a.sock".to_owned()].into();
        let both: BTreeSet<String> = sockets.iter().cloned().collect();
        assert!(!replaced(Kind::Reexec, &before, &before, &both, &sockets), "not re-executed yet");
        assert!(!replaced(Kind::Reexec, &before, &generation(10, 2, &[]), &a, &sockets), "one pool not listening");
        assert!(replaced(Kind::Reexec, &before, &generation(10, 2, &[]), &both, &sockets));
    }

    #[test]
    fn pool_sockets_are_read_from_listen_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "[a]\nlisten = /run/php/a.sock\nlisten.owner = www-data\n").unwrap();
        std::fs::write(dir.path().join("b.conf"), "[b]\nlisten=127.0.0.1:9000\n").unwrap();
        std::fs::write(dir.path().join("c.conf.disabled"), "[c]\nlisten = /run/php/c.sock\n").unwrap();
        assert_eq!(pool_sockets(dir.path()), vec!["/run/php/a.sock".to_owned()]);
    }

    #[test]
    fn children_holding_a_listener_are_acceptors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id();
        let listening = listening(me);
        assert!(!listening.is_empty(), "this test's listener is seen");
        // Rust opens sockets close-on-exec: the child holds none, so it is a child
        // but no acceptor.
        let mut child = std::process::Command::new("/bin/sleep").arg("5").spawn().unwrap();
        assert!(children(me).contains(&child.id()));
        assert!(!acceptors(me, &listening).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(listener);
    }

    #[test]
    fn this_process_is_observed_through_its_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("self.pid");
        std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
        let seen = observe(&pid_file);
        assert_eq!(seen.master, Some(std::process::id()));
        assert!(seen.pid_file_stamp.is_some());
        std::fs::write(&pid_file, "0").unwrap();
        assert_eq!(observe(&pid_file).master, None);
    }
}

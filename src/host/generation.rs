//! When a reload is live: the moment a new connection reaches the new config.
//!
//! `nginx -s reload`, `apache2ctl graceful`, PHP-FPM's `USR2` and `systemctl
//! reload` all return once the signal is sent, before the server acts on it. A job
//! that reported `success` then could have its next request served by the old
//! config. So after a reload (or start), berth watches the server's processes
//! through `/proc` until the new generation serves:
//!
//! - nginx and Apache: the master's TCP listening sockets are held by children that
//!   were not there before the reload, and by none of the old ones (a worker being
//!   retired closes its listeners first, then finishes its requests). Where the
//!   children's descriptors cannot be read (no `CAP_SYS_PTRACE`), a child that was
//!   not there before is the sign;
//! - PHP-FPM: the master has re-executed (its pid file is written anew) and every
//!   pool's socket file exists (the new master binds a new pool's socket; the rest
//!   it inherits, listening).
//!
//! Only `/proc/PID/net/tcp{,6}` is parsed: no field there is a tenant's. (The unix
//! table is not: a socket's name is printed raw, newlines included, so a tenant's
//! socket could forge lines.)

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    /// How many TCP listening sockets the master holds.
    pub listeners: usize,
    /// The master's children.
    pub children: BTreeSet<u32>,
    /// Whether some child's descriptors could be read (root without
    /// `CAP_SYS_PTRACE` cannot read another user's).
    pub fds_readable: bool,
}

/// How a server shows that its new config serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// nginx, Apache: children accept on the master's sockets.
    Workers,
    /// PHP-FPM: the master re-executes and listens on its pools' sockets.
    Reexec,
}

/// The generation serving now, found through `pid_file` (its workers only for
/// [`Kind::Workers`]).
pub fn observe(pid_file: &Path, kind: Kind) -> Generation {
    let master = master(pid_file);
    let pid_file_stamp = std::fs::metadata(pid_file).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec()));
    let mut generation = Generation { master, pid_file_stamp, ..Generation::default() };
    if let (Some(master), Kind::Workers) = (master, kind) {
        let listening = listening(master);
        generation.listeners = listening.len();
        generation.children = children(master);
        for &child in &generation.children {
            if let Some(held) = socket_inodes(child) {
                generation.fds_readable = true;
                if !held.is_disjoint(&listening) {
                    generation.acceptors.insert(child);
                }
            }
        }
    }
    generation
}

/// Whether `now` is the generation that replaced `before`; `sockets_present`:
/// every socket file the config names exists (PHP-FPM's pools).
pub fn replaced(kind: Kind, before: &Generation, now: &Generation, sockets_present: bool) -> bool {
    if now.master.is_none() {
        return false;
    }
    match kind {
        // Nothing listened and nothing listens (no site configured): nothing to wait for.
        Kind::Workers if now.listeners == 0 && before.listeners == 0 => true,
        // The descriptors are closed to us: a new child is the sign of the new generation.
        Kind::Workers if !now.fds_readable => !now.children.is_subset(&before.children),
        Kind::Workers => !now.acceptors.is_empty() && now.acceptors.is_disjoint(&before.acceptors),
        Kind::Reexec => {
            let reexecuted =
                before.master.is_none() || before.master != now.master || before.pid_file_stamp != now.pid_file_stamp;
            reexecuted && sockets_present
        }
    }
}

/// Whether every path in `sockets` is a socket file now.
pub fn sockets_present(sockets: &[String]) -> bool {
    use std::os::unix::fs::FileTypeExt;
    sockets.iter().all(|path| std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()))
}

/// The `listen = /path` sockets of the pool files in `pool_dir` (`$pool` is the
/// pool's name; a value with another variable, or an address, is left out).
pub fn pool_sockets(pool_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(pool_dir) else { return Vec::new() };
    let mut sockets = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut pool = String::new();
        for line in text.lines() {
            let line = line.split(';').next().unwrap_or_default().trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                pool = name.trim().to_owned();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.trim().trim_matches('"').replace("$pool", &pool);
            if key.trim() == "listen" && value.starts_with('/') && !value.contains('$') {
                sockets.push(value);
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

/// The inodes of the sockets `pid` holds open; `None` when its descriptors cannot
/// be read.
fn socket_inodes(pid: u32) -> Option<BTreeSet<u64>> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let inodes = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    Some(inodes)
}

/// The TCP listening sockets (IPv4 and IPv6) that `master` holds.
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
    let held = socket_inodes(master).unwrap_or_default();
    listening.retain(|inode| held.contains(inode));
    listening
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
            children: acceptors.iter().copied().collect(),
            fds_readable: true,
        }
    }

    #[test]
    fn workers_are_live_when_no_old_acceptor_remains() {
        let before = generation(10, 1, &[11, 12]);
        assert!(!replaced(Kind::Workers, &before, &before, true), "nothing changed yet");
        assert!(!replaced(Kind::Workers, &before, &generation(10, 1, &[12, 13]), true), "an old worker still accepts");
        assert!(!replaced(Kind::Workers, &before, &generation(10, 1, &[]), true), "no new worker yet");
        assert!(replaced(Kind::Workers, &before, &generation(10, 1, &[13, 14]), true));
        assert!(!replaced(Kind::Workers, &before, &Generation::default(), true), "no master");
        assert!(replaced(Kind::Workers, &Generation::default(), &generation(20, 2, &[21]), true), "a start");
        let quiet = Generation { listeners: 0, ..generation(10, 1, &[]) };
        assert!(replaced(Kind::Workers, &quiet, &quiet, true), "nothing listens, before or now");
        assert!(!replaced(Kind::Workers, &before, &quiet, true), "listeners gone is no sign of the new generation");
    }

    #[test]
    fn without_the_workers_descriptors_a_new_child_is_the_sign() {
        let closed = |children: &[u32]| Generation {
            acceptors: BTreeSet::new(),
            fds_readable: false,
            children: children.iter().copied().collect(),
            ..generation(10, 1, &[])
        };
        assert!(!replaced(Kind::Workers, &closed(&[11, 12]), &closed(&[11, 12]), true));
        assert!(!replaced(Kind::Workers, &closed(&[11, 12]), &closed(&[12]), true), "one exited, none new");
        assert!(replaced(Kind::Workers, &closed(&[11, 12]), &closed(&[11, 13]), true));
    }

    #[test]
    fn php_fpm_is_live_once_reexecuted_with_every_pool_socket() {
        let before = generation(10, 1, &[]);
        assert!(!replaced(Kind::Reexec, &before, &before, true), "not re-executed yet");
        assert!(!replaced(Kind::Reexec, &before, &generation(10, 2, &[]), false), "a pool's socket is missing");
        assert!(replaced(Kind::Reexec, &before, &generation(10, 2, &[]), true));
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("a.sock");
        let plain = dir.path().join("b.sock");
        let _bound = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::fs::write(&plain, "").unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        assert!(sockets_present(&[path(&socket)]));
        assert!(!sockets_present(&[path(&socket), path(&plain)]), "a plain file is no socket");
        assert!(!sockets_present(&[path(&dir.path().join("c.sock"))]));
    }

    #[test]
    fn pool_sockets_are_read_from_listen_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.conf"),
            "[a]\nlisten = /run/php/a.sock ; the pool's\nlisten.owner = www-data\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.conf"), "[b]\nlisten=127.0.0.1:9000\n").unwrap();
        std::fs::write(dir.path().join("c.conf.disabled"), "[c]\nlisten = /run/php/c.sock\n").unwrap();
        std::fs::write(dir.path().join("d.conf"), "[d]\nlisten = /run/php/$pool.sock\n[e]\nlisten = ${SOCK}\n")
            .unwrap();
        let mut found = pool_sockets(dir.path());
        found.sort();
        assert_eq!(found, ["/run/php/a.sock", "/run/php/d.sock"]);
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
        assert!(socket_inodes(child.id()).unwrap().is_disjoint(&listening));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(listener);
    }

    /// Found in review: a socket's name is printed raw in `/proc/net/unix`, newlines
    /// included, so a tenant's socket could forge a line marking any inode as
    /// listening. Only the TCP tables count.
    #[test]
    fn regression_unix_sockets_never_count_as_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("l.sock")).unwrap();
        let fd = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&unix))).unwrap();
        let inode: u64 = fd.to_str().unwrap().trim_start_matches("socket:[").trim_end_matches(']').parse().unwrap();
        assert!(!listening(std::process::id()).contains(&inode), "a unix listener is not counted");
    }

    #[test]
    fn this_process_is_observed_through_its_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("self.pid");
        std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
        let seen = observe(&pid_file, Kind::Workers);
        assert_eq!(seen.master, Some(std::process::id()));
        assert!(seen.pid_file_stamp.is_some());
        std::fs::write(&pid_file, "0").unwrap();
        assert_eq!(observe(&pid_file, Kind::Workers).master, None);
    }
}

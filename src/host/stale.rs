//! Which services still run code an upgrade replaced: systemd units whose processes
//! map deleted files under the system's program and library directories (what
//! needrestart and checkrestart look for).
//!
//! When dpkg replaces `/usr/lib/x86_64-linux-gnu/libssl.so.3`, a running nginx keeps
//! the old inode mapped and `/proc/PID/maps` shows the path with ` (deleted)` after it:
//! the fix is live only after a restart. One walk of `<root>/proc`: the unit comes from
//! `/proc/PID/cgroup` first (cheap), and only processes of a system service that is
//! not yet known to be stale have their maps read.
//!
//! Only `.service` units outside `user.slice` count (a user's session or user manager
//! is not the server's to restart); the outermost `.service` of the path is the one
//! systemd restarts (a container's own units nest below it). The kernel escapes
//! newlines in maps' paths, so a planted file name cannot forge a line, and a user
//! cannot make files under the system directories.

use std::io::{BufRead, BufReader};
use std::path::Path;

/// Directories whose deleted files mean stale code: programs and libraries.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/libexec/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/local/lib/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/lib/",
    "/lib64/",
    "/bin/",
    "/sbin/",
];

/// Data under [`SYSTEM_DIRS`] that is no code (a new locale archive needs no restart).
const NOT_CODE: &[&str] = &["/usr/lib/locale/"];

/// The longest unit name reported (systemd's limit is 255).
const UNIT_MAX: usize = 255;

/// The services (unit names without `.service`) whose processes under `proc` map a
/// deleted file under one of `dirs`: sorted, each once.
pub fn stale_units(proc: &Path, dirs: &[&str]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(proc) else { return Vec::new() };
    let mut units: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        // A process may end at any moment: what cannot be read is skipped.
        let Ok(cgroup) = std::fs::read_to_string(proc.join(pid).join("cgroup")) else { continue };
        let Some(unit) = unit_of(&cgroup) else { continue };
        if units.contains(&unit) {
            continue;
        }
        if !deleted_maps(&proc.join(pid).join("maps"), dirs).is_empty() {
            units.push(unit);
        }
    }
    units.sort();
    units
}

/// The deleted files under `dirs` that the maps file at `maps` names (each once).
pub fn deleted_maps(maps: &Path, dirs: &[&str]) -> Vec<String> {
    let Ok(file) = std::fs::File::open(maps) else { return Vec::new() };
    let mut found: Vec<String> = Vec::new();
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if let Some(path) = deleted_path(&line, dirs) {
            if !found.iter().any(|f| f == path) {
                found.push(path.to_owned());
            }
        }
    }
    found
}

/// The path of one maps line if it is a deleted file under `dirs`:
/// `7f3a…-7f3a… r-xp 00000000 08:01 1234     /usr/lib/…/libssl.so.3 (deleted)`.
fn deleted_path<'a>(line: &'a str, dirs: &[&str]) -> Option<&'a str> {
    let path = line.strip_suffix(" (deleted)")?;
    let mut rest = path;
    for _ in 0..5 {
        let field = rest.trim_start();
        rest = &field[field.find(' ')?..];
    }
    let path = rest.trim_start();
    let under = dirs.iter().any(|dir| path.starts_with(dir)) && !NOT_CODE.iter().any(|dir| path.starts_with(dir));
    under.then_some(path)
}

/// The system service of a process from its `/proc/PID/cgroup` text: the unified
/// hierarchy's line (`0::/system.slice/nginx.service`), else the v1 `name=systemd` one.
pub fn unit_of(cgroup: &str) -> Option<String> {
    let path_of =
        |prefix: &str| cgroup.lines().find_map(|l| l.split_once(':').and_then(|(_, r)| r.strip_prefix(prefix)));
    let path = path_of(":").filter(|p| *p != "/").or_else(|| path_of("name=systemd:"))?;
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    if parts.clone().next() == Some("user.slice") {
        return None;
    }
    let unit = parts.find_map(|p| p.strip_suffix(".service"))?;
    let valid = !unit.is_empty()
        && unit.len() <= UNIT_MAX
        && unit.bytes().all(|b| b.is_ascii_alphanumeric() || b":_.@-\\".contains(&b));
    valid.then(|| unit.to_owned())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::process::{Command, Stdio};

    use super::*;

    const NGINX_MAPS: &str = "\
55d0c0a00000-55d0c0a2e000 r--p 00000000 08:01 524300                     /usr/sbin/nginx
7f1c2a000000-7f1c2a1c0000 r-xp 00028000 08:01 532001                     /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)
7f1c2a400000-7f1c2a600000 r--p 00000000 08:01 532002                     /usr/lib/locale/locale-archive (deleted)
7f1c2b000000-7f1c2b001000 rw-s 00000000 00:01 1025                       /dev/zero (deleted)
7f1c2b100000-7f1c2b101000 rw-s 00000000 00:05 7                          /memfd:x (deleted)
7ffc4d8e0000-7ffc4d901000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn maps_lines() {
        let lines: Vec<_> = NGINX_MAPS.lines().filter_map(|l| deleted_path(l, SYSTEM_DIRS)).collect();
        assert_eq!(lines, ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]);
        let spaced = "7f00-7f01 r-xp 00000000 08:01 9 /usr/lib/a dir/lib x.so (deleted)";
        assert_eq!(deleted_path(spaced, SYSTEM_DIRS), Some("/usr/lib/a dir/lib x.so"));
        assert_eq!(deleted_path("7f00-7f01 r-xp 00000000 08:01 9 /usr/lib/libz.so.1", SYSTEM_DIRS), None);
        assert_eq!(deleted_path("/usr/lib/libz.so.1 (deleted)", SYSTEM_DIRS), None, "no fields: no path");
        assert_eq!(deleted_path("7f00-7f01 r-xp 0 08:01 9 /home/u/usr/lib/x (deleted)", SYSTEM_DIRS), None);
    }

    #[test]
    fn units_from_cgroup_text() {
        for (text, want) in [
            ("0::/system.slice/nginx.service\n", Some("nginx")),
            ("0::/system.slice/php8.2-fpm.service\n", Some("php8.2-fpm")),
            ("0::/system.slice/system-getty.slice/getty@tty1.service\n", Some("getty@tty1")),
            ("0::/system.slice/lxc.service/lxc.payload.c1/system.slice/cron.service\n", Some("lxc")),
            ("0::/system.slice/docker-0a1b.scope\n", None),
            ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
            ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.service\n", None),
            ("0::/init.scope\n", None),
            ("0::/\n", None),
            ("", None),
            // cgroup v1 (and hybrid, whose unified line is empty)
            ("12:pids:/system.slice/mariadb.service\n1:name=systemd:/system.slice/mariadb.service\n", Some("mariadb")),
            ("1:name=systemd:/system.slice/redis-server.service\n0::/\n", Some("redis-server")),
            ("0::/system.slice/bad name.service\n", None),
            ("0::/system.slice/.service\n", None),
        ] {
            assert_eq!(unit_of(text).as_deref(), want, "{text:?}");
        }
        let long = format!("0::/system.slice/{}.service\n", "a".repeat(300));
        assert_eq!(unit_of(&long), None);
    }

    fn process(proc: &Path, pid: u32, cgroup: &str, maps: &str) {
        let dir = proc.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup"), cgroup).unwrap();
        fs::write(dir.join("maps"), maps).unwrap();
    }

    #[test]
    fn a_fake_proc_tree_gives_sorted_units_once_each() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        let fresh = "55d0-55d1 r--p 00000000 08:01 1 /usr/sbin/nginx\n";
        process(p, 10, "0::/system.slice/nginx.service\n", NGINX_MAPS);
        process(p, 11, "0::/system.slice/nginx.service\n", NGINX_MAPS);
        process(p, 12, "0::/system.slice/cron.service\n", fresh);
        process(p, 13, "0::/system.slice/apache2.service\n", "7f-8f r-xp 0 08:01 2 /usr/sbin/apache2 (deleted)\n");
        process(p, 14, "0::/user.slice/user-1000.slice/session-1.scope\n", NGINX_MAPS);
        fs::create_dir_all(p.join("15")).unwrap(); // gone between the listing and the read
        fs::create_dir_all(p.join("self")).unwrap();
        assert_eq!(stale_units(p, SYSTEM_DIRS), ["apache2", "nginx"]);
        assert!(stale_units(&p.join("missing"), SYSTEM_DIRS).is_empty());
    }

    /// A real process: a copy of `sleep` run from a temp dir, then deleted, is seen
    /// mapping a deleted program in the kernel's own /proc/PID/maps.
    #[test]
    fn a_real_process_mapping_a_deleted_program_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("sleep-copy");
        fs::copy("/bin/sleep", &copy).unwrap();
        let mut child = Command::new(&copy).arg("30").stdin(Stdio::null()).spawn().unwrap();
        let maps = Path::new("/proc").join(child.id().to_string()).join("maps");
        let prefix = format!("{}/", dir.path().display());
        let dirs = [prefix.as_str()];
        // Wait until the child has exec'd (its maps name the copy).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !fs::read_to_string(&maps).unwrap_or_default().contains("sleep-copy") {
            assert!(std::time::Instant::now() < deadline, "the copy never ran");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(deleted_maps(&maps, &dirs).is_empty(), "not deleted yet");
        fs::remove_file(&copy).unwrap();
        let found = deleted_maps(&maps, &dirs);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, [copy.display().to_string()]);
    }
}

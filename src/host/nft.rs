//! The host side of the firewall: nftables, sshd's ports, and the firewalls berth
//! must not fight.
//!
//! berth owns exactly one table, `table inet berth`. Every change is one file that
//! replaces that table in a single nft transaction (`table`, `delete table`, then the
//! new table), so a ruleset is never half loaded; nft checks the file first
//! (`nft -c -f`) and a refusal leaves the running ruleset as it was. No command here
//! lists, flushes or deletes any other table (Docker's, the distribution's).

use std::path::{Path, PathBuf};

use crate::host::fs::under_root;
use crate::host::{ChangeError, Cmd, Host, HostError};

const NFT: &str = "/usr/sbin/nft";
/// The one table berth owns.
pub const TABLE: [&str; 2] = ["inet", "berth"];
/// The ruleset berth last applied (the table, or its removal), re-applied at start.
pub const RULESET_FILE: &str = "/etc/berth/firewall.nft";
/// Removes berth's table, and is not an error when there is none.
pub const REMOVAL: &str = "# Managed by berth: the firewall is off, so berth's table is gone.\n\
                           table inet berth\ndelete table inet berth\n";
const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// `Include` depth sshd itself allows.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where the recorded ruleset lives under `root`.
pub fn ruleset_path(root: &Path) -> PathBuf {
    under_root(root, RULESET_FILE)
}

/// `nft list table inet berth`: the table as the kernel holds it, `None` when absent.
pub fn list(host: &dyn Host) -> Result<Option<String>, HostError> {
    match host.run(&Cmd::new(NFT).args(["list", "table", TABLE[0], TABLE[1]])) {
        Ok(listed) => Ok(Some(listed)),
        Err(HostError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Loads `ruleset` and records it as [`RULESET_FILE`]: written beside it, checked by
/// `nft -c -f`, loaded by `nft -f`, then renamed into place. A refused check is
/// `config_invalid` with nft's words, and nothing changed.
pub fn load(host: &dyn Host, ruleset: &str) -> Result<(), ChangeError> {
    let path = ruleset_path(host.root());
    let staged = path.with_extension("nft.new");
    let io = |p: &Path, e: std::io::Error| ChangeError::Io { path: p.to_owned(), source: e };
    if let Some(dir) = path.parent() {
        crate::host::fs::ensure_dir(dir, 0o755).map_err(|e| io(dir, e))?;
    }
    crate::host::fs::write_atomic(&staged, ruleset.as_bytes(), 0o600).map_err(|e| io(&staged, e))?;
    let file = staged.to_string_lossy().into_owned();
    if let Err(e) = host.run(&Cmd::new(NFT).args(["-c", "-f", &file])) {
        let _ = std::fs::remove_file(&staged);
        return Err(match e {
            HostError::Failed { stderr, .. } => {
                ChangeError::Refused { tool: "nft".into(), path: RULESET_FILE.into(), message: stderr }
            }
            spawn @ HostError::Spawn { .. } => spawn.into(),
        });
    }
    let loaded = host.run(&Cmd::new(NFT).args(["-f", &file]));
    if let Err(e) = loaded {
        let _ = std::fs::remove_file(&staged);
        return Err(e.into());
    }
    std::fs::rename(&staged, &path).map_err(|e| io(&path, e))
}

/// The ports sshd listens on: every `Port` of its config and the files it
/// `Include`s (relative to /etc/ssh, globs allowed), 22 when none is given.
pub fn ssh_ports(root: &Path) -> Vec<u16> {
    let mut ports = Vec::new();
    read_sshd_config(root, &under_root(root, SSHD_CONFIG), 0, &mut ports);
    if ports.is_empty() {
        ports.push(22);
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn read_sshd_config(root: &Path, file: &Path, depth: usize, ports: &mut Vec<u16>) {
    let Ok(text) = std::fs::read_to_string(file) else { return };
    for line in text.lines() {
        let line = line.trim();
        let (keyword, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (k, v.trim().trim_start_matches('=').trim()),
            None => continue,
        };
        if keyword.eq_ignore_ascii_case("match") {
            break; // Port cannot appear in a Match block; nothing after it is global.
        }
        if keyword.eq_ignore_ascii_case("port") {
            ports.extend(value.parse::<u16>().ok().filter(|p| *p > 0));
        } else if keyword.eq_ignore_ascii_case("include") && depth < MAX_INCLUDE_DEPTH {
            for pattern in value.split_whitespace() {
                let pattern = if pattern.starts_with('/') { pattern.to_owned() } else { format!("/etc/ssh/{pattern}") };
                for included in glob(&under_root(root, &pattern)) {
                    read_sshd_config(root, &included, depth + 1, ports);
                }
            }
        }
    }
}

/// The files matching `pattern`, whose last component may hold `*` wildcards, sorted
/// (sshd reads them in lexical order).
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    if !name.contains('*') {
        return vec![pattern.to_owned()];
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard_match(name, n)))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The firewall manager that is active on this host, if any: berth does not fight
/// ufw (`ENABLED=yes` in /etc/ufw/ufw.conf) or a running firewalld (its pid file).
pub fn other_firewall(root: &Path) -> Option<&'static str> {
    let ufw = std::fs::read_to_string(under_root(root, "/etc/ufw/ufw.conf")).unwrap_or_default();
    if under_root(root, "/usr/sbin/ufw").exists() && ufw.lines().any(|l| l.trim().replace('"', "") == "ENABLED=yes") {
        return Some("ufw");
    }
    for pid_file in ["/run/firewalld.pid", "/var/run/firewalld.pid"] {
        let pid = std::fs::read_to_string(under_root(root, pid_file)).unwrap_or_default();
        if pid.trim().parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            return Some("firewalld");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    fn write(root: &Path, path: &str, text: &str) {
        let path = under_root(root, path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn ssh_ports_follow_port_lines_and_includes_and_default_to_22() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(ssh_ports(root.path()), [22], "no sshd config: sshd's default");
        write(
            root.path(),
            SSHD_CONFIG,
            "# Port 1\nInclude /etc/ssh/sshd_config.d/*.conf\nport=2200\nMatch User x\nPort 9\n",
        );
        write(root.path(), "/etc/ssh/sshd_config.d/10-extra.conf", "Port 2222\nInclude nested.conf\n");
        write(root.path(), "/etc/ssh/sshd_config.d/skipped.txt", "Port 7\n");
        write(root.path(), "/etc/ssh/nested.conf", "Port 22\nPort 99999\n");
        assert_eq!(ssh_ports(root.path()), [22, 2200, 2222]);
    }

    #[test]
    fn an_include_loop_ends() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), SSHD_CONFIG, "Port 2022\nInclude /etc/ssh/sshd_config\n");
        assert_eq!(ssh_ports(root.path()), [2022]);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.conf", "a.conf"));
        assert!(wildcard_match("a*b*c", "aXXbYc"));
        assert!(!wildcard_match("*.conf", "a.conf.bak"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }

    #[test]
    fn ufw_enabled_is_found_and_disabled_is_not() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(other_firewall(root.path()), None);
        write(root.path(), "/usr/sbin/ufw", "");
        write(root.path(), "/etc/ufw/ufw.conf", "ENABLED=no\n");
        assert_eq!(other_firewall(root.path()), None);
        write(root.path(), "/etc/ufw/ufw.conf", "# comment\nENABLED=yes\n");
        assert_eq!(other_firewall(root.path()), Some("ufw"));
    }

    #[test]
    fn a_running_firewalld_is_found_by_its_pid_file() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "/run/firewalld.pid", "999999999\n");
        assert_eq!(other_firewall(root.path()), None, "a stale pid file");
        write(root.path(), "/run/firewalld.pid", &format!("{}\n", std::process::id()));
        assert_eq!(other_firewall(root.path()), Some("firewalld"));
    }

    #[test]
    fn a_refused_check_is_config_invalid_and_nothing_is_loaded_or_recorded() {
        let root = tempfile::tempdir().unwrap();
        let host = FakeHost::new(root.path());
        host.fail_when("nft -c", "Error: syntax error, unexpected junk");
        let err = load(&host, "junk").unwrap_err();
        assert!(matches!(err, ChangeError::Refused { .. }), "{err:?}");
        assert!(err.to_string().contains("unexpected junk"), "{err}");
        assert_eq!(host.commands().len(), 1, "only the check ran: {:?}", host.commands());
        assert!(!ruleset_path(root.path()).exists());
        assert!(!ruleset_path(root.path()).with_extension("nft.new").exists());
    }

    #[test]
    fn a_load_is_checked_first_and_recorded() {
        let root = tempfile::tempdir().unwrap();
        let host = FakeHost::new(root.path());
        load(&host, REMOVAL).unwrap();
        let ran = host.commands();
        assert!(ran[0].starts_with("/usr/sbin/nft -c -f ") && ran[1].starts_with("/usr/sbin/nft -f "), "{ran:?}");
        assert_eq!(std::fs::read_to_string(ruleset_path(root.path())).unwrap(), REMOVAL);
    }
}

//! What `hello` (PROTOCOL 2.1) reports about the host: found by looking at it, never assumed.
//!
//! [`host_info`] reads kernel facts (`uname`, `/proc`, `/etc/os-release`) of the real host.
//! [`runtimes`] and [`services`] look under a `root` directory ("/" in production, a temp
//! dir in tests): a PHP-FPM version is installed when its `php-fpmX.Y` binary is there, and
//! a service's version is what its own binary prints. Binaries are run with an argument
//! vector (no shell), `LC_ALL=C`, stdin from /dev/null and a 5 s bound (`host::cmd::run_bounded`),
//! so a wedged binary holds up the `hello` for seconds, not forever.
//!
//! Nothing is cached: this runs once per connection. [`services`] blocks (it runs up to
//! three programs, one after the other); call it off the async runtime.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::host::cmd::run_bounded;
use crate::model::protocol::HostInfo;

/// How long a service binary gets to print its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Reported for a service whose binary is there but whose version could not be read.
const UNKNOWN: &str = "unknown";

/// Facts about the machine (not under root: the kernel, hostname, memory are the real host's).
///
/// A fact that cannot be read is left empty (or 0) rather than guessed.
pub fn host_info() -> HostInfo {
    let (hostname, kernel, arch) = match nix::sys::utsname::uname() {
        Ok(u) => (
            u.nodename().to_string_lossy().into_owned(),
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
        ),
        Err(err) => {
            tracing::warn!("uname failed: {err}");
            (read_trimmed("/proc/sys/kernel/hostname"), read_trimmed("/proc/sys/kernel/osrelease"), String::new())
        }
    };
    let os = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .and_then(|text| os_pretty_name(&text))
        .unwrap_or_default();
    HostInfo {
        hostname,
        os,
        kernel,
        arch,
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        // What this agent may use: honours CPU affinity and cgroup quotas (a container's
        // share, not the host's), which is what the server has to run sites on.
        cpus: thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_total: fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_total(&t)).unwrap_or(0),
    }
}

/// Installed PHP-FPM versions as "phpX.Y", sorted by version (php7.4 < php8.2 < php8.10): a runtime
/// is installed when `<root>/usr/sbin/php-fpmX.Y` exists and is executable (Debian/Ubuntu naming).
pub fn runtimes(root: &Path) -> Vec<String> {
    let Ok(dir) = fs::read_dir(root.join("usr/sbin")) else {
        return Vec::new();
    };
    let mut found: Vec<((u32, u32), String)> = dir
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let (version, text) = fpm_version(name.to_str()?)?;
            // `fs::metadata` follows symlinks: an alternatives link to a binary counts.
            let meta = fs::metadata(entry.path()).ok()?;
            (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| (version, format!("php{text}")))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, name)| name).collect()
}

/// Installed services with versions: keys "nginx", "apache", "mysql" (absent = not installed).
///
/// A binary that is there but whose version cannot be read (it fails, hangs, prints
/// something else) is reported as "unknown": it is installed.
pub fn services(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let sbin = root.join("usr/sbin");
    let nginx = sbin.join("nginx");
    if nginx.exists() {
        found.insert("nginx".to_owned(), version_of(&nginx, &["-v"], parse_nginx));
    }
    let apache = sbin.join("apache2");
    if apache.exists() {
        found.insert("apache".to_owned(), version_of(&apache, &["-v"], parse_apache));
    }
    if let Some(mysql) = ["mariadbd", "mysqld"].iter().map(|name| sbin.join(name)).find(|path| path.exists()) {
        found.insert("mysql".to_owned(), version_of(&mysql, &["--version"], parse_mysql));
    }
    found
}

/// Runs `program args` and parses what it printed (stdout, then stderr), or "unknown".
fn version_of(program: &Path, args: &[&str], parse: fn(&str) -> Option<String>) -> String {
    match run_bounded(program, args, VERSION_TIMEOUT) {
        Ok(out) => {
            let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            parse(&text).unwrap_or_else(|| {
                let shown: String = text.trim().chars().take(200).collect();
                tracing::warn!("cannot read a version in what {} printed: {shown:?}", program.display());
                UNKNOWN.to_owned()
            })
        }
        Err(err) => {
            tracing::warn!("cannot run {}: {err}", program.display());
            UNKNOWN.to_owned()
        }
    }
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// `PRETTY_NAME` of an os-release file, else `NAME VERSION`, else `NAME`
/// (os-release(5): shell-style assignments, values optionally quoted).
fn os_pretty_name(text: &str) -> Option<String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if let Some(value) = unquote(value.trim()) {
                fields.insert(key.trim(), value);
            }
        }
    }
    let nonempty = |key: &str| fields.get(key).filter(|v| !v.is_empty()).cloned();
    nonempty("PRETTY_NAME").or_else(|| {
        let name = nonempty("NAME")?;
        Some(match nonempty("VERSION") {
            Some(version) => format!("{name} {version}"),
            None => name,
        })
    })
}

/// One os-release value: `"double quoted"` (backslash escapes `\" \\ \$ \``), `'single
/// quoted'` (literal) or bare. `None` when a quote is not closed.
fn unquote(value: &str) -> Option<String> {
    let mut chars = value.chars();
    match chars.next() {
        Some('"') => {
            let mut out = String::new();
            loop {
                match chars.next()? {
                    '"' => return Some(out),
                    '\\' => match chars.next()? {
                        c @ ('"' | '\\' | '$' | '`') => out.push(c),
                        c => {
                            out.push('\\');
                            out.push(c);
                        }
                    },
                    c => out.push(c),
                }
            }
        }
        Some('\'') => {
            let rest = chars.as_str();
            rest.find('\'').map(|end| rest[..end].to_owned())
        }
        _ => Some(value.to_owned()),
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:"))?;
    let mut words = line.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

/// `("8.10", (8, 10))` from "php-fpm8.10": two decimal numbers written canonically (no
/// leading zeros), so "phpX.Y" names the binary back.
fn fpm_version(file_name: &str) -> Option<((u32, u32), &str)> {
    let text = file_name.strip_prefix("php-fpm")?;
    let (major, minor) = text.split_once('.')?;
    Some(((number(major)?, number(minor)?), text))
}

fn number(s: &str) -> Option<u32> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// The leading `1.2.3` of `s` (digits and dots, starting with a digit, no trailing dot).
fn leading_version(s: &str) -> Option<&str> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let version = s[..end].trim_end_matches('.');
    (version.starts_with(|c: char| c.is_ascii_digit())).then_some(version)
}

/// `nginx -v`: "nginx version: nginx/1.22.1" → "1.22.1" (also "nginx/1.24.0 (Ubuntu)",
/// and builds that name themselves otherwise, like "openresty/1.21.4.1").
fn parse_nginx(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("nginx version:")?;
        let (_, version) = rest.trim_start().split_once('/')?;
        leading_version(version).map(str::to_owned)
    })
}

/// `apache2 -v`: "Server version: Apache/2.4.62 (Debian)" → "2.4.62".
fn parse_apache(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("Server version:")?;
        let version = rest.trim_start().strip_prefix("Apache/")?;
        leading_version(version).map(str::to_owned)
    })
}

/// `mariadbd --version` / `mysqld --version`:
/// "/usr/sbin/mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu …" → "mariadb 10.11.6",
/// "/usr/sbin/mysqld  Ver 8.0.39-0ubuntu0.24.04.2 for Linux on x86_64 ((Ubuntu))" → "mysql 8.0.39".
fn parse_mysql(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let (_, rest) = line.split_once(" Ver ")?;
        let token = rest.split_whitespace().next()?;
        let version = leading_version(token)?;
        let flavour = if line.to_ascii_lowercase().contains("mariadb") { "mariadb" } else { "mysql" };
        Some(format!("{flavour} {version}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(path: &Path, text: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn nginx_version() {
        assert_eq!(parse_nginx("nginx version: nginx/1.22.1\n").as_deref(), Some("1.22.1"));
        assert_eq!(parse_nginx("nginx version: nginx/1.24.0 (Ubuntu)\n").as_deref(), Some("1.24.0"));
        assert_eq!(parse_nginx("nginx version: openresty/1.21.4.1\n").as_deref(), Some("1.21.4.1"));
        assert_eq!(parse_nginx(""), None);
        assert_eq!(parse_nginx("nginx version: nginx/\n"), None);
        assert_eq!(parse_nginx("nginx version: nginx/x.y\n"), None);
        assert_eq!(parse_nginx("bash: nginx: command not found"), None);
    }

    #[test]
    fn apache_version() {
        let real = "Server version: Apache/2.4.62 (Debian)\nServer built:   2024-07-22T11:27:41\n";
        assert_eq!(parse_apache(real).as_deref(), Some("2.4.62"));
        assert_eq!(parse_apache("Server version: Apache/2.4.58 (Ubuntu)").as_deref(), Some("2.4.58"));
        assert_eq!(parse_apache("Server version: Apache\n"), None);
        assert_eq!(parse_apache("AH00558: apache2: Could not reliably determine the server's name"), None);
        assert_eq!(parse_apache(""), None);
    }

    #[test]
    fn mysql_version() {
        let mariadb = "/usr/sbin/mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)";
        assert_eq!(parse_mysql(mariadb).as_deref(), Some("mariadb 10.11.6"));
        let mysql = "/usr/sbin/mysqld  Ver 8.0.39-0ubuntu0.24.04.2 for Linux on x86_64 ((Ubuntu))";
        assert_eq!(parse_mysql(mysql).as_deref(), Some("mysql 8.0.39"));
        let community = "/usr/sbin/mysqld  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)";
        assert_eq!(parse_mysql(community).as_deref(), Some("mysql 8.4.0"));
        let deprecated = "mysqld: Deprecated program name. It will be removed in a future release, use \
                          '/usr/sbin/mariadbd' instead\n/usr/sbin/mysqld  Ver 11.4.2-MariaDB-ubu2404 for \
                          debian-linux-gnu on x86_64 (mariadb.org binary distribution)";
        assert_eq!(parse_mysql(deprecated).as_deref(), Some("mariadb 11.4.2"));
        assert_eq!(parse_mysql("/usr/sbin/mysqld  Ver \n"), None);
        assert_eq!(parse_mysql("/usr/sbin/mysqld  Ver unknown-build"), None);
        assert_eq!(parse_mysql("Segmentation fault"), None);
    }

    #[test]
    fn os_release_values() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n";
        assert_eq!(os_pretty_name(debian).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        let ubuntu = "# comment\nNAME=\"Ubuntu\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\n";
        assert_eq!(os_pretty_name(ubuntu).as_deref(), Some("Ubuntu 24.04.1 LTS"));
        assert_eq!(os_pretty_name("PRETTY_NAME='Single quoted \\ \"ok\"'").as_deref(), Some("Single quoted \\ \"ok\""));
        assert_eq!(os_pretty_name(r#"PRETTY_NAME="Esc \"q\" \$x \\ \n""#).as_deref(), Some(r#"Esc "q" $x \ \n"#));
        assert_eq!(os_pretty_name("PRETTY_NAME=Bare").as_deref(), Some("Bare"));
        // Unclosed quote: the line is ignored, NAME VERSION stands in.
        assert_eq!(os_pretty_name("PRETTY_NAME=\"broken\nNAME=Foo\nVERSION=\"1 (x)\"").as_deref(), Some("Foo 1 (x)"));
        assert_eq!(os_pretty_name("garbage\n\n=\n"), None);
    }

    #[test]
    fn meminfo_total() {
        assert_eq!(mem_total("MemTotal:        2013780 kB\nMemFree: 1 kB\n"), Some(2013780 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total("MemTotal: 5 MB\n"), None);
    }

    #[test]
    fn host_info_of_this_machine() {
        let host = host_info();
        assert!(!host.kernel.is_empty() && !host.arch.is_empty());
        assert!(host.cpus >= 1);
        assert!(host.memory_total > 0);
        assert_eq!(host.boot_id.len(), 36, "{:?}", host.boot_id);
    }

    #[test]
    fn runtimes_are_executable_well_named_and_sorted() {
        let root = tempfile::tempdir().unwrap();
        let sbin = root.path().join("usr/sbin");
        for name in ["php-fpm8.2", "php-fpm8.10", "php-fpm7.4", "php-fpm8.3"] {
            write_file(&sbin.join(name), "", 0o755);
        }
        write_file(&sbin.join("php-fpm8.1"), "", 0o644); // not executable
        for bad in ["php-fpm8", "php-fpmx.y", "php-fpm8.3.bak", "php-fpm08.3", "php-fpm.3", "php-fpm8.", "php8.0"] {
            write_file(&sbin.join(bad), "", 0o755);
        }
        fs::create_dir(sbin.join("php-fpm9.0")).unwrap(); // a directory, not a binary
        std::os::unix::fs::symlink("php-fpm8.3", sbin.join("php-fpm8.4")).unwrap(); // link to a binary: counts
        std::os::unix::fs::symlink("missing", sbin.join("php-fpm8.5")).unwrap(); // dangling: does not
        assert_eq!(runtimes(root.path()), ["php7.4", "php8.2", "php8.3", "php8.4", "php8.10"]);
        assert!(runtimes(&root.path().join("nowhere")).is_empty());
    }

    #[test]
    fn services_run_the_binaries_under_root() {
        let root = tempfile::tempdir().unwrap();
        let sbin = root.path().join("usr/sbin");
        // All scripts are written (and closed) before any is run.
        write_file(&sbin.join("nginx"), "#!/bin/sh\necho 'nginx version: nginx/1.22.1' >&2\n", 0o755);
        write_file(
            &sbin.join("apache2"),
            "#!/bin/sh\n[ \"$1\" = -v ] || exit 1\necho 'Server version: Apache/2.4.62 (Debian)'\n\
             echo 'Server built:   2024-07-22T11:27:41'\n",
            0o755,
        );
        let mariadb = "/usr/sbin/mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)";
        write_file(
            &sbin.join("mariadbd"),
            &format!("#!/bin/sh\n[ \"$1\" = --version ] || exit 1\necho '{mariadb}'\n"),
            0o755,
        );
        // Shadowed by mariadbd, which is looked at first.
        write_file(&sbin.join("mysqld"), "#!/bin/sh\necho 'mysqld  Ver 8.0.39 for Linux'\n", 0o755);
        let found = services(root.path());
        let expect = [("apache", "2.4.62"), ("mysql", "mariadb 10.11.6"), ("nginx", "1.22.1")];
        assert_eq!(found, expect.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>());

        let other = tempfile::tempdir().unwrap();
        let sbin = other.path().join("usr/sbin");
        let mysql = "/usr/sbin/mysqld  Ver 8.0.39-0ubuntu0.24.04.2 for Linux on x86_64 ((Ubuntu))";
        write_file(&sbin.join("mysqld"), &format!("#!/bin/sh\necho '{mysql}'\n"), 0o755);
        write_file(&sbin.join("nginx"), "#!/bin/sh\necho 'something else'\n", 0o755); // unparseable
        write_file(&sbin.join("apache2"), "not a program", 0o644); // cannot run
        let found = services(other.path());
        assert_eq!(found["mysql"], "mysql 8.0.39");
        assert_eq!(found["nginx"], "unknown");
        assert_eq!(found["apache"], "unknown");
    }

    #[test]
    fn no_services_under_an_empty_root() {
        let root = tempfile::tempdir().unwrap();
        assert!(services(root.path()).is_empty());
        assert!(runtimes(root.path()).is_empty());
    }
}

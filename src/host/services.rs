//! The web servers berth drives, and how to check, reload and start each.
//!
//! The commands are data: one table per service and mode, so every job reloads
//! the same way. Under systemd (PID 1, real root) berth asks systemctl; anywhere
//! else (containers, test sandboxes) it uses the servers' own controls pointed at
//! the config under `root`: `nginx -c`, `apache2ctl` with `APACHE_CONFDIR`,
//! `php-fpmX.Y -y`, and `start-stop-daemon` to send PHP-FPM its reload signal.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::host::Cmd;

/// A service whose config berth writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Nginx,
    Apache,
    /// PHP-FPM of one PHP version ("8.2").
    PhpFpm(String),
}

impl Service {
    /// The systemd unit (and the name in messages).
    pub fn unit(&self) -> String {
        match self {
            Service::Nginx => "nginx".into(),
            Service::Apache => "apache2".into(),
            Service::PhpFpm(version) => format!("php{version}-fpm"),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unit())
    }
}

/// How services are controlled on this host.
#[derive(Debug, Clone)]
pub struct Services {
    root: PathBuf,
    systemd: bool,
}

impl Services {
    /// systemd when the root is the real one and systemd runs the machine.
    pub fn detect(root: &Path) -> Self {
        let systemd = root == Path::new("/") && Path::new("/run/systemd/system").is_dir();
        Services { root: root.to_owned(), systemd }
    }

    /// Whether systemd runs the services.
    pub fn systemd(&self) -> bool {
        self.systemd
    }

    /// For unit tests of the systemd commands.
    #[cfg(test)]
    pub fn systemd_for_tests() -> Self {
        Services { root: PathBuf::from("/"), systemd: true }
    }

    /// `systemctl daemon-reload`, after a unit drop-in changed (systemd only).
    pub fn daemon_reload(&self) -> Option<Cmd> {
        self.systemd.then(|| Cmd::new("/usr/bin/systemctl").arg("daemon-reload"))
    }

    /// A full restart (a unit drop-in applies to a new process); outside systemd,
    /// where berth writes no drop-ins, the same as a reload.
    pub fn restart(&self, service: &Service) -> Cmd {
        if self.systemd {
            return Cmd::new("/usr/bin/systemctl").args(["restart", &service.unit()]);
        }
        self.reload(service)
    }

    /// The service's own config check.
    pub fn check(&self, service: &Service) -> Cmd {
        match service {
            Service::Nginx => self.nginx().args(["-t", "-q"]),
            Service::Apache => self.apache2ctl().arg("-t"),
            Service::PhpFpm(version) => self.php_fpm(version).arg("-t"),
        }
    }

    /// A graceful reload; [`Services::start`] is the fallback when it is not running.
    pub fn reload(&self, service: &Service) -> Cmd {
        if self.systemd {
            return Cmd::new("/usr/bin/systemctl").args(["reload-or-restart", &service.unit()]);
        }
        match service {
            Service::Nginx => self.nginx().args(["-s", "reload"]),
            // apache2ctl graceful also starts a server that is not running.
            Service::Apache => self.apache2ctl().arg("graceful"),
            Service::PhpFpm(version) => Cmd::new("/usr/sbin/start-stop-daemon").args([
                "--stop".to_string(),
                "--signal".into(),
                "USR2".into(),
                "--pidfile".into(),
                self.php_fpm_pid_file(version).to_string_lossy().into_owned(),
                "--exec".into(),
                format!("/usr/sbin/php-fpm{version}"),
            ]),
        }
    }

    pub fn start(&self, service: &Service) -> Cmd {
        if self.systemd {
            return Cmd::new("/usr/bin/systemctl").args(["start", &service.unit()]);
        }
        match service {
            Service::Nginx => self.nginx(),
            Service::Apache => self.apache2ctl().arg("start"),
            Service::PhpFpm(version) => self.php_fpm(version),
        }
    }

    fn nginx(&self) -> Cmd {
        let cmd = Cmd::new("/usr/sbin/nginx");
        if self.root == Path::new("/") {
            return cmd;
        }
        let conf = self.root.join("etc/nginx/nginx.conf");
        cmd.arg("-c").arg(conf.to_string_lossy()).arg("-p").arg(self.root.join("etc/nginx").to_string_lossy())
    }

    fn apache2ctl(&self) -> Cmd {
        let cmd = Cmd::new("/usr/sbin/apache2ctl");
        if self.root == Path::new("/") {
            return cmd;
        }
        cmd.env("APACHE_CONFDIR", self.root.join("etc/apache2").to_string_lossy())
    }

    fn php_fpm(&self, version: &str) -> Cmd {
        // `version` is X.Y of a detected runtime (validated digits), never raw input.
        let program = format!("/usr/sbin/php-fpm{version}");
        Cmd::new(program).arg("--fpm-config").arg(self.php_fpm_conf(version).to_string_lossy())
    }

    fn php_fpm_conf(&self, version: &str) -> PathBuf {
        self.root.join(format!("etc/php/{version}/fpm/php-fpm.conf"))
    }

    /// The `pid` of the PHP-FPM config, or Debian's default, under root.
    fn php_fpm_pid_file(&self, version: &str) -> PathBuf {
        let conf = std::fs::read_to_string(self.php_fpm_conf(version)).unwrap_or_default();
        conf.lines()
            .filter_map(|line| line.trim().strip_prefix("pid"))
            .filter_map(|rest| rest.trim_start().strip_prefix('='))
            .map(|path| PathBuf::from(path.trim()))
            .next_back()
            .unwrap_or_else(|| self.root.join(format!("run/php/php{version}-fpm.pid")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandboxed() -> Services {
        Services { root: PathBuf::from("/tmp/sb"), systemd: false }
    }

    #[test]
    fn systemd_reloads_units() {
        let services = Services { root: PathBuf::from("/"), systemd: true };
        assert_eq!(services.reload(&Service::PhpFpm("8.2".into())).to_string(), "/usr/bin/systemctl reload-or-restart php8.2-fpm");
        assert_eq!(services.start(&Service::Nginx).to_string(), "/usr/bin/systemctl start nginx");
        assert_eq!(services.check(&Service::Nginx).to_string(), "/usr/sbin/nginx -t -q");
    }

    #[test]
    fn sandboxes_point_each_server_at_the_config_under_root() {
        let services = sandboxed();
        assert_eq!(
            services.check(&Service::Nginx).to_string(),
            "/usr/sbin/nginx -c /tmp/sb/etc/nginx/nginx.conf -p /tmp/sb/etc/nginx -t -q"
        );
        assert_eq!(services.reload(&Service::Apache).to_string(), "APACHE_CONFDIR=/tmp/sb/etc/apache2 /usr/sbin/apache2ctl graceful");
        assert_eq!(
            services.check(&Service::PhpFpm("8.2".into())).to_string(),
            "/usr/sbin/php-fpm8.2 --fpm-config /tmp/sb/etc/php/8.2/fpm/php-fpm.conf -t"
        );
    }

    #[test]
    fn php_fpm_is_signalled_through_its_pid_file() {
        let root = tempfile::tempdir().unwrap();
        let services = Services { root: root.path().to_owned(), systemd: false };
        let conf = root.path().join("etc/php/8.2/fpm");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("php-fpm.conf"), "[global]\n;pid = /nope\npid = /sandbox/fpm.pid\n").unwrap();
        let reload = services.reload(&Service::PhpFpm("8.2".into())).to_string();
        assert!(reload.ends_with("--pidfile /sandbox/fpm.pid --exec /usr/sbin/php-fpm8.2"), "{reload}");
    }
}
